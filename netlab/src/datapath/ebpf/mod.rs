//! The eBPF datapath: load the TC programs, fill `CONFIG`, attach by tcx in the lab's
//! host namespace, and pin maps and links under `/sys/fs/bpf/netlab/v1/<lab>/` so that
//! the datapath keeps forwarding when no netlab process runs.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use aya::{
    EbpfLoader,
    maps::{Array, HashMap, Map, MapData, PerCpuArray},
    programs::{LinkOrder, SchedClassifier, TcAttachType, links::FdLink, tc::TcAttachOptions},
};
use netlab_common::{
    config::{Config, FLAG_FAST_PATH},
    conntrack::{CtEntry, CtKey},
    maps as names,
};

pub mod cgroup;
pub mod publish;

use super::{Datapath, NatOptions};
use crate::{
    error::{Error, Result},
    netlink::{link, netns, sysctl},
    state::{LabState, Published},
    topology,
};

/// Where bpffs lives; netlab mounts it when nothing is mounted there.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Bumped when a map layout changes, so an old pinned map is never reused by new code.
pub const LAYOUT_VERSION: &str = "v1";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

pub fn root() -> PathBuf {
    Path::new(BPFFS).join("netlab")
}

pub fn pin_dir(lab: &str) -> PathBuf {
    root().join(LAYOUT_VERSION).join(lab)
}

/// The programs and where they attach: (program, on the uplink?, direction).
const ATTACH: [(&str, bool, TcAttachType); 3] = [
    (names::PROG_UPLINK_EGRESS, true, TcAttachType::Egress),
    (names::PROG_UPLINK_INGRESS, true, TcAttachType::Ingress),
    (names::PROG_BRIDGE_INGRESS, false, TcAttachType::Ingress),
];

const MAPS: [&str; 8] = [
    names::PUBLISH,
    names::PUBLISH_RANGES,
    names::PUBLISH_STATS,
    names::PUBLISH_BACK,
    names::CONNTRACK,
    names::CT_PENDING,
    names::CONFIG,
    names::STATS,
];

pub struct Ebpf;

/// Serialises mounting, pinning and unmounting bpffs between concurrent netlab commands.
const BPFFS_LOCK: &str = "/run/netlab.bpffs.lock";
/// Present while a bpffs that netlab mounted is on /sys/fs/bpf.
const BPFFS_MARK: &str = "/run/netlab.bpffs.mounted";

/// Holds [`BPFFS_LOCK`] while it lives.
pub struct BpffsLock {
    _file: fs::File,
}

impl BpffsLock {
    pub fn acquire() -> Result<Self> {
        use std::os::fd::AsRawFd;
        let f = fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(BPFFS_LOCK)
            .map_err(|e| Error::io("open", BPFFS_LOCK, e))?;
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::io(
                "lock",
                BPFFS_LOCK,
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Self { _file: f })
    }
}

fn is_bpffs() -> Result<bool> {
    let st = nix::sys::statfs::statfs(BPFFS).map_err(|e| Error::io("statfs", BPFFS, e.into()))?;
    Ok(st.filesystem_type().0 as i64 == BPF_FS_MAGIC)
}

/// Mounts bpffs on /sys/fs/bpf unless one is there already (equivalent to
/// `mount -t bpf bpf /sys/fs/bpf`), and remembers that netlab mounted it.
pub fn ensure_bpffs(_lock: &BpffsLock) -> Result<()> {
    if is_bpffs()? {
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        BPFFS,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| Error::io("mount bpffs on", BPFFS, e.into()))?;
    fs::write(BPFFS_MARK, "").map_err(|e| Error::io("write", BPFFS_MARK, e))
}

/// Unmounts the bpffs netlab mounted once nothing of netlab's is pinned there: the
/// machine is left as it was found (a fresh bpffs holds only the kernel's preloaded
/// `maps.debug` and `progs.debug` iterators).
fn release_bpffs(_lock: &BpffsLock) -> Result<()> {
    if !Path::new(BPFFS_MARK).exists() || root().exists() || !is_bpffs()? {
        return Ok(());
    }
    let ours_only = fs::read_dir(BPFFS)
        .map_err(|e| Error::io("list", BPFFS, e))?
        .flatten()
        .all(|e| matches!(e.file_name().to_str(), Some("maps.debug" | "progs.debug")));
    if ours_only {
        nix::mount::umount(BPFFS).map_err(|e| Error::io("unmount", BPFFS, e.into()))?;
        let _ = fs::remove_file(BPFFS_MARK);
    }
    Ok(())
}

