//! Scenario g's sender and receiver: UDP datagrams of [`PAYLOAD`] bytes, as many as
//! the path takes, so that what is measured is the cost of a packet rather than the
//! cost of copying bytes (a TCP stream hides it: GSO hands every hook 64 KB at once).
//!
//! Why netlab's own and not iperf3 (`-u -l 64 -b 0`) or sockperf: iperf3 sends one
//! datagram per system call and paces itself, so on two CPUs it measures its own
//! syscall rate; sockperf is not packaged for Debian. Here the sender hands the kernel
//! [`BATCH`] datagrams per `sendmmsg` and the receiver takes up to as many per
//! `recvmmsg`, each on a thread pinned to its own CPU, so that the system calls are
//! cheap next to the path and the two ends do not steal each other's CPU. On veth, a
//! datagram's whole way to the far socket (both veth hops, bridge, routing, NAT)
//! runs on the sender's CPU, in the softirq its send raises: the rate is the cost of
//! that path per packet.
//!
//! The flow is made two-way before it counts: the sender repeats a hello until the
//! receiver answers it, so that every conntrack (netfilter's, the eBPF datapath's)
//! holds an established flow, as a DNS or QUIC exchange would leave it. What carries
//! the blast is then whatever a datapath does for established flows: its fast path
//! where it has one.

use std::{
    io::{self, ErrorKind},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::rr::pin_to;

/// UDP payload bytes per datagram (iperf3's `-l 64`).
pub const PAYLOAD: usize = 64;
/// Datagrams per `sendmmsg` and, at most, per `recvmmsg`.
const BATCH: usize = 32;
/// The first payload byte: a hello to answer, or data to count.
const HELLO: u8 = 1;
const DATA: u8 = 0;
/// How often a blocked receiver looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);
/// How long the sender waits for its hello to be answered.
const HANDSHAKE: Duration = Duration::from_secs(3);
/// Receive buffer: bursts must not overflow it while the receiver is scheduled out.
const RCVBUF: libc::c_int = 8 << 20;

/// A receiver on its own thread, counting datagrams until stopped.
pub struct Receiver {
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn setsockopt_int(
    s: &UdpSocket,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            opt,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `recvmmsg` buffers: BATCH datagrams and their source addresses (room for an IPv6
/// one). The headers point into the buffers, so none of them may move once built.
struct RecvBatch {
    bufs: Vec<[u8; 2048]>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_in6>,
    msgs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    fn new() -> Box<RecvBatch> {
        let mut b = Box::new(RecvBatch {
            bufs: vec![[0u8; 2048]; BATCH],
            iovs: Vec::with_capacity(BATCH),
            names: vec![unsafe { std::mem::zeroed() }; BATCH],
            msgs: Vec::with_capacity(BATCH),
        });
        for i in 0..BATCH {
            let iov = libc::iovec {
                iov_base: b.bufs[i].as_mut_ptr().cast(),
                iov_len: b.bufs[i].len(),
            };
            b.iovs.push(iov);
        }
        for i in 0..BATCH {
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = (&mut b.names[i] as *mut libc::sockaddr_in6).cast();
            hdr.msg_iov = &mut b.iovs[i];
            hdr.msg_iovlen = 1;
            b.msgs.push(libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            });
        }
        b
    }

    /// Receives up to BATCH datagrams, blocking for the first only.
    fn recv(&mut self, s: &UdpSocket) -> io::Result<usize> {
        for m in &mut self.msgs {
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        }
        let n = unsafe {
            libc::recvmmsg(
                s.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// The source of a hello among the first `n` datagrams received.
    fn hellos(&self, n: usize) -> impl Iterator<Item = SocketAddr> + '_ {
        (0..n)
            .filter(|&i| self.msgs[i].msg_len >= 1 && self.bufs[i][0] == HELLO)
            .map(|i| {
                let a = &self.names[i];
                if i32::from(a.sin6_family) == libc::AF_INET6 {
                    return SocketAddr::V6(SocketAddrV6::new(
                        Ipv6Addr::from(a.sin6_addr.s6_addr),
                        u16::from_be(a.sin6_port),
                        0,
                        a.sin6_scope_id,
                    ));
                }
                // SAFETY: an AF_INET name is a sockaddr_in, which is smaller.
                let a = unsafe { &*(a as *const libc::sockaddr_in6).cast::<libc::sockaddr_in>() };
                SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                ))
            })
    }
}

fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

impl Receiver {
    /// Counts datagrams arriving on `socket` (bound already) on its own thread, pinned
    /// to `cpu` if given, and answers every hello.
    pub fn start(socket: UdpSocket, cpu: Option<usize>) -> io::Result<Receiver> {
        socket.set_read_timeout(Some(POLL))?;
        // SO_RCVBUFFORCE lets root pass net.core.rmem_max; without it, what it allows.
        setsockopt_int(&socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF)
            .or_else(|_| setsockopt_int(&socket, libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF))?;
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, flag) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            if let Some(cpu) = cpu {
                let _ = pin_to(cpu);
            }
            let mut batch = RecvBatch::new();
            while !flag.load(Ordering::Relaxed) {
                match batch.recv(&socket) {
                    Ok(n) => {
                        count.fetch_add(n as u64, Ordering::Relaxed);
                        for peer in batch.hellos(n) {
                            let _ = socket.send_to(&[HELLO], peer);
                        }
                    }
                    Err(e) if transient(&e) => {}
                    Err(_) => std::thread::sleep(POLL),
                }
            }
        });
        Ok(Receiver {
            received,
            stop,
            thread: Some(thread),
        })
    }

    /// Datagrams received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A sender on its own thread, sending until stopped.
pub struct Sender {
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// Repeats a hello to the connected peer until it answers.
fn handshake(socket: &UdpSocket, target: SocketAddr) -> io::Result<()> {
    socket.set_read_timeout(Some(POLL))?;
    let deadline = Instant::now() + HANDSHAKE;
    let mut answer = [0u8; 16];
    loop {
        match socket.send(&[HELLO; PAYLOAD]) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionRefused || transient(&e) => {}
            Err(e) => return Err(e),
        }
        match socket.recv(&mut answer) {
            Ok(n) if n >= 1 && answer[0] == HELLO => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionRefused || transient(&e) => {}
            Err(e) => return Err(e),
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                format!("no answer from {target} within {} s", HANDSHAKE.as_secs()),
            ));
        }
    }
}

