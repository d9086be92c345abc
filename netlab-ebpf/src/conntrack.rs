//! Conntrack: lookup with in-kernel expiry, new flows with a NAT port, confirmation.
//!
//! Two LRU tables. A new flow enters `Pending` (both directions); the first packet in
//! the reply direction moves both entries to `Confirmed`. A flood of flows that are never
//! answered (SYN floods, UDP scans) therefore churns only `Pending`, and LRU eviction in
//! `Confirmed` only ever picks among flows that have been idle longest.
//!
//! Expiry needs no userspace sweeper: a lookup that finds an entry idle for longer than
//! its timeout (by protocol and TCP state) deletes the flow and reports a miss; entries
//! nobody looks up again are reclaimed by the LRU.
//!
//! Races we accept (documented, as Cilium's conntrack.h does): two CPUs creating the same
//! new flow at once both try a port; the second insert of the originating direction fails
//! with EEXIST and that CPU rolls back its reply entry and uses the winner's entry.
//! Counters and `last_seen_ns` are updated without locks; a lost update costs accuracy,
//! never correctness.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
};
use netlab_common::{
    config::Config,
    conntrack::{CtEntry, CtKey, FLAG_ORIGIN, TCP_NONE, expired, tcp_next_state},
    nat::{SNAT_RETRIES, candidate_port},
    proto::{IPPROTO_ICMP, IPPROTO_TCP},
    stats::{DropReason, counter},
};

use crate::maps::{self, Table};

#[inline(always)]
pub fn now() -> u64 {
    unsafe { bpf_ktime_get_ns() }
}

/// A live entry found by [`lookup`].
pub struct Hit {
    pub entry: *mut CtEntry,
    pub table: Table,
}

/// Finds the entry for `key` in either table. An expired flow is deleted (both
/// directions) and reported as a miss.
#[inline(always)]
pub fn lookup(cfg: &Config, key: &CtKey, now: u64) -> Option<Hit> {
    let (entry, table) = match maps::ct_get(Table::Confirmed, key) {
        Some(e) => (e, Table::Confirmed),
        None => (maps::ct_get(Table::Pending, key)?, Table::Pending),
    };
    let e = unsafe { &*entry };
    if expired(cfg, key.proto, e.state, e.last_seen_ns, now) {
        let pair = e.pair_key(key.proto);
        // A one-way stream keeps its flow alive through the busy direction.
        if let Some(p) = maps::ct_get(table, &pair) {
            let p = unsafe { &*p };
            if !expired(cfg, key.proto, p.state, p.last_seen_ns, now) {
                return Some(Hit { entry, table });
            }
        }
        maps::ct_remove(table, &pair);
        maps::ct_remove(table, key);
        maps::count(counter::CT_EXPIRED);
        return None;
    }
    Some(Hit { entry, table })
}

/// Records a packet of `len` bytes on `hit`, and moves the TCP state on `tcp_flags`
/// (0 for other protocols). A state change is mirrored into the paired entry.
#[inline(always)]
pub fn touch(hit: &Hit, proto: u8, tcp_flags: u8, len: u32, now: u64) {
    let e = unsafe { &mut *hit.entry };
    e.last_seen_ns = now;
    // Plain adds: the BPF target has no atomic fetch-add in `core`; a lost update
    // between two CPUs costs a count, never a translation.
    e.packets += 1;
    e.bytes += len as u64;
    maps::count_publish(e.pub_id, len);
    if proto != IPPROTO_TCP {
        return;
    }
    let next = tcp_next_state(e.state, tcp_flags);
    if next != e.state {
        e.state = next;
        if let Some(p) = maps::ct_get(hit.table, &e.pair_key(proto)) {
            unsafe { (*p).state = next };
        }
    }
}

/// The reverse-direction entry of `key -> entry`: keyed by the translated tuple reversed,
/// translating back to `key` reversed.
#[inline(always)]
pub fn pair_of(key: &CtKey, entry: &CtEntry) -> (CtKey, CtEntry) {
    let pair_key = entry.pair_key(key.proto);
    let pair = CtEntry {
        saddr: key.daddr,
        daddr: key.saddr,
        sport: key.dport,
        dport: key.sport,
        pair_zone: key.zone,
        state: entry.state,
        flags: entry.flags ^ FLAG_ORIGIN,
        _pad: 0,
        pub_id: entry.pub_id,
        _pad2: 0,
        created_ns: entry.created_ns,
        last_seen_ns: entry.last_seen_ns,
        packets: 0,
        bytes: 0,
    };
    (pair_key, pair)
}

