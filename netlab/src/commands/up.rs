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
    /// Source ports for masquerade, MIN-MAX; outside the host's ephemeral range.
    #[arg(long, default_value = "20000-29999")]
    pub nat_ports: String,
    /// Conntrack timeout of an established TCP flow, in seconds.
    #[arg(long, default_value_t = 7440, value_parser = timeout(), allow_negative_numbers = true)]
    pub tcp_timeout: u64,
    /// Conntrack timeout of a TCP flow being opened (SYN sent, SYN-ACK seen), in seconds.
    #[arg(long, default_value_t = 30, value_parser = timeout(), allow_negative_numbers = true)]
    pub tcp_syn_timeout: u64,
    /// Conntrack timeout of a TCP flow closed one way (FIN_WAIT, CLOSE_WAIT), in seconds.
    #[arg(long, default_value_t = 120, value_parser = timeout(), allow_negative_numbers = true)]
    pub tcp_transitory_timeout: u64,
    /// Conntrack timeout of a TCP flow closed both ways (TIME_WAIT), in seconds.
    #[arg(long, default_value_t = 120, value_parser = timeout(), allow_negative_numbers = true)]
    pub tcp_time_wait_timeout: u64,
    /// Conntrack timeout of a reset TCP flow, in seconds.
    #[arg(long, default_value_t = 10, value_parser = timeout(), allow_negative_numbers = true)]
    pub tcp_close_timeout: u64,
    /// Conntrack timeout of a UDP flow until it is a two-way stream, in seconds.
    #[arg(long, default_value_t = 30, value_parser = timeout(), allow_negative_numbers = true)]
    pub udp_timeout: u64,
    /// Conntrack timeout of a two-way UDP stream, in seconds.
    #[arg(long, default_value_t = 120, value_parser = timeout(), allow_negative_numbers = true)]
    pub udp_stream_timeout: u64,
    /// Conntrack timeout of an ICMP echo flow, in seconds.
    #[arg(long, default_value_t = 30, value_parser = timeout(), allow_negative_numbers = true)]
    pub icmp_timeout: u64,
    /// eBPF datapath: how many established flows the conntrack table holds (sized at
    /// `up`; a flow past it stays in the table of flows being opened, which may evict).
    #[arg(long, default_value_t = netlab_common::maps::CONNTRACK_MAX_DEFAULT,
        value_parser = clap::value_parser!(u32).range(
            netlab_common::maps::CONNTRACK_MAX_MIN as i64..=netlab_common::maps::CONNTRACK_MAX_MAX as i64),
        allow_negative_numbers = true)]
    pub conntrack_max: u32,
    /// eBPF datapath: milliseconds between two runs of the in-kernel conntrack garbage
    /// collector (each run looks at a bounded slice of the established flows).
    #[arg(long, default_value_t = netlab_common::config::GC_INTERVAL_MS_DEFAULT,
        value_parser = clap::value_parser!(u32).range(10..=600_000), allow_negative_numbers = true)]
    pub gc_interval: u32,
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
    let (port_min, port_max) = parse_port_range(&args.nat_ports)?;
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
            tcp_established_secs: secs(args.tcp_timeout),
            tcp_transitory_secs: secs(args.tcp_transitory_timeout),
            udp_secs: secs(args.udp_timeout),
            icmp_secs: secs(args.icmp_timeout),
            tcp_syn_secs: secs(args.tcp_syn_timeout),
            tcp_time_wait_secs: secs(args.tcp_time_wait_timeout),
            tcp_close_secs: secs(args.tcp_close_timeout),
            udp_stream_secs: secs(args.udp_stream_timeout),
            conntrack_max: args.conntrack_max,
            fast_path: !args.no_fast_path,
            gc_interval_ms: args.gc_interval,
        },
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
