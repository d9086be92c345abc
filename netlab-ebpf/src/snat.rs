//! Masquerade: the uplink hooks. See DESIGN §3 for the packet walk.
//!
//! Egress: a packet from the lab subnet leaving the uplink gets source = uplink address
//! and a NAT port. Ingress: a reply to uplink:port is translated back to the container.

use aya_ebpf::programs::TcContext;
use aya_log_ebpf::debug;
use netlab_common::{
    config::Config,
    conntrack::{CtKey, ZONE_UPLINK_IN, ZONE_UPLINK_OUT},
    stats::{DropReason, counter},
};

use crate::{
    conntrack::{self, Hit},
    icmp,
    maps::{self, Table},
    parse::{self, Kind, Packet},
    rewrite,
    verdict::{PASS, Verdict},
};

#[inline(always)]
fn config() -> Result<&'static Config, DropReason> {
    maps::config().ok_or(DropReason::NoConfig)
}

/// Parses the packet; `None` (counted) for non-IPv4, which every hook passes.
#[inline(always)]
fn parse(ctx: &TcContext) -> Result<Option<Packet>, DropReason> {
    let pkt = parse::ipv4(ctx)?;
    if pkt.is_none() {
        maps::count(counter::PASS_NOT_IPV4);
    }
    Ok(pkt)
}

#[inline(always)]
fn key(pkt: &Packet, zone: u8) -> CtKey {
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
    let hit = match conntrack::lookup(cfg, &key, now) {
        Some(hit) => hit,
        None => {
            let e = conntrack::create_snat(cfg, &key, ZONE_UPLINK_IN, now)?;
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
    let Some(mut hit) = conntrack::lookup(cfg, &key, now) else {
        // Not a reply to anything we track: the host's own traffic.
        maps::count(counter::PASS_UNTRACKED);
        return PASS;
    };
    if hit.table == Table::Pending {
        let entry = unsafe { *hit.entry };
        hit = Hit {
            entry: conntrack::confirm(&key, &entry)?,
            table: Table::Confirmed,
        };
    }
    conntrack::touch(&hit, pkt.proto, pkt.flags, pkt.len, now);
    rewrite::apply(ctx, &pkt, unsafe { &*hit.entry })?;
    maps::count(counter::SNAT_REPLY_PACKETS);
    PASS
}

#[inline(always)]
pub fn bridge_ingress(_ctx: &TcContext) -> Verdict {
    maps::count(counter::BRIDGE_INGRESS_PACKETS);
    PASS
}
