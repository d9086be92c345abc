//! `netlab run NAME`: a container is a network namespace on the lab's bridge.

use std::net::Ipv4Addr;

use crate::{
    error::{Error, Result},
    netlink::netns,
    publish::{self, PortSpec},
    state::{Container, Locked, Network},
    topology::{self, names},
};

#[derive(clap::Args)]
pub struct Args {
    /// Container name (letters, digits, '_', '.', '-').
    pub name: String,
    /// Address on the lab subnet (default: the lowest free one).
    #[arg(long)]
    pub ip: Option<Ipv4Addr>,
    /// `bridge` (own namespace on the lab bridge), `none` (only `lo`) or `host`
    /// (the lab host's namespace), as Docker's --network.
    #[arg(long, value_enum, default_value = "bridge")]
    pub network: Network,
    /// Publish a port, Docker's syntax: [HOST_IP:]HOST_PORT[-END]:CTR_PORT[-END][/tcp|/udp].
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    names::check_container(&args.name)?;
    let specs: Vec<PortSpec> = args
        .publish
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_>>()?;
    if !specs.is_empty() && args.network != Network::Bridge {
        return Err(Error::Invalid("-p needs --network bridge".into()));
    }
    let lock = Locked::acquire(lab)?;
    let mut state = lock.require()?;
    if state.container(&args.name).is_some() {
        return Err(Error::Conflict(format!(
            "container {} already exists in lab {lab}",
            args.name
        )));
    }
    let ns = names::container_netns(lab, &args.name);
    if args.network != Network::Host && netns::exists(&ns) {
        return Err(Error::Conflict(format!(
            "network namespace {ns} already exists"
        )));
    }
    let ip = match (args.network, args.ip) {
        (Network::Bridge, Some(ip)) => {
            state.subnet.check_host(ip)?;
            if let Some(other) = state.containers.iter().find(|c| c.ip == Some(ip)) {
                return Err(Error::Conflict(format!(
                    "address {ip} is already used by container {}",
                    other.name
                )));
            }
            Some(ip)
        }
        (Network::Bridge, None) => {
            Some(state.subnet.next_free(&state.taken_ips()).ok_or_else(|| {
                Error::Conflict(format!("no free address left in {}", state.subnet))
            })?)
        }
        (_, Some(_)) => return Err(Error::Invalid("--ip needs --network bridge".into())),
        (_, None) => None,
    };
    let c = Container {
        name: args.name.clone(),
        network: args.network,
        netns: (args.network != Network::Host).then_some(ns),
        ip,
        veth: (args.network == Network::Bridge).then(|| names::veth(lab, &args.name)),
    };
    topology::add_container(&state, &c)?;
    state.containers.push(c);
    let published =
        publish::publish(&mut state, &args.name, &specs).and_then(|_| lock.save(&state));
    if let Err(e) = published {
        // Nothing half-done: no container without the ports it was asked to publish.
        let _ = publish::unpublish(&mut state, &args.name, &specs);
        let c = state.containers.pop().expect("just pushed");
        let _ = topology::remove_container(&state, &c);
        return Err(e);
    }
    match ip {
        Some(ip) => println!("{} {ip}", args.name),
        None => println!("{}", args.name),
    }
    Ok(())
}
