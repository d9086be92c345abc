//! The uplink's hooks, on every interface of the lab host but the bridge (iptables'
//! `! -o BRIDGE` and `--dst-type LOCAL`; the lab's "uplinks", [`maps::uplink`]). Egress:
//! what leaves the lab by the host's stack (the slow path) is masqueraded behind the
//! address of the interface it leaves by, and replies of published flows get their
//! published address back. Ingress: replies of masqueraded flows and flows to ports
//! published on the host's addresses are translated and, on the fast path, delivered
//! straight into their container; anything else addressed to a container is direct
//! access, and dropped.

use aya_ebpf::programs::TcContext;
use netlab_common::{
    config::{Config, FLAG_FAST_PATH},
    conntrack::{ZONE_FROM_CTR, ZONE_FROM_OUTSIDE},
    proto::IPPROTO_ICMP,
    stats::{DropReason, counter},
};

use crate::{
    conntrack, forward, frag, icmp,
    maps::{self, Stats},
    nat,
    parse::{self, Kind, Packet},
    reset, rewrite,
    verdict::{PASS, Verdict},
};

/// Parses the packet; `None` (counted) for non-IPv4, which every hook passes.
#[inline(always)]
pub fn parse(ctx: &TcContext, st: Stats) -> Result<Option<Packet>, DropReason> {
    let pkt = parse::ipv4(ctx)?;
    if pkt.is_none() {
        st.count(counter::PASS_NOT_IPV4);
    }
    Ok(pkt)
}

/// The address of the interface the program runs on: the masquerade source of what
/// leaves by it (0 when it has none).
#[inline(always)]
fn own_addr(ctx: &TcContext, cfg: &Config) -> u32 {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    if ifindex == cfg.uplink_ifindex {
        return maps::uplink_addr();
    }
    maps::uplink(ifindex).map(|u| u.addr).unwrap_or(0)
}

/// Counts a packet the uplink programs see on another interface than the uplink (both
/// families).
#[inline(always)]
pub fn count_other(ctx: &TcContext, cfg: &Config, st: Stats) {
    if unsafe { (*ctx.skb.skb).ifindex } != cfg.uplink_ifindex {
        st.count(counter::OTHER_UPLINK_PACKETS);
    }
}

#[inline(always)]
pub fn egress(ctx: &TcContext, st: Stats) -> Verdict {
    st.count(counter::UPLINK_EGRESS_PACKETS);
    let cfg = maps::config();
    count_other(ctx, cfg, st);
    // Most of what leaves is the host's own or translated already by the fast path:
    // one look at the source address lets it go before any parsing, but for an ICMP
    // error of the host's (about a packet it was handed translated, say one whose TTL
    // ran out there: its quote is translated back, so that it never shows a
    // container's address or port; anything it cannot read is the host's business).
    // The bridge's address is the host's (and the source a published flow to it
    // leaves with, translated by the fast path already).
    let host = parse::ipv4_saddr(ctx).is_some_and(|s| !cfg.in_subnet(s) || s == cfg.bridge_addr);
    if host && parse::ipv4_proto(ctx) != Some(IPPROTO_ICMP) {
        return PASS;
    }
    let pkt = match parse(ctx, st) {
        Ok(Some(pkt)) => pkt,
        Ok(None) => return PASS,
        Err(_) if host => return PASS,
        Err(e) => return Err(e),
    };
    if host && pkt.kind != Kind::IcmpError {
        return PASS;
    }
    if !host && !cfg.in_subnet(pkt.saddr) {
        // What the fast path translated already.
        return PASS;
    }
    match pkt.kind {
        Kind::Flow => {}
        Kind::Fragment => {
            return frag::translate_later(ctx, st, &pkt, ZONE_FROM_CTR)
                .unwrap_or(Err(DropReason::Fragment));
        }
        Kind::IcmpError => {
            let sender = if host {
                icmp::Sender::Host
            } else {
                icmp::Sender::Container
            };
            return icmp::translate_error(ctx, cfg, st, &pkt, sender);
        }
        Kind::Other => return Err(DropReason::UnsupportedProtocol),
    }
    let now = conntrack::now();
    let mut hit = conntrack::Hit::empty();
    // Leaving by this interface: a flow masqueraded behind another's ends here.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let found =
        match nat::find_from_container(cfg, st, own_addr(ctx, cfg), ifindex, &pkt, now, &mut hit) {
            Ok(found) => found,
            Err(DropReason::TcpNoFlow) => return Ok(reset::answer4(ctx, st)),
            Err(e) => return Err(e),
        };
    if found.is_none() {
        return PASS;
    }
    let e = nat::commit(ctx, cfg, st, &found, &hit, &pkt, now)?;
    frag::remember(&pkt, ZONE_FROM_CTR, &e, now);
    rewrite::apply(ctx, &pkt, &e, false)?;
    PASS
}

