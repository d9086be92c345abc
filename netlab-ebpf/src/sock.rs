//! Host-local publishing: a process in the lab's host namespace connecting (or sending)
//! to a published port on a host address or 127.0.0.1 is sent straight to the container
//! at the socket level (cgroup sock_addr hooks), with no per-packet NAT. TC cannot do
//! this: such packets are routed through `lo` and never cross the uplink or the bridge.
//! `getpeername` and UDP `recvmsg` show the address the process used, not the container's,
//! to the socket that used it (a reverse map keyed by the socket's cookie): a socket
//! that reaches the container directly sees the container. Every hook acts only on
//! sockets of the lab's host namespace (netns cookie).

use aya_ebpf::bindings::bpf_sock_addr;
use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    programs::SockAddrContext,
};
use netlab_common::{
    addr::Addr6,
    publish::{PubBack, PubBackKey, PubBackKey6},
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

/// connect6 and sendmsg6: a published port on one of the lab host's IPv6 addresses
/// becomes the container's IPv6 address and port. A dual-stack socket's IPv4 (an
/// IPv4-mapped address, `::ffff:198.51.100.2`) goes to the container as an IPv4
/// socket's does: its connection is IPv4 (its unconnected UDP sends meet `sendmsg4`
/// already; its connect meets only this hook). `::1` is never redirected: as with
/// iptables, IPv6's loopback is never routed off the host.
#[inline(always)]
pub fn redirect6(ctx: &SockAddrContext) {
    if !in_lab(ctx) {
        return;
    }
    let sa = unsafe { &mut *ctx.sock_addr };
    let (port, proto) = (sa.user_port as u16, sa.protocol as u8);
    let a = user_ip6(sa);
    if let Some(v4) = mapped(&a) {
        if let Some((addr, port)) = published(ctx, v4, port, proto) {
            sa.user_ip6[3] = addr;
            sa.user_port = port as u32;
        }
        return;
    }
    let cfg = maps::config();
    if !maps::is_host6(cfg, &a) {
        return;
    }
    let Some(target) = publish::lookup6(&a, proto, port) else {
        return;
    };
    set_user_ip6(sa, &target.addr);
    sa.user_port = target.port as u32;
    let key = PubBackKey6 {
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        to: PubBack {
            addr: target.addr,
            port: target.port,
            proto,
            _pad: 0,
        },
        _pad: 0,
    };
    let asked = PubBack {
        addr: a,
        port,
        proto,
        _pad: 0,
    };
    if maps::back6_set(&key, &asked) {
        maps::count_connection(target.id);
    }
    if let Some(st) = Stats::get() {
        st.count(counter::HOST_LOCAL_REDIRECTS);
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

/// getpeername6 and recvmsg6: show an IPv6 socket the published address it used,
/// IPv6 or IPv4-mapped, instead of the container's.
#[inline(always)]
pub fn restore6(ctx: &SockAddrContext) {
    if !in_lab(ctx) {
        return;
    }
    let sa = unsafe { &mut *ctx.sock_addr };
    let (port, proto) = (sa.user_port as u16, sa.protocol as u8);
    let a = user_ip6(sa);
    if let Some(v4) = mapped(&a) {
        if let Some((addr, port)) = asked(ctx, v4, port, proto) {
            sa.user_ip6[3] = addr;
            sa.user_port = port as u32;
        }
        return;
    }
    let key = PubBackKey6 {
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        to: PubBack {
            addr: a,
            port,
            proto,
            _pad: 0,
        },
        _pad: 0,
    };
    if let Some(orig) = maps::back6_get(&key) {
        set_user_ip6(sa, &orig.addr);
        sa.user_port = orig.port as u32;
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

/// `user_ip6`, one word at a time at its own offset from the context: the verifier
/// refuses a load through a context pointer moved to the field (a copy of the array).
#[inline(always)]
fn user_ip6(sa: &bpf_sock_addr) -> Addr6 {
    unsafe {
        [
            core::ptr::read_volatile(&sa.user_ip6[0]),
            core::ptr::read_volatile(&sa.user_ip6[1]),
            core::ptr::read_volatile(&sa.user_ip6[2]),
            core::ptr::read_volatile(&sa.user_ip6[3]),
        ]
    }
}

/// Writes `user_ip6` one word at a time (see [`user_ip6`]).
#[inline(always)]
fn set_user_ip6(sa: &mut bpf_sock_addr, a: &Addr6) {
    unsafe {
        core::ptr::write_volatile(&mut sa.user_ip6[0], a[0]);
        core::ptr::write_volatile(&mut sa.user_ip6[1], a[1]);
        core::ptr::write_volatile(&mut sa.user_ip6[2], a[2]);
        core::ptr::write_volatile(&mut sa.user_ip6[3], a[3]);
    }
}
