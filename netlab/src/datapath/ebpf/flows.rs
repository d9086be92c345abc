//! The conntrack tables of a running lab, as flows: listing and flushing.
//!
//! Each flow is two map entries, one per direction, both in the same table; it is
//! listed once, from the entry of the direction that opened it, with the other
//! direction's counters beside it. Flows past their timeout, and flows of a withdrawn
//! mapping, are not listed (the datapath deletes them when it meets them, the garbage
//! collector otherwise).

use std::{collections::HashMap as StdHashMap, net::Ipv4Addr};

use aya::maps::{Array, HashMap, MapData};
use netlab_common::{
    conntrack::{CtEntry, CtKey, FLAG_ORIGIN, expired, tcp_state_name},
    maps as names,
    proto::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
};

use super::{coarse_secs, pins, read_config};
use crate::{
    datapath::inspect::{Endpoint, Flow},
    error::Result,
};

type Table = HashMap<MapData, CtKey, CtEntry>;

/// The conntrack tables of a running lab, with their names.
fn tables(lab: &str) -> Result<[(&'static str, Table); 2]> {
    Ok([
        ("confirmed", pins::typed(lab, names::CT)?),
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

/// Live flows of a lab's eBPF datapath, newest first.
pub fn list(lab: &str) -> Result<Vec<Flow>> {
    let cfg = read_config(lab)?;
    let now = coarse_secs();
    let generations: Array<MapData, u32> = pins::typed(lab, names::MAPPINGS)?;
    let mut out = Vec::new();
    for (table, map) in tables(lab)? {
        let entries: StdHashMap<CtKey, CtEntry> = map.iter().filter_map(|r| r.ok()).collect();
        for (k, e) in &entries {
            if e.flags & FLAG_ORIGIN == 0 {
                continue;
            }
            let Some(reply) = entries.get(&e.pair_key(k.proto)).copied() else {
                // Half a flow: the datapath treats it as gone.
                continue;
            };
            if e.pub_id != 0 && generations.get(&e.pub_id, 0).ok() != Some(e.pub_gen) {
                continue;
            }
            let dead = |x: &CtEntry| expired(&cfg, k.proto, x.state, x.flags, x.last_seen, now);
            if dead(e) && dead(&reply) {
                continue;
            }
            out.push(Flow {
                proto: proto_name(k.proto),
                table,
                state: if k.proto == IPPROTO_TCP {
                    tcp_state_name(e.state)
                } else {
                    "-"
                },
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
                age_secs: now.saturating_sub(e.created) as u64,
                idle_secs: now.saturating_sub(e.last_seen.max(reply.last_seen)) as u64,
                packets: e.packets as u64,
                bytes: e.bytes,
                reply_packets: reply.packets as u64,
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
