//! `netlab status [--json]`.

use serde_json::json;

use crate::{error::Result, ops::Session};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON (the format is stable; see the README).
    #[arg(long)]
    pub json: bool,
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    let state = Session::open(lab)?.state;
    if args.json {
        let v = json!({
            "lab": state.name,
            "sandbox": state.sandbox,
            "datapath": state.datapath,
            "subnet": state.subnet,
            "bridge": {"name": state.bridge, "address": state.bridge_addr},
            "uplink": {"name": state.uplink, "address": state.uplink_addr},
            "nat": state.nat,
            "containers": state.containers.iter().map(|c| json!({
                "name": c.name, "network": c.network, "ip": c.ip, "netns": c.netns,
                "veth": c.veth, "mac": c.mac, "runtime_netns": c.runtime_netns,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(());
    }
    println!(
        "lab        {}{}",
        state.name,
        if state.sandbox { " (sandbox)" } else { "" }
    );
    println!("datapath   {}", state.datapath.name());
    println!(
        "bridge     {} {}/{}",
        state.bridge, state.bridge_addr, state.subnet.prefix
    );
    println!("uplink     {} {}", state.uplink, state.uplink_addr);
    println!("nat ports  {}-{}", state.nat.port_min, state.nat.port_max);
    println!();
    println!("{:<20} {:<8} {:<16} NETNS", "CONTAINER", "NETWORK", "IP");
    for c in &state.containers {
        let ns = match (&c.netns, &c.runtime_netns) {
            (_, Some(p)) => p.display().to_string(),
            (Some(n), None) => n.clone(),
            (None, None) => "(host)".into(),
        };
        println!(
            "{:<20} {:<8} {:<16} {ns}",
            c.name,
            c.network.name(),
            c.ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
        );
    }
    Ok(())
}
