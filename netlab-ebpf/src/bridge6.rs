//! The bridge's hooks for IPv6 (reached from the IPv4 programs by a tail call in a
//! dual-stack lab): ingress translates hairpin (a container reaching a port published
//! on a host address), the later fragments of its datagrams with it, and drops a
//! container's new flow the host would route out by an interface netlab does not
//! watch; egress drops direct access from such interfaces. As [`crate::bridge`] does
//! for IPv4.

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS},
    programs::TcContext,
};
use netlab_common::{
    addr::Addr6,
    config::Config,
    conntrack::ZONE_FROM_CTR,
    stats::{DropReason, counter},
};

use crate::{
    fib, frag6,
    icmp::Sender,
    icmp6,
    maps::{self, Stats},
    parse::{Kind, Packet},
    parse6, uplink6,
    verdict::{self, PASS, Verdict},
};

#[inline(always)]
pub fn ingress(ctx: &TcContext, st: Stats) -> Verdict {
    st.count(counter::BRIDGE_INGRESS_PACKETS);
    let cfg = maps::config();
    let pkt = parse6::ipv6(ctx)?;
    if !cfg.in_subnet6(&pkt.saddr) {
        return PASS;
    }
    if !maps::is_host6(cfg, &pkt.daddr) {
        if !cfg.in_subnet6(&pkt.daddr) && global(&pkt.daddr) {
            return Ok(leaves_watched(ctx, pkt));
        }
        return PASS;
    }
    match pkt.kind {
        Kind::Flow => {}
        // The rest of a hairpin datagram goes where its first fragment went.
        Kind::Fragment => {
            return frag6::translate_later(ctx, st, pkt, ZONE_FROM_CTR).unwrap_or(PASS);
        }
        // About a hairpin flow: its NAT address stands for the host.
        Kind::IcmpError => {
            return Ok(icmp6::translate_error(
                ctx,
                st,
                pkt,
                Sender::ContainerToHost,
            ));
        }
        _ => return PASS,
    }
    // Only hairpin is opened here (the destination is the host): nothing to masquerade.
    Ok(uplink6::from_container(ctx, st, pkt, uplink6::HAIRPIN))
}

/// Whether `a` is a unicast address the host may route off the link (not link-local
/// `fe80::/10`, not multicast `ff00::/8`).
#[inline(always)]
fn global(a: &Addr6) -> bool {
    let b = a[0].to_ne_bytes();
    !(b[0] == 0xff || (b[0] == 0xfe && b[1] & 0xc0 == 0x80))
}

/// A container's packet the host will route out of the lab, any packet, a tracked
/// flow's too: only if the host routes it by an interface netlab watches, whose egress
/// will masquerade it or drop what it cannot (see `bridge.rs`); the TC action (a drop
/// counted). A BPF subprogram, returning a
/// plain number (a `Result` would come back through the stack, where the verifier
/// loses the drop reason's bounds): its route lookup's 64 bytes and the hairpin path's
/// state need not share one stack frame.
#[inline(never)]
fn leaves_watched(ctx: &TcContext, pkt: &Packet<Addr6>) -> i32 {
    verdict::finish(watched(ctx, maps::config(), pkt))
}

#[inline(always)]
fn watched(ctx: &TcContext, cfg: &Config, pkt: &Packet<Addr6>) -> Verdict {
    match out_ifindex(ctx, cfg, pkt) {
        Some(i) if i != cfg.uplink_ifindex && maps::uplink(i).is_none() => {
            Err(DropReason::Unwatched)
        }
        _ => PASS,
    }
}

/// The interface the lab host routes `pkt` out by (a route lookup from the bridge), or
/// `None` when it has no route (the stack answers that itself).
#[inline(always)]
fn out_ifindex(ctx: &TcContext, cfg: &Config, pkt: &Packet<Addr6>) -> Option<u32> {
    let mut words = [0u64; 8];
    let f = fib::params(cfg, &mut words, fib::AF_INET6, pkt.proto, 0);
    f.__bindgen_anon_3.ipv6_src = pkt.saddr;
    f.__bindgen_anon_4.ipv6_dst = pkt.daddr;
    let rc = fib::run(ctx, f);
    match rc {
        BPF_FIB_LKUP_RET_SUCCESS | BPF_FIB_LKUP_RET_NO_NEIGH | BPF_FIB_LKUP_RET_FRAG_NEEDED => {
            Some(f.ifindex)
        }
        _ => None,
    }
}

/// tcx egress on the bridge: an IPv6 packet the host routes to a container is direct
/// access unless it came in by the bridge, by an interface netlab watches, or from the
/// host itself (as [`crate::bridge::egress`]).
#[inline(always)]
pub fn egress(ctx: &TcContext, _st: Stats) -> Verdict {
    let cfg = maps::config();
    let Some(daddr) = parse6::ipv6_daddr(ctx) else {
        return PASS;
    };
    if !cfg.in_subnet6(&daddr) {
        return PASS;
    }
    let from = unsafe { (*ctx.skb.skb).ingress_ifindex };
    if from == 0
        || from == cfg.bridge_ifindex
        || from == cfg.uplink_ifindex
        || maps::uplink(from).is_some()
    {
        return PASS;
    }
    Err(DropReason::DirectAccess)
}
