//! The sockets of the calling thread's network namespace, from the kernel's socket
//! diagnostics (`NETLINK_SOCK_DIAG`, what `ss` asks): those that hold a port (TCP
//! listeners, `ss -ltn`; UDP sockets, `ss -uan`), and the ending of connected ones
//! (`ss -K`). Unlike reading `/proc/net/tcp`, a dump of listening sockets walks only
//! the listening hash, not the whole established table, which is sized for the machine
//! and slow to walk even empty.

use std::{
    io,
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use crate::error::{Error, Result};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const TCP_LISTEN: u32 = 10;
/// A UDP socket's "state" in the diag dump (`TCP_CLOSE`): not connected (bound, or
/// not yet).
const UDP_UNCONNECTED: u32 = 7;
/// A connected UDP socket's "state" in the diag dump (`TCP_ESTABLISHED`): it holds its
/// local port as a bound one does.
const UDP_CONNECTED: u32 = 1;

#[repr(C)]
#[derive(Default)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagSockId {
    sport: [u8; 2],
    dport: [u8; 2],
    src: [u32; 4],
    dst: [u32; 4],
    interface: u32,
    cookie: [u32; 2],
}

#[repr(C)]
#[derive(Default)]
struct InetDiagReqV2 {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: InetDiagSockId,
}

#[repr(C)]
struct InetDiagMsg {
    family: u8,
    state: u8,
    timer: u8,
    retrans: u8,
    id: InetDiagSockId,
    expires: u32,
    rqueue: u32,
    wqueue: u32,
    uid: u32,
    inode: u32,
}

/// A socket that holds a port (a TCP listener, a UDP socket, connected or not): its
/// local address (`0.0.0.0` for the IPv4 wildcard, every IPv4 address; `::` for an
/// IPv6-only wildcard; `None` for the IPv6 wildcard that takes IPv4 too) and port. A
/// connected UDP socket bound to the wildcard has the address it sends from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundSocket {
    pub udp: bool,
    pub addr: Option<IpAddr>,
    pub port: u16,
}

/// A netlink socket for socket diagnostics, closed on drop.
struct Diag(i32);

impl Diag {
    fn open() -> Result<Diag> {
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(Error::io(
                "open",
                "NETLINK_SOCK_DIAG",
                io::Error::last_os_error(),
            ));
        }
        Ok(Diag(fd))
    }
}

