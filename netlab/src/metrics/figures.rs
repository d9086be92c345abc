//! What a scrape reads of one lab, through the datapath's own inspection (the same
//! figures as `status`, `stats`, `conntrack` and `ports`). A scrape only reads: it takes
//! no lab's lock (a command never waits for it, nor it for a command), settles no
//! interrupted operation and removes nothing; a lab torn down while it is read is left
//! out of that scrape.

use crate::{
    datapath::{self, Counters, FlowCensus, PortCounters},
    error::Result,
    lab::{LabState, Published},
};

/// One lab's figures at one moment.
#[derive(Clone, Debug)]
pub struct LabFigures {
    pub lab: String,
    pub datapath: &'static str,
    pub device: &'static str,
    /// The datapath's counters and drop reasons ([`datapath::Inspect`]); `None` on
    /// the netfilter datapaths, whose conntrack and counters are the kernel's.
    pub counters: Option<Counters>,
    /// Its conntrack tables and their flows, counted (eBPF; empty otherwise).
    pub conntrack: FlowCensus,
    /// The NAT's port range, inclusive.
    pub nat_ports: (u16, u16),
    /// Published mappings, with their counters where the datapath keeps them.
    pub ports: Vec<(Published, Option<PortCounters>)>,
}

/// Reads one lab that is up, as its state describes it.
pub fn collect(state: &LabState) -> Result<LabFigures> {
    let dp = datapath::for_kind(state.datapath);
    let inspect = dp.inspect();
    let counters = inspect.map(|i| i.counters(state)).transpose()?;
    let conntrack = match inspect {
        Some(i) => i.census(state)?,
        None => FlowCensus::default(),
    };
    let port_counters = datapath::port_counters(&*dp, state, &state.ports)?;
    Ok(LabFigures {
        lab: state.name.clone(),
        datapath: state.datapath.name(),
        device: state.device.name(),
        counters,
        conntrack,
        nat_ports: (state.nat.port_min, state.nat.port_max),
        ports: state.ports.iter().cloned().zip(port_counters).collect(),
    })
}

impl LabFigures {
    /// A counter or drop reason by name (0 when the datapath has none).
    pub fn count(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .flat_map(|c| c.counters.iter().chain(c.drops.iter()))
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    }
}
