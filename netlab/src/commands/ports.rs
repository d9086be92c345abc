//! `netlab ports [NAME] [--json]`: published ports, and their counters on the eBPF
//! datapath.

use serde::Serialize;

use crate::{
    error::{Error, Result},
    lab::Published,
    ops::Session,
};

#[derive(clap::Args)]
pub struct Args {
    /// Only this container's ports (as `docker port NAME`): the host ports picked for a
    /// `-p` without one are here.
    pub name: Option<String>,
    /// Print JSON (the format is stable; see the README).
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Port {
    container: String,
    spec: String,
    host_ip: Option<std::net::IpAddr>,
    /// The families the port answers on: `ipv4`, `ipv6`, or both in a dual-stack lab.
    families: Vec<&'static str>,
    proto: &'static str,
    host_port: u16,
    host_end: u16,
    /// The container's IPv4 address the port leads to (a port that answers on IPv4).
    ctr_ip: Option<std::net::Ipv4Addr>,
    /// The container's IPv6 address the port leads to (a port that answers on IPv6).
    ctr_ip6: Option<std::net::Ipv6Addr>,
    ctr_port: u16,
    ctr_end: u16,
    /// Counters (eBPF datapath only): packets and bytes both ways, connections opened.
    packets: Option<u64>,
    bytes: Option<u64>,
    connections: Option<u64>,
    /// Where it leads, as the table shows it.
    #[serde(skip)]
    to: String,
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    let s = Session::open(lab)?;
    let state = &s.state;
    let mine: Vec<Published>;
    let listed = match &args.name {
        None => &state.ports,
        Some(name) => {
            if state.container(name).is_none() {
                return Err(Error::Invalid(format!(
                    "no container {name} in lab {}",
                    state.name
                )));
            }
            mine = state.ports_of(name).cloned().collect();
            &mine
        }
    };
    let counters = crate::datapath::port_counters(&*s.datapath(), state, listed)?;
    let mut ports = Vec::new();
    for (p, stats) in listed.iter().zip(counters) {
        let ctr_ip6 = state.ip6_of(p.ctr_ip).filter(|_| p.spec.on_ipv6());
        let mut families = Vec::new();
        if p.spec.on_ipv4() {
            families.push("ipv4");
        }
        if ctr_ip6.is_some() {
            families.push("ipv6");
        }
        ports.push(Port {
            container: p.container.clone(),
            spec: p.spec.to_string(),
            host_ip: p.spec.host_ip,
            families,
            ctr_ip6,
            proto: p.spec.proto.name(),
            host_port: p.spec.host_port,
            host_end: p.spec.host_end,
            ctr_ip: p.spec.on_ipv4().then_some(p.ctr_ip),
            ctr_port: p.spec.ctr_port,
            ctr_end: p.spec.ctr_end(),
            packets: stats.map(|s| s.packets),
            bytes: stats.map(|s| s.bytes),
            connections: stats.map(|s| s.connections),
            to: state.targets(p),
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ports).expect("json"));
        return Ok(());
    }
    // A dual-stack lab says which family each port answers on.
    let dual = state.subnet6.is_some();
    let family = |p: &Port| match dual {
        true => format!(" {:<9}", p.families.join(",")),
        false => String::new(),
    };
    // PUBLISHED and TO as wide as their widest cells (an IPv6 host address, a
    // dual-stack target of two addresses).
    let to = ports.iter().map(|p| p.to.len()).max().unwrap_or(0).max(22);
    let spec = ports
        .iter()
        .map(|p| p.spec.len())
        .max()
        .unwrap_or(0)
        .max(32);
    // As wide as the longest container name (a runtime's are `<64 hex digits>-eth0`).
    let name = ports
        .iter()
        .map(|p| p.container.len())
        .max()
        .unwrap_or(0)
        .max(12);
    println!(
        "{:<name$} {:<spec$}{} {:<to$} {:>10} {:>12} {:>8}",
        "CONTAINER",
        "PUBLISHED",
        if dual { " FAMILY   " } else { "" },
        "TO",
        "PACKETS",
        "BYTES",
        "CONNS"
    );
    let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    for p in &ports {
        println!(
            "{:<name$} {:<spec$}{} {:<to$} {:>10} {:>12} {:>8}",
            p.container,
            p.spec,
            family(p),
            p.to,
            n(p.packets),
            n(p.bytes),
            n(p.connections)
        );
    }
    Ok(())
}
