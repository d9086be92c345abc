//! The port table of a running lab: single ports in `PUBLISH` (one map update each),
//! ranges as one element each of `PUBLISH_RANGES`, counters in `PUBLISH_STATS`. Each
//! batch opens the maps once. Withdrawing a mapping bumps its generation in
//! `MAPPINGS`, which ends every flow through it at once, whatever their number: the
//! datapath treats a flow of an older generation as gone.

use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues};
use netlab_common::{
    maps as names,
    publish::{PubBack, PubBackKey, PubKey, PubRange, PubStats, PubTarget},
};

use super::pins;
use crate::{
    datapath::PortCounters,
    error::{Error, Result},
    lab::Published,
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

/// The IPv4 host address of a port (0 for every address). An eBPF lab has no IPv6
/// (`up --ipv6` refuses the datapath), so no port of its names an IPv6 one
/// (`conflicts::check_host_ip` refuses it).
fn host_addr(p: &Published) -> u32 {
    p.spec.host_ip4().map(be).unwrap_or(0)
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

fn range_of(p: &Published) -> PubRange {
    PubRange {
        addr: host_addr(p),
        start: p.spec.host_port,
        end: p.spec.host_end,
        proto: p.spec.proto.number(),
        used: 1,
        _pad: 0,
        target: target(p),
    }
}

/// The lab's port maps, opened once per batch.
struct Table {
    singles: HashMap<MapData, PubKey, PubTarget>,
    ranges: Array<MapData, PubRange>,
    stats: PerCpuArray<MapData, PubStats>,
    generations: Array<MapData, u32>,
    back: HashMap<MapData, PubBackKey, PubBack>,
    cpus: usize,
}

impl Table {
    fn open(lab: &str) -> Result<Self> {
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, e)| Error::io("count cpus", "/sys/devices/system/cpu/possible", e))?;
        Ok(Self {
            singles: pins::typed(lab, names::PUBLISH)?,
            ranges: pins::typed(lab, names::PUBLISH_RANGES)?,
            stats: pins::typed(lab, names::PUBLISH_STATS)?,
            generations: pins::typed(lab, names::MAPPINGS)?,
            back: pins::typed(lab, names::PUBLISH_BACK)?,
            cpus,
        })
    }

    fn add(&mut self, p: &Published) -> Result<()> {
        if p.id == 0 || p.id >= names::PUBLISH_STATS_MAX {
            return Err(Error::Conflict(format!(
                "too many published ports (at most {})",
                names::PUBLISH_STATS_MAX - 1
            )));
        }
        // Its id may have counted an earlier mapping.
        let zero = PerCpuValues::try_from(vec![PubStats::default(); self.cpus])
            .map_err(|e| Error::ebpf("per-cpu values", e))?;
        self.stats
            .set(p.id, zero, 0)
            .map_err(|e| Error::ebpf("reset PUBLISH_STATS", e))?;
        if !is_range(p) {
            return self
                .singles
                .insert(single_key(p), target(p), 0)
                .map_err(|e| Error::ebpf("update PUBLISH", e));
        }
        for i in 0..names::PUBLISH_RANGES_MAX {
            let slot = self
                .ranges
                .get(&i, 0)
                .map_err(|e| Error::ebpf("read PUBLISH_RANGES", e))?;
            if slot.used == 0 {
                return self
                    .ranges
                    .set(i, range_of(p), 0)
                    .map_err(|e| Error::ebpf("update PUBLISH_RANGES", e));
            }
        }
        Err(Error::Conflict(format!(
            "no room for another port range on the ebpf datapath (at most {}): unpublish one, or publish single ports",
            names::PUBLISH_RANGES_MAX
        )))
    }

    /// Ends every flow through mapping `id` (its generation moves on).
    fn end_flows(&mut self, id: u32) -> Result<()> {
        let generation = self
            .generations
            .get(&id, 0)
            .map_err(|e| Error::ebpf("read MAPPINGS", e))?;
        self.generations
            .set(id, generation.wrapping_add(1), 0)
            .map_err(|e| Error::ebpf("update MAPPINGS", e))
    }

    /// Forgets what the lab host's sockets asked for of a withdrawn port: their
    /// entries that lead back to one of its host ports from its container's.
    fn forget_back(&mut self, p: &Published) -> Result<()> {
        let (addr, proto) = (be(p.ctr_ip), p.spec.proto.number());
        let stale: Vec<PubBackKey> = self
            .back
            .iter()
            .filter_map(|kv| kv.ok())
            .filter(|(k, v)| {
                let hp = u16::from_be(v.port);
                k.to.addr == addr
                    && k.to.proto == proto
                    && (p.spec.host_port..=p.spec.host_end).contains(&hp)
                    && k.to.port == p.spec.ctr_port_for(hp).to_be()
            })
            .map(|(k, _)| k)
            .collect();
        for k in stale {
            let _ = self.back.remove(&k);
        }
        Ok(())
    }

    /// Whether `p`'s entry is in the port table, leading where it should.
    fn has(&self, p: &Published) -> Result<bool> {
        if !is_range(p) {
            return match self.singles.get(&single_key(p), 0) {
                Ok(t) => Ok(t == target(p)),
                Err(aya::maps::MapError::KeyNotFound) => Ok(false),
                Err(e) => Err(Error::ebpf("read PUBLISH", e)),
            };
        }
        Ok(!self.slots_of(p)?.is_empty())
    }

    /// The slots of the range table that hold `p` (a range).
    fn slots_of(&self, p: &Published) -> Result<Vec<u32>> {
        let wanted = range_of(p);
        let mut found = Vec::new();
        for i in 0..names::PUBLISH_RANGES_MAX {
            let slot = self
                .ranges
                .get(&i, 0)
                .map_err(|e| Error::ebpf("read PUBLISH_RANGES", e))?;
            if slot == wanted {
                found.push(i);
            }
        }
        Ok(found)
    }

    fn remove(&mut self, p: &Published) -> Result<()> {
        if !is_range(p) {
            return pins::gone_already(self.singles.remove(&single_key(p)))
                .map_err(|e| Error::ebpf("update PUBLISH", e));
        }
        for i in self.slots_of(p)? {
            self.ranges
                .set(i, PubRange::default(), 0)
                .map_err(|e| Error::ebpf("update PUBLISH_RANGES", e))?;
        }
        Ok(())
    }
}

