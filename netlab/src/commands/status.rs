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
    let s = Session::open(lab)?;
    let tables = match s.datapath().inspect() {
        Some(i) => i.tables(&s.state)?,
        None => Vec::new(),
    };
    let state = s.state;
    // What of each container is gone (removed behind netlab's back), if anything.
    let gone: Vec<Option<String>> = state
        .containers
        .iter()
        .map(|c| crate::topology::missing_part(&state, c))
        .collect::<Result<_>>()?;
    let bridge_up = crate::topology::bridge_present(&state)?;
    // The uplink's addresses as it has them now, which may not be `up`'s.
    let uplink_now = crate::topology::uplink_addrs_now(&state)?;
    let uplink_up = uplink_now.is_some();
    let (now4, now6) = uplink_now.unwrap_or_default();
    let now6 = now6.filter(|_| state.uplink_addr6.is_some());
    let health = |i: usize| match &gone[i] {
        Some(what) => format!("{what} gone"),
        None => "up".to_string(),
    };
    if args.json {
        let v = json!({
            "lab": state.name,
            "sandbox": state.sandbox,
            "datapath": state.datapath,
            "device": state.device,
            "fault": state.fault.map(|f| f.name()),
            "subnet": state.subnet,
            "subnet6": state.subnet6,
            "bridge": {
                "name": state.bridge, "address": state.bridge_addr,
                "address6": state.bridge_addr6(),
                "state": if bridge_up { "up" } else { "gone" },
            },
            "uplink": {
                "name": state.uplink, "address": now4, "address6": now6,
                "address_at_up": state.uplink_addr, "address6_at_up": state.uplink_addr6,
                "state": if uplink_up { "up" } else { "gone" },
            },
            "nat": state.nat,
            "containers": state.containers.iter().enumerate().map(|(i, c)| json!({
                "name": c.name, "network": c.network, "ip": c.ip,
                "ip6": state.container_ip6(c), "netns": c.netns,
                "veth": c.veth, "mac": c.mac, "runtime_netns": c.runtime_netns,
                "state": health(i),
                "ports": state.ports_of(&c.name).map(|p| p.spec.to_string()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "tables": tables,
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
    if let Some(f) = state.fault {
        println!(
            "fault      {} (a tests' fault point: the datapath fails on purpose)",
            f.name()
        );
    }
    println!("device     {}", state.device.name());
    println!(
        "bridge     {}{}",
        state.bridge_text(),
        if bridge_up {
            String::new()
        } else {
            format!(
                " GONE (removed behind netlab's back): `netlab down --lab {0}`, then `up` again",
                state.name
            )
        }
    );
    let at_up = |now: Option<String>, then: Option<String>| match (now, then) {
        (Some(n), t) if Some(&n) == t.as_ref() => format!(" {n}"),
        (Some(n), Some(t)) => format!(" {n} ({t} at up)"),
        (Some(n), None) => format!(" {n}"),
        (None, Some(t)) => format!(" none ({t} at up)"),
        (None, None) => String::new(),
    };
    if uplink_up {
        println!(
            "uplink     {}{}{}",
            state.uplink,
            at_up(
                now4.map(|a| a.to_string()),
                Some(state.uplink_addr.to_string())
            ),
            at_up(
                now6.map(|a| a.to_string()),
                state.uplink_addr6.map(|a| a.to_string())
            ),
        );
    } else {
        let then: Vec<String> = std::iter::once(state.uplink_addr.to_string())
            .chain(state.uplink_addr6.map(|a| a.to_string()))
            .collect();
        println!(
            "uplink     {} GONE (removed behind netlab's back; it had {} at up)",
            state.uplink,
            then.join(" ")
        );
    }
    // The routed datapath translates nothing.
    if state.datapath != crate::lab::DatapathKind::Routed {
        println!("nat ports  {}-{}", state.nat.port_min, state.nat.port_max);
    }
    if !tables.is_empty() {
        println!();
        println!(
            "{:<12} {:>12} {:>12} {:>12}",
            "TABLE", "ENTRIES", "IN USE", "MEMORY"
        );
        for t in &tables {
            println!(
                "{:<12} {:>12} {:>12} {:>10.1} MiB",
                t.name,
                t.max_entries,
                t.in_use,
                t.memory_bytes as f64 / (1 << 20) as f64
            );
        }
        let total: u64 = tables.iter().map(|t| t.memory_bytes).sum();
        println!(
            "conntrack    {} flows established at most, {:.0} bytes of table per flow",
            state.nat.conntrack_max,
            total as f64 / state.nat.conntrack_max as f64
        );
    }
    println!();
    // A dual-stack lab shows each container's IPv6 address too.
    let dual = state.subnet6.is_some();
    let text6 = |c: &crate::lab::Container| {
        state
            .container_ip6(c)
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".into())
    };
    // As wide as the longest address (`--ip6` may spell all eight groups).
    let w6 = state
        .containers
        .iter()
        .map(|c| text6(c).len())
        .max()
        .unwrap_or(0)
        .max(26);
    let ip6 = |c: &crate::lab::Container| match dual {
        true => format!(" {:<w6$}", text6(c)),
        false => String::new(),
    };
    // As wide as the longest name (a runtime's are `<64 hex digits>-eth0`).
    let wn = state
        .containers
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0)
        .max(20);
    let netns = |c: &crate::lab::Container| match (&c.netns, &c.runtime_netns) {
        (_, Some(p)) => p.display().to_string(),
        (Some(n), None) => n.clone(),
        (None, None) => "(host)".into(),
    };
    let wns = state
        .containers
        .iter()
        .map(|c| netns(c).len())
        .max()
        .unwrap_or(0)
        .max(16);
    println!(
        "{:<wn$} {:<8} {:<16}{} {:<16} {:<wns$} PORTS",
        "CONTAINER",
        "NETWORK",
        "IP",
        if dual {
            format!(" {:<w6$}", "IPV6")
        } else {
            String::new()
        },
        "STATE",
        "NETNS"
    );
    for (i, c) in state.containers.iter().enumerate() {
        println!(
            "{:<wn$} {:<8} {:<16}{} {:<16} {:<wns$} {}",
            c.name,
            c.network.name(),
            c.ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
            ip6(c),
            health(i),
            netns(c),
            ports_text(&state, &c.name),
        );
    }
    Ok(())
}

/// A container's published ports as `docker ps` lists them, in netlab's spec syntax:
/// `8080:80/tcp, 53:53/udp`; past [`PORTS_SHOWN`] the rest counted (`netlab ports NAME`
/// lists them all); `-` for none.
fn ports_text(state: &crate::lab::LabState, name: &str) -> String {
    let specs: Vec<String> = state.ports_of(name).map(|p| p.spec.to_string()).collect();
    match specs.len() {
        0 => "-".into(),
        n if n <= PORTS_SHOWN => specs.join(", "),
        n => format!(
            "{}, and {} more (netlab ports --lab {} {name})",
            specs[..PORTS_SHOWN].join(", "),
            n - PORTS_SHOWN,
            state.name
        ),
    }
}

/// The most ports a container's line shows.
const PORTS_SHOWN: usize = 4;