/// The `CONFIG` value for a lab.
pub fn config(
    state: &LabState,
    nat: &NatOptions,
    uplink_ifindex: u32,
    bridge_ifindex: u32,
    host_netns_cookie: u64,
) -> Config {
    let be = |a: Ipv4Addr| u32::from(a).to_be();
    Config {
        uplink_addr: be(state.uplink_addr),
        bridge_addr: be(state.bridge_addr),
        subnet: be(state.subnet.network),
        subnet_mask: state.subnet.mask().to_be(),
        uplink_ifindex,
        bridge_ifindex,
        nat_port_min: nat.port_min,
        nat_port_max: nat.port_max,
        tcp_established_secs: nat.tcp_established_secs,
        tcp_transitory_secs: nat.tcp_transitory_secs,
        udp_secs: nat.udp_secs,
        icmp_secs: nat.icmp_secs,
        flags: if nat.fast_path { FLAG_FAST_PATH } else { 0 },
        host_netns_cookie,
    }
}

/// Loads the embedded object. Log statements below `level` are pruned by the verifier.
pub fn load(debug: bool) -> Result<aya::Ebpf> {
    let level = if debug {
        aya_log::Level::Debug as u8
    } else {
        0u8
    };
    EbpfLoader::new()
        .override_global(aya_log::LEVEL, &level, false)
        .load(crate::EBPF_OBJ)
        .map_err(|e| Error::ebpf("load object", e))
}

/// Loads one classifier, printing the verifier log on failure.
pub fn load_program<'a>(bpf: &'a mut aya::Ebpf, name: &str) -> Result<&'a mut SchedClassifier> {
    let prog: &mut SchedClassifier = bpf
        .program_mut(name)
        .ok_or_else(|| Error::ebpf("find program", name))?
        .try_into()
        .map_err(|e| Error::ebpf("program type", e))?;
    prog.load()
        .map_err(|e| Error::ebpf("load program", verifier_detail(name, e)))?;
    Ok(prog)
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
    fn setup(&self, state: &LabState, nat: &NatOptions, debug: bool) -> Result<()> {
        let dir = pin_dir(&state.name);
        {
            let lock = BpffsLock::acquire()?;
            ensure_bpffs(&lock)?;
            fs::create_dir_all(dir.join("links")).map_err(|e| Error::io("create", &dir, e))?;
        }
        let host = topology::host_ns(state);
        let (uplink, bridge) = (state.uplink.clone(), state.bridge.clone());
        let sandbox = state.sandbox;
        let (up_idx, br_idx) = netns::netlink_in(&host, |h| async move {
            // Hairpin: the rewritten packets carry a host address as source, and the
            // bridge forwards them back where they came from.
            let conf = |key: &str| format!("/proc/sys/net/ipv4/conf/{bridge}/{key}");
            sysctl::set(&conf("accept_local"), "1")?;
            sysctl::set(&conf("send_redirects"), "0")?;
            if sandbox {
                sysctl::set("/proc/sys/net/ipv4/conf/all/send_redirects", "0")?;
            }
            Ok((
                link::require(&h, &uplink).await?,
                link::require(&h, &bridge).await?,
            ))
        })?;
        let cookie = cgroup::netns_cookie(&host)?;

        let mut bpf = load(debug)?;
        let mut cfg: Array<_, Config> = Array::try_from(
            bpf.map_mut(names::CONFIG)
                .ok_or_else(|| Error::ebpf("find map", names::CONFIG))?,
        )
        .map_err(|e| Error::ebpf("open CONFIG", e))?;
        cfg.set(0, config(state, nat, up_idx, br_idx, cookie), 0)
            .map_err(|e| Error::ebpf("write CONFIG", e))?;
        for m in MAPS {
            let map = bpf.map(m).ok_or_else(|| Error::ebpf("find map", m))?;
            map.pin(dir.join(m))
                .map_err(|e| Error::ebpf("pin map", format!("{m}: {e}")))?;
        }
        for (prog_name, on_uplink, direction) in ATTACH {
            let iface = if on_uplink {
                state.uplink.clone()
            } else {
                state.bridge.clone()
            };
            let prog = load_program(&mut bpf, prog_name)?;
            let pin = dir.join("links").join(prog_name);
            netns::run_in(&host, || {
                let id = prog
                    .attach_with_options(
                        &iface,
                        direction,
                        TcAttachOptions::TcxOrder(LinkOrder::default()),
                    )
                    .map_err(|e| Error::ebpf("attach", format!("{prog_name} on {iface}: {e}")))?;
                let link: FdLink = prog
                    .take_link(id)
                    .map_err(|e| Error::ebpf("take link", e))?
                    .try_into()
                    .map_err(|e| Error::ebpf("tcx link", e))?;
                link.pin(&pin)
                    .map_err(|e| Error::ebpf("pin link", format!("{prog_name}: {e}")))?;
                Ok(())
            })?;
        }
        cgroup::attach(&mut bpf, state, &dir.join("links"))?;
        // Dropping `bpf` closes our fds; the pins keep maps, programs and links alive.
        Ok(())
    }

    fn teardown(&self, state: &LabState) -> Result<()> {
        let pins = remove_pins(&state.name);
        cgroup::remove(&state.name)?;
        pins
    }

    fn publish(&self, state: &LabState, port: &Published) -> Result<()> {
        publish::publish(&state.name, port)
    }

    fn unpublish(&self, state: &LabState, port: &Published) -> Result<()> {
        publish::unpublish(&state.name, port)
    }
}

