//! `netlab run NAME`: a container is a network namespace on the lab's bridge.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{
    error::{Error, Result},
    lab::{Network, PortRequest},
    ops::{self, AttachRequest, Session},
};

fn network(s: &str) -> Result<Network> {
    Network::from_name(s)
        .ok_or_else(|| Error::Invalid(format!("unknown network {s:?}: use bridge, none or host")))
}

#[derive(clap::Args)]
pub struct Args {
    /// Container name (letters, digits, '_', '.', '-').
    pub name: String,
    /// Address on the lab subnet (default: the lowest free one).
    #[arg(long)]
    pub ip: Option<Ipv4Addr>,
    /// Address on the lab's IPv6 subnet (a lab with --ipv6; default: the IPv4 host
    /// number in it), as Docker's --ip6.
    #[arg(long)]
    pub ip6: Option<Ipv6Addr>,
    /// `bridge` (own namespace on the lab bridge), `none` (only `lo`) or `host`
    /// (the lab host's namespace), as Docker's --network.
    #[arg(long, default_value = "bridge", value_parser = network)]
    pub network: Network,
    /// Publish a port, Docker's syntax: [HOST_IP:][HOST_PORT[-END]:]CTR_PORT[-END][/tcp|/udp]
    /// (an IPv6 HOST_IP in brackets: [::]:8080:80; an empty one every address: :8080:80).
    /// Without a host port (80, ::80, 127.0.0.1::80, 0:80) netlab picks a free one; a host
    /// range for one container port (9000-9005:80) gets its first free port. `netlab
    /// ports NAME` shows them.
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// The container interface's MAC (default: a random one), as Docker's --mac-address.
    #[arg(long, value_name = "MAC")]
    pub mac_address: Option<String>,
    /// Docker's `run -d`, taken as Docker users type it: a container (a namespace) runs
    /// nothing in the foreground.
    #[arg(short = 'd', long = "detach", hide = true)]
    pub _detach: bool,
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    crate::lab::names::check_container(&args.name)?;
    let mut specs: Vec<PortRequest> = Vec::new();
    for p in &args.publish {
        specs.extend(PortRequest::parse(p)?);
    }
    if !specs.is_empty() && args.network != Network::Bridge {
        return Err(Error::Invalid("-p needs --network bridge".into()));
    }
    let mac = args
        .mac_address
        .as_deref()
        .map(crate::lab::check_mac)
        .transpose()?;
    let mut s = Session::open(lab)?;
    let c = ops::attach(
        &mut s,
        &AttachRequest {
            mac,
            ip6: args.ip6,
            // In the same operation: no container without the ports it was asked to
            // publish, even after a crash.
            ports: specs,
            ..AttachRequest::own(&args.name, args.network, args.ip)
        },
    )?;
    let mut out = match (c.ip, s.state.container_ip6(&c)) {
        (Some(ip), Some(ip6)) => format!("{} {ip} {ip6}\n", args.name),
        (Some(ip), None) => format!("{} {ip}\n", args.name),
        _ => format!("{}\n", args.name),
    };
    // Then its ports as `publish` prints them, picked host ports included.
    for p in s.state.ports_of(&args.name) {
        out += &format!("{} -> {}\n", p.spec, s.state.targets(p));
    }
    print!("{out}");
    Ok(())
}
