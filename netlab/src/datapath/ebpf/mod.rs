//! The eBPF datapath: load the TC programs with the lab's configuration, record it in
//! `CONFIG`, attach by tcx in the lab's host namespace, and pin maps and links (see
//! [`pins`]) so that the datapath keeps forwarding when no netlab process runs.

pub mod batch;
mod census;
pub mod cgroup;
mod endpoints;
mod flows;
pub mod hooks;
mod logs;
mod netkit;
pub mod pins;
mod ports;
pub mod probe;
pub mod uplinks;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use aya::{
    EbpfLoader,
    maps::{Array, MapData, PerCpuArray, ProgramArray},
    programs::{SchedClassifier, TcAttachType},
};
use netlab_common::{
    addr::Addr6,
    config::{Config, FLAG_CLASSIC_TC, FLAG_FAST_PATH, FLAG_FAULT_REWRITE, FLAG_IPV6, FLAG_NETKIT},
    endpoint::Uplink,
    maps::{self as names, established_entries, gc_queue_entries, pending_entries},
    stats::{
        Counters as StatsCounters, DROP_BASE, DROP_NAMES, GcRecord, STATS_PROGRAMS, STATS_USER,
        counter,
    },
};

use super::{
    Counters, Datapath, FillConntrack, Flow, FlowCensus, Inspect, PortCounters, TableInfo, Tally,
};
use crate::{
    error::{Error, Errors, Result},
    lab::{Container, Device, Fault, LabState, Published},
    netlink::{link, netns, sysctl},
    topology,
};

/// The bridge's programs and their directions; the uplink programs go on every
/// interface but the bridge ([`uplinks`]).
const ON_BRIDGE: [(&str, TcAttachType); 2] = [
    (names::PROG_BRIDGE_INGRESS, TcAttachType::Ingress),
    (names::PROG_BRIDGE_EGRESS, TcAttachType::Egress),
];

const MAPS: [&str; 28] = [
    names::PUBLISH,
    names::PUBLISH_RANGES,
    names::PUBLISH_STATS,
    names::PUBLISH_BACK,
    names::MAPPINGS,
    names::CT,
    names::CT_PENDING,
    names::FRAGS,
    names::FRAGS6,
    names::ENDPOINTS,
    names::ENDPOINTS6,
    names::SOURCES,
    names::UPLINKS,
    names::HOST_ADDRS,
    names::UPLINK_NOW,
    names::ROUTE_MTU,
    names::CT6,
    names::CT6_PENDING,
    names::PUBLISH6,
    names::PUBLISH_RANGES6,
    names::PUBLISH_BACK6,
    names::HOST_ADDRS6,
    names::PROGS6,
    names::CONFIG,
    names::STATS,
    names::GC,
    names::GC_QUEUE,
    names::GC_QUEUE6,
];

/// The endpoint program, pinned so that `run` can attach it to new containers.
const ENDPOINT_PROG_PIN: &str = "endpoint_prog";

pub struct Ebpf;

/// What `CONFIG` needs to know of the lab host's links.
pub struct HostLinks {
    pub uplink_ifindex: u32,
    pub bridge_ifindex: u32,
    pub bridge_mac: [u8; 6],
    pub netns_cookie: u64,
}

/// The `CONFIG` value for a lab.
pub fn config(state: &LabState, links: &HostLinks) -> Config {
    let be = |a: Ipv4Addr| u32::from(a).to_be();
    let nat = &state.nat;
    Config {
        uplink_addr: be(state.uplink_addr),
        bridge_addr: be(state.bridge_addr),
        subnet: be(state.subnet.network),
        subnet_mask: state.subnet.mask().to_be(),
        uplink_ifindex: links.uplink_ifindex,
        bridge_ifindex: links.bridge_ifindex,
        nat_port_min: nat.port_min,
        nat_port_max: nat.port_max,
        tcp_syn_secs: nat.tcp_syn_secs,
        tcp_established_secs: nat.tcp_established_secs,
        tcp_fin_secs: nat.tcp_transitory_secs,
        tcp_time_wait_secs: nat.tcp_time_wait_secs,
        tcp_close_secs: nat.tcp_close_secs,
        udp_secs: nat.udp_secs,
        udp_stream_secs: nat.udp_stream_secs,
        icmp_secs: nat.icmp_secs,
        flags: if nat.fast_path { FLAG_FAST_PATH } else { 0 }
            | match state.device {
                Device::Veth => 0,
                Device::Netkit => FLAG_NETKIT,
            }
            | if state.subnet6.is_some() {
                FLAG_IPV6
            } else {
                0
            }
            | match state.fault {
                Some(Fault::RewriteFailed) => FLAG_FAULT_REWRITE,
                None => 0,
            },
        bridge_mac: links.bridge_mac,
        _pad: [0; 2],
        host_netns_cookie: links.netns_cookie,
        gc_interval_ms: nat.gc_interval_ms,
        _pad2: 0,
        uplink_addr6: state.uplink_addr6.map(addr6).unwrap_or_default(),
        bridge_addr6: state.bridge_addr6().map(addr6).unwrap_or_default(),
        subnet6: state.subnet6.map(|s| addr6(s.network)).unwrap_or_default(),
        subnet6_mask: state
            .subnet6
            .map(|s| addr6(Ipv6Addr::from(mask6(s.prefix))))
            .unwrap_or_default(),
    }
}

