//! The conntrack tables of a running lab, as flows: listing, flushing, and forgetting
//! the flows of withdrawn mappings.
//!
//! Each flow is two map entries, one per direction; it is listed once, from the entry of
//! the direction that opened it, with the reply direction's counters beside it. Entries
//! past their timeout are not listed (the datapath deletes them lazily, on their next
//! packet, or the LRU reclaims them).

use std::net::Ipv4Addr;

use aya::maps::{HashMap, MapData};
use netlab_common::{
    conntrack::{
        CtEntry, CtKey, FLAG_ORIGIN, TCP_CLOSED, TCP_CLOSING, TCP_ESTABLISHED, TCP_SYN_SENT,
        expired,
    },
    maps as names,
    proto::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
};

use super::{monotonic_ns, pins, read_config};
use crate::{
    datapath::inspect::{Endpoint, Flow},
    error::Result,
};

type Table = HashMap<MapData, CtKey, CtEntry>;

/// The conntrack tables of a running lab, with their names.
fn tables(lab: &str) -> Result<[(&'static str, Table); 2]> {
    Ok([
        ("confirmed", pins::typed(lab, names::CONNTRACK)?),
        ("pending", pins::typed(lab, names::CT_PENDING)?),
    ])
}

fn ip(raw: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be(raw))
}

fn proto_name(p: u8) -> &'static str {
    match p {
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        IPPROTO_ICMP => "icmp",
        _ => "other",
    }
}

fn state_name(proto: u8, s: u8) -> &'static str {
    if proto != IPPROTO_TCP {
        return "-";
    }
    match s {
        TCP_SYN_SENT => "SYN_SENT",
        TCP_ESTABLISHED => "ESTABLISHED",
        TCP_CLOSING => "CLOSING",
        TCP_CLOSED => "CLOSED",
        _ => "NEW",
    }
}

/// Live flows of a lab's eBPF datapath, oldest last.
pub fn list(lab: &str) -> Result<Vec<Flow>> {
    let cfg = read_config(lab)?;
    let now = monotonic_ns();
    let mut out = Vec::new();
    for (table, map) in tables(lab)? {
        let entries: std::collections::HashMap<CtKey, CtEntry> =
            map.iter().filter_map(|r| r.ok()).collect();
        for (k, e) in &entries {
            if e.flags & FLAG_ORIGIN == 0 {
                continue;
            }
            let reply = entries
                .get(&e.pair_key(k.proto))
                .copied()
                .unwrap_or_default();
            let last = e.last_seen_ns.max(reply.last_seen_ns);
            if expired(&cfg, k.proto, e.state, last, now) {
                continue;
            }
            out.push(Flow {
                proto: proto_name(k.proto),
                table,
                state: state_name(k.proto, e.state.max(reply.state)),
                original: Endpoint {
                    src: ip(k.saddr),
                    sport: u16::from_be(k.sport),
                    dst: ip(k.daddr),
                    dport: u16::from_be(k.dport),
                },
                translated: Endpoint {
                    src: ip(e.saddr),
                    sport: u16::from_be(e.sport),
                    dst: ip(e.daddr),
                    dport: u16::from_be(e.dport),
                },
                age_secs: now.saturating_sub(e.created_ns) / 1_000_000_000,
                idle_secs: now.saturating_sub(last) / 1_000_000_000,
                packets: e.packets,
                bytes: e.bytes,
                reply_packets: reply.packets,
                reply_bytes: reply.bytes,
            });
        }
    }
    out.sort_by_key(|f| f.age_secs);
    Ok(out)
}

/// Deletes every entry of both tables; returns how many flows went.
pub fn flush(lab: &str) -> Result<usize> {
    let mut n = 0;
    for (_, mut map) in tables(lab)? {
        let keys: Vec<(CtKey, CtEntry)> = map.iter().filter_map(|r| r.ok()).collect();
        for (k, e) in keys {
            if map.remove(&k).is_ok() && e.flags & FLAG_ORIGIN != 0 {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Deletes every conntrack entry (both directions, both tables) of the mappings `ids`,
/// so that no flow through an unpublished port survives, UDP included.
pub fn forget_mappings(lab: &str, ids: &[u32]) -> Result<()> {
    let ids: std::collections::HashSet<u32> = ids.iter().copied().collect();
    for (_, mut table) in tables(lab)? {
        let keys: Vec<CtKey> = table
            .iter()
            .filter_map(|r| r.ok())
            .filter(|(_, e)| e.pub_id != 0 && ids.contains(&e.pub_id))
            .map(|(k, _)| k)
            .collect();
        for k in keys {
            let _ = table.remove(&k);
        }
    }
    Ok(())
}