impl Diag {
    /// Sends one request of `kind` (with `flags` beside `NLM_F_REQUEST`).
    fn send(&self, kind: u16, flags: libc::c_int, req: InetDiagReqV2) -> io::Result<()> {
        #[repr(C)]
        struct Request {
            hdr: NlMsgHdr,
            req: InetDiagReqV2,
        }
        let request = Request {
            hdr: NlMsgHdr {
                len: size_of::<Request>() as u32,
                kind,
                flags: (libc::NLM_F_REQUEST | flags) as u16,
                seq: 1,
                pid: 0,
            },
            req,
        };
        let sent = unsafe {
            libc::send(
                self.0,
                &request as *const Request as *const libc::c_void,
                size_of::<Request>(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Diag {
    fn drop(&mut self) {
        unsafe { libc::close(self.0) };
    }
}

/// TCP listeners and UDP sockets, connected or not (a connected one holds its local
/// port as a bound one does: a bind there fails), IPv4 and IPv6 (the IPv6 wildcard
/// takes IPv4 ports too, and counts as every address). A TCP connection is not listed:
/// its port is the listener's, or an ephemeral one no bind is refused for.
pub fn bound() -> Result<Vec<BoundSocket>> {
    let diag = Diag::open()?;
    let mut all = Vec::new();
    let udp_states = (1u32 << UDP_UNCONNECTED) | (1 << UDP_CONNECTED);
    for (family, proto, states) in [
        (libc::AF_INET, libc::IPPROTO_TCP, 1u32 << TCP_LISTEN),
        (libc::AF_INET6, libc::IPPROTO_TCP, 1 << TCP_LISTEN),
        (libc::AF_INET, libc::IPPROTO_UDP, udp_states),
        (libc::AF_INET6, libc::IPPROTO_UDP, udp_states),
    ] {
        let udp = proto == libc::IPPROTO_UDP;
        dump(&diag, family as u8, proto as u8, states, |msg, attrs| {
            let v6only = attr_u8(attrs, INET_DIAG_SKV6ONLY) == Some(1);
            all.extend(socket(msg, udp, v6only));
        })?;
    }
    Ok(all)
}

/// A socket to end: its cookie, and the address and port it is connected to (an IPv6
/// socket's IPv4 peer by its IPv4-mapped address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connected {
    pub udp: bool,
    pub cookie: u64,
    pub to: IpAddr,
    pub port: u16,
}

/// Ends the sockets `which` names that are still connected where they say (the socket
/// with that cookie, connected to that address and port), as `ss -K` does: a TCP one
/// is reset, a UDP one disconnected, and their owners see `ECONNABORTED`. Returns how
/// many were ended. A kernel without `CONFIG_INET_DIAG_DESTROY` cannot: an error says
/// so.
pub fn destroy(which: &[Connected]) -> Result<usize> {
    if which.is_empty() {
        return Ok(0);
    }
    let diag = Diag::open()?;
    let mut found = Vec::new();
    // An IPv6 socket connected to an IPv4-mapped address is dumped with IPv6's.
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        for (udp, proto) in [(false, libc::IPPROTO_TCP), (true, libc::IPPROTO_UDP)] {
            if !which.iter().any(|c| c.udp == udp) {
                continue;
            }
            dump(&diag, family, proto as u8, u32::MAX, |msg, _| {
                let cookie = u64::from(msg.id.cookie[0]) | (u64::from(msg.id.cookie[1]) << 32);
                let to = peer(family, &msg.id.dst);
                let port = u16::from_be_bytes(msg.id.dport);
                if which
                    .iter()
                    .any(|c| c.udp == udp && c.cookie == cookie && c.to == to && c.port == port)
                {
                    found.push((family, proto as u8, msg.id));
                }
            })?;
        }
    }
    let mut ended = 0;
    for (family, proto, id) in found {
        match destroy_one(&diag, family, proto, id) {
            Ok(()) => ended += 1,
            // Gone meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                return Err(Error::Invalid(
                    "this kernel cannot end sockets (built without CONFIG_INET_DIAG_DESTROY)"
                        .into(),
                ));
            }
            Err(e) => return Err(Error::io("end a socket", "NETLINK_SOCK_DIAG", e)),
        }
    }
    Ok(ended)
}

/// The address a socket of `family` is connected to: an IPv4 socket's; an IPv6
/// socket's, or its IPv4 peer's when it is an IPv4-mapped address (`::ffff:a.b.c.d`).
fn peer(family: u8, dst: &[u32; 4]) -> IpAddr {
    if family == libc::AF_INET as u8 {
        return IpAddr::V4(Ipv4Addr::from(dst[0].to_ne_bytes()));
    }
    let mut bytes = [0u8; 16];
    for (chunk, word) in bytes.chunks_exact_mut(4).zip(dst) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    let a = Ipv6Addr::from(bytes);
    a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4)
}