/// An IPv6 address as the programs keep it: its four 32-bit words, each in network
/// byte order.
pub fn addr6(a: Ipv6Addr) -> Addr6 {
    let o = a.octets();
    std::array::from_fn(|i| {
        u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
    })
}

/// The inverse of [`addr6`].
pub fn ipv6_of(a: &Addr6) -> Ipv6Addr {
    let mut o = [0u8; 16];
    for (chunk, w) in o.chunks_exact_mut(4).zip(a) {
        chunk.copy_from_slice(&w.to_ne_bytes());
    }
    Ipv6Addr::from(o)
}

/// The mask of an IPv6 prefix of `prefix` bits.
fn mask6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// [`Config`] as aya writes a global: its bytes.
#[repr(transparent)]
#[derive(Clone, Copy)]
struct ConfigGlobal(Config);

// SAFETY: `Config` is `repr(C)` plain data with no padding bytes (it is `bytemuck::Pod`).
unsafe impl aya::Pod for ConfigGlobal {}

/// Loads the embedded object with the lab's configuration `cfg` (read-only in the
/// programs from then on) and its conntrack tables sized for `conntrack_max`
/// established flows. Log statements below `level` are pruned by the verifier.
pub fn load(debug: bool, conntrack_max: u32, cfg: &Config) -> Result<aya::Ebpf> {
    let level = if debug {
        aya_log::Level::Debug as u8
    } else {
        0u8
    };
    // IPv6 flows get tables of the same size in a dual-stack lab, one entry otherwise.
    let (ct6, ct6_pending, gc6, back6, frags6) = if cfg.flags & FLAG_IPV6 != 0 {
        (
            established_entries(conntrack_max),
            pending_entries(conntrack_max),
            gc_queue_entries(conntrack_max),
            names::PUBLISH_MAX,
            names::FRAGS_MAX,
        )
    } else {
        (1, 1, 1, 1, 1)
    };
    let cfg = ConfigGlobal(*cfg);
    let mut bpf = EbpfLoader::new()
        .override_global(aya_log::LEVEL, &level, false)
        .override_global(names::CONFIG_GLOBAL, &cfg, true)
        .map_max_entries(names::CT, established_entries(conntrack_max))
        .map_max_entries(names::CT_PENDING, pending_entries(conntrack_max))
        .map_max_entries(names::GC_QUEUE, gc_queue_entries(conntrack_max))
        .map_max_entries(names::CT6, ct6)
        .map_max_entries(names::CT6_PENDING, ct6_pending)
        .map_max_entries(names::GC_QUEUE6, gc6)
        .map_max_entries(names::PUBLISH_BACK6, back6)
        .map_max_entries(names::FRAGS6, frags6)
        .load(crate::EBPF_OBJ)
        .map_err(|e| Error::ebpf("load object", e))?;
    // The uplink's addresses start as the configuration's; `uplinks::sync` keeps them.
    let mut now: Array<_, Uplink> = Array::try_from(
        bpf.map_mut(names::UPLINK_NOW)
            .ok_or_else(|| Error::ebpf("find map", names::UPLINK_NOW))?,
    )
    .map_err(|e| Error::ebpf("open UPLINK_NOW", e))?;
    let uplink = Uplink {
        addr: cfg.0.uplink_addr,
        addr6: cfg.0.uplink_addr6,
    };
    now.set(0, uplink, 0)
        .map_err(|e| Error::ebpf("write UPLINK_NOW", e))?;
    Ok(bpf)
}