/// Removes the lab's pins (which detaches its links) and the empty parents.
pub fn remove_pins(lab: &str) -> Result<()> {
    let lock = BpffsLock::acquire()?;
    let dir = pin_dir(lab);
    match fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove pins", &dir, e)),
    }
    // Leave nothing behind once the last lab is gone.
    let _ = fs::remove_dir(root().join(LAYOUT_VERSION));
    let _ = fs::remove_dir(root());
    release_bpffs(&lock)
}

fn open_map(lab: &str, name: &str) -> Result<Map> {
    let path = pin_dir(lab).join(name);
    let data = MapData::from_pin(&path).map_err(|e| {
        Error::Invalid(format!(
            "lab {lab} has no eBPF datapath pinned at {} ({e})",
            path.display()
        ))
    })?;
    Map::from_map_data(data).map_err(|e| Error::ebpf("open map", e))
}

/// The conntrack tables of a running lab: (confirmed, pending).
pub fn conntrack(lab: &str) -> Result<[HashMap<MapData, CtKey, CtEntry>; 2]> {
    let open = |name| -> Result<HashMap<MapData, CtKey, CtEntry>> {
        open_map(lab, name)?
            .try_into()
            .map_err(|e| Error::ebpf("open conntrack", e))
    };
    Ok([open(names::CONNTRACK)?, open(names::CT_PENDING)?])
}

/// The per-CPU counters of a running lab, summed over CPUs.
pub fn stats(lab: &str) -> Result<Vec<u64>> {
    let map: PerCpuArray<MapData, u64> = open_map(lab, names::STATS)?
        .try_into()
        .map_err(|e| Error::ebpf("open STATS", e))?;
    (0..names::STATS_LEN)
        .map(|i| {
            map.get(&i, 0)
                .map(|v| v.iter().sum())
                .map_err(|e| Error::ebpf("read STATS", e))
        })
        .collect()
}

/// The `CONFIG` of a running lab.
pub fn read_config(lab: &str) -> Result<Config> {
    let map: Array<MapData, Config> = open_map(lab, names::CONFIG)?
        .try_into()
        .map_err(|e| Error::ebpf("open CONFIG", e))?;
    map.get(&0, 0).map_err(|e| Error::ebpf("read CONFIG", e))
}

/// CLOCK_MONOTONIC in nanoseconds, the clock of `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
