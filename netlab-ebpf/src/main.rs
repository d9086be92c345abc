//! netlab's TC and socket programs. Entry points only: each fetches this CPU's counters
//! once, runs its handler with them, and hands the verdict to `verdict::finish`, which
//! counts drops; the work is in the modules.
#![no_std]
#![no_main]

mod bridge;
mod bridge6;
mod conntrack;
mod endpoint;
mod endpoint6;
mod family;
mod fib;
mod forward;
mod forward6;
mod frag;
mod frag6;
mod gc;
mod host_sock;
mod icmp;
mod icmp6;
mod into_lab;
mod maps;
mod nat;
mod next_hop;
mod parse;
mod parse6;
mod publish;
mod reset;
mod rewrite;
mod rewrite6;
mod sock;
mod uplink;
mod uplink6;
mod verdict;
mod words;

use aya_ebpf::{
    macros::{cgroup_sock_addr, classifier},
    programs::{SockAddrContext, TcContext},
};
use maps::Stats;
use netlab_common::{
    config::FLAG_IPV6,
    maps::{
        PROG6_BRIDGE_EGRESS, PROG6_BRIDGE_INGRESS, PROG6_ENDPOINT_INGRESS, PROG6_UPLINK_EGRESS,
        PROG6_UPLINK_INGRESS,
    },
};

/// In a dual-stack lab, hands an IPv6 packet to IPv6 program `index` (a tail call,
/// which does not return); whether it could not (`PROGS6` lost its program: the
/// packet is dropped, never passed untranslated). Without IPv6 the IPv4 program goes
/// on, and passes it as not IPv4.
#[inline(always)]
fn ipv6(ctx: &TcContext, index: u32) -> bool {
    if maps::config().flags & FLAG_IPV6 != 0 && parse6::is_ipv6(ctx) {
        maps::to_ipv6(ctx, index);
        return true;
    }
    false
}

/// The verdict on an IPv6 packet whose program could not be reached.
#[inline(always)]
fn ipv6_lost() -> i32 {
    verdict::finish(Err(netlab_common::stats::DropReason::UnsupportedProtocol))
}

/// Whether the frame came with a VLAN tag of a VLAN id in the skb (the kernel took it
/// there before the programs): its packet belongs to that VLAN's device, or to none
/// (the stack drops it as another host's), never to this interface. Translating it, or
/// redirecting it with its tag, would put it on a VLAN of the uplink's link, or open a
/// flow for it here. A priority tag (VLAN id 0) is the interface's own traffic.
#[inline(always)]
fn on_a_vlan(ctx: &TcContext) -> bool {
    let skb = unsafe { &*ctx.skb.skb };
    skb.vlan_present != 0 && skb.vlan_tci & 0x0fff != 0
}

/// An IPv6 program's entry: this CPU's counters, the handler, the verdict. In a lab
/// without IPv6 nothing calls it, and the verifier drops the handler.
#[inline(always)]
fn run6(ctx: &TcContext, handler: fn(&TcContext, Stats) -> verdict::Verdict) -> i32 {
    if maps::config().flags & FLAG_IPV6 == 0 {
        return verdict::NEXT;
    }
    let Some(st) = Stats::get() else {
        return verdict::NEXT;
    };
    verdict::finish(handler(ctx, st))
}

/// tcx egress on every uplink: masquerade what leaves the lab by the stack.
#[classifier]
pub fn uplink_egress(ctx: TcContext) -> i32 {
    if ipv6(&ctx, PROG6_UPLINK_EGRESS) {
        return ipv6_lost();
    }
    let Some(st) = Stats::get() else {
        return verdict::NEXT;
    };
    verdict::finish(uplink::egress(&ctx, st))
}