impl Sender {
    /// Connects `socket` to `target`, makes the flow two-way, then sends datagrams
    /// in batches on its own thread, pinned to `cpu` if given.
    pub fn start(socket: UdpSocket, target: SocketAddr, cpu: Option<usize>) -> io::Result<Sender> {
        socket.connect(target)?;
        handshake(&socket, target)?;
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, flag) = (sent.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            if let Some(cpu) = cpu {
                pin_to(cpu)?;
            }
            let mut payload = [DATA; PAYLOAD];
            let mut iov = libc::iovec {
                iov_base: payload.as_mut_ptr().cast(),
                iov_len: PAYLOAD,
            };
            let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
                .map(|_| {
                    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
                    hdr.msg_iov = &mut iov;
                    hdr.msg_iovlen = 1;
                    libc::mmsghdr {
                        msg_hdr: hdr,
                        msg_len: 0,
                    }
                })
                .collect();
            while !flag.load(Ordering::Relaxed) {
                let n = unsafe {
                    libc::sendmmsg(
                        socket.as_raw_fd(),
                        msgs.as_mut_ptr(),
                        BATCH as libc::c_uint,
                        0,
                    )
                };
                if n > 0 {
                    count.fetch_add(n as u64, Ordering::Relaxed);
                    continue;
                }
                let e = io::Error::last_os_error();
                // A full queue somewhere on the way: the datagram is lost, as it
                // would be on a wire. The rate counts what arrives.
                let lost = matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::ECONNREFUSED));
                if !lost && !transient(&e) {
                    return Err(e);
                }
            }
            Ok(())
        });
        Ok(Sender {
            sent,
            stop,
            thread: Some(thread),
        })
    }

    /// Datagrams handed to the kernel so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops sending; the error that stopped it early, if one did.
    pub fn finish(mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(done)) => done,
            Some(Err(_)) => Err(io::Error::other("the sender thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On loopback, in whatever namespace the test runs: the handshake, batches both
    /// ways, and the counters (no timing is asserted).
    #[test]
    fn sends_and_counts_on_loopback() {
        let rx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let target = rx.local_addr().unwrap();
        let receiver = Receiver::start(rx, None).unwrap();
        let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let sender = Sender::start(tx, target, None).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while receiver.received() < 1000 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let sent = sender.sent();
        sender.finish().unwrap();
        assert!(receiver.received() >= 1000, "{}", receiver.received());
        assert!(sent >= 1000, "{sent}");
    }

    #[test]
    fn no_answer_is_an_error() {
        // A bound socket that never answers.
        let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let e = Sender::start(tx, silent.local_addr().unwrap(), None)
            .err()
            .expect("no handshake");
        assert_eq!(e.kind(), ErrorKind::TimedOut);
    }
}