/// One `SOCK_DESTROY` request, and the kernel's answer.
fn destroy_one(diag: &Diag, family: u8, proto: u8, id: InetDiagSockId) -> io::Result<()> {
    diag.send(
        SOCK_DESTROY,
        libc::NLM_F_ACK,
        InetDiagReqV2 {
            family,
            protocol: proto,
            states: u32::MAX,
            id,
            ..Default::default()
        },
    )?;
    let mut buf = [0u8; 512];
    let n = unsafe { libc::recv(diag.0, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    if n < size_of::<NlMsgHdr>() + 4 {
        return Err(io::Error::other("a short answer"));
    }
    let hdr = unsafe { std::ptr::read_unaligned(buf.as_ptr() as *const NlMsgHdr) };
    if hdr.kind != NLMSG_ERROR {
        return Err(io::Error::other("no acknowledgment"));
    }
    let code = i32::from_ne_bytes(
        buf[size_of::<NlMsgHdr>()..size_of::<NlMsgHdr>() + 4]
            .try_into()
            .expect("four bytes"),
    );
    match code {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(-e)),
    }
}

/// Dumps the sockets of `family` and `proto` in `states` (a bit per state), calling
/// `each` with each one's message and attributes.
fn dump(
    diag: &Diag,
    family: u8,
    proto: u8,
    states: u32,
    mut each: impl FnMut(&InetDiagMsg, &[u8]),
) -> Result<()> {
    diag.send(
        SOCK_DIAG_BY_FAMILY,
        libc::NLM_F_DUMP,
        InetDiagReqV2 {
            family,
            protocol: proto,
            states,
            ..Default::default()
        },
    )
    .map_err(|e| Error::io("send", "NETLINK_SOCK_DIAG", e))?;
    let fd = diag.0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        if n < 0 {
            return Err(Error::io(
                "receive",
                "NETLINK_SOCK_DIAG",
                io::Error::last_os_error(),
            ));
        }
        let mut off = 0usize;
        let n = n as usize;
        while off + size_of::<NlMsgHdr>() <= n {
            let hdr = unsafe { std::ptr::read_unaligned(buf[off..].as_ptr() as *const NlMsgHdr) };
            let len = hdr.len as usize;
            if len < size_of::<NlMsgHdr>() || off + len > n {
                break;
            }
            match hdr.kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    return Err(Error::io(
                        "dump sockets",
                        "NETLINK_SOCK_DIAG",
                        io::Error::other("the kernel answered with an error"),
                    ));
                }
                _ => {
                    let body = off + size_of::<NlMsgHdr>();
                    if body + size_of::<InetDiagMsg>() <= off + len {
                        let msg = unsafe {
                            std::ptr::read_unaligned(buf[body..].as_ptr() as *const InetDiagMsg)
                        };
                        each(&msg, &buf[body + size_of::<InetDiagMsg>()..off + len]);
                    }
                }
            }
            // Messages are aligned to 4 bytes.
            off += (len + 3) & !3;
        }
    }
}

/// `INET_DIAG_SKV6ONLY`: whether an IPv6 socket takes IPv6 only (`IPV6_V6ONLY`); the
/// kernel sends it with every IPv6 socket.
const INET_DIAG_SKV6ONLY: u16 = 11;

/// The first byte of attribute `kind` among the netlink attributes in `attrs`.
fn attr_u8(mut attrs: &[u8], kind: u16) -> Option<u8> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let t = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if t == kind && len > 4 {
            return Some(attrs[4]);
        }
        attrs = &attrs[((len + 3) & !3).min(attrs.len())..];
    }
    None
}

fn socket(msg: &InetDiagMsg, udp: bool, v6only: bool) -> Option<BoundSocket> {
    let port = u16::from_be_bytes(msg.id.sport);
    let addr = if msg.family == libc::AF_INET as u8 {
        // 0.0.0.0 holds the port on every IPv4 address, and on no IPv6 one.
        Some(IpAddr::V4(Ipv4Addr::from(msg.id.src[0].to_ne_bytes())))
    } else {
        let mut bytes = [0u8; 16];
        for (chunk, w) in bytes.chunks_exact_mut(4).zip(msg.id.src) {
            chunk.copy_from_slice(&w.to_ne_bytes());
        }
        let a = Ipv6Addr::from(bytes);
        // The IPv6 wildcard takes IPv4 ports too (unless it is IPv6-only: `::`, every
        // IPv6 address); an IPv4-mapped address is IPv4's.
        match a.to_ipv4_mapped() {
            _ if a.is_unspecified() && v6only => Some(IpAddr::V6(a)),
            _ if a.is_unspecified() => None,
            Some(v4) => Some(IpAddr::V4(v4)),
            None => Some(IpAddr::V6(a)),
        }
    };
    Some(BoundSocket { udp, addr, port })
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, UdpSocket};

    use super::*;

    /// A UDP socket on loopback, unconnected and connected, is listed with its local
    /// address and port; one not bound to a port holds none and is not.
    #[test]
    fn udp_sockets_connected_or_not_hold_their_port() {
        let listed = |s: &UdpSocket| {
            let SocketAddr::V4(local) = s.local_addr().unwrap() else {
                panic!("an IPv4 socket")
            };
            let b = BoundSocket {
                udp: true,
                addr: Some(IpAddr::V4(*local.ip())),
                port: local.port(),
            };
            bound().unwrap().contains(&b)
        };
        let unconnected = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        assert!(listed(&unconnected));
        let connected = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        connected.connect((Ipv4Addr::LOCALHOST, 9)).unwrap();
        assert!(listed(&connected));
        // Bound to the wildcard, it holds the port on the address it sends from.
        let wildcard = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        wildcard.connect((Ipv4Addr::LOCALHOST, 9)).unwrap();
        assert!(listed(&wildcard));
    }
}
