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

/// A TCP listener in `ns` whose accept queue holds one connection: once one waits
/// there, the kernel drops every further SYN unanswered (the connecting side stays in
/// SYN_SENT and retransmits), until the waiting one is accepted.
pub fn tcp_listen_one(ns: &Path, addr: &str) -> TcpListener {
    let listener = tcp_listen(ns, addr);
    // A second listen() only sets the backlog; 0 lets one connection wait.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    listener
}

/// A TCP connection from `local` (bound first, `SO_REUSEADDR`) to `remote`, made in
/// namespace `ns`, waiting at most `wait` for it.
pub fn tcp_connect_from(
    ns: &Path,
    local: std::net::SocketAddrV4,
    remote: std::net::SocketAddrV4,
    wait: Duration,
) -> std::io::Result<TcpStream> {
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    in_ns(ns, move || {
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let s = unsafe { TcpStream::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        let timeout = libc::timeval {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        let (l, r) = (sockaddr_in(local), sockaddr_in(remote));
        let ok = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&one as *const libc::c_int).cast(),
                4,
            ) == 0
                && libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_SNDTIMEO,
                    (&timeout as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                ) == 0
                && libc::bind(fd, (&l as *const libc::sockaddr_in).cast(), len) == 0
                && libc::connect(fd, (&r as *const libc::sockaddr_in).cast(), len) == 0
        };
        if !ok {
            return Err(std::io::Error::last_os_error());
        }
        s.set_read_timeout(Some(TIMEOUT))?;
        Ok(s)
    })
}

/// `addr` as the kernel takes it.
fn sockaddr_in(addr: std::net::SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
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

/// Sends one TCP segment from namespace `ns` with a raw socket, as `hping3` would: from
/// `src` (which must be an address of `ns`) to `dst`, with `seq`, `ack` and `flags`,
/// no payload, its checksum right. What a blind attacker can do with a connection's
/// 4-tuple.
pub fn tcp_segment(
    ns: &Path,
    src: std::net::SocketAddrV4,
    dst: std::net::SocketAddrV4,
    seq: u32,
    ack: u32,
    flags: u8,
) {
    let mut seg = [0u8; 20];
    seg[0..2].copy_from_slice(&src.port().to_be_bytes());
    seg[2..4].copy_from_slice(&dst.port().to_be_bytes());
    seg[4..8].copy_from_slice(&seq.to_be_bytes());
    seg[8..12].copy_from_slice(&ack.to_be_bytes());
    seg[12] = 5 << 4;
    seg[13] = flags;
    seg[14..16].copy_from_slice(&64240u16.to_be_bytes());
    // The checksum over the pseudo-header and the segment.
    let mut sum: u32 = 0;
    let words = src
        .ip()
        .octets()
        .into_iter()
        .chain(dst.ip().octets())
        .chain([0, 6, 0, 20])
        .chain(seg);
    let bytes: Vec<u8> = words.collect();
    for pair in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    seg[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    send_raw(ns, libc::IPPROTO_TCP, *src.ip(), *dst.ip(), &seg);
}

/// Sends one ICMP echo request from namespace `ns` with a raw socket: from `src`
/// (an address of `ns`) to `dst`, with identifier `id` and sequence number 1, as any
/// pinger could pick them.
pub fn icmp_echo_request(ns: &Path, src: Ipv4Addr, dst: Ipv4Addr, id: u16) {
    let mut msg = [0u8; 16];
    msg[0] = 8;
    msg[8..].copy_from_slice(b"netlab!!");
    msg[4..6].copy_from_slice(&id.to_be_bytes());
    msg[6..8].copy_from_slice(&1u16.to_be_bytes());
    let sum = crate::packet::checksum(&msg);
    msg[2..4].copy_from_slice(&sum.to_be_bytes());
    send_raw(ns, libc::IPPROTO_ICMP, src, dst, &msg);
}

/// Sends `payload` as one packet of protocol `proto` from namespace `ns` with a raw
/// socket bound to `src`; the kernel writes the IP header.
pub fn send_raw(ns: &Path, proto: i32, src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) {
    let fd = in_ns(ns, || unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_RAW, proto)
    });
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let to = sockaddr_in(std::net::SocketAddrV4::new(dst, 0));
    let from = sockaddr_in(std::net::SocketAddrV4::new(src, 0));
    let sent = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &from as *const _ as *const libc::sockaddr,
            size_of::<libc::sockaddr_in>() as u32,
        );
        libc::sendto(
            fd.as_raw_fd(),
            payload.as_ptr() as *const libc::c_void,
            payload.len(),
            0,
            &to as *const _ as *const libc::sockaddr,
            size_of::<libc::sockaddr_in>() as u32,
        )
    };
    assert_eq!(
        sent,
        payload.len() as isize,
        "send: {}",
        std::io::Error::last_os_error()
    );
}

