//! Datapaths: the NAT and publishing machinery of a lab, behind one trait, so that the
//! same topology, operations and workloads run over each of them. A datapath also owns
//! what only it can show (flows, counters, logs) and the teardown of its own state.

pub mod ebpf;
pub mod forward_policy;
pub mod inspect;
pub mod iptables;
mod netfilter;
mod nft_tables;
pub mod nftables;
pub mod routed;

use std::path::PathBuf;

pub use inspect::{Counters, Flow, FlowCensus, FlowKind, PortCounters, TableInfo, Tally};

use crate::{
    error::{Error, Result},
    lab::{Container, DatapathKind, LabState, Published},
};

/// What every datapath does for a lab: set it up, attach and detach containers,
/// publish and withdraw ports, tear it down. What some can show of themselves is
/// [`Inspect`]; what only the benchmark needs is [`FillConntrack`].
pub trait Datapath {
    /// Refuses a lab whose datapath objects are there already (in its host namespace,
    /// bpffs or cgroups): someone else's, or another lab's; and one this kernel or
    /// uplink cannot serve. Runs before the bridge is made and forwarding turned on,
    /// and nothing of the datapath is torn down when it fails.
    fn check_free(&self, _state: &LabState) -> Result<()> {
        Ok(())
    }
    /// Installs the datapath (with `state.nat` and `state.debug`) for a lab whose
    /// bridge and uplink exist.
    fn setup(&self, state: &LabState) -> Result<()>;
    /// Removes everything `setup`, `attach` and `publish` installed; a half-gone lab is
    /// not an error.
    fn teardown(&self, state: &LabState) -> Result<()>;
    /// A container's interface is on the bridge (`state` already lists it).
    fn attach(&self, _state: &LabState, _c: &Container) -> Result<()> {
        Ok(())
    }
    /// A container is about to go (`state` still lists it, its ports are withdrawn).
    fn detach(&self, _state: &LabState, _c: &Container) -> Result<()> {
        Ok(())
    }
    /// Refuses ports its tables have no room for beside `state.ports` (checked with
    /// the rest of a request, before anything is made).
    fn check_room(&self, _state: &LabState, _ports: &[Published]) -> Result<()> {
        Ok(())
    }
    /// Publishes port ranges (already validated against the lab), all or none.
    fn publish(&self, state: &LabState, ports: &[Published]) -> Result<()>;
    /// Withdraws port ranges (`state.ports` still lists them) and forgets their flows,
    /// so that nothing stale survives.
    fn unpublish(&self, state: &LabState, ports: &[Published]) -> Result<()>;
    /// Withdraws whatever of `ports` a `publish` or `unpublish` that was interrupted
    /// left in the kernel, which may be all of them, some, or none (see
    /// `ops::journal`).
    fn withdraw_leftovers(&self, state: &LabState, ports: &[Published]) -> Result<()> {
        self.unpublish(state, ports)
    }
    /// Which of `ports` (published, as the state says) the kernel does not have, or
    /// not whole: their rules, elements or map entries removed behind netlab's back (a
    /// firewall reload, someone's `iptables -F`). CNI's CHECK asks.
    fn absent(&self, _state: &LabState, _ports: &[Published]) -> Result<Vec<Published>> {
        Ok(Vec::new())
    }
    /// What of the lab's own setup (chains, jumps, rules; not its ports: [`absent`])
    /// the kernel lacks, the first thing found, removed or emptied behind netlab's
    /// back; `None` when it is whole. CNI's CHECK asks.
    ///
    /// [`absent`]: Datapath::absent
    fn missing_setup(&self, _state: &LabState) -> Result<Option<String>> {
        Ok(None)
    }
    /// The cgroup a process in the lab host must join to see host-local publishing.
    fn host_cgroup(&self, _state: &LabState) -> Result<Option<PathBuf>> {
        Ok(None)
    }

    /// What the datapath shows of itself; `None` when its conntrack and counters are
    /// the kernel's (the netfilter datapaths).
    fn inspect(&self) -> Option<&dyn Inspect> {
        None
    }
    /// Synthetic flows for the benchmark; `None` when its conntrack is the kernel's.
    fn fill(&self) -> Option<&dyn FillConntrack> {
        None
    }
}

/// What a datapath that keeps its own conntrack and counters shows: `conntrack`,
/// `stats`, `logs`, `ports`' counters, `status`' tables, and `metrics`, all of it.
pub trait Inspect {
    /// The tracked flows.
    fn flows(&self, state: &LabState) -> Result<Vec<Flow>>;
    /// Forgets every tracked flow; returns how many.
    fn flush(&self, state: &LabState) -> Result<usize>;
    /// Counters and drop reasons.
    fn counters(&self, state: &LabState) -> Result<Counters>;
    /// Per-mapping counters, one per port in `ports` (`None` where there are none).
    fn port_counters(
        &self,
        state: &LabState,
        ports: &[Published],
    ) -> Result<Vec<Option<PortCounters>>>;
    /// Streams debug logs for `seconds` (or until interrupted).
    fn logs(&self, state: &LabState, seconds: Option<u64>) -> Result<()>;
    /// The datapath's own tables (conntrack): sizes and the memory they take.
    fn tables(&self, state: &LabState) -> Result<Vec<TableInfo>>;
    /// The tables and their flows counted (what `metrics` shows); by default, a count
    /// of the listing.
    fn census(&self, state: &LabState) -> Result<FlowCensus> {
        Ok(FlowCensus::of(
            self.tables(state)?,
            &self.flows(state)?,
            (state.nat.port_min, state.nat.port_max),
        ))
    }
}

/// What only the benchmark (and the tests of a full table) need.
pub trait FillConntrack {
    /// Fills conntrack with `flows` synthetic established flows that no packet of a
    /// measurement will meet (the benchmark's full-table scenario); how many went in.
    fn fill_conntrack(&self, state: &LabState, flows: u32) -> Result<u32>;
}

/// The inspection of a lab's datapath, or the one-line error of a command that needs
/// it on a datapath without one (`why`: what to use instead).
pub fn inspection<'a>(
    dp: &'a dyn Datapath,
    state: &LabState,
    why: &str,
) -> Result<&'a dyn Inspect> {
    dp.inspect().ok_or_else(|| match state.datapath {
        DatapathKind::Routed => not_here(state, "it translates, tracks and counts nothing"),
        _ => not_here(state, why),
    })
}

/// Per-mapping counters where the datapath keeps them (`None` each where it does not).
pub fn port_counters(
    dp: &dyn Datapath,
    state: &LabState,
    ports: &[Published],
) -> Result<Vec<Option<PortCounters>>> {
    match dp.inspect() {
        Some(i) => i.port_counters(state, ports),
        None => Ok(vec![None; ports.len()]),
    }
}

/// The one-line error of an inspection a datapath does not have.
fn not_here(state: &LabState, why: &str) -> Error {
    Error::Invalid(format!(
        "lab {} runs the {} datapath: {why}",
        state.name,
        state.datapath.name()
    ))
}

pub fn for_kind(kind: DatapathKind) -> Box<dyn Datapath> {
    match kind {
        DatapathKind::Ebpf => Box::new(ebpf::Ebpf),
        DatapathKind::Iptables => Box::new(iptables::Iptables::nft()),
        DatapathKind::IptablesLegacy => Box::new(iptables::Iptables::legacy()),
        DatapathKind::Nftables => Box::new(nftables::Nftables::plain()),
        DatapathKind::NftablesFlowtable => Box::new(nftables::Nftables::with_flowtable()),
        DatapathKind::Routed => Box::new(routed::Routed),
    }
}
