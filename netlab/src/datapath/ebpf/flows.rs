//! The conntrack tables of a running lab, as flows: listing and flushing.
//!
//! Each flow is two map entries, one per direction, both in the same table; it is
//! listed once, from the entry of the direction that opened it, with the other
//! direction's counters beside it. Flows past their timeout, and flows of a withdrawn
//! mapping, are not listed (the datapath deletes them when it meets them, the garbage
//! collector otherwise).

use std::{
    collections::HashMap as StdHashMap,
    net::{IpAddr, Ipv4Addr},
};

use aya::maps::{Array, HashMap, MapData};
use bytemuck::Pod;

use netlab_common::{
    addr::Addr6,
    config::{Config, FLAG_IPV6},
    conntrack::{CtEntry, CtKey, FLAG_ORIGIN, expired, tcp_state_name, timeout_secs},
    maps as names,
    proto::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
    stats::counter,
};

use super::{batch, coarse_secs, count_by_user, pins, read_config};
use crate::{
    datapath::inspect::{Endpoint, Flow},
    error::Result,
};

type Table = HashMap<MapData, CtKey, CtEntry>;

/// The conntrack tables of a running lab: their names as listed, and as pinned; a
/// dual-stack lab's IPv6 tables too.
const TABLES: [(&str, &str); 2] = [("confirmed", names::CT), ("pending", names::CT_PENDING)];
pub(super) const TABLES6: [(&str, &str); 2] =
    [("confirmed", names::CT6), ("pending", names::CT6_PENDING)];

/// Every entry of one of a lab's conntrack tables, read in batches.
fn entries<A>(lab: &str, pinned: &str) -> Result<Vec<(CtKey<A>, CtEntry<A>)>>
where
    CtKey<A>: Pod,
    CtEntry<A>: Pod,
{
    batch::entries(&pins::map_data(lab, pinned)?)
}

/// An address as the tables keep it, of either family.
pub(super) trait Addr: Copy + Eq + std::hash::Hash {
    fn ip(&self) -> IpAddr;
}

impl Addr for u32 {
    fn ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(u32::from_be(*self)))
    }
}

impl Addr for Addr6 {
    fn ip(&self) -> IpAddr {
        IpAddr::V6(super::ipv6_of(self))
    }
}

pub(super) fn proto_name(p: u8) -> &'static str {
    match p {
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        IPPROTO_ICMP => "icmp",
        IPPROTO_ICMPV6 => "icmpv6",
        _ => "other",
    }
}

/// Live flows of a lab's eBPF datapath, newest first.
pub fn list(lab: &str) -> Result<Vec<Flow>> {
    let cfg = read_config(lab)?;
    let generations: Array<MapData, u32> = pins::typed(lab, names::MAPPINGS)?;
    let mut out = Vec::new();
    for (table, pinned) in TABLES {
        out.extend(list_table::<u32>(lab, &cfg, &generations, table, pinned)?);
    }
    if cfg.flags & FLAG_IPV6 != 0 {
        for (table, pinned) in TABLES6 {
            out.extend(list_table::<Addr6>(lab, &cfg, &generations, table, pinned)?);
        }
    }
    out.sort_by_key(|f| f.age_secs);
    Ok(out)
}

/// The live flows of one table.
pub(super) fn list_table<A: Addr>(
    lab: &str,
    cfg: &Config,
    generations: &Array<MapData, u32>,
    table: &'static str,
    pinned: &str,
) -> Result<Vec<Flow>>
where
    CtKey<A>: Pod + aya::Pod,
    CtEntry<A>: Pod + aya::Pod,
{
    let now = coarse_secs();
    let entries: StdHashMap<CtKey<A>, CtEntry<A>> = entries(lab, pinned)?.into_iter().collect();
    let mut out = Vec::new();
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
        let dead = |x: &CtEntry<A>| expired(cfg, k.proto, x.state, x.flags, x.last_seen, now);
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
                src: k.saddr.ip(),
                sport: u16::from_be(k.sport),
                dst: k.daddr.ip(),
                dport: u16::from_be(k.dport),
            },
            translated: Endpoint {
                src: e.saddr.ip(),
                sport: u16::from_be(e.sport),
                dst: e.daddr.ip(),
                dport: u16::from_be(e.dport),
            },
            age_secs: now.saturating_sub(e.created) as u64,
            idle_secs: now.saturating_sub(e.last_seen.max(reply.last_seen)) as u64,
            // A flow lives while either half does.
            expires_secs: expires_in(cfg, k.proto, e, now)
                .max(expires_in(cfg, k.proto, &reply, now)),
            packets: e.packets as u64,
            bytes: e.bytes,
            reply_packets: reply.packets as u64,
            reply_bytes: reply.bytes,
        });
    }
    Ok(out)
}

