//! The uplink hooks: masquerade (egress), and everything arriving from outside
//! (ingress): replies of masqueraded flows, flows to published ports, ICMP errors.
//! See DESIGN §3 for the packet walks.

use aya_ebpf::programs::TcContext;
use aya_log_ebpf::debug;
use netlab_common::{
    config::Config,
    conntrack::{CtEntry, CtKey, ZONE_UPLINK_IN, ZONE_UPLINK_OUT},
    stats::{DropReason, counter},
};

use crate::{
    conntrack, dnat, fib, icmp, maps,
    parse::{self, Kind, Packet},
    rewrite,
    verdict::{PASS, Verdict},
};

#[inline(always)]
pub fn config() -> Result<&'static Config, DropReason> {
    maps::config().ok_or(DropReason::NoConfig)
}

/// Parses the packet; `None` (counted) for non-IPv4, which every hook passes.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Result<Option<Packet>, DropReason> {
    let pkt = parse::ipv4(ctx)?;
    if pkt.is_none() {
        maps::count(counter::PASS_NOT_IPV4);
    }
    Ok(pkt)
}

#[inline(always)]
pub fn key(pkt: &Packet, zone: u8) -> CtKey {
    CtKey::new(pkt.saddr, pkt.daddr, pkt.sport, pkt.dport, pkt.proto, zone)
}

#[inline(always)]
pub fn uplink_egress(ctx: &TcContext) -> Verdict {
    maps::count(counter::UPLINK_EGRESS_PACKETS);
    let cfg = config()?;
    let Some(pkt) = parse(ctx)? else { return PASS };
    if !cfg.in_subnet(pkt.saddr) {
        // The host's own traffic, and replies of published flows (already rewritten).
        return PASS;
    }
    match pkt.kind {
        Kind::Flow => {}
        // A fragment has no ports to translate: leaking it with a container source
        // would be worse than dropping it.
        Kind::Fragment => return Err(DropReason::Fragment),
        _ => return Err(DropReason::UnsupportedProtocol),
    }
    let key = key(&pkt, ZONE_UPLINK_OUT);
    let now = conntrack::now();
    let hit = match conntrack::lookup_packet(cfg, &key, now)? {
        Some(hit) => hit,
        None => {
            let out = conntrack::entry(
                cfg.uplink_addr,
                key.daddr,
                0,
                key.dport,
                ZONE_UPLINK_IN,
                0,
                now,
            );
            let e = conntrack::create(cfg, &key, out, true)?;
            maps::count(counter::SNAT_NEW_FLOWS);
            debug!(
                ctx,
                "snat new flow proto {} {:i}:{} -> {:i}:{} as {:i}:{}",
                key.proto,
                u32::from_be(key.saddr),
                u16::from_be(key.sport),
                u32::from_be(key.daddr),
                u16::from_be(key.dport),
                u32::from_be(e.saddr),
                u16::from_be(e.sport)
            );
            conntrack::lookup(cfg, &key, now).ok_or(DropReason::CtInsertFailed)?
        }
    };
    conntrack::touch(&hit, pkt.proto, pkt.flags, pkt.len, now);
    rewrite::apply(ctx, &pkt, unsafe { &*hit.entry })?;
    maps::count(counter::SNAT_PACKETS);
    PASS
}

#[inline(always)]
pub fn uplink_ingress(ctx: &TcContext) -> Verdict {
    maps::count(counter::UPLINK_INGRESS_PACKETS);
    let cfg = config()?;
    let Some(pkt) = parse(ctx)? else { return PASS };
    if cfg.in_subnet(pkt.daddr) {
        // Nothing legitimate arrives addressed to a container: published flows are
        // addressed to the host and rewritten here (Docker 28's "direct access" drop).
        return Err(DropReason::DirectAccess);
    }
    if pkt.daddr != cfg.uplink_addr {
        return PASS;
    }
    match pkt.kind {
        Kind::Flow => {}
        Kind::IcmpError => return icmp::translate_error(ctx, cfg, &pkt),
        Kind::Fragment => {
            maps::count(counter::PASS_FRAGMENT);
            return PASS;
        }
        Kind::Other => {
            maps::count(counter::PASS_UNTRACKED);
            return PASS;
        }
    }
    let key = key(&pkt, ZONE_UPLINK_IN);
    let now = conntrack::now();
    let Some(hit) = conntrack::lookup_packet(cfg, &key, now)? else {
        return dnat::new_flow(ctx, cfg, &pkt, &key, now, false);
    };
    let e = unsafe { *hit.entry };
    conntrack::touch(&hit, pkt.proto, pkt.flags, pkt.len, now);
    rewrite::apply(ctx, &pkt, &e)?;
    maps::count(if e.pub_id != 0 {
        counter::DNAT_PACKETS
    } else {
        counter::SNAT_REPLY_PACKETS
    });
    fast_or_pass(ctx, cfg, &pkt, &e)
}

/// Forwards a translated packet by the fast path when it can, else hands it to the stack.
#[inline(always)]
pub fn fast_or_pass(ctx: &TcContext, cfg: &Config, pkt: &Packet, to: &CtEntry) -> Verdict {
    match fib::redirect(ctx, cfg, pkt, to.saddr, to.daddr) {
        Some(verdict) => Ok(verdict),
        None => PASS,
    }
}
