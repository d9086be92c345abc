//! Datapaths: the NAT and publishing machinery of a lab, behind one trait, so that the
//! same topology, operations and workloads run over each of them. A datapath also owns
//! what only it can show (flows, counters, logs) and the teardown of its own state.

pub mod ebpf;
pub mod inspect;
pub mod iptables;
mod netfilter;
pub mod nftables;
pub mod routed;

use std::path::PathBuf;

pub use inspect::{Counters, Flow, PortCounters, TableInfo};

use crate::{
    error::{Error, Result},
    lab::{Container, DatapathKind, LabState, Published},
};

/// What every datapath does for a lab.
pub trait Datapath {
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

    /// The tracked flows, when the datapath keeps its own.
    fn flows(&self, state: &LabState) -> Result<Vec<Flow>> {
        Err(not_here(
            state,
            "its conntrack is the kernel's (`conntrack -L` in the host namespace)",
        ))
    }
    /// Forgets every tracked flow; returns how many.
    fn flush(&self, state: &LabState) -> Result<usize> {
        Err(not_here(
            state,
            "its conntrack is the kernel's (`conntrack -F` in the host namespace)",
        ))
    }
    /// Counters and drop reasons.
    fn counters(&self, state: &LabState) -> Result<Counters> {
        Err(not_here(state, "it has no eBPF counters"))
    }
    /// Per-mapping counters, one per port in `ports` (`None` where there are none).
    fn port_counters(
        &self,
        _state: &LabState,
        ports: &[Published],
    ) -> Result<Vec<Option<PortCounters>>> {
        Ok(vec![None; ports.len()])
    }
    /// Streams debug logs for `seconds` (or until interrupted).
    fn logs(&self, state: &LabState, _seconds: Option<u64>) -> Result<()> {
        Err(not_here(state, "it has no eBPF logs"))
    }
    /// The cgroup a process in the lab host must join to see host-local publishing.
    fn host_cgroup(&self, _state: &LabState) -> Result<Option<PathBuf>> {
        Ok(None)
    }
    /// Fills conntrack with `flows` synthetic established flows that no packet of a
    /// measurement will meet (the benchmark's full-table scenario); how many went in.
    fn fill_conntrack(&self, state: &LabState, _flows: u32) -> Result<u32> {
        Err(not_here(state, "its conntrack is the kernel's"))
    }
    /// The datapath's own tables (conntrack): sizes and the memory they take.
    fn tables(&self, _state: &LabState) -> Result<Vec<TableInfo>> {
        Ok(Vec::new())
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
