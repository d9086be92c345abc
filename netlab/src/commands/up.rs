//! `netlab up`: build the lab, or nothing at all.

use crate::{
    datapath::{self, DatapathKind, NatOptions},
    error::{Error, Result},
    netlink::netns,
    state::{LabState, Locked, STATE_VERSION},
    topology::{self, ipam::Subnet, names},
};

#[derive(clap::Args)]
pub struct Args {
    /// Build a self-contained world (`<lab>-host` and `<lab>-wan` namespaces) and leave
    /// the machine's own network untouched. The demo, tests and benchmarks use it.
    #[arg(long)]
    pub sandbox: bool,
    /// How NAT and port publishing are done: eBPF, iptables (nf_tables backend),
    /// iptables-legacy, nftables, or routed (no NAT; sandbox only).
    #[arg(long, value_enum, default_value = "ebpf")]
    pub datapath: DatapathKind,
    /// The containers' subnet; the bridge takes its first address.
    #[arg(long, default_value = "172.18.0.0/16")]
    pub subnet: String,
    /// The interface to masquerade behind (default: the default route's). Not with --sandbox.
    #[arg(long)]
    pub uplink: Option<String>,
    /// Source ports for masquerade, MIN-MAX; keep it outside the host's ephemeral range.
    #[arg(long, default_value = "20000-29999")]
    pub nat_ports: String,
    /// Conntrack timeout of an established TCP flow, in seconds.
    #[arg(long, default_value_t = 7440)]
    pub tcp_timeout: u32,
    /// Conntrack timeout of a TCP flow being opened or closed, in seconds.
    #[arg(long, default_value_t = 120)]
    pub tcp_transitory_timeout: u32,
    /// Conntrack timeout of a UDP flow, in seconds.
    #[arg(long, default_value_t = 30)]
    pub udp_timeout: u32,
    /// Conntrack timeout of an ICMP echo flow, in seconds.
    #[arg(long, default_value_t = 30)]
    pub icmp_timeout: u32,
    /// eBPF datapath: forward every packet through the host's stack, without the fast
    /// path (fib lookup + redirect from TC) for established flows.
    #[arg(long)]
    pub no_fast_path: bool,
    /// Load the datapath with its debug logs on (read them with `netlab logs`).
    #[arg(long, env = "NETLAB_DEBUG")]
    pub debug: bool,
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    let subnet: Subnet = args.subnet.parse()?;
    let (port_min, port_max) = datapath::parse_port_range(&args.nat_ports)?;
    for (name, v) in [
        ("--tcp-timeout", args.tcp_timeout),
        ("--tcp-transitory-timeout", args.tcp_transitory_timeout),
        ("--udp-timeout", args.udp_timeout),
        ("--icmp-timeout", args.icmp_timeout),
    ] {
        if v == 0 {
            return Err(Error::Invalid(format!("{name} must be at least 1 second")));
        }
    }
    if args.datapath != DatapathKind::Ebpf && (args.no_fast_path || args.debug) {
        let flag = if args.debug {
            "--debug"
        } else {
            "--no-fast-path"
        };
        return Err(Error::Invalid(format!(
            "{flag} applies to the ebpf datapath only, not to {}",
            args.datapath.name()
        )));
    }
    if args.sandbox && args.uplink.is_some() {
        return Err(Error::Invalid(
            "--uplink cannot be used with --sandbox: the sandbox has its own uplink".into(),
        ));
    }
    if args.datapath == DatapathKind::Routed && !args.sandbox {
        return Err(Error::Invalid(
            "--datapath routed (no NAT, the benchmark's baseline) needs --sandbox".into(),
        ));
    }
    let nat = NatOptions {
        port_min,
        port_max,
        tcp_established_secs: args.tcp_timeout,
        tcp_transitory_secs: args.tcp_transitory_timeout,
        udp_secs: args.udp_timeout,
        icmp_secs: args.icmp_timeout,
        fast_path: !args.no_fast_path,
    };

    let lock = Locked::acquire(lab)?;
    if lock.load()?.is_some() {
        return Err(Error::Conflict(format!(
            "lab {lab} is already up: run `netlab down --lab {lab}` first"
        )));
    }
    for ns in [names::host_netns(lab), names::wan_netns(lab)] {
        if netns::exists(&ns) {
            return Err(Error::Conflict(format!(
                "network namespace {ns} is left from an earlier lab {lab}: run `netlab down --lab {lab}`"
            )));
        }
    }

    let mut state = LabState {
        version: STATE_VERSION,
        name: lab.to_string(),
        sandbox: args.sandbox,
        datapath: args.datapath,
        subnet,
        bridge: names::bridge(lab),
        bridge_addr: subnet.gateway(),
        uplink: String::new(),
        uplink_addr: std::net::Ipv4Addr::UNSPECIFIED,
        host_netns: args.sandbox.then(|| names::host_netns(lab)),
        wan_netns: args.sandbox.then(|| names::wan_netns(lab)),
        ip_forward_was: None,
        nat,
        debug: args.debug,
        containers: Vec::new(),
        ports: Vec::new(),
    };
    let dp = datapath::for_kind(args.datapath);
    let built = (|| -> Result<()> {
        let (uplink, addr) = if args.sandbox {
            topology::build_sandbox(lab)?
        } else {
            topology::find_uplink(args.uplink.as_deref())?
        };
        state.uplink = uplink;
        state.uplink_addr = addr;
        if subnet.contains(addr) {
            return Err(Error::Invalid(format!(
                "subnet {subnet} contains the uplink address {addr}: pick another --subnet"
            )));
        }
        state.ip_forward_was = Some(topology::build_bridge(&state)?);
        dp.setup(&state, &nat, args.debug)
    })();
    if let Err(e) = built {
        // Nothing half-done: remove whatever was made.
        let _ = dp.teardown(&state);
        let _ = topology::teardown(&state);
        let _ = lock.remove();
        return Err(e);
    }
    lock.save(&state)?;
    println!(
        "lab {lab} is up: bridge {} {}/{}, uplink {} {}{}, datapath {}",
        state.bridge,
        state.bridge_addr,
        subnet.prefix,
        state.uplink,
        state.uplink_addr,
        if args.sandbox { " (sandbox)" } else { "" },
        args.datapath.name()
    );
    Ok(())
}