pub use crate::netlink::link::parse_mac;

/// One classifier, loaded (verified) unless [`load_all`] did it already; the verifier
/// log comes with a failure.
pub fn load_program<'a>(bpf: &'a mut aya::Ebpf, name: &str) -> Result<&'a mut SchedClassifier> {
    let prog: &mut SchedClassifier = bpf
        .program_mut(name)
        .ok_or_else(|| Error::ebpf("find program", name))?
        .try_into()
        .map_err(|e| Error::ebpf("program type", e))?;
    if prog.fd().is_err() {
        prog.load()
            .map_err(|e| Error::ebpf("load program", verifier_detail(name, e)))?;
    }
    Ok(prog)
}

/// Puts the IPv6 programs in `PROGS6`, where the IPv4 ones hand IPv6 packets to them.
pub fn fill_progs6(bpf: &mut aya::Ebpf) -> Result<()> {
    let mut fds = Vec::new();
    for (name, index) in names::PROGS6_NAMES {
        let fd = load_program(bpf, name)?
            .fd()
            .and_then(|fd| fd.try_clone().map_err(Into::into))
            .map_err(|e| Error::ebpf("program fd", format!("{name}: {e}")))?;
        fds.push((index, fd));
    }
    let mut progs: ProgramArray<&mut MapData> = ProgramArray::try_from(
        bpf.map_mut(names::PROGS6)
            .ok_or_else(|| Error::ebpf("find map", names::PROGS6))?,
    )
    .map_err(|e| Error::ebpf("open PROGS6", e))?;
    for (index, fd) in &fds {
        progs
            .set(*index, fd, 0)
            .map_err(|e| Error::ebpf("update PROGS6", e))?;
    }
    Ok(())
}

/// Loads every program of the object at once, one thread each: the verifier's work is
/// most of `up`'s time, and each program is verified on its own, so the CPUs share it.
pub fn load_all(bpf: &mut aya::Ebpf) -> Result<()> {
    use aya::programs::Program;
    std::thread::scope(|s| {
        let loading: Vec<_> = bpf
            .programs_mut()
            .map(|(name, prog)| {
                s.spawn(move || {
                    match prog {
                        Program::SchedClassifier(p) => p.load(),
                        Program::CgroupSockAddr(p) => p.load(),
                        _ => Ok(()),
                    }
                    .map_err(|e| Error::ebpf("load program", verifier_detail(name, e)))
                })
            })
            .collect();
        loading.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(Error::ebpf("load program", "loader thread panicked")))
        })
    })
}

fn verifier_detail(name: &str, e: aya::programs::ProgramError) -> String {
    match e {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            format!("{name}: {io_error}\n{verifier_log}")
        }
        other => format!("{name}: {other}"),
    }
}

