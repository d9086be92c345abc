//! netlab's TC programs. Entry points only: each is three lines and hands its verdict
//! to `verdict::finish`, which counts drops; the work is in the modules.
#![no_std]
#![no_main]

mod conntrack;
mod dnat;
mod fib;
mod icmp;
mod maps;
mod parse;
mod rewrite;
mod snat;
mod sock;
mod verdict;

use aya_ebpf::{
    macros::{cgroup_sock_addr, classifier},
    programs::{SockAddrContext, TcContext},
};

/// tcx egress on the uplink: masquerade flows leaving the lab subnet.
#[classifier]
pub fn uplink_egress(ctx: TcContext) -> i32 {
    verdict::finish(snat::uplink_egress(&ctx))
}

/// tcx ingress on the uplink: replies and ICMP errors back to containers, published ports.
#[classifier]
pub fn uplink_ingress(ctx: TcContext) -> i32 {
    verdict::finish(snat::uplink_ingress(&ctx))
}

/// tcx ingress on the bridge: replies of published flows, and hairpin.
#[classifier]
pub fn bridge_ingress(ctx: TcContext) -> i32 {
    verdict::finish(dnat::bridge_ingress(&ctx))
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: a surviving panic path fails verification.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
