//! `netlab up`: build the lab, or nothing at all.

use crate::{
    error::{Error, Result},
    lab::{DatapathKind, Device, Fault, NatOptions, Subnet, Subnet6, options::parse_port_range},
    ops::{self, UpRequest},
};

#[derive(clap::Args)]
pub struct Args {
    /// Build a self-contained world (`<lab>-host` and `<lab>-wan` namespaces) and leave
    /// the machine's own network untouched. The demo, tests and benchmarks use it.
    #[arg(long)]
    pub sandbox: bool,
    /// How NAT and port publishing are done: ebpf, iptables (nf_tables backend),
    /// iptables-legacy, nftables, nftables-flowtable (nftables with netfilter's
    /// flowtable fast path), or routed (no NAT; sandbox only).
    #[arg(long, default_value = "ebpf", value_parser = DatapathKind::parse)]
    pub datapath: DatapathKind,
    /// The containers' interfaces: veth pairs, or netkit pairs (Linux 6.7+), whose
    /// eBPF program runs in the container's own transmit path.
    #[arg(long, default_value = "veth", value_parser = Device::parse)]
    pub device: Device,
    /// The containers' subnet; the bridge takes its first address.
    #[arg(long, default_value = "172.18.0.0/16")]
    pub subnet: String,
    /// Dual-stack containers: each gets an IPv6 address beside its IPv4 one, masqueraded
    /// behind the uplink's, and published ports answer on both families (every
    /// datapath; outside a sandbox, IPv6 forwarding must be on already).
    #[arg(long)]
    pub ipv6: bool,
    /// The containers' IPv6 subnet (with --ipv6); the bridge takes its ::1. Default: a
    /// /64 spelling the IPv4 subnet's network address, fd00:ac12::/64 for 172.18.0.0/16.
    #[arg(long)]
    pub subnet6: Option<String>,
    /// The interface to masquerade behind (default: the default route's). Not with --sandbox.
    #[arg(long)]
    pub uplink: Option<String>,
    /// Source ports for masquerade, MIN-MAX; outside the host's ephemeral range
    /// [default: 20000-29999].
    #[arg(long)]
    pub nat_ports: Option<String>,
    /// Conntrack timeout of an established TCP flow, in seconds [default: 7440].
    #[arg(long, value_parser = timeout(), allow_negative_numbers = true)]
    pub tcp_timeout: Option<u64>,
    /// Conntrack timeout of a TCP flow being opened (SYN sent, SYN-ACK seen), in seconds [default: 30].
    #[arg(long, value_parser = timeout(), allow_negative_numbers = true)]
    pub tcp_syn_timeout: Option<u64>,
    /// Conntrack timeout of a TCP flow closed one way (FIN_WAIT, CLOSE_WAIT), in seconds [default: 120].
    #[arg(long, value_parser = timeout(), allow_negative_numbers = true)]
    pub tcp_transitory_timeout: Option<u64>,
    /// Conntrack timeout of a TCP flow closed both ways (TIME_WAIT), in seconds [default: 120].
    #[arg(long, value_parser = timeout(), allow_negative_numbers = true)]
    pub tcp_time_wait_timeout: Option<u64>,
    /// Conntrack timeout of a reset TCP flow, in seconds [default: 10].
    #[arg(long, value_parser = timeout(), allow_negative_numbers = true)]
    pub tcp_close_timeout: Option<u64>,
    /// Conntrack timeout of a UDP flow until it is a two-way stream, in seconds [default: 30].
    #[arg(long, value_parser = timeout(), allow_negative_numbers = true)]
    pub udp_timeout: Option<u64>,
    /// Conntrack timeout of a two-way UDP stream, in seconds [default: 120].
    #[arg(long, value_parser = timeout(), allow_negative_numbers = true)]
    pub udp_stream_timeout: Option<u64>,
    /// Conntrack timeout of an ICMP echo flow, in seconds [default: 30].
    #[arg(long, value_parser = timeout(), allow_negative_numbers = true)]
    pub icmp_timeout: Option<u64>,
    /// eBPF datapath: how many established flows the conntrack table holds (sized at
    /// `up`; a flow past it stays in the table of flows being opened, which may evict)
    /// [default: 262144].
    #[arg(long,
        value_parser = clap::value_parser!(u32).range(
            netlab_common::maps::CONNTRACK_MAX_MIN as i64..=netlab_common::maps::CONNTRACK_MAX_MAX as i64),
        allow_negative_numbers = true)]
    pub conntrack_max: Option<u32>,
    /// eBPF datapath: milliseconds between two runs of the in-kernel conntrack garbage
    /// collector (each run looks at a bounded slice of the established flows)
    /// [default: 250].
    #[arg(long, value_parser = clap::value_parser!(u32).range(10..=600_000), allow_negative_numbers = true)]
    pub gc_interval: Option<u32>,
    /// eBPF datapath: forward every packet through the bridge and the host's stack,
    /// without the fast path (the endpoint programs and bpf_redirect_peer).
    #[arg(long)]
    pub no_fast_path: bool,
    /// Load the datapath with its debug logs on (read them with `netlab logs`).
    #[arg(long, env = "NETLAB_DEBUG", value_parser = clap::builder::BoolishValueParser::new())]
    pub debug: bool,
    /// Tests only, eBPF datapath: load the programs with a fault point on
    /// (`rewrite_failed`: every rewrite of a packet fails, and the packet is dropped and
    /// counted), to see a failure nothing else can cause counted like any other.
    #[arg(long, hide = true, value_parser = Fault::parse)]
    pub fault: Option<Fault>,
}

