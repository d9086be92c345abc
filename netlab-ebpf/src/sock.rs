//! Host-local publishing: a process in the lab's host namespace connecting (or sending)
//! to a published port on a host address or 127.0.0.1 is sent straight to the container
//! at the socket level (cgroup sock_addr hooks), with no per-packet NAT. TC cannot do
//! this: such packets are routed through `lo` and never cross the uplink or the bridge.
//! `getpeername` and UDP `recvmsg` show the address the process used, not the container's,
//! to the socket that used it (a reverse map keyed by the socket's cookie): a socket
//! that reaches the container directly sees the container. Every hook acts only on
//! sockets of the lab's host namespace (netns cookie).

use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    programs::SockAddrContext,
};
use netlab_common::{
    publish::{PubBack, PubBackKey},
    stats::counter,
};

use crate::{
    maps::{self, Stats},
    publish,
};

/// Whether an address as it sits in `user_ip4` (network byte order) is a loopback
/// one, 127.0.0.0/8: all of it is the host's own (`--dst-type LOCAL`).
#[inline(always)]
fn loopback(addr: u32) -> bool {
    addr.to_ne_bytes()[0] == 127
}

#[inline(always)]
fn in_lab(ctx: &SockAddrContext) -> bool {
    let cfg = maps::config();
    cfg.host_netns_cookie != 0
        && unsafe { bpf_get_netns_cookie(ctx.as_ptr()) } == cfg.host_netns_cookie
}

/// connect4 and sendmsg4: a published host address and port becomes the container's.
#[inline(always)]
pub fn redirect(ctx: &SockAddrContext) {
    if !in_lab(ctx) {
        return;
    }
    let sa = unsafe { &mut *ctx.sock_addr };
    if let Some((addr, port)) = published(ctx, sa.user_ip4, sa.user_port as u16, sa.protocol as u8)
    {
        sa.user_ip4 = addr;
        sa.user_port = port as u32;
    }
}

/// connect6 of an IPv6 socket to an IPv4-mapped address (`::ffff:198.51.100.2`, what a
/// dual-stack socket uses for IPv4): its connection is IPv4, and goes to the container
/// as an IPv4 socket's does. Its unconnected UDP sends meet `sendmsg4` already (the
/// kernel hands them to IPv4's sendmsg); its connect meets only this hook.
#[inline(always)]
pub fn redirect_mapped(ctx: &SockAddrContext) {
    if !in_lab(ctx) {
        return;
    }
    let sa = unsafe { &mut *ctx.sock_addr };
    let Some(v4) = mapped(&sa.user_ip6) else {
        return;
    };
    if let Some((addr, port)) = published(ctx, v4, sa.user_port as u16, sa.protocol as u8) {
        sa.user_ip6[3] = addr;
        sa.user_port = port as u32;
    }
}

/// The IPv4 address (network byte order) of an IPv4-mapped IPv6 one, `::ffff:a.b.c.d`,
/// as it sits in `user_ip6`.
#[inline(always)]
fn mapped(ip6: &[u32; 4]) -> Option<u32> {
    (ip6[0] == 0 && ip6[1] == 0 && ip6[2] == u32::from_ne_bytes([0, 0, 0xff, 0xff]))
        .then_some(ip6[3])
}

/// Where a socket of the lab host sending to `addr`:`port` (network order) goes
/// instead, if that is a published port on a host address; recorded in the reverse map
/// for the socket, and counted.
#[inline(always)]
fn published(ctx: &SockAddrContext, addr: u32, port: u16, proto: u8) -> Option<(u32, u16)> {
    let cfg = maps::config();
    // 0.0.0.0 is the host itself: the kernel sends to 127.0.0.1 instead, and the
    // socket's peer is that.
    let addr = if addr == 0 {
        u32::from_ne_bytes([127, 0, 0, 1])
    } else {
        addr
    };
    if !loopback(addr) && !maps::is_host(cfg, addr) {
        return None;
    }
    let target = publish::lookup(addr, proto, port)?;
    let key = PubBackKey {
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        to: PubBack {
            addr: target.addr,
            port: target.port,
            proto,
            _pad: 0,
        },
    };
    let asked = PubBack {
        addr,
        port,
        proto,
        _pad: 0,
    };
    // A socket's first packet to the port is a connection (a UDP one's too).
    if maps::back_set(&key, &asked) {
        maps::count_connection(target.id);
    }
    if let Some(st) = Stats::get() {
        st.count(counter::HOST_LOCAL_REDIRECTS);
    }
    Some((target.addr, target.port))
}

/// getpeername4 and recvmsg4: show the published address instead of the container's.
#[inline(always)]
pub fn restore(ctx: &SockAddrContext) {
    if !in_lab(ctx) {
        return;
    }
    let sa = unsafe { &mut *ctx.sock_addr };
    if let Some((addr, port)) = asked(ctx, sa.user_ip4, sa.user_port as u16, sa.protocol as u8) {
        sa.user_ip4 = addr;
        sa.user_port = port as u32;
    }
}

/// getpeername6 and recvmsg6 of an IPv6 socket whose peer is an IPv4-mapped address:
/// as [`restore`].
#[inline(always)]
pub fn restore_mapped(ctx: &SockAddrContext) {
    if !in_lab(ctx) {
        return;
    }
    let sa = unsafe { &mut *ctx.sock_addr };
    let Some(v4) = mapped(&sa.user_ip6) else {
        return;
    };
    if let Some((addr, port)) = asked(ctx, v4, sa.user_port as u16, sa.protocol as u8) {
        sa.user_ip6[3] = addr;
        sa.user_port = port as u32;
    }
}

/// The published address and port the socket asked for when it was sent to the
/// container's `addr`:`port`, if it was.
#[inline(always)]
fn asked(ctx: &SockAddrContext, addr: u32, port: u16, proto: u8) -> Option<(u32, u16)> {
    let key = PubBackKey {
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        to: PubBack {
            addr,
            port,
            proto,
            _pad: 0,
        },
    };
    maps::back_get(&key).map(|orig| (orig.addr, orig.port))
}
