//! The choices made at `up`: which datapath, and the NAT's tunables.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatapathKind {
    /// TC (tcx) eBPF programs with conntrack in BPF maps; no netfilter rules.
    Ebpf,
    /// Docker's iptables rules, through iptables' nf_tables backend (`iptables-nft`).
    Iptables,
    /// The same rules through the legacy x_tables backend (`iptables-legacy`).
    IptablesLegacy,
    /// One nftables table, `ip netlab`, with maps for the published ports.
    Nftables,
    /// The same table plus a flowtable: established TCP and UDP flows through the
    /// uplink are forwarded from the devices' ingress hook (netfilter's own fast path).
    NftablesFlowtable,
    /// No NAT at all: plain routing, and in a sandbox a route from wan to the lab
    /// subnet. The benchmark's baseline; sandbox labs only, publishes nothing.
    #[serde(alias = "none")]
    Routed,
}

impl DatapathKind {
    pub const ALL: [DatapathKind; 6] = [
        Self::Ebpf,
        Self::Iptables,
        Self::IptablesLegacy,
        Self::Nftables,
        Self::NftablesFlowtable,
        Self::Routed,
    ];

    /// The names, for messages: `ebpf, iptables, ... or routed`.
    pub fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
        let (last, rest) = names.split_last().expect("datapaths");
        format!("{} or {last}", rest.join(", "))
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ebpf => "ebpf",
            Self::Iptables => "iptables",
            Self::IptablesLegacy => "iptables-legacy",
            Self::Nftables => "nftables",
            Self::NftablesFlowtable => "nftables-flowtable",
            Self::Routed => "routed",
        }
    }

    /// Whether the datapath turns bridge netfilter on in the namespace it runs in (the
    /// netfilter datapaths, whose rules see bridged frames through it): outside a
    /// sandbox only these change the setting, and only these put it back.
    pub fn uses_bridge_netfilter(self) -> bool {
        matches!(
            self,
            Self::Iptables | Self::IptablesLegacy | Self::Nftables | Self::NftablesFlowtable
        )
    }

    /// Parses a name as `--datapath` takes it.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::Routed),
            _ => Self::ALL.into_iter().find(|k| k.name() == s),
        }
    }

    /// Parses `--datapath`, or says which names there are.
    pub fn parse(s: &str) -> Result<Self> {
        Self::from_name(s)
            .ok_or_else(|| Error::Invalid(format!("unknown datapath {s:?}: use {}", Self::names())))
    }
}

/// What a container's interface is: a veth pair, or a netkit pair (Linux 6.7+), whose
/// programs run in the container's own transmit path. Both are L2 ports of the lab's
/// bridge, so the seed's addressing, ARP and gateway are the same on either.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    #[default]
    Veth,
    Netkit,
}

impl Device {
    pub const ALL: [Device; 2] = [Self::Veth, Self::Netkit];

    pub fn name(self) -> &'static str {
        match self {
            Self::Veth => "veth",
            Self::Netkit => "netkit",
        }
    }

    /// Parses `--device`, or says which devices there are.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| Error::Invalid(format!("unknown device {s:?}: use veth or netkit")))
    }
}

/// A fault point of the eBPF datapath, for tests (`up --fault`, hidden from `--help`):
/// it makes the programs fail where nothing else can make them fail at will, so that a
/// test sees that failure counted and exported like any other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Every rewrite of a packet's headers fails before it changes anything, as a
    /// kernel helper's store or checksum fix would (out of memory for a copy of a
    /// shared packet): the packet is dropped and counted as `rewrite_failed`.
    RewriteFailed,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Self::RewriteFailed => "rewrite_failed",
        }
    }

    /// Parses `--fault`, or says which fault points there are.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "rewrite_failed" => Ok(Self::RewriteFailed),
            _ => Err(Error::Invalid(format!(
                "unknown fault {s:?}: the one fault point is rewrite_failed"
            ))),
        }
    }
}

