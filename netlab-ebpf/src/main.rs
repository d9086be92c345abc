//! netlab's TC programs. Entry points only: each is three lines and hands its verdict
//! to `verdict::finish`, which counts drops; the work is in the modules.
#![no_std]
#![no_main]

mod conntrack;
mod icmp;
mod maps;
mod parse;
mod rewrite;
mod snat;
mod verdict;

use aya_ebpf::{macros::classifier, programs::TcContext};

/// tcx egress on the uplink: masquerade flows leaving the lab subnet.
#[classifier]
pub fn uplink_egress(ctx: TcContext) -> i32 {
    verdict::finish(snat::uplink_egress(&ctx))
}

/// tcx ingress on the uplink: translate replies (and ICMP errors) back to containers.
#[classifier]
pub fn uplink_ingress(ctx: TcContext) -> i32 {
    verdict::finish(snat::uplink_ingress(&ctx))
}

/// tcx ingress on the bridge: traffic from containers to the host's L3 side.
#[classifier]
pub fn bridge_ingress(ctx: TcContext) -> i32 {
    verdict::finish(snat::bridge_ingress(&ctx))
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
