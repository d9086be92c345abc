//! The bridge's hooks: what containers send to the host's IP side (ingress) and what
//! the host routes into the lab (egress), on the slow path (the fast path takes a
//! container's packet at its veth, and delivers into a container with
//! `bpf_redirect_peer`).
//!
//! Ingress translates only hairpin — a container reaching a port published on a host
//! address has to be turned around before the host routes it, and the later fragments
//! of its datagram with it, and the ICMP errors either container sends about it; what leaves the lab is masqueraded at the egress of the
//! interface it leaves by. Any packet of a container's that would leave by an
//! interface netlab does not watch (yet) is dropped here: it could not be masqueraded.
//!
//! Egress drops direct access from interfaces netlab does not watch: see [`egress`].

use aya_ebpf::programs::TcContext;
use netlab_common::{
    conntrack::ZONE_FROM_CTR,
    stats::{DropReason, counter},
};

use crate::{
    conntrack, forward, frag, icmp, into_lab,
    maps::{self, Stats},
    nat,
    parse::{self, Kind, Packet},
    rewrite,
    uplink::parse,
    verdict::{PASS, Verdict},
};

#[inline(always)]
pub fn ingress(ctx: &TcContext, st: Stats) -> Verdict {
    st.count(counter::BRIDGE_INGRESS_PACKETS);
    let cfg = maps::config();
    // The stack's `ip_rcv`, right after this hook, drops it: nothing to translate.
    if parse::ipv4_checksum_bad(ctx) {
        st.count(counter::PASS_BAD_CHECKSUM);
        return PASS;
    }
    let Some(pkt) = parse(ctx, st)? else {
        return PASS;
    };
    if !cfg.in_subnet(pkt.saddr) {
        return PASS;
    }
    if !maps::is_host(cfg, pkt.daddr) {
        if !cfg.in_subnet(pkt.daddr) {
            return leaves_watched(ctx, cfg, &pkt);
        }
        return PASS;
    }
    if pkt.kind == Kind::Fragment {
        // The rest of a hairpin datagram goes where its first fragment went.
        return frag::translate_later(ctx, st, &pkt, ZONE_FROM_CTR).unwrap_or(PASS);
    }
    if pkt.kind == Kind::IcmpError {
        // About a hairpin flow: its NAT address stands for the host.
        return icmp::translate_error(ctx, cfg, st, &pkt, icmp::Sender::ContainerToHost);
    }
    if pkt.kind != Kind::Flow {
        return PASS;
    }
    let now = conntrack::now();
    let mut hit = conntrack::Hit::empty();
    // Only hairpin is opened here (the destination is the host): nothing to masquerade.
    let found = nat::find_from_container(cfg, st, 0, 0, &pkt, now, &mut hit)?;
    if found.is_none() {
        return PASS;
    }
    // The host routes a hairpin packet into a container with the sender's own
    // address, before the source NAT, which this hook does at once: a route or a rule
    // that refuses that (`ip rule add from CONTAINER iif BRIDGE prohibit`) is the
    // stack's to act on, on the packet as it came, and nothing is opened. (A reply to
    // the host, whose flow the host began, is delivered, not forwarded.)
    let to = found.to.1;
    if cfg.in_subnet(to) && to != cfg.bridge_addr {
        let sel = into_lab::selectors(ctx, &pkt, found.to.3);
        if !into_lab::routed(ctx, pkt.saddr, to, sel, now) {
            return PASS;
        }
    }
    let e = nat::commit(ctx, cfg, st, &found, &hit, &pkt, now)?;
    frag::remember(&pkt, ZONE_FROM_CTR, &e, now);
    rewrite::apply(ctx, &pkt, &e, false)?;
    PASS
}

/// A container's packet the host will route out of the lab goes on only if the host
/// routes it by an interface netlab watches, whose egress will masquerade it or drop
/// what it cannot: by one it does not watch it would leave with the container's
/// address. Any packet: a new flow's, another protocol's, an ICMP error, a later
/// fragment (iptables' MASQUERADE, which names no protocol, masquerades them there),
/// and a tracked flow's too, once a route sends it elsewhere than it went (iptables
/// drops it then: `nf_nat_oif_changed`).
#[inline(always)]
fn leaves_watched(ctx: &TcContext, cfg: &netlab_common::config::Config, pkt: &Packet) -> Verdict {
    match forward::out_ifindex(ctx, cfg, pkt) {
        Some(i) if i != cfg.uplink_ifindex && maps::uplink(i).is_none() => {
            Err(DropReason::Unwatched)
        }
        _ => PASS,
    }
}

/// tcx egress on the bridge: what the host routes into the lab. A packet addressed to
/// a container is direct access unless it came in by the bridge itself (hairpin), by an
/// interface whose ingress netlab watches (where direct access was dropped already and
/// everything else translated), or from the host itself. So an interface the lab host
/// got after `up` reaches no container until netlab watches it: closed by default, as
/// iptables' `! -i BRIDGE` drop is.
#[inline(always)]
pub fn egress(ctx: &TcContext, _st: Stats) -> Verdict {
    let cfg = maps::config();
    let Some(daddr) = parse::ipv4_daddr(ctx) else {
        return PASS;
    };
    if !cfg.in_subnet(daddr) {
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
