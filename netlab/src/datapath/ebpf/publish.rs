//! The port table of a running lab: one map update per published port or range.

use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues};
use netlab_common::{
    conntrack::{CtEntry, CtKey},
    maps as names,
    publish::{PubKey, PubRange, PubStats, PubTarget},
};

use super::{conntrack, open_map};
use crate::{
    error::{Error, Result},
    state::Published,
};

fn be(a: std::net::Ipv4Addr) -> u32 {
    u32::from(a).to_be()
}

fn target(p: &Published) -> PubTarget {
    PubTarget {
        addr: be(p.ctr_ip),
        port: p.spec.ctr_port.to_be(),
        _pad: 0,
        id: p.id,
    }
}

fn host_addr(p: &Published) -> u32 {
    p.spec.host_ip.map(be).unwrap_or(0)
}

fn single_key(p: &Published) -> PubKey {
    PubKey {
        addr: host_addr(p),
        port: p.spec.host_port.to_be(),
        proto: p.spec.proto.number(),
        _pad: 0,
    }
}

fn is_range(p: &Published) -> bool {
    p.spec.host_end != p.spec.host_port
}

fn ranges(lab: &str) -> Result<Array<MapData, PubRange>> {
    open_map(lab, names::PUBLISH_RANGES)?
        .try_into()
        .map_err(|e| Error::ebpf("open PUBLISH_RANGES", e))
}

fn range_matches(r: &PubRange, p: &Published) -> bool {
    r.used == 1
        && r.addr == host_addr(p)
        && r.proto == p.spec.proto.number()
        && r.start == p.spec.host_port
        && r.end == p.spec.host_end
}

/// Zeroes the mapping's counters (its id may have served an earlier mapping).
fn reset_stats(lab: &str, id: u32) -> Result<()> {
    let mut stats: PerCpuArray<MapData, PubStats> = open_map(lab, names::PUBLISH_STATS)?
        .try_into()
        .map_err(|e| Error::ebpf("open PUBLISH_STATS", e))?;
    let cpus = aya::util::nr_cpus()
        .map_err(|(_, e)| Error::io("count cpus", "/sys/devices/system/cpu/possible", e))?;
    let zero = PerCpuValues::try_from(vec![PubStats::default(); cpus])
        .map_err(|e| Error::ebpf("per-cpu values", e))?;
    stats
        .set(id, zero, 0)
        .map_err(|e| Error::ebpf("reset PUBLISH_STATS", e))
}

pub fn publish(lab: &str, p: &Published) -> Result<()> {
    if p.id == 0 || p.id >= names::PUBLISH_STATS_MAX {
        return Err(Error::Conflict(format!(
            "too many published ports (at most {})",
            names::PUBLISH_STATS_MAX - 1
        )));
    }
    reset_stats(lab, p.id)?;
    if !is_range(p) {
        let mut map: HashMap<MapData, PubKey, PubTarget> = open_map(lab, names::PUBLISH)?
            .try_into()
            .map_err(|e| Error::ebpf("open PUBLISH", e))?;
        return map
            .insert(single_key(p), target(p), 0)
            .map_err(|e| Error::ebpf("update PUBLISH", e));
    }
    let mut arr = ranges(lab)?;
    for i in 0..names::PUBLISH_RANGES_MAX {
        if arr
            .get(&i, 0)
            .map_err(|e| Error::ebpf("read PUBLISH_RANGES", e))?
            .used
            == 0
        {
            let r = PubRange {
                addr: host_addr(p),
                start: p.spec.host_port,
                end: p.spec.host_end,
                proto: p.spec.proto.number(),
                used: 1,
                _pad: 0,
                target: target(p),
            };
            return arr
                .set(i, r, 0)
                .map_err(|e| Error::ebpf("update PUBLISH_RANGES", e));
        }
    }
    Err(Error::Conflict(format!(
        "no room for another port range on the ebpf datapath (at most {}): unpublish one, or publish single ports",
        names::PUBLISH_RANGES_MAX
    )))
}

pub fn unpublish(lab: &str, p: &Published) -> Result<()> {
    if is_range(p) {
        let mut arr = ranges(lab)?;
        for i in 0..names::PUBLISH_RANGES_MAX {
            let r = arr
                .get(&i, 0)
                .map_err(|e| Error::ebpf("read PUBLISH_RANGES", e))?;
            if range_matches(&r, p) {
                arr.set(i, PubRange::default(), 0)
                    .map_err(|e| Error::ebpf("update PUBLISH_RANGES", e))?;
            }
        }
    } else {
        let mut map: HashMap<MapData, PubKey, PubTarget> = open_map(lab, names::PUBLISH)?
            .try_into()
            .map_err(|e| Error::ebpf("open PUBLISH", e))?;
        match map.remove(&single_key(p)) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(Error::ebpf("update PUBLISH", e)),
        }
    }
    forget_flows(lab, p.id)
}

/// Deletes every conntrack entry (both directions, both tables) of mapping `id`, so no
/// flow through an unpublished port survives — UDP included.
pub fn forget_flows(lab: &str, id: u32) -> Result<()> {
    for mut table in conntrack(lab)? {
        let keys: Vec<CtKey> = table
            .iter()
            .filter_map(|r| r.ok())
            .filter(|(_, e): &(CtKey, CtEntry)| e.pub_id == id)
            .map(|(k, _)| k)
            .collect();
        for k in keys {
            let _ = table.remove(&k);
        }
    }
    Ok(())
}

/// Counters of mapping `id`, summed over CPUs.
pub fn stats(lab: &str, id: u32) -> Result<PubStats> {
    let map: PerCpuArray<MapData, PubStats> = open_map(lab, names::PUBLISH_STATS)?
        .try_into()
        .map_err(|e| Error::ebpf("open PUBLISH_STATS", e))?;
    let v = map
        .get(&id, 0)
        .map_err(|e| Error::ebpf("read PUBLISH_STATS", e))?;
    Ok(v.iter().fold(PubStats::default(), |a, s| PubStats {
        packets: a.packets + s.packets,
        bytes: a.bytes + s.bytes,
        connections: a.connections + s.connections,
    }))
}