/// tcx ingress on every uplink: replies and ICMP errors back to containers, published
/// ports, direct access dropped.
#[classifier]
pub fn uplink_ingress(ctx: TcContext) -> i32 {
    if on_a_vlan(&ctx) {
        return verdict::NEXT;
    }
    if ipv6(&ctx, PROG6_UPLINK_INGRESS) {
        return ipv6_lost();
    }
    let Some(st) = Stats::get() else {
        return verdict::NEXT;
    };
    verdict::finish(uplink::ingress(&ctx, st))
}

/// tcx ingress on the bridge: hairpin, on the slow path.
#[classifier]
pub fn bridge_ingress(ctx: TcContext) -> i32 {
    if ipv6(&ctx, PROG6_BRIDGE_INGRESS) {
        return ipv6_lost();
    }
    let Some(st) = Stats::get() else {
        return verdict::NEXT;
    };
    verdict::finish(bridge::ingress(&ctx, st))
}

/// tcx egress on the bridge: direct access from interfaces netlab does not watch.
#[classifier]
pub fn bridge_egress(ctx: TcContext) -> i32 {
    if ipv6(&ctx, PROG6_BRIDGE_EGRESS) {
        return ipv6_lost();
    }
    let Some(st) = Stats::get() else {
        return verdict::NEXT;
    };
    verdict::finish(bridge::egress(&ctx, st))
}

/// tcx ingress on the host end of each container's veth: its source checked, then the
/// fast path.
#[classifier]
pub fn endpoint_ingress(ctx: TcContext) -> i32 {
    // A lab has no VLANs: a container's frame on one is dropped, never bridged with a
    // source no check has seen.
    if on_a_vlan(&ctx) {
        return verdict::finish(Err(netlab_common::stats::DropReason::VlanTagged));
    }
    if ipv6(&ctx, PROG6_ENDPOINT_INGRESS) {
        return ipv6_lost();
    }
    let Some(st) = Stats::get() else {
        return verdict::NEXT;
    };
    verdict::finish(endpoint::ingress(&ctx, st))
}

/// IPv6 at the uplink's egress (from `uplink_egress`, in a dual-stack lab).
#[classifier]
pub fn uplink_egress6(ctx: TcContext) -> i32 {
    run6(&ctx, uplink6::egress)
}

/// IPv6 at the uplink's ingress.
#[classifier]
pub fn uplink_ingress6(ctx: TcContext) -> i32 {
    run6(&ctx, uplink6::ingress)
}

/// IPv6 at the bridge's ingress.
#[classifier]
pub fn bridge_ingress6(ctx: TcContext) -> i32 {
    run6(&ctx, bridge6::ingress)
}

/// IPv6 at the bridge's egress.
#[classifier]
pub fn bridge_egress6(ctx: TcContext) -> i32 {
    run6(&ctx, bridge6::egress)
}

/// IPv6 from a container.
#[classifier]
pub fn endpoint_ingress6(ctx: TcContext) -> i32 {
    run6(&ctx, endpoint6::ingress)
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

/// cgroup connect6 in the lab host: an IPv6 socket's connect to a published port, on
/// an IPv6 host address or an IPv4-mapped one, goes to the container.
#[cgroup_sock_addr(connect6)]
pub fn host_connect6(ctx: SockAddrContext) -> i32 {
    sock::redirect6(&ctx);
    1
}

/// cgroup sendmsg6 in the lab host: unconnected UDP sends to a port published on an
/// IPv6 host address.
#[cgroup_sock_addr(sendmsg6)]
pub fn host_sendmsg6(ctx: SockAddrContext) -> i32 {
    sock::redirect6(&ctx);
    1
}

/// cgroup recvmsg6 in the lab host: an IPv6 socket's UDP replies show the published
/// address.
#[cgroup_sock_addr(recvmsg6)]
pub fn host_recvmsg6(ctx: SockAddrContext) -> i32 {
    sock::restore6(&ctx);
    1
}

/// cgroup getpeername6 in the lab host: an IPv6 socket's peer is the published
/// address.
#[cgroup_sock_addr(getpeername6)]
pub fn host_getpeername6(ctx: SockAddrContext) -> i32 {
    sock::restore6(&ctx);
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
