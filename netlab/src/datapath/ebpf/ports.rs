//! The port table of a running lab: single ports in `PUBLISH` (one map update each),
//! ranges as one element each of `PUBLISH_RANGES`, counters in `PUBLISH_STATS`; in a
//! dual-stack lab a mapping that answers on IPv6 has its entry in `PUBLISH6` or
//! `PUBLISH_RANGES6` too, leading to the container's IPv6 address (one mapping, one
//! number: one counter and one generation for both families). Each batch opens the
//! maps once. Withdrawing a mapping bumps its generation in `MAPPINGS`, which ends
//! every flow through it at once, whatever their number and family: the datapath
//! treats a flow of an older generation as gone.

use std::net::{IpAddr, Ipv4Addr};

use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues};
use netlab_common::{
    addr::Addr6,
    maps as names,
    publish::{PubBack, PubBackKey, PubBackKey6, PubKey, PubRange, PubStats, PubTarget},
};

use super::{addr6, ipv6_of, pins};
use crate::{
    datapath::PortCounters,
    error::{Error, Result},
    lab::{LabState, Published},
    netlink::sockdiag::Connected,
};

fn be(a: Ipv4Addr) -> u32 {
    u32::from(a).to_be()
}

/// A port's entry in one family's table: where it answers (0 for every address of the
/// family) and where it leads.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Entry<A> {
    host: A,
    ctr: A,
}

/// The IPv4 entry of a port, unless it answers on IPv6 only.
fn entry4(p: &Published) -> Option<Entry<u32>> {
    p.spec.on_ipv4().then(|| Entry {
        host: p.spec.host_ip4().map(be).unwrap_or(0),
        ctr: be(p.ctr_ip),
    })
}

/// The IPv6 entry of a port in a dual-stack lab, unless it answers on IPv4 only.
fn entry6(state: &LabState, p: &Published) -> Option<Entry<Addr6>> {
    let ctr = state.ip6_of(p.ctr_ip).filter(|_| p.spec.on_ipv6())?;
    Some(Entry {
        host: p.spec.host_ip6().map(addr6).unwrap_or_default(),
        ctr: addr6(ctr),
    })
}

fn target<A>(p: &Published, e: &Entry<A>) -> PubTarget<A>
where
    A: Copy,
{
    PubTarget {
        addr: e.ctr,
        port: p.spec.ctr_port.to_be(),
        _pad: 0,
        id: p.id,
    }
}

fn single_key<A: Copy>(p: &Published, e: &Entry<A>) -> PubKey<A> {
    PubKey {
        addr: e.host,
        port: p.spec.host_port.to_be(),
        proto: p.spec.proto.number(),
        _pad: 0,
    }
}

fn is_range(p: &Published) -> bool {
    p.spec.host_end != p.spec.host_port
}

fn range_of<A: Copy>(p: &Published, e: &Entry<A>) -> PubRange<A> {
    PubRange {
        addr: e.host,
        start: p.spec.host_port,
        end: p.spec.host_end,
        proto: p.spec.proto.number(),
        used: 1,
        _pad: 0,
        target: target(p, e),
    }
}

/// One family's port maps.
struct Family<A>
where
    A: aya::Pod,
    PubKey<A>: aya::Pod,
    PubTarget<A>: aya::Pod,
    PubRange<A>: aya::Pod,
{
    singles: HashMap<MapData, PubKey<A>, PubTarget<A>>,
    ranges: Array<MapData, PubRange<A>>,
}