/// Sends one UDP datagram from namespace `ns` with a raw socket that writes its own IP
/// header (`IP_HDRINCL`), so that its source can be any address at all, as a spoofer's,
/// and it can carry IP `options` (a multiple of 4 bytes). The kernel fills in the IP
/// checksum; the UDP checksum is left out, as IPv4 allows.
pub fn udp_spoofed(
    ns: &Path,
    src: std::net::SocketAddrV4,
    dst: std::net::SocketAddrV4,
    options: &[u8],
    payload: &[u8],
) {
    assert_eq!(options.len() % 4, 0, "options come in 32-bit words");
    let ihl = 20 + options.len();
    let len = ihl + 8 + payload.len();
    let mut p = vec![0u8; len];
    p[0] = 0x40 | (ihl / 4) as u8;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.ip().octets());
    p[16..20].copy_from_slice(&dst.ip().octets());
    p[20..ihl].copy_from_slice(options);
    p[ihl..ihl + 2].copy_from_slice(&src.port().to_be_bytes());
    p[ihl + 2..ihl + 4].copy_from_slice(&dst.port().to_be_bytes());
    p[ihl + 4..ihl + 6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[ihl + 8..].copy_from_slice(payload);
    send_ipv4(ns, &p);
}

/// Sends one IPv4 packet, `packet` (its header written by the caller, as any sender at
/// all could: source, identifier, fragment offset), from namespace `ns` with a raw
/// socket (`IP_HDRINCL`); the kernel fills in the header checksum.
pub fn send_ipv4(ns: &Path, packet: &[u8]) {
    let dst = u32::from_be_bytes([packet[16], packet[17], packet[18], packet[19]]);
    let fd = in_ns(ns, || unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW)
    });
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let to = sockaddr_in(std::net::SocketAddrV4::new(Ipv4Addr::from(dst), 0));
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            packet.as_ptr() as *const libc::c_void,
            packet.len(),
            0,
            &to as *const _ as *const libc::sockaddr,
            size_of::<libc::sockaddr_in>() as u32,
        )
    };
    assert_eq!(
        sent,
        packet.len() as isize,
        "send: {}",
        std::io::Error::last_os_error()
    );
}

/// An IPv4 UDP datagram from `src` to `dst` carrying `payload`, its header checksum
/// computed (no UDP checksum), to put in a frame of one's own.
pub fn ipv4_udp(
    src: std::net::SocketAddrV4,
    dst: std::net::SocketAddrV4,
    payload: &[u8],
) -> Vec<u8> {
    let len = 28 + payload.len();
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.ip().octets());
    p[16..20].copy_from_slice(&dst.ip().octets());
    let mut sum: u32 = p[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..22].copy_from_slice(&src.port().to_be_bytes());
    p[22..24].copy_from_slice(&dst.port().to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

/// Sends an IPv4 packet from interface `ifname` of namespace `ns` in an Ethernet frame
/// addressed to `dst_mac` (whatever machine that is), with a packet socket.
pub fn send_in_frame(ns: &Path, ifname: &str, dst_mac: [u8; 6], packet: &[u8]) {
    send_with_ethertype(ns, ifname, dst_mac, libc::ETH_P_IP as u16, packet);
}

/// The same IPv4 packet behind two VLAN tags of VLAN id 0 (priority tags, 802.1ad then
/// 802.1Q), which a Linux receiver without VLAN devices strips, one before its TC hooks
/// and one after, taking the packet as untagged.
pub fn send_priority_tagged(ns: &Path, ifname: &str, dst_mac: [u8; 6], packet: &[u8]) {
    let mut tagged = vec![0, 0, 0x81, 0x00, 0, 0, 0x08, 0x00];
    tagged.extend_from_slice(packet);
    send_with_ethertype(ns, ifname, dst_mac, libc::ETH_P_8021AD as u16, &tagged);
}

/// The same IPv4 packet tagged for VLAN `vid` (802.1Q), which the receiving kernel takes
/// into the skb before its TC hooks.
pub fn send_on_vlan(ns: &Path, ifname: &str, dst_mac: [u8; 6], vid: u16, packet: &[u8]) {
    let mut tagged = vid.to_be_bytes().to_vec();
    tagged.extend_from_slice(&[0x08, 0x00]);
    tagged.extend_from_slice(packet);
    send_with_ethertype(ns, ifname, dst_mac, libc::ETH_P_8021Q as u16, &tagged);
}

/// Every frame interface `ifname` of namespace `ns` carries (a packet socket of all
/// protocols), from now until the capture is dropped.
pub struct Capture(OwnedFd);

impl Capture {
    pub fn open(ns: &Path, ifname: &str) -> Capture {
        let name = std::ffi::CString::new(ifname).expect("an interface name");
        let all = i32::from((libc::ETH_P_ALL as u16).to_be());
        let fd = in_ns(ns, move || unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, all);
            assert!(
                fd >= 0,
                "packet socket: {}",
                std::io::Error::last_os_error()
            );
            let mut at: libc::sockaddr_ll = std::mem::zeroed();
            at.sll_family = libc::AF_PACKET as u16;
            at.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            at.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            let rc = libc::bind(
                fd,
                &at as *const _ as *const libc::sockaddr,
                size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            fd
        });
        Capture(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// The frames seen within `wait` (a VLAN tag the kernel took into the skb is not in
    /// them).
    pub fn frames_for(&self, wait: Duration) -> Vec<Vec<u8>> {
        read_for(&self.0, wait)
    }
}

/// Sends `payload` after an Ethernet header with `ethertype`, from `ifname` in `ns` to
/// `dst_mac`, with a packet socket.
fn send_with_ethertype(ns: &Path, ifname: &str, dst_mac: [u8; 6], ethertype: u16, packet: &[u8]) {
    let name = std::ffi::CString::new(ifname).expect("an interface name");
    let (fd, index) = in_ns(ns, || unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM,
            i32::from(ethertype.to_be()),
        );
        (fd, libc::if_nametoindex(name.as_ptr()))
    });
    assert!(
        fd >= 0,
        "packet socket: {}",
        std::io::Error::last_os_error()
    );
    assert!(index > 0, "no interface {ifname}");
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ethertype.to_be();
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&dst_mac);
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            packet.as_ptr() as *const libc::c_void,
            packet.len(),
            0,
            &to as *const _ as *const libc::sockaddr,
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(
        sent,
        packet.len() as isize,
        "send: {}",
        std::io::Error::last_os_error()
    );
}

