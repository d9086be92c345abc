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
    netlink::sockdiag::Connected,
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

    /// Ends every flow through mapping `id` (its generation moves on). A number past
    /// the table's end was never given to a mapping in it (`check_room`): no flow went
    /// through it.
    fn end_flows(&mut self, id: u32) -> Result<()> {
        if id >= names::PUBLISH_STATS_MAX {
            return Ok(());
        }
        let generation = self
            .generations
            .get(&id, 0)
            .map_err(|e| Error::ebpf("read MAPPINGS", e))?;
        self.generations
            .set(id, generation.wrapping_add(1), 0)
            .map_err(|e| Error::ebpf("update MAPPINGS", e))
    }

    /// Forgets what the lab host's sockets asked for of a withdrawn port: their
    /// entries that lead back to one of its host ports from its container's. Returns
    /// those sockets, which are connected to the container still: they must be ended.
    fn forget_back(&mut self, p: &Published) -> Result<Vec<Connected>> {
        let (addr, proto) = (be(p.ctr_ip), p.spec.proto.number());
        // A port on one host address is that address's only: another mapping of the
        // same ports on another address is not this one (one on every address has its
        // host ports to itself).
        let host = host_addr(p);
        let stale: Vec<PubBackKey> = self
            .back
            .iter()
            .filter_map(|kv| kv.ok())
            .filter(|(k, v)| {
                let hp = u16::from_be(v.port);
                k.to.addr == addr
                    && k.to.proto == proto
                    && (host == 0 || v.addr == host)
                    && (p.spec.host_port..=p.spec.host_end).contains(&hp)
                    && k.to.port == p.spec.ctr_port_for(hp).to_be()
            })
            .map(|(k, _)| k)
            .collect();
        let mut sockets = Vec::with_capacity(stale.len());
        for k in stale {
            let _ = self.back.remove(&k);
            sockets.push(Connected {
                udp: k.to.proto == netlab_common::proto::IPPROTO_UDP,
                cookie: k.cookie,
                to: std::net::Ipv4Addr::from(u32::from_be(k.to.addr)),
                port: u16::from_be(k.to.port),
            });
        }
        Ok(sockets)
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

/// Refuses `ports`, before anything changes, when the port table has no room for them
/// beside `published`: `PUBLISH` holds 65,536 single ports, `PUBLISH_RANGES` 32
/// ranges, and a mapping's number indexes `PUBLISH_STATS` and `MAPPINGS`.
pub fn check_room(published: &[Published], ports: &[Published]) -> Result<()> {
    let singles = |ps: &[Published]| ps.iter().filter(|p| !is_range(p)).count();
    let (had, more) = (singles(published), singles(ports));
    if had + more > names::PUBLISH_MAX as usize {
        return Err(Error::Conflict(format!(
            "no room for {more} more single ports on the ebpf datapath: {had} are published, at most {} can be (publish a range such as 8000-8999:8000-8999 as one spec, or unpublish some)",
            names::PUBLISH_MAX
        )));
    }
    let ranges = |ps: &[Published]| ps.iter().filter(|p| is_range(p)).count();
    if ranges(published) + ranges(ports) > names::PUBLISH_RANGES_MAX as usize {
        return Err(Error::Conflict(format!(
            "no room for {} more port ranges on the ebpf datapath: {} are published, at most {} can be (unpublish one, or publish single ports)",
            ranges(ports),
            ranges(published),
            names::PUBLISH_RANGES_MAX
        )));
    }
    if let Some(p) = ports
        .iter()
        .find(|p| p.id == 0 || p.id >= names::PUBLISH_STATS_MAX)
    {
        return Err(Error::Conflict(format!(
            "too many published mappings on the ebpf datapath: {} would be number {}, at most {} can be",
            p.spec,
            p.id,
            names::PUBLISH_STATS_MAX - 1
        )));
    }
    Ok(())
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

/// Withdraws `ports` and ends their flows; adds to `sockets` the lab host's sockets
/// that reached them (host-local publishing redirects a socket once, at connect: it
/// stays connected to the container until it is ended), those of the ports withdrawn
/// before an error too.
pub fn unpublish(lab: &str, ports: &[Published], sockets: &mut Vec<Connected>) -> Result<()> {
    let mut table = Table::open(lab)?;
    for p in ports {
        table.remove(p)?;
        table.end_flows(p.id)?;
        sockets.extend(table.forget_back(p)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(spec: &str, id: u32) -> Published {
        Published {
            container: "web".into(),
            spec: spec.parse().unwrap(),
            ctr_ip: "172.18.0.2".parse().unwrap(),
            id,
        }
    }

    #[test]
    fn the_table_refuses_what_it_cannot_hold() {
        let singles: Vec<Published> = (1..=65_535)
            .map(|p| mapping(&format!("{p}:80/udp"), p))
            .collect();
        assert!(check_room(&singles, &[mapping("1:80", 65_536)]).is_ok());
        let err = check_room(
            &singles,
            &[mapping("1:80", 65_536), mapping("2:80", 65_537)],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("no room for 2 more single ports"),
            "{err}"
        );
        let ranges: Vec<Published> = (0..32)
            .map(|i| mapping(&format!("{0}-{1}:{0}-{1}", 100 + 2 * i, 101 + 2 * i), i + 1))
            .collect();
        let err = check_room(&ranges, &[mapping("9000-9001:80-81", 33)]).unwrap_err();
        assert!(
            err.to_string().contains("no room for 1 more port ranges"),
            "{err}"
        );
        let err = check_room(&[], &[mapping("8080:80", names::PUBLISH_STATS_MAX)]).unwrap_err();
        assert!(err.to_string().contains("at most 65599"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }
}