/// Seconds until half `x` of a flow expires at `now` ([`expired`]'s rule).
fn expires_in<A>(cfg: &Config, proto: u8, x: &CtEntry<A>, now: u32) -> u64 {
    let timeout = timeout_secs(cfg, proto, x.state, x.flags);
    (u64::from(x.last_seen) + u64::from(timeout)).saturating_sub(u64::from(now))
}

/// Deletes every entry of both tables; returns how many flows went. `CT`'s entries
/// removed are counted (`ct_entries_flushed`), so that `status` still knows what it
/// holds; Ctrl-C waits for the count (`signals::deferred`).
pub fn flush(lab: &str) -> Result<usize> {
    crate::signals::deferred(|| {
        let mut n = 0;
        for (_, pinned) in TABLES {
            let mut map: Table = pins::typed(lab, pinned)?;
            let mut removed = 0u64;
            for (k, e) in entries::<u32>(lab, pinned)? {
                if map.remove(&k).is_ok() {
                    removed += 1;
                    if e.flags & FLAG_ORIGIN != 0 {
                        n += 1;
                    }
                }
            }
            if pinned == names::CT {
                count_by_user(lab, counter::CT_ENTRIES_FLUSHED, removed)?;
            }
        }
        if read_config(lab)?.flags & FLAG_IPV6 != 0 {
            for (_, pinned) in TABLES6 {
                let mut map: HashMap<MapData, CtKey<Addr6>, CtEntry<Addr6>> =
                    pins::typed(lab, pinned)?;
                for (k, e) in entries::<Addr6>(lab, pinned)? {
                    if map.remove(&k).is_ok() && e.flags & FLAG_ORIGIN != 0 {
                        n += 1;
                    }
                }
            }
        }
        Ok(n)
    })
}

/// Ends the flows through an address the lab host no longer has (`gone`, `gone6`),
/// both entries of each: those masqueraded behind it, as the kernel's MASQUERADE ends
/// its conntrack entries when their address goes (a container's next packet opens a
/// new flow behind the address the interface has now), and those to a port published
/// on it, which the programs no longer translate (the address is not the host's).
/// Returns how many flows went; `CT`'s entries removed are counted as flushed.
pub fn end_masqueraded(lab: &str, gone: &[u32], gone6: &[Addr6]) -> Result<usize> {
    crate::signals::deferred(|| {
        let mut n = 0;
        if !gone.is_empty() {
            for (_, pinned) in TABLES {
                let (flows, removed) = end_behind::<u32>(lab, pinned, gone)?;
                n += flows;
                if pinned == names::CT {
                    count_by_user(lab, counter::CT_ENTRIES_FLUSHED, removed)?;
                }
            }
        }
        if !gone6.is_empty() {
            for (_, pinned) in TABLES6 {
                n += end_behind::<Addr6>(lab, pinned, gone6)?.0;
            }
        }
        Ok(n)
    })
}

/// [`end_masqueraded`] in one table: the flows ended, and the entries removed.
fn end_behind<A: Addr>(lab: &str, pinned: &str, gone: &[A]) -> Result<(usize, u64)>
where
    CtKey<A>: Pod + aya::Pod,
    CtEntry<A>: Pod + aya::Pod,
{
    let mut map: HashMap<MapData, CtKey<A>, CtEntry<A>> = pins::typed(lab, pinned)?;
    let (mut flows, mut removed) = (0, 0);
    for (k, e) in entries::<A>(lab, pinned)? {
        // Masqueraded behind the gone address, or opened to it.
        let masqueraded = k.saddr != e.saddr && gone.contains(&e.saddr);
        if e.flags & FLAG_ORIGIN == 0 || !(masqueraded || gone.contains(&k.daddr)) {
            continue;
        }
        for key in [k, e.pair_key(k.proto)] {
            if map.remove(&key).is_ok() {
                removed += 1;
            }
        }
        flows += 1;
    }
    Ok((flows, removed))
}