impl Datapath for Ebpf {
    fn setup(&self, state: &LabState) -> Result<()> {
        let dir = pins::prepare(&state.name)?;
        let host = topology::host_ns(state);
        let (uplink, bridge) = (state.uplink.clone(), state.bridge.clone());
        let sandbox = state.sandbox;
        let (uplink_ifindex, bridge_ifindex, bridge_mac) =
            netns::netlink_in(&host, |h| async move {
                // Hairpin on the slow path: the rewritten packets carry a host address as
                // source, and the bridge forwards them back where they came from.
                let conf = |key: &str| format!("/proc/sys/net/ipv4/conf/{bridge}/{key}");
                sysctl::set(&conf("accept_local"), "1")?;
                sysctl::set(&conf("send_redirects"), "0")?;
                if sandbox {
                    sysctl::set("/proc/sys/net/ipv4/conf/all/send_redirects", "0")?;
                }
                Ok((
                    link::require(&h, &uplink).await?,
                    link::require(&h, &bridge).await?,
                    link::mac(&h, &bridge).await?,
                ))
            })?;
        // Only in a namespace of the lab's own: elsewhere (the machine's, a runtime's)
        // the setting is everyone's, and other bridges' filtering (Docker's, a
        // runtime's) depends on it.
        if sandbox {
            netns::run_in(&host, sysctl::bridge_netfilter_off)?;
        }
        let links = HostLinks {
            uplink_ifindex,
            bridge_ifindex,
            bridge_mac: parse_mac(&bridge_mac)?,
            netns_cookie: netns::cookie(&host)?,
        };

        let mut value = config(state, &links);
        let mut bpf = load(state.debug, state.nat.conntrack_max, &value)?;
        load_all(&mut bpf)?;
        let kind = hooks::probe(load_program(&mut bpf, names::PROG_BRIDGE_EGRESS)?)?;
        let mut cfg: Array<_, Config> = Array::try_from(
            bpf.map_mut(names::CONFIG)
                .ok_or_else(|| Error::ebpf("find map", names::CONFIG))?,
        )
        .map_err(|e| Error::ebpf("open CONFIG", e))?;
        if kind == hooks::Kind::Classic {
            value.flags |= FLAG_CLASSIC_TC;
        }
        cfg.set(0, value, 0)
            .map_err(|e| Error::ebpf("write CONFIG", e))?;
        if value.flags & FLAG_IPV6 != 0 {
            fill_progs6(&mut bpf)?;
        }
        for m in MAPS {
            let map = bpf.map(m).ok_or_else(|| Error::ebpf("find map", m))?;
            map.pin(dir.join(m))
                .map_err(|e| Error::ebpf("pin map", format!("{m}: {e}")))?;
        }
        for (prog_name, pin) in [
            (names::PROG_UPLINK_INGRESS, uplinks::INGRESS_PROG_PIN),
            (names::PROG_UPLINK_EGRESS, uplinks::EGRESS_PROG_PIN),
        ] {
            load_program(&mut bpf, prog_name)?
                .pin(dir.join(pin))
                .map_err(|e| Error::ebpf("pin program", format!("{prog_name}: {e}")))?;
        }
        for (prog_name, direction) in ON_BRIDGE {
            let prog = load_program(&mut bpf, prog_name)?;
            hooks::attach(
                kind,
                &state.name,
                prog,
                &host,
                &state.bridge,
                direction,
                prog_name,
            )?;
        }
        uplinks::sync(state)?;
        let endpoint = load_program(&mut bpf, names::PROG_ENDPOINT_INGRESS)?;
        endpoint
            .pin(dir.join(ENDPOINT_PROG_PIN))
            .map_err(|e| Error::ebpf("pin program", e))?;
        cgroup::attach(&mut bpf, state, &pins::links(&state.name))?;
        start_gc(&mut bpf)?;
        // Dropping `bpf` closes our fds; the pins keep maps, programs and links alive,
        // and the pinned GC map its timer.
        Ok(())
    }

    fn attach(&self, state: &LabState, c: &Container) -> Result<()> {
        uplinks::sync(state)?;
        endpoints::attach(state, c)
    }

    fn detach(&self, state: &LabState, c: &Container) -> Result<()> {
        endpoints::detach(state, c)
    }

    /// Also refuses an uplink without an Ethernet header here, before anything of the
    /// lab is made or changed.
    fn check_free(&self, state: &LabState) -> Result<()> {
        pins::check_free(&state.name)?;
        cgroup::check_free(state)?;
        let uplink = state.uplink.clone();
        netns::netlink_in(&topology::host_ns(state), |h| async move {
            match link::is_ethernet(&h, &uplink).await? {
                true => Ok(()),
                false => Err(Error::Invalid(format!(
                    "uplink {uplink} has no Ethernet header (a tun, WireGuard or tunnel device): the eBPF datapath needs an Ethernet uplink; use --datapath iptables or nftables"
                ))),
            }
        })
    }

    fn teardown(&self, state: &LabState) -> Result<()> {
        // Classic filters are no pins: each goes by its record (a lab attached by tcx
        // has none), before the pins. Not by `CONFIG`'s flag, which a half-gone lab, or
        // one an earlier netlab brought up, may not have where this one reads it.
        let mut errors = Errors::default();
        // In a host namespace that is gone, or someone else's now, nothing is the lab's.
        if topology::host_is_the_labs(state) {
            errors.check(hooks::detach_all(&state.name, &topology::host_ns(state)));
        } else {
            hooks::forget_all(&state.name);
        }
        errors.check(sweep(&state.name).map(drop));
        errors.into_result()
    }

    fn check_room(&self, state: &LabState, ports: &[Published]) -> Result<()> {
        ports::check_room(&state.ports, ports)
    }

    fn publish(&self, state: &LabState, ports: &[Published]) -> Result<()> {
        ports::check_room(&state.ports, ports)?;
        uplinks::sync(state)?;
        ports::publish(state, ports)
    }

