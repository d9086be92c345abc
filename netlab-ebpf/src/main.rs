//! netlab's TC and socket programs. Entry points only: each fetches this CPU's counters
//! once, runs its handler with them, and hands the verdict to `verdict::finish`, which
//! counts drops; the work is in the modules.
#![no_std]
#![no_main]

mod bridge;
mod conntrack;
mod endpoint;
mod forward;
mod frag;
mod gc;
mod icmp;
mod maps;
mod nat;
mod next_hop;
mod parse;
mod publish;
mod rewrite;
mod sock;
mod uplink;
mod verdict;

use aya_ebpf::{
    macros::{cgroup_sock_addr, classifier},
    programs::{SockAddrContext, TcContext},
};
use maps::Stats;

/// tcx egress on every uplink: masquerade what leaves the lab by the stack.
#[classifier]
pub fn uplink_egress(ctx: TcContext) -> i32 {
    let Some(st) = Stats::get() else {
        return verdict::NEXT;
    };
    verdict::finish(uplink::egress(&ctx, st))
}

/// tcx ingress on every uplink: replies and ICMP errors back to containers, published
/// ports, direct access dropped.
#[classifier]
pub fn uplink_ingress(ctx: TcContext) -> i32 {
    let Some(st) = Stats::get() else {
        return verdict::NEXT;
    };
    verdict::finish(uplink::ingress(&ctx, st))
}

/// tcx ingress on the bridge: hairpin, on the slow path.
#[classifier]
pub fn bridge_ingress(ctx: TcContext) -> i32 {
    let Some(st) = Stats::get() else {
        return verdict::NEXT;
    };
    verdict::finish(bridge::ingress(&ctx, st))
}

/// tcx egress on the bridge: direct access from interfaces netlab does not watch.
#[classifier]
pub fn bridge_egress(ctx: TcContext) -> i32 {
    let Some(st) = Stats::get() else {
        return verdict::NEXT;
    };
    verdict::finish(bridge::egress(&ctx, st))
}

/// tcx ingress on the host end of each container's veth: its source checked, then the
/// fast path.
#[classifier]
pub fn endpoint_ingress(ctx: TcContext) -> i32 {
    let Some(st) = Stats::get() else {
        return verdict::NEXT;
    };
    verdict::finish(endpoint::ingress(&ctx, st))
}

/// Run once by `netlab up` (BPF_PROG_TEST_RUN): arms the conntrack garbage collector.
#[classifier]
pub fn gc_start(_ctx: TcContext) -> i32 {
    gc::start()
}

/// cgroup connect4 in the lab host: TCP/UDP connects to a published port go to the container.
#[cgroup_sock_addr(connect4)]
pub fn host_connect4(ctx: SockAddrContext) -> i32 {
    sock::redirect(&ctx);
    1
}

/// cgroup sendmsg4 in the lab host: unconnected UDP sends to a published port.
#[cgroup_sock_addr(sendmsg4)]
pub fn host_sendmsg4(ctx: SockAddrContext) -> i32 {
    sock::redirect(&ctx);
    1
}

/// cgroup recvmsg4 in the lab host: UDP replies show the published address.
#[cgroup_sock_addr(recvmsg4)]
pub fn host_recvmsg4(ctx: SockAddrContext) -> i32 {
    sock::restore(&ctx);
    1
}

/// cgroup getpeername4 in the lab host: the peer is the published address.
#[cgroup_sock_addr(getpeername4)]
pub fn host_getpeername4(ctx: SockAddrContext) -> i32 {
    sock::restore(&ctx);
    1
}

/// cgroup connect6 in the lab host: an IPv6 socket's connect to an IPv4-mapped
/// published address goes to the container.
#[cgroup_sock_addr(connect6)]
pub fn host_connect6(ctx: SockAddrContext) -> i32 {
    sock::redirect_mapped(&ctx);
    1
}

/// cgroup recvmsg6 in the lab host: an IPv6 socket's UDP replies over IPv4 show the
/// published address.
#[cgroup_sock_addr(recvmsg6)]
pub fn host_recvmsg6(ctx: SockAddrContext) -> i32 {
    sock::restore_mapped(&ctx);
    1
}

/// cgroup getpeername6 in the lab host: an IPv6 socket's IPv4 peer is the published
/// address.
#[cgroup_sock_addr(getpeername6)]
pub fn host_getpeername6(ctx: SockAddrContext) -> i32 {
    sock::restore_mapped(&ctx);
    1
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: a surviving panic path fails verification.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