/// Publishes `ports`, all or none.
pub fn publish(lab: &str, ports: &[Published]) -> Result<()> {
    let mut table = Table::open(lab)?;
    for (i, p) in ports.iter().enumerate() {
        if let Err(e) = table.add(p) {
            for done in &ports[..i] {
                let _ = table.remove(done);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// The ports of `ports` that the port table does not have.
pub fn absent(lab: &str, ports: &[Published]) -> Result<Vec<Published>> {
    let table = Table::open(lab)?;
    let mut gone = Vec::new();
    for p in ports {
        if !table.has(p)? {
            gone.push(p.clone());
        }
    }
    Ok(gone)
}

/// Withdraws `ports` and ends their flows.
pub fn unpublish(lab: &str, ports: &[Published]) -> Result<()> {
    let mut table = Table::open(lab)?;
    for p in ports {
        table.remove(p)?;
        table.end_flows(p.id)?;
        table.forget_back(p)?;
    }
    Ok(())
}

/// Counters of each mapping, summed over CPUs.
pub fn counters(lab: &str, ports: &[Published]) -> Result<Vec<Option<PortCounters>>> {
    let map: PerCpuArray<MapData, PubStats> = pins::typed(lab, names::PUBLISH_STATS)?;
    ports
        .iter()
        .map(|p| {
            let v = map
                .get(&p.id, 0)
                .map_err(|e| Error::ebpf("read PUBLISH_STATS", e))?;
            Ok(Some(v.iter().fold(PortCounters::default(), |a, s| {
                PortCounters {
                    packets: a.packets + s.packets,
                    bytes: a.bytes + s.bytes,
                    connections: a.connections + s.connections,
                }
            })))
        })
        .collect()
}