/// Fills the established table with `n` synthetic flows (the benchmark's "CRR with a
/// million flows in the table"): masqueraded UDP streams from addresses of the lab
/// subnet that no container has (from the top of the subnet down) to 203.0.113.2 and
/// beyond (never the sandbox's own 203.0.113.1), established and seen now, so that
/// neither expiry nor the collector removes them during a measurement. Returns how many
/// went in (the table may be smaller).
pub fn fill(lab: &str, state: &crate::lab::LabState, n: u32) -> Result<u32> {
    // A change of `CT` from userspace and its count are one step, so that `status`
    // never counts entries a stopped fill added.
    crate::signals::deferred(|| fill_now(lab, state, n))
}

/// [`fill`], with the signals held.
fn fill_now(lab: &str, state: &crate::lab::LabState, n: u32) -> Result<u32> {
    use netlab_common::conntrack::{
        FLAG_ASSURED, FLAG_ORIGIN, FLAG_SEEN_REPLY, FLAG_STREAM, ZONE_FROM_CTR, ZONE_FROM_OUTSIDE,
    };
    // bpf(2)'s update flags.
    const BPF_NOEXIST: u64 = 1;
    const BPF_EXIST: u64 = 2;
    let mut table: Table = pins::typed(lab, names::CT)?;
    let mut queue: aya::maps::Queue<aya::maps::MapData, CtKey> = pins::typed(lab, names::GC_QUEUE)?;
    let now = coarse_secs();
    let be = |a: Ipv4Addr| u32::from(a).to_be();
    let top = u32::from(state.subnet.broadcast()) - 1;
    let uplink = be(state.uplink_addr);
    let flags = FLAG_SEEN_REPLY | FLAG_STREAM | FLAG_ASSURED;
    let mut done = 0;
    let mut added = 0u64;
    for i in 0..n {
        // 60,000 flows per source address: 6 destinations x 10,000 NAT ports.
        let src = be(Ipv4Addr::from(top - i / 60_000));
        let dst = be(Ipv4Addr::new(203, 0, 113, 2 + ((i / 10_000) % 6) as u8));
        let nat_port = (20_000 + i % 10_000) as u16;
        let (sport, dport) = (nat_port.to_be(), 53u16.to_be());
        let out_key = CtKey::new(src, dst, sport, dport, IPPROTO_UDP, ZONE_FROM_CTR);
        let entry = |saddr, daddr, sport, dport, zone, origin| CtEntry {
            saddr,
            daddr,
            sport,
            dport,
            pair_zone: zone,
            flags: flags | origin,
            created: now,
            last_seen: now,
            ..CtEntry::default()
        };
        let out = entry(uplink, dst, sport, dport, ZONE_FROM_OUTSIDE, FLAG_ORIGIN);
        let reply_key = CtKey::new(dst, uplink, dport, sport, IPPROTO_UDP, ZONE_FROM_OUTSIDE);
        let reply = entry(dst, src, dport, sport, ZONE_FROM_CTR, 0);
        // Counted as `CT` gets them (`ct_entries_filled`): a key it held already (the
        // replies share 60,000 keys) is overwritten, not counted again.
        let mut put = |k: CtKey, e: CtEntry| match table.insert(k, e, BPF_NOEXIST) {
            Ok(()) => {
                added += 1;
                true
            }
            Err(_) => table.insert(k, e, BPF_EXIST).is_ok(),
        };
        if !put(reply_key, reply) || !put(out_key, out) {
            break;
        }
        // The collector's round, as the datapath queues a flow it confirms.
        let _ = queue.push(out_key, 0);
        done += 1;
    }
    count_by_user(lab, counter::CT_ENTRIES_FILLED, added)?;
    Ok(done)
}