/// A raw IPv4 socket in a namespace: every packet of one protocol the namespace
/// receives, IP header included, as its stack gets it.
pub struct RawReceiver(OwnedFd);

impl RawReceiver {
    /// For protocol `proto` (`libc::IPPROTO_ICMP`, `libc::IPPROTO_TCP`, ...) in `ns`;
    /// a read waits `wait` at most.
    pub fn open(ns: &Path, proto: i32, wait: Duration) -> RawReceiver {
        let fd = in_ns(ns, || unsafe {
            libc::socket(libc::AF_INET, libc::SOCK_RAW, proto)
        });
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_usec: wait.subsec_micros() as libc::suseconds_t,
        };
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                size_of::<libc::timeval>() as u32,
            )
        };
        assert_eq!(rc, 0, "SO_RCVTIMEO: {}", std::io::Error::last_os_error());
        RawReceiver(fd)
    }

    /// The next packet into `buf`, its length; `None` when none came in time.
    pub fn next(&self, buf: &mut [u8]) -> Option<usize> {
        let n = unsafe {
            libc::recv(
                self.0.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        (n >= 0).then_some(n as usize)
    }
}

/// A tun device (`IFF_TUN`, no packet information) made in namespace `ns` and held
/// open: its carrier is up while this lives, what the namespace routes to it is read
/// here, and what is written here arrives by it, each an IP packet without an Ethernet
/// header (a VPN's interface, say). The device goes when this is dropped.
pub struct Tun(OwnedFd);

impl Tun {
    pub fn open(ns: &Path, name: &str) -> Tun {
        const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
        let name = name.as_bytes().to_vec();
        let fd = in_ns(ns, move || unsafe {
            let fd = libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK);
            assert!(
                fd >= 0,
                "open /dev/net/tun: {}",
                std::io::Error::last_os_error()
            );
            let mut req = [0u8; 40];
            req[..name.len()].copy_from_slice(&name);
            let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as i16;
            req[16..18].copy_from_slice(&flags.to_ne_bytes());
            let rc = libc::ioctl(fd, TUNSETIFF as _, req.as_mut_ptr());
            assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
            fd
        });
        Tun(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Every packet the device is handed within `wait`.
    pub fn read_for(&self, wait: Duration) -> Vec<Vec<u8>> {
        read_for(&self.0, wait)
    }

    /// Hands `packet` to the namespace as if it arrived by the device.
    pub fn write(&self, packet: &[u8]) {
        let n = unsafe {
            libc::write(
                self.0.as_raw_fd(),
                packet.as_ptr() as *const libc::c_void,
                packet.len(),
            )
        };
        assert_eq!(
            n,
            packet.len() as isize,
            "tun write: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Every packet read from the non-blocking descriptor `fd` within `wait`.
fn read_for(fd: &OwnedFd, wait: Duration) -> Vec<Vec<u8>> {
    let end = std::time::Instant::now() + wait;
    let mut got = Vec::new();
    while std::time::Instant::now() < end {
        let mut buf = [0u8; 2048];
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        match n {
            n if n > 0 => got.push(buf[..n as usize].to_vec()),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    got
}
