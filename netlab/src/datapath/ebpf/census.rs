//! Counting a lab's tracked flows for `metrics` without listing them: each conntrack
//! table read once, in batches, and every flow counted as `netlab conntrack` would
//! list it (from the half that opened it, its mapping not withdrawn, not idle past its
//! timeout both ways), into a [`Tally`].
//!
//! The established table is read in one pass without pairing its halves, which both
//! come and go together there (a lone half exists only between two calls of one
//! program): the other half is looked up only for a flow idle its own way, to tell
//! whether it is idle both ways. The LRU table, an eighth of the flows at most, is
//! paired whole, as the listing does: its halves can be evicted one at a time.
//!
//! Userspace, not a program: a walk of a million entries in the kernel takes a fifth
//! of a second or more, all of it with preemption (since Linux 6.4, bottom halves)
//! off on its CPU, and a scrape must not hold up packets.

use std::collections::HashMap as StdHashMap;

use aya::maps::{Array, HashMap, MapData};
use netlab_common::{
    addr::Addr6,
    config::FLAG_IPV6,
    conntrack::{CtEntry, CtKey, FLAG_ORIGIN, expired, tcp_state_name},
    maps as names,
    proto::IPPROTO_TCP,
};

use super::{batch, coarse_secs, flows, pins, read_config};
use crate::{datapath::Tally, error::Result};

/// Counts the flows of both tables into `tally`.
pub fn count(lab: &str, tally: &mut Tally) -> Result<()> {
    let cfg = read_config(lab)?;
    let now = coarse_secs();
    let generations: Array<MapData, u32> = pins::typed(lab, names::MAPPINGS)?;
    // Each mapping's generation, read once (by each thread).
    let withdrawn = |gens: &mut StdHashMap<u32, u32>, e: &CtEntry| {
        e.pub_id != 0
            && *gens
                .entry(e.pub_id)
                .or_insert_with(|| generations.get(&e.pub_id, 0).unwrap_or(0))
                != e.pub_gen
    };
    let dead = |k: &CtKey, e: &CtEntry| expired(&cfg, k.proto, e.state, e.flags, e.last_seen, now);
    let add = |table: &'static str, k: &CtKey, e: &CtEntry, tally: &mut Tally| {
        let state = if k.proto == IPPROTO_TCP {
            tcp_state_name(e.state)
        } else {
            "-"
        };
        tally.add(
            table,
            state,
            flows::proto_name(k.proto),
            now.saturating_sub(e.created) as u64,
            e.saddr != k.saddr,
            u16::from_be(e.sport),
        );
    };

    // The established table, a million flows or more, in two threads.
    let ct: HashMap<MapData, CtKey, CtEntry> = pins::typed(lab, names::CT)?;
    let halves = batch::for_each_in_halves(
        &pins::map_data(lab, names::CT)?,
        || (tally.empty(), StdHashMap::new()),
        |(part, gens), k: &CtKey, e: &CtEntry| {
            if e.flags & FLAG_ORIGIN == 0 || withdrawn(gens, e) {
                return;
            }
            if dead(k, e) {
                match ct.get(&e.pair_key(k.proto), 0) {
                    Ok(p) if !dead(k, &p) => {}
                    _ => return,
                }
            }
            add("confirmed", k, e, part);
        },
    )?;
    let mut gens = StdHashMap::new();
    for (part, seen) in halves {
        tally.merge(part);
        gens.extend(seen);
    }

    let pending: StdHashMap<CtKey, CtEntry> =
        batch::entries(&pins::map_data(lab, names::CT_PENDING)?)?
            .into_iter()
            .collect();
    for (k, e) in &pending {
        if e.flags & FLAG_ORIGIN == 0 {
            continue;
        }
        if withdrawn(&mut gens, e) {
            if pending.contains_key(&e.pair_key(k.proto)) {
                tally.pending_present();
            }
            continue;
        }
        let Some(reply) = pending.get(&e.pair_key(k.proto)) else {
            continue;
        };
        tally.pending_present();
        if dead(k, e) && dead(k, reply) {
            continue;
        }
        add("pending", k, e, tally);
    }
    if cfg.flags & FLAG_IPV6 != 0 {
        count6(lab, &cfg, &generations, tally)?;
    }
    Ok(())
}

/// IPv6's tables (no counters of their own): read whole and paired, their live flows counted as the
/// listing lists them, and every whole pair of the pending one as present (alive or
/// dead), as IPv4's.
fn count6(
    lab: &str,
    cfg: &netlab_common::config::Config,
    generations: &Array<MapData, u32>,
    tally: &mut Tally,
) -> Result<()> {
    for (table, pinned) in flows::TABLES6 {
        for flow in flows::list_table::<Addr6>(lab, cfg, generations, table, pinned)? {
            tally.add(
                flow.table,
                flow.state,
                flow.proto,
                flow.age_secs,
                flow.translated.src != flow.original.src,
                flow.translated.sport,
            );
        }
    }
    let pending: StdHashMap<CtKey<Addr6>, CtEntry<Addr6>> =
        batch::entries(&pins::map_data(lab, names::CT6_PENDING)?)?
            .into_iter()
            .collect();
    for (k, e) in &pending {
        if e.flags & FLAG_ORIGIN != 0 && pending.contains_key(&e.pair_key(k.proto)) {
            tally.pending_present();
        }
    }
    Ok(())
}