    fn absent(&self, state: &LabState, ports: &[Published]) -> Result<Vec<Published>> {
        ports::absent(state, ports)
    }

    fn unpublish(&self, state: &LabState, ports: &[Published]) -> Result<()> {
        let mut sockets = Vec::new();
        let withdrawn = ports::unpublish(state, ports, &mut sockets);
        // The lab host's connections through the withdrawn ports end too, as iptables'
        // (whose conntrack entries `unpublish` deletes) do. The ports are withdrawn
        // whatever happens to them: a kernel that cannot end sockets is said, not fatal.
        let ended = crate::netlink::netns::run_in(&crate::topology::host_ns(state), || {
            crate::netlink::sockdiag::destroy(&sockets)
        });
        if let Err(e) = ended {
            eprintln!(
                "netlab: the lab host's connections through the withdrawn ports could not be ended: {e}"
            );
        }
        withdrawn
    }

    fn host_cgroup(&self, state: &LabState) -> Result<Option<PathBuf>> {
        cgroup::joinable(state)
    }

    fn inspect(&self) -> Option<&dyn Inspect> {
        Some(self)
    }

    fn fill(&self) -> Option<&dyn FillConntrack> {
        Some(self)
    }
}

impl Inspect for Ebpf {
    fn flows(&self, state: &LabState) -> Result<Vec<Flow>> {
        flows::list(&state.name)
    }

    fn flush(&self, state: &LabState) -> Result<usize> {
        flows::flush(&state.name)
    }

    fn counters(&self, state: &LabState) -> Result<Counters> {
        let v = read_stats(&state.name)?;
        let gc: Array<MapData, GcRecord> = pins::typed(&state.name, names::GC)?;
        let gc = gc.get(&0, 0).map_err(|e| Error::ebpf("read GC", e))?;
        Ok(Counters {
            counters: counter::NAMES
                .iter()
                .enumerate()
                .map(|(i, n)| (*n, v[i]))
                .chain([
                    ("ct_gc_longest_us", gc.longest_ns / 1_000),
                    ("ct_gc_last_us", gc.last_ns / 1_000),
                ])
                .collect(),
            drops: DROP_NAMES
                .iter()
                .enumerate()
                .skip(1)
                .map(|(i, n)| (*n, v[DROP_BASE as usize + i]))
                .collect(),
        })
    }

    fn port_counters(
        &self,
        state: &LabState,
        ports: &[Published],
    ) -> Result<Vec<Option<PortCounters>>> {
        ports::counters(&state.name, ports)
    }

    fn logs(&self, state: &LabState, seconds: Option<u64>) -> Result<()> {
        logs::stream(state, seconds)
    }

    fn tables(&self, state: &LabState) -> Result<Vec<TableInfo>> {
        tables(state)
    }

    fn census(&self, state: &LabState) -> Result<FlowCensus> {
        let mut tally = Tally::new((state.nat.port_min, state.nat.port_max));
        census::count(&state.name, &mut tally)?;
        Ok(tally.finish(tables(state)?))
    }
}

/// A lab's tables. `CT`'s entries are what the programs and userspace counted in and
/// out (no walk); the others are counted by reading them (an eighth of the flows,
/// and 8,192 entries, at most; IPv6's as many).
fn tables(state: &LabState) -> Result<Vec<TableInfo>> {
    let ct = ct_entries(&read_stats(&state.name)?);
    let mut tables = vec![
        pins::info(&state.name, names::CT, Some(ct))?,
        pins::info(&state.name, names::CT_PENDING, None)?,
        pins::info(&state.name, names::FRAGS, None)?,
    ];
    // A dual-stack lab's IPv6 flows, counted by reading them.
    if state.subnet6.is_some() {
        tables.push(pins::info(&state.name, names::CT6, None)?);
        tables.push(pins::info(&state.name, names::CT6_PENDING, None)?);
        tables.push(pins::info(&state.name, names::FRAGS6, None)?);
    }
    Ok(tables)
}

/// The entries `CT` holds, from the counters of what went in and out.
fn ct_entries(stats: &[u64]) -> u64 {
    let at = |i: u32| stats[i as usize];
    (at(counter::CT_ENTRIES_ADDED) + at(counter::CT_ENTRIES_FILLED))
        .saturating_sub(at(counter::CT_ENTRIES_REMOVED) + at(counter::CT_ENTRIES_FLUSHED))
}

