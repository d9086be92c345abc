//! Datapaths: the NAT and publishing machinery of a lab, behind one trait, so that the
//! same topology and workload run over each of them.

pub mod ebpf;

use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    state::{LabState, Published},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DatapathKind {
    /// TC (tcx) eBPF programs with conntrack in BPF maps; no netfilter rules.
    Ebpf,
}

impl DatapathKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ebpf => "ebpf",
        }
    }
}

/// Tunables of the NAT, set by `netlab up`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatOptions {
    /// SNAT source ports, inclusive.
    pub port_min: u16,
    pub port_max: u16,
    /// Conntrack timeouts, seconds after the last packet.
    pub tcp_established_secs: u32,
    pub tcp_transitory_secs: u32,
    pub udp_secs: u32,
    pub icmp_secs: u32,
    /// eBPF only: forward established flows from TC (fib lookup + redirect), skipping
    /// the host's forwarding path.
    #[serde(default = "yes")]
    pub fast_path: bool,
}

fn yes() -> bool {
    true
}

impl Default for NatOptions {
    fn default() -> Self {
        let c = netlab_common::config::Config::default();
        Self {
            port_min: c.nat_port_min,
            port_max: c.nat_port_max,
            tcp_established_secs: c.tcp_established_secs,
            tcp_transitory_secs: c.tcp_transitory_secs,
            udp_secs: c.udp_secs,
            icmp_secs: c.icmp_secs,
            fast_path: true,
        }
    }
}

/// Parses a port range `MIN-MAX` (inclusive).
pub fn parse_port_range(s: &str) -> Result<(u16, u16)> {
    let bad = || {
        Error::Invalid(format!(
            "invalid port range {s:?}: expected MIN-MAX within 1-65535, e.g. 20000-29999"
        ))
    };
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// What every datapath does for a lab.
pub trait Datapath {
    /// Installs the datapath for a lab whose topology exists.
    fn setup(&self, state: &LabState, nat: &NatOptions, debug: bool) -> Result<()>;
    /// Removes everything `setup` installed; a half-gone lab is not an error.
    fn teardown(&self, state: &LabState) -> Result<()>;
    /// Publishes one port range (already validated against the lab's other mappings).
    fn publish(&self, state: &LabState, port: &Published) -> Result<()>;
    /// Withdraws one port range, and forgets its flows so nothing stale survives.
    fn unpublish(&self, state: &LabState, port: &Published) -> Result<()>;
}

pub fn for_kind(kind: DatapathKind) -> Box<dyn Datapath> {
    match kind {
        DatapathKind::Ebpf => Box::new(ebpf::Ebpf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("20000-29999").unwrap(), (20000, 29999));
        assert_eq!(parse_port_range("5-5").unwrap(), (5, 5));
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("10-5").is_err());
        assert!(parse_port_range("10").is_err());
        assert!(parse_port_range("1-70000").is_err());
    }
}