impl<A> Family<A>
where
    A: aya::Pod + Copy + PartialEq + Default,
    PubKey<A>: aya::Pod,
    PubTarget<A>: aya::Pod + PartialEq,
    PubRange<A>: aya::Pod + PartialEq + Default,
{
    fn open(lab: &str, singles: &str, ranges: &str) -> Result<Self> {
        Ok(Self {
            singles: pins::typed(lab, singles)?,
            ranges: pins::typed(lab, ranges)?,
        })
    }

    fn add(&mut self, p: &Published, e: &Entry<A>) -> Result<()> {
        if !is_range(p) {
            return self
                .singles
                .insert(single_key(p, e), target(p, e), 0)
                .map_err(|err| Error::ebpf("update the port table", err));
        }
        for i in 0..names::PUBLISH_RANGES_MAX {
            let slot = self
                .ranges
                .get(&i, 0)
                .map_err(|err| Error::ebpf("read the range table", err))?;
            if slot.used == 0 {
                return self
                    .ranges
                    .set(i, range_of(p, e), 0)
                    .map_err(|err| Error::ebpf("update the range table", err));
            }
        }
        Err(Error::Conflict(format!(
            "no room for another port range on the ebpf datapath (at most {}): unpublish one, or publish single ports",
            names::PUBLISH_RANGES_MAX
        )))
    }

    /// Whether `p`'s entry is in the table, leading where it should.
    fn has(&self, p: &Published, e: &Entry<A>) -> Result<bool> {
        if !is_range(p) {
            return match self.singles.get(&single_key(p, e), 0) {
                Ok(t) => Ok(t == target(p, e)),
                Err(aya::maps::MapError::KeyNotFound) => Ok(false),
                Err(err) => Err(Error::ebpf("read the port table", err)),
            };
        }
        Ok(!self.slots_of(p, e)?.is_empty())
    }

    /// The slots of the range table that hold `p` (a range).
    fn slots_of(&self, p: &Published, e: &Entry<A>) -> Result<Vec<u32>> {
        let wanted = range_of(p, e);
        let mut found = Vec::new();
        for i in 0..names::PUBLISH_RANGES_MAX {
            let slot = self
                .ranges
                .get(&i, 0)
                .map_err(|err| Error::ebpf("read the range table", err))?;
            if slot == wanted {
                found.push(i);
            }
        }
        Ok(found)
    }

    fn remove(&mut self, p: &Published, e: &Entry<A>) -> Result<()> {
        if !is_range(p) {
            return pins::gone_already(self.singles.remove(&single_key(p, e)))
                .map_err(|err| Error::ebpf("update the port table", err));
        }
        for i in self.slots_of(p, e)? {
            self.ranges
                .set(i, PubRange::default(), 0)
                .map_err(|err| Error::ebpf("update the range table", err))?;
        }
        Ok(())
    }
}

/// The lab's port maps, opened once per batch.
struct Table<'a> {
    state: &'a LabState,
    v4: Family<u32>,
    /// A dual-stack lab's.
    v6: Option<Family<Addr6>>,
    stats: PerCpuArray<MapData, PubStats>,
    generations: Array<MapData, u32>,
    back: HashMap<MapData, PubBackKey, PubBack>,
    back6: Option<HashMap<MapData, PubBackKey6, PubBack<Addr6>>>,
    cpus: usize,
}