/// An originating-direction entry translating to `(saddr, daddr, sport, dport)`.
#[inline(always)]
pub fn entry(
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
    pair_zone: u8,
    pub_id: u32,
    now: u64,
) -> CtEntry {
    CtEntry {
        saddr,
        daddr,
        sport,
        dport,
        pair_zone,
        state: TCP_NONE,
        flags: FLAG_ORIGIN,
        _pad: 0,
        pub_id,
        _pad2: 0,
        created_ns: now,
        last_seen_ns: now,
        packets: 0,
        bytes: 0,
    }
}

/// Inserts a new flow into the pending table: `key -> out`, and its reply direction.
/// The reply entry goes in first, with `BPF_NOEXIST`: that insert is what reserves the
/// translated tuple. With `allocate`, the translated source port (the ICMP identifier
/// for ICMP) is chosen from the NAT range by linear probing from a random start.
#[inline(always)]
pub fn create(
    cfg: &Config,
    key: &CtKey,
    mut out: CtEntry,
    allocate: bool,
) -> Result<CtEntry, DropReason> {
    let start = unsafe { bpf_get_prandom_u32() };
    let tries = if allocate { SNAT_RETRIES } else { 1 };
    for attempt in 0..tries {
        if allocate {
            let port = candidate_port(cfg.nat_port_min, cfg.nat_port_max, start, attempt).to_be();
            out.sport = port;
            if key.proto == IPPROTO_ICMP {
                out.dport = port;
            }
        }
        let (reply_key, reply) = pair_of(key, &out);
        if maps::ct_get(Table::Confirmed, &reply_key).is_some() {
            continue;
        }
        if maps::ct_insert(Table::Pending, &reply_key, &reply, BPF_NOEXIST as u64).is_err() {
            continue;
        }
        if maps::ct_insert(Table::Pending, key, &out, BPF_NOEXIST as u64).is_err() {
            // Another CPU created this flow first: undo ours, use theirs.
            maps::ct_remove(Table::Pending, &reply_key);
            return match maps::ct_get(Table::Pending, key) {
                Some(e) => Ok(unsafe { *e }),
                None => Err(DropReason::CtInsertFailed),
            };
        }
        return Ok(out);
    }
    Err(if allocate {
        DropReason::PortsExhausted
    } else {
        DropReason::CtInsertFailed
    })
}

/// Finds the entry for a packet with `key`; the first packet of a reply direction moves
/// its flow from pending to confirmed.
#[inline(always)]
pub fn lookup_packet(cfg: &Config, key: &CtKey, now: u64) -> Result<Option<Hit>, DropReason> {
    let Some(hit) = lookup(cfg, key, now) else {
        return Ok(None);
    };
    if hit.table == Table::Pending {
        let e = unsafe { *hit.entry };
        if e.flags & FLAG_ORIGIN == 0 {
            return Ok(Some(Hit {
                entry: confirm(key, &e)?,
                table: Table::Confirmed,
            }));
        }
    }
    Ok(Some(hit))
}

/// Moves a pending flow to the confirmed table, on the first packet of its reply
/// direction. `key`/`entry` is the direction that was hit; the pair is rebuilt from it if
/// the pending table lost it.
#[inline(always)]
pub fn confirm(key: &CtKey, entry: &CtEntry) -> Result<*mut CtEntry, DropReason> {
    let (pair_key, mut pair) = pair_of(key, entry);
    if let Some(p) = maps::ct_get(Table::Pending, &pair_key) {
        pair = unsafe { *p };
    }
    maps::ct_insert(Table::Confirmed, &pair_key, &pair, BPF_ANY as u64)
        .map_err(|_| DropReason::CtInsertFailed)?;
    if maps::ct_insert(Table::Confirmed, key, entry, BPF_ANY as u64).is_err() {
        maps::ct_remove(Table::Confirmed, &pair_key);
        return Err(DropReason::CtInsertFailed);
    }
    maps::ct_remove(Table::Pending, &pair_key);
    maps::ct_remove(Table::Pending, key);
    maps::count(counter::CT_CONFIRMED);
    maps::ct_get(Table::Confirmed, key).ok_or(DropReason::CtInsertFailed)
}
