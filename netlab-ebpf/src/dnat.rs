//! Port publishing: the port table lookup, new flows to published ports (from outside
//! at the uplink, and hairpin from containers at the bridge), and the bridge hook that
//! translates the containers' replies back.
//!
//! Hairpin: container A reaching host:P published to container B (or A itself) is
//! rewritten at bridge ingress to bridge-address:NAT-port → B, so that B's reply comes
//! back through the host (to the bridge address) instead of straight to A over the
//! bridge, where A would see an address it never talked to.

use aya_ebpf::programs::TcContext;
use netlab_common::{
    config::Config,
    config::FLAG_FAST_PATH,
    conntrack::{CtKey, ZONE_BRIDGE_IN, ZONE_UPLINK_OUT},
    maps::PUBLISH_RANGES_MAX,
    proto::{IPPROTO_TCP, TCP_ACK, TCP_SYN},
    publish::{PubKey, PubTarget, range_target_port},
    stats::{DropReason, counter},
};

use crate::{
    conntrack,
    maps::{self, Table},
    parse::{Kind, Packet},
    rewrite,
    snat::{config, fast_or_pass, key, parse},
    verdict::{PASS, Verdict},
};

/// The port table: exact (address, port) first, then any-address, then the ranges.
/// `daddr` must be one of the host's own addresses.
#[inline(always)]
pub fn lookup(daddr: u32, proto: u8, dport: u16) -> Option<PubTarget> {
    if let Some(t) = maps::publish_get(&PubKey {
        addr: daddr,
        port: dport,
        proto,
        _pad: 0,
    }) {
        return Some(t);
    }
    if let Some(t) = maps::publish_get(&PubKey {
        addr: 0,
        port: dport,
        proto,
        _pad: 0,
    }) {
        return Some(t);
    }
    let port = u16::from_be(dport);
    for i in 0..PUBLISH_RANGES_MAX {
        let Some(r) = maps::publish_range(i) else {
            break;
        };
        if r.used == 0 || r.proto != proto || (r.addr != 0 && r.addr != daddr) {
            continue;
        }
        if r.start <= port && port <= r.end {
            let mut t = r.target;
            t.port = range_target_port(r.start, u16::from_be(t.port), port).to_be();
            return Some(t);
        }
    }
    None
}

/// A packet that matched no flow, addressed to the host: if its port is published,
/// start a flow to the container. `hairpin` when it came from a container (bridge).
#[inline(always)]
pub fn new_flow(
    ctx: &TcContext,
    cfg: &Config,
    pkt: &Packet,
    key: &CtKey,
    now: u64,
    hairpin: bool,
) -> Verdict {
    if !opens_flow(pkt) {
        maps::count(counter::PASS_UNTRACKED);
        return PASS;
    }
    let Some(target) = lookup(pkt.daddr, pkt.proto, pkt.dport) else {
        maps::count(counter::PASS_UNTRACKED);
        return PASS;
    };
    let out = if hairpin {
        // Source becomes bridge-address:NAT-port so that the reply returns to the host.
        conntrack::entry(
            cfg.bridge_addr,
            target.addr,
            0,
            target.port,
            ZONE_BRIDGE_IN,
            target.id,
            now,
        )
    } else {
        // The client's own address is kept: the container sees who connects.
        conntrack::entry(
            pkt.saddr,
            target.addr,
            pkt.sport,
            target.port,
            ZONE_BRIDGE_IN,
            target.id,
            now,
        )
    };
    conntrack::create(cfg, key, out, hairpin)?;
    let hit = conntrack::lookup(cfg, key, now).ok_or(DropReason::CtInsertFailed)?;
    maps::count_connection(target.id);
    maps::count(counter::DNAT_NEW_FLOWS);
    conntrack::touch(&hit, pkt.proto, pkt.flags, pkt.len, now);
    rewrite::apply(ctx, pkt, unsafe { &*hit.entry })?;
    maps::count(counter::DNAT_PACKETS);
    PASS
}

/// Whether a packet may open a flow to a published port: for TCP only a SYN. A reply to
/// one of the host's own connections (a SYN-ACK from wan, or from a container to a
/// host-local client) whose port happens to be published is not one.
#[inline(always)]
fn opens_flow(pkt: &Packet) -> bool {
    pkt.proto != IPPROTO_TCP || pkt.flags & (TCP_SYN | TCP_ACK) == TCP_SYN
}

/// Bridge ingress: what containers send to the host's L3 side. Replies of published
/// flows are translated back; new flows to a published port on a host address hairpin.
#[inline(always)]
pub fn bridge_ingress(ctx: &TcContext) -> Verdict {
    maps::count(counter::BRIDGE_INGRESS_PACKETS);
    let cfg = config()?;
    let Some(pkt) = parse(ctx)? else { return PASS };
    if !cfg.in_subnet(pkt.saddr) || pkt.kind != Kind::Flow {
        return PASS;
    }
    let key = key(&pkt, ZONE_BRIDGE_IN);
    let now = conntrack::now();
    if let Some(hit) = conntrack::lookup_packet(cfg, &key, now)? {
        let e = unsafe { *hit.entry };
        conntrack::touch(&hit, pkt.proto, pkt.flags, pkt.len, now);
        rewrite::apply(ctx, &pkt, &e)?;
        maps::count(counter::DNAT_REPLY_PACKETS);
        return fast_or_pass(ctx, cfg, &pkt, &e);
    }
    if pkt.daddr == cfg.uplink_addr || pkt.daddr == cfg.bridge_addr {
        return new_flow(ctx, cfg, &pkt, &key, now, true);
    }
    masquerade_early(ctx, cfg, &pkt, now)
}

/// Fast path for masquerade: an established flow leaving the lab is translated here,
/// at bridge ingress, and redirected to the uplink, instead of crossing the host's
/// forwarding path to be translated at uplink egress. New and unconfirmed flows take
/// the ordinary path.
#[inline(always)]
fn masquerade_early(ctx: &TcContext, cfg: &Config, pkt: &Packet, now: u64) -> Verdict {
    if cfg.flags & FLAG_FAST_PATH == 0 {
        return PASS;
    }
    let key = key(pkt, ZONE_UPLINK_OUT);
    let Some(hit) = conntrack::lookup(cfg, &key, now) else {
        return PASS;
    };
    if hit.table != Table::Confirmed {
        return PASS;
    }
    let e = unsafe { *hit.entry };
    conntrack::touch(&hit, pkt.proto, pkt.flags, pkt.len, now);
    rewrite::apply(ctx, pkt, &e)?;
    maps::count(counter::SNAT_PACKETS);
    // Should the redirect not be possible, the stack forwards the translated packet (the
    // bridge accepts a host source address, `accept_local`) and uplink egress passes it.
    fast_or_pass(ctx, cfg, pkt, &e)
}
