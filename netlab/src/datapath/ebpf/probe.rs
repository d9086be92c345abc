//! What the eBPF datapath needs of the kernel, probed rather than read from its version
//! (distributions backport features, and build kernels without some): each program
//! type, map type and helper the object uses is asked for with a minimal program or
//! map, as libbpf's and bpftool's feature probes do. `up` refuses a kernel that lacks
//! one with a line naming it and the Linux release that brought it. Whether the kernel
//! attaches by tcx is probed on its own ([`super::hooks::probe`]): without it the
//! programs go on as classic TC filters, nothing is refused.

use aya::{
    maps::MapType,
    programs::ProgramType,
    sys::{BpfHelper, is_helper_supported, is_map_supported, is_program_supported},
};

use crate::error::{Error, Result};

/// A feature, what probes it, and the first Linux release that has it.
struct Feature {
    name: &'static str,
    since: &'static str,
    probe: Probe,
}

enum Probe {
    Program(ProgramType),
    Map(MapType),
    Helper(ProgramType, BpfHelper),
}

const TC: ProgramType = ProgramType::SchedClassifier;

/// Everything the object uses, oldest first.
fn needed() -> [Feature; 12] {
    use BpfHelper as H;
    let helper = |h| Probe::Helper(TC, h);
    [
        Feature {
            name: "TC classifier programs",
            since: "4.1",
            probe: Probe::Program(TC),
        },
        Feature {
            name: "cgroup sock_addr programs (host-local publishing)",
            since: "4.17",
            probe: Probe::Program(ProgramType::CgroupSockAddr),
        },
        Feature {
            name: "LRU hash maps (conntrack)",
            since: "4.10",
            probe: Probe::Map(MapType::LruHash),
        },
        Feature {
            name: "queue maps (the collector's round)",
            since: "4.20",
            probe: Probe::Map(MapType::Queue),
        },
        Feature {
            name: "ring buffers (debug logs)",
            since: "5.8",
            probe: Probe::Map(MapType::RingBuf),
        },
        Feature {
            name: "bpf_fib_lookup (the fast path's routes)",
            since: "4.18",
            probe: helper(H::BPF_FUNC_fib_lookup),
        },
        Feature {
            name: "bpf_redirect_peer (the fast path into containers)",
            since: "5.10",
            probe: helper(H::BPF_FUNC_redirect_peer),
        },
        Feature {
            name: "bpf_redirect_neigh (the fast path to the uplink)",
            since: "5.10",
            probe: helper(H::BPF_FUNC_redirect_neigh),
        },
        Feature {
            name: "bpf_ktime_get_coarse_ns (conntrack's clock)",
            since: "5.11",
            probe: helper(H::BPF_FUNC_ktime_get_coarse_ns),
        },
        Feature {
            name: "bpf_timer (the conntrack collector)",
            since: "5.15",
            probe: helper(H::BPF_FUNC_timer_init),
        },
        Feature {
            name: "bpf_loop (the collector's runs, TCP options)",
            since: "5.17",
            probe: helper(H::BPF_FUNC_loop),
        },
        Feature {
            name: "bpf_get_netns_cookie in sock_addr programs",
            since: "5.8",
            probe: Probe::Helper(ProgramType::CgroupSockAddr, H::BPF_FUNC_get_netns_cookie),
        },
    ]
}

fn has(p: &Probe) -> Result<bool> {
    let failed = |e: String| Error::ebpf("probe the kernel", e);
    match p {
        Probe::Program(t) => is_program_supported(*t).map_err(|e| failed(e.to_string())),
        Probe::Map(t) => is_map_supported(*t).map_err(|e| failed(e.to_string())),
        Probe::Helper(t, h) => is_helper_supported(*t, *h).map_err(|e| failed(e.to_string())),
    }
}

/// Refuses a kernel without something the eBPF datapath needs, naming the first thing
/// missing and the release that has it.
pub fn require() -> Result<()> {
    for f in needed() {
        if !has(&f.probe)? {
            return Err(Error::Invalid(format!(
                "the ebpf datapath needs {} (Linux {} and later), which this kernel does not have: use a newer kernel, or --datapath iptables or nftables",
                f.name, f.since
            )));
        }
    }
    Ok(())
}