impl<'a> Table<'a> {
    fn open(state: &'a LabState) -> Result<Self> {
        let lab = state.name.as_str();
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, e)| Error::io("count cpus", "/sys/devices/system/cpu/possible", e))?;
        let dual = state.subnet6.is_some();
        Ok(Self {
            state,
            v4: Family::open(lab, names::PUBLISH, names::PUBLISH_RANGES)?,
            v6: if dual {
                Some(Family::open(lab, names::PUBLISH6, names::PUBLISH_RANGES6)?)
            } else {
                None
            },
            stats: pins::typed(lab, names::PUBLISH_STATS)?,
            generations: pins::typed(lab, names::MAPPINGS)?,
            back: pins::typed(lab, names::PUBLISH_BACK)?,
            back6: if dual {
                Some(pins::typed(lab, names::PUBLISH_BACK6)?)
            } else {
                None
            },
            cpus,
        })
    }

    /// `p`'s IPv6 entry and the lab's IPv6 tables, when it has one.
    fn v6_of(&mut self, p: &Published) -> Option<(&mut Family<Addr6>, Entry<Addr6>)> {
        let e = entry6(self.state, p)?;
        self.v6.as_mut().map(|t| (t, e))
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
        if let Some(e) = entry4(p) {
            self.v4.add(p, &e)?;
        }
        if let Some((t, e)) = self.v6_of(p)
            && let Err(err) = t.add(p, &e)
        {
            if let Some(e) = entry4(p) {
                let _ = self.v4.remove(p, &e);
            }
            return Err(err);
        }
        Ok(())
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

    /// Forgets what the lab host's sockets asked for of the withdrawn ports: their
    /// entries that lead back to one of those host ports from its container's. Returns
    /// those sockets, which are connected to the container still: they must be ended.
    /// One walk of the reverse maps for all of them (a walk per port made `rm` of a
    /// container with 10,000 ports cost one syscall per port more, and one per socket
    /// and port with sockets).
    fn forget_back(&mut self, withdrawn: &[Published]) -> Result<Vec<Connected>> {
        // A port on one host address is that address's only: another mapping of the
        // same ports on another address is not this one (one on every address has its
        // host ports to itself).
        let ours = |p: &Published, to_port: u16, host_any: bool, asked_host: bool, asked_port| {
            let hp = u16::from_be(asked_port);
            (host_any || asked_host)
                && (p.spec.host_port..=p.spec.host_end).contains(&hp)
                && to_port == p.spec.ctr_port_for(hp).to_be()
        };
        let is_udp = |p: &Published| p.spec.proto.number() == netlab_common::proto::IPPROTO_UDP;
        let mut sockets = Vec::new();
        let v4: Vec<_> = withdrawn
            .iter()
            .filter_map(|p| entry4(p).map(|e| (p, e)))
            .collect();
        if !v4.is_empty() {
            let stale: Vec<(PubBackKey, bool)> = self
                .back
                .iter()
                .filter_map(|kv| kv.ok())
                .filter_map(|(k, v)| {
                    v4.iter()
                        .find(|(p, e)| {
                            k.to.addr == e.ctr
                                && k.to.proto == p.spec.proto.number()
                                && ours(p, k.to.port, e.host == 0, v.addr == e.host, v.port)
                        })
                        .map(|(p, _)| (k, is_udp(p)))
                })
                .collect();
            for (k, udp) in stale {
                let _ = self.back.remove(&k);
                sockets.push(Connected {
                    udp,
                    cookie: k.cookie,
                    to: IpAddr::V4(Ipv4Addr::from(u32::from_be(k.to.addr))),
                    port: u16::from_be(k.to.port),
                });
            }
        }
        let v6: Vec<_> = withdrawn
            .iter()
            .filter_map(|p| entry6(self.state, p).map(|e| (p, e)))
            .collect();
        if let (false, Some(back6)) = (v6.is_empty(), self.back6.as_mut()) {
            let stale: Vec<(PubBackKey6, bool)> = back6
                .iter()
                .filter_map(|kv| kv.ok())
                .filter_map(|(k, v)| {
                    v6.iter()
                        .find(|(p, e)| {
                            k.to.addr == e.ctr
                                && k.to.proto == p.spec.proto.number()
                                && ours(p, k.to.port, e.host == [0; 4], v.addr == e.host, v.port)
                        })
                        .map(|(p, _)| (k, is_udp(p)))
                })
                .collect();
            for (k, udp) in stale {
                let _ = back6.remove(&k);
                sockets.push(Connected {
                    udp,
                    cookie: k.cookie,
                    to: IpAddr::V6(ipv6_of(&k.to.addr)),
                    port: u16::from_be(k.to.port),
                });
            }
        }
        Ok(sockets)
    }

    /// Whether every entry of `p` is in the port table, leading where it should.
    fn has(&mut self, p: &Published) -> Result<bool> {
        if let Some(e) = entry4(p)
            && !self.v4.has(p, &e)?
        {
            return Ok(false);
        }
        match self.v6_of(p) {
            Some((t, e)) => t.has(p, &e),
            None => Ok(true),
        }
    }

    fn remove(&mut self, p: &Published) -> Result<()> {
        if let Some(e) = entry4(p) {
            self.v4.remove(p, &e)?;
        }
        if let Some((t, e)) = self.v6_of(p) {
            t.remove(p, &e)?;
        }
        Ok(())
    }
}

/// Refuses `ports`, before anything changes, when the port table has no room for them
/// beside `published`: `PUBLISH` holds 65,536 single ports, `PUBLISH_RANGES` 32
/// ranges (and the IPv6 tables as many), and a mapping's number indexes
/// `PUBLISH_STATS` and `MAPPINGS`. A port on one family only takes room in its own;
/// each family is counted as if every port took room in both, the tighter bound.
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
pub fn publish(state: &LabState, ports: &[Published]) -> Result<()> {
    let mut table = Table::open(state)?;
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
pub fn absent(state: &LabState, ports: &[Published]) -> Result<Vec<Published>> {
    let mut table = Table::open(state)?;
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
pub fn unpublish(
    state: &LabState,
    ports: &[Published],
    sockets: &mut Vec<Connected>,
) -> Result<()> {
    let mut table = Table::open(state)?;
    let mut withdrawn = 0;
    let mut outcome = Ok(());
    for p in ports {
        if let Err(e) = table.remove(p) {
            outcome = Err(e);
            break;
        }
        withdrawn += 1;
        if let Err(e) = table.end_flows(p.id) {
            outcome = Err(e);
            break;
        }
    }
    // After the ports are out of the table, so that no socket can be sent to one of
    // them after the walk.
    match table.forget_back(&ports[..withdrawn]) {
        Ok(found) => sockets.extend(found),
        Err(e) => outcome = outcome.and(Err(e)),
    }
    outcome
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
