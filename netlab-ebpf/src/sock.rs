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
    let cfg = maps::config();
    let sa = unsafe { &mut *ctx.sock_addr };
    let (addr, port, proto) = (sa.user_ip4, sa.user_port as u16, sa.protocol as u8);
    if !loopback(addr) && !maps::is_host(cfg, addr) {
        return;
    }
    let Some(target) = publish::lookup(addr, proto, port) else {
        return;
    };
    sa.user_ip4 = target.addr;
    sa.user_port = target.port as u32;
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
}

/// getpeername4 and recvmsg4: show the published address instead of the container's.
#[inline(always)]
pub fn restore(ctx: &SockAddrContext) {
    if !in_lab(ctx) {
        return;
    }
    let sa = unsafe { &mut *ctx.sock_addr };
    let key = PubBackKey {
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        to: PubBack {
            addr: sa.user_ip4,
            port: sa.user_port as u16,
            proto: sa.protocol as u8,
            _pad: 0,
        },
    };
    if let Some(orig) = maps::back_get(&key) {
        sa.user_ip4 = orig.addr;
        sa.user_port = orig.port as u32;
    }
}