/// Tunables of the NAT, set by `netlab up`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatOptions {
    /// SNAT source ports, inclusive.
    pub port_min: u16,
    pub port_max: u16,
    /// Conntrack timeouts, seconds after the last packet: TCP established, TCP closing
    /// one way (FIN_WAIT, CLOSE_WAIT), UDP before it is a two-way stream, ICMP echo...
    pub tcp_established_secs: u32,
    pub tcp_transitory_secs: u32,
    pub udp_secs: u32,
    pub icmp_secs: u32,
    /// ...TCP being opened (SYN_SENT, SYN_RECV), TIME_WAIT, after a reset, and UDP once
    /// it is a two-way stream.
    #[serde(default = "defaults::tcp_syn")]
    pub tcp_syn_secs: u32,
    #[serde(default = "defaults::tcp_time_wait")]
    pub tcp_time_wait_secs: u32,
    #[serde(default = "defaults::tcp_close")]
    pub tcp_close_secs: u32,
    #[serde(default = "defaults::udp_stream")]
    pub udp_stream_secs: u32,
    /// eBPF only: established flows the conntrack table holds (it is sized at `up`).
    #[serde(default = "defaults::conntrack_max")]
    pub conntrack_max: u32,
    /// eBPF only: forward packets from TC straight to where they go (the endpoint
    /// programs and `bpf_redirect_peer`), skipping the bridge and the host's stack.
    #[serde(default = "defaults::yes")]
    pub fast_path: bool,
    /// eBPF only: milliseconds between two runs of the conntrack garbage collector.
    #[serde(default = "defaults::gc_interval")]
    pub gc_interval_ms: u32,
}

mod defaults {
    use netlab_common::config::Config;

    pub fn tcp_syn() -> u32 {
        Config::default().tcp_syn_secs
    }
    pub fn tcp_time_wait() -> u32 {
        Config::default().tcp_time_wait_secs
    }
    pub fn tcp_close() -> u32 {
        Config::default().tcp_close_secs
    }
    pub fn udp_stream() -> u32 {
        Config::default().udp_stream_secs
    }
    pub fn conntrack_max() -> u32 {
        netlab_common::maps::CONNTRACK_MAX_DEFAULT
    }
    pub fn yes() -> bool {
        true
    }
    pub fn gc_interval() -> u32 {
        netlab_common::config::GC_INTERVAL_MS_DEFAULT
    }
}

impl Default for NatOptions {
    fn default() -> Self {
        let c = netlab_common::config::Config::default();
        Self {
            port_min: c.nat_port_min,
            port_max: c.nat_port_max,
            tcp_established_secs: c.tcp_established_secs,
            tcp_transitory_secs: c.tcp_fin_secs,
            udp_secs: c.udp_secs,
            icmp_secs: c.icmp_secs,
            tcp_syn_secs: c.tcp_syn_secs,
            tcp_time_wait_secs: c.tcp_time_wait_secs,
            tcp_close_secs: c.tcp_close_secs,
            udp_stream_secs: c.udp_stream_secs,
            conntrack_max: netlab_common::maps::CONNTRACK_MAX_DEFAULT,
            fast_path: true,
            gc_interval_ms: netlab_common::config::GC_INTERVAL_MS_DEFAULT,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_names_round_trip() {
        let f = Fault::RewriteFailed;
        assert_eq!(Fault::parse(f.name()).unwrap(), f);
        let e = Fault::parse("everything").unwrap_err().to_string();
        assert!(e.contains("the one fault point is rewrite_failed"), "{e}");
    }

    #[test]
    fn datapath_names_round_trip() {
        for k in DatapathKind::ALL {
            assert_eq!(DatapathKind::from_name(k.name()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
            assert_eq!(serde_json::from_str::<DatapathKind>(&json).unwrap(), k);
        }
        assert_eq!(DatapathKind::from_name("none"), Some(DatapathKind::Routed));
        assert_eq!(DatapathKind::from_name("pf"), None);
        assert_eq!(
            DatapathKind::names(),
            "ebpf, iptables, iptables-legacy, nftables, nftables-flowtable or routed"
        );
        assert!(DatapathKind::parse("pf").is_err());
    }

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