/// A conntrack timeout's range, in seconds (1 s to a week), said by clap for a value
/// out of it ("-1 is not in 1..=604800").
fn timeout() -> clap::builder::RangedI64ValueParser<u64> {
    clap::builder::RangedI64ValueParser::new().range(1..=604_800)
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    let d = NatOptions::default();
    // The flags given, at whatever value: a datapath they do not apply to refuses them.
    let given: Vec<&'static str> = [
        ("--nat-ports", args.nat_ports.is_some()),
        ("--tcp-timeout", args.tcp_timeout.is_some()),
        ("--tcp-syn-timeout", args.tcp_syn_timeout.is_some()),
        (
            "--tcp-transitory-timeout",
            args.tcp_transitory_timeout.is_some(),
        ),
        (
            "--tcp-time-wait-timeout",
            args.tcp_time_wait_timeout.is_some(),
        ),
        ("--tcp-close-timeout", args.tcp_close_timeout.is_some()),
        ("--udp-timeout", args.udp_timeout.is_some()),
        ("--udp-stream-timeout", args.udp_stream_timeout.is_some()),
        ("--icmp-timeout", args.icmp_timeout.is_some()),
        ("--conntrack-max", args.conntrack_max.is_some()),
        ("--gc-interval", args.gc_interval.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, is)| is.then_some(flag))
    .collect();
    let (port_min, port_max) = match &args.nat_ports {
        Some(range) => parse_port_range(range)?,
        None => (d.port_min, d.port_max),
    };
    let secs = |given: Option<u64>, default: u32| given.map(secs).unwrap_or(default);
    let subnet: Subnet = args.subnet.parse()?;
    let subnet6 = match (args.ipv6, &args.subnet6) {
        (false, Some(_)) => return Err(Error::Invalid("--subnet6 needs --ipv6".into())),
        (false, None) => None,
        (true, Some(given)) => Some(given.parse()?),
        (true, None) => Some(Subnet6::for_subnet(&subnet)),
    };
    let req = UpRequest {
        lab: lab.to_string(),
        sandbox: args.sandbox,
        datapath: args.datapath,
        device: args.device,
        subnet,
        subnet6,
        uplink: args.uplink,
        bridge: None,
        nat: NatOptions {
            port_min,
            port_max,
            tcp_established_secs: secs(args.tcp_timeout, d.tcp_established_secs),
            tcp_transitory_secs: secs(args.tcp_transitory_timeout, d.tcp_transitory_secs),
            udp_secs: secs(args.udp_timeout, d.udp_secs),
            icmp_secs: secs(args.icmp_timeout, d.icmp_secs),
            tcp_syn_secs: secs(args.tcp_syn_timeout, d.tcp_syn_secs),
            tcp_time_wait_secs: secs(args.tcp_time_wait_timeout, d.tcp_time_wait_secs),
            tcp_close_secs: secs(args.tcp_close_timeout, d.tcp_close_secs),
            udp_stream_secs: secs(args.udp_stream_timeout, d.udp_stream_secs),
            conntrack_max: args.conntrack_max.unwrap_or(d.conntrack_max),
            fast_path: !args.no_fast_path,
            gc_interval_ms: args.gc_interval.unwrap_or(d.gc_interval_ms),
        },
        given,
        debug: args.debug,
        fault: args.fault,
    };
    let state = ops::up(&req)?;
    println!(
        "lab {lab} is up: bridge {}, uplink {} {}{}{}, datapath {}{}",
        state.bridge_text(),
        state.uplink,
        state.uplink_addr,
        state
            .uplink_addr6
            .map(|a| format!(" {a}"))
            .unwrap_or_default(),
        if state.sandbox { " (sandbox)" } else { "" },
        state.datapath.name(),
        match state.device {
            Device::Veth => "",
            Device::Netkit => ", netkit devices",
        }
    );
    Ok(())
}

/// A timeout as given: any number is taken here, so that one out of range gets the
/// range it must be in ([`NatOptions`]' check), not the width of an integer.
fn secs(given: u64) -> u32 {
    u32::try_from(given).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// The defaults `up --help` names are the ones taken when a flag is not given.
    #[test]
    fn the_help_names_the_defaults_taken() {
        let d = NatOptions::default();
        let mut cli = crate::cli::Cli::command();
        let help = cli
            .find_subcommand_mut("up")
            .expect("up")
            .render_long_help()
            .to_string();
        for (flag, value) in [
            ("--nat-ports", format!("{}-{}", d.port_min, d.port_max)),
            ("--tcp-timeout", d.tcp_established_secs.to_string()),
            ("--tcp-syn-timeout", d.tcp_syn_secs.to_string()),
            (
                "--tcp-transitory-timeout",
                d.tcp_transitory_secs.to_string(),
            ),
            ("--tcp-time-wait-timeout", d.tcp_time_wait_secs.to_string()),
            ("--tcp-close-timeout", d.tcp_close_secs.to_string()),
            ("--udp-timeout", d.udp_secs.to_string()),
            ("--udp-stream-timeout", d.udp_stream_secs.to_string()),
            ("--icmp-timeout", d.icmp_secs.to_string()),
            ("--conntrack-max", d.conntrack_max.to_string()),
            ("--gc-interval", d.gc_interval_ms.to_string()),
        ] {
            let entry = help
                .split("\n      --")
                .find(|e| e.starts_with(&flag[2..]) && e[flag.len() - 2..].starts_with(' '))
                .unwrap_or_else(|| panic!("{flag} not in the help"));
            let text: String = entry.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                text.contains(&format!("[default: {value}]")),
                "{flag}: {text}"
            );
        }
    }
}