#[inline(always)]
pub fn ingress(ctx: &TcContext, st: Stats) -> Verdict {
    st.count(counter::UPLINK_INGRESS_PACKETS);
    let cfg = maps::config();
    count_other(ctx, cfg, st);
    // A frame not addressed to this host at L2 (another machine's MAC, a broadcast, a
    // multicast) is the stack's, which forwards none of it: never translated.
    if unsafe { (*ctx.skb.skb).pkt_type } != forward::PACKET_HOST {
        return PASS;
    }
    // A header the stack drops is its to drop: translated, it would open a flow (or end
    // one) that nf_conntrack never sees. Checked first, with the least of the program
    // live across the call (6.1 adds its frames up along a call chain).
    if parse::ipv4_checksum_bad(ctx) {
        st.count(counter::PASS_BAD_CHECKSUM);
        return PASS;
    }
    let Some(pkt) = parse(ctx, st)? else {
        if parse::priority_tagged(ctx, parse::ethertype(ctx)) {
            return Err(DropReason::VlanTagged);
        }
        return PASS;
    };
    if cfg.in_subnet(pkt.daddr) && pkt.daddr != cfg.bridge_addr {
        // Nothing legitimate arrives addressed to a container: published flows are
        // addressed to the host and rewritten here (Docker 28's "direct access" drop).
        // The bridge's address is the host's own, as for iptables' raw drop.
        return Err(DropReason::DirectAccess);
    }
    // Any of the host's own addresses, as iptables' `--dst-type LOCAL`: a port
    // published without an address answers on all of them, by any interface.
    if !maps::is_host(cfg, pkt.daddr) {
        return PASS;
    }
    match pkt.kind {
        Kind::Flow => {}
        Kind::Fragment => {
            return frag::translate_later(ctx, st, &pkt, ZONE_FROM_OUTSIDE).unwrap_or_else(|| {
                // The host's own datagram, or one whose first fragment went by unseen.
                st.count(counter::PASS_FRAGMENT);
                PASS
            });
        }
        Kind::IcmpError => {
            return icmp::translate_error(ctx, cfg, st, &pkt, icmp::Sender::Outside);
        }
        Kind::Other => {
            st.count(counter::PASS_UNTRACKED);
            return PASS;
        }
    }
    let now = conntrack::now();
    let mut hit = conntrack::Hit::empty();
    let found = nat::find_from_outside(cfg, st, &pkt, now, &mut hit)?;
    if found.is_none() {
        st.count(counter::PASS_UNTRACKED);
        return PASS;
    }
    let e = nat::commit(ctx, cfg, st, &found, &hit, &pkt, now)?;
    frag::remember(&pkt, ZONE_FROM_OUTSIDE, &e, now);
    let fast = cfg.flags & FLAG_FAST_PATH != 0 && !pkt.first_fragment;
    if !fast {
        rewrite::apply(ctx, &pkt, &e, false)?;
        return PASS;
    }
    let plan = forward::plan(ctx, cfg, st, &pkt, e.saddr, e.daddr, e.dport, now);
    rewrite::apply(ctx, &pkt, &e, plan.forwards())?;
    if !plan.forwards() {
        return PASS;
    }
    forward::go(ctx, cfg, st, &plan, forward::Hook::TcIngress)
}