/// Adds `n` to a counter only userspace writes: in userspace's entry of `STATS`
/// (`STATS_USER`), which no program writes, CPU 0's. The caller holds the lab's lock,
/// so no other writer reads it meanwhile.
fn count_by_user(lab: &str, index: u32, n: u64) -> Result<()> {
    let mut map: PerCpuArray<MapData, StatsCounters> = pins::typed(lab, names::STATS)?;
    let mut values: Vec<StatsCounters> = map
        .get(&STATS_USER, 0)
        .map_err(|e| Error::ebpf("read STATS", e))?
        .iter()
        .copied()
        .collect();
    values[0][index as usize] += n;
    let values = aya::maps::PerCpuValues::try_from(values)
        .map_err(|e| Error::ebpf("write STATS", e.to_string()))?;
    map.set(STATS_USER, values, 0)
        .map_err(|e| Error::ebpf("write STATS", e))
}

impl FillConntrack for Ebpf {
    fn fill_conntrack(&self, state: &LabState, flows: u32) -> Result<u32> {
        flows::fill(&state.name, state, flows)
    }
}

/// Arms the conntrack garbage collector: runs `gc_start` once (BPF_PROG_TEST_RUN).
fn start_gc(bpf: &mut aya::Ebpf) -> Result<()> {
    use aya::{TestRun as _, programs::TestRunOptions};
    let prog = load_program(bpf, names::PROG_GC_START)?;
    // Any frame will do: the program does not look at it.
    let frame = [0u8; 64];
    let mut rc = 0;
    // bpf_timer_init allocates its timer without waiting for memory to be reclaimed,
    // so it may find none at hand for a moment: -ENOMEM, seen once in a full test run
    // on this machine's 6.18 with 18 GiB free. It initialises nothing then, and is
    // simply run again.
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        rc = prog
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                ..Default::default()
            })
            .map_err(|e| Error::ebpf("start the garbage collector", e))?
            .return_value as i32;
        if rc != -libc::ENOMEM {
            break;
        }
    }
    if rc != 0 {
        return Err(Error::ebpf(
            "start the garbage collector",
            format!("bpf_timer returned {rc}"),
        ));
    }
    Ok(())
}

/// Removes a lab's pins (which detaches its programs) and its cgroup; returns whether
/// anything was there.
pub fn sweep(lab: &str) -> Result<bool> {
    let mut errors = Errors::default();
    // Which cgroup is the lab's, its links say: read before they go with the pins.
    let attached = cgroup::attached_id(lab);
    let pinned = errors.check(pins::remove(lab)).unwrap_or(false);
    let cgroup = errors.check(cgroup::remove(lab, attached)).unwrap_or(false);
    errors.into_result()?;
    Ok(pinned || cgroup)
}

/// The counters of a running lab: the programs' and userspace's, summed over CPUs.
fn read_stats(lab: &str) -> Result<Vec<u64>> {
    let map: PerCpuArray<MapData, StatsCounters> = pins::typed(lab, names::STATS)?;
    let mut sum = vec![0u64; names::STATS_LEN as usize];
    for entry in [STATS_PROGRAMS, STATS_USER] {
        let per_cpu = map
            .get(&entry, 0)
            .map_err(|e| Error::ebpf("read STATS", e))?;
        for counters in per_cpu.iter() {
            for (s, c) in sum.iter_mut().zip(counters) {
                *s += c;
            }
        }
    }
    Ok(sum)
}

/// The `CONFIG` of a running lab.
pub fn read_config(lab: &str) -> Result<Config> {
    let map: Array<MapData, Config> = pins::typed(lab, names::CONFIG)?;
    map.get(&0, 0).map_err(|e| Error::ebpf("read CONFIG", e))
}

/// How a running lab's programs are attached (probed at `up`).
pub fn hooks_of(lab: &str) -> Result<hooks::Kind> {
    Ok(hooks_kind(&read_config(lab)?))
}

/// How the programs of a lab with this `CONFIG` are attached.
pub fn hooks_kind(cfg: &Config) -> hooks::Kind {
    if cfg.flags & FLAG_CLASSIC_TC != 0 {
        hooks::Kind::Classic
    } else {
        hooks::Kind::Tcx
    }
}

/// Seconds of CLOCK_MONOTONIC_COARSE, the clock of the datapath's conntrack times
/// (`bpf_ktime_get_coarse_ns()`).
pub fn coarse_secs() -> u32 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u32
}
