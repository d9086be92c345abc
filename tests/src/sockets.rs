//! Small Rust peers opened inside lab namespaces: a socket keeps the namespace it was
//! created in, so the test thread can use it afterwards.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
    time::Duration,
};

use crate::{in_ns, wait_for};

pub const TIMEOUT: Duration = Duration::from_secs(5);

pub fn udp(ns: &Path, addr: &str) -> UdpSocket {
    let addr = addr.to_string();
    let s = in_ns(ns, move || UdpSocket::bind(&addr).expect("bind udp"));
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

pub fn tcp_listen(ns: &Path, addr: &str) -> TcpListener {
    let addr = addr.to_string();
    in_ns(ns, move || TcpListener::bind(&addr).expect("listen tcp"))
}

/// Accepts one connection within 10 s.
pub fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let mut got = None;
    let accepted = wait_for(Duration::from_secs(10), || {
        got = listener.accept().ok().map(|(s, _)| s);
        got.is_some()
    });
    assert!(accepted, "no connection arrived");
    let s = got.unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

pub fn tcp_connect(ns: &Path, addr: &str) -> TcpStream {
    let addr: SocketAddr = addr.parse().unwrap();
    let s = in_ns(ns, move || {
        TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect tcp")
    });
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// A raw ICMP socket that sees every ICMP packet arriving in its namespace.
pub struct IcmpSniffer(OwnedFd);

impl IcmpSniffer {
    pub fn open(ns: &Path) -> Self {
        let fd = in_ns(ns, || unsafe {
            libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP)
        });
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                size_of::<libc::timeval>() as u32,
            )
        };
        Self(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// The source address of the first echo request seen within `TIMEOUT`.
    pub fn echo_request_source(&self) -> Option<Ipv4Addr> {
        let deadline = std::time::Instant::now() + TIMEOUT;
        let mut buf = [0u8; 2048];
        while std::time::Instant::now() < deadline {
            let n = unsafe {
                libc::recv(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n < 20 {
                continue;
            }
            let ihl = ((buf[0] & 0x0f) as usize) * 4;
            if buf[ihl] == 8 {
                return Some(Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]));
            }
        }
        None
    }
}
