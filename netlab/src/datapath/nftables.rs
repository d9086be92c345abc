//! The nftables datapath: the iptables datapath's behaviour in one table, `ip netlab`,
//! in the lab host's namespace. Published ports live in maps, so a new connection
//! costs a hash lookup however many ports there are (kube-proxy's nftables mode does
//! the same), and publishing is one element added in one transaction.
//!
//! ```text
//! map ports      HOST_IP . PROTO . HP : CTR . CP     ports on one host address
//! map ports_any  PROTO . HP : CTR . CP               ports on every local address
//! set published  CTR . PROTO . CP                    what forward lets in
//! raw_prerouting   direct access to SUBNET from outside the bridge: drop
//! nat_prerouting,  fib daddr type local: dnat through @ports, then @ports_any
//!   nat_output
//! nat_postrouting  masquerade SUBNET leaving by another interface; hairpin; 127/8
//! forward          established to BR; from BR; to @published; the rest to BR dropped
//! ```
//!
//! Port ranges are expanded, one element per port. All changes go through `nft -f -`,
//! one transaction each; teardown deletes the table.

use std::{collections::BTreeSet, fmt::Write as _};

use super::{Datapath, netfilter};
use crate::{
    error::{Error, Result},
    lab::{LabState, NatOptions, Published},
    topology,
};

pub const TABLE: &str = "netlab";

pub struct Nftables;

/// Equivalent to `nft -f - < script` in the lab host: one transaction.
fn apply(state: &LabState, script: &str) -> Result<()> {
    netfilter::run(state, "nft", &["-f", "-"], Some(script)).map(drop)
}

fn table_exists(state: &LabState) -> Result<bool> {
    let tables = netfilter::run(state, "nft", &["list", "tables", "ip"], None)?;
    Ok(tables
        .lines()
        .any(|l| l.trim() == format!("table ip {TABLE}")))
}

/// The table `setup` installs.
fn ruleset(state: &LabState, nat: &NatOptions) -> String {
    let (br, subnet) = (&state.bridge, state.subnet);
    let (min, max) = (nat.port_min, nat.port_max);
    // Docker's FORWARD policy is DROP; a lab on the machine's own namespace drops only
    // what goes to its bridge, as the last rule below does.
    let policy = if state.sandbox { "drop" } else { "accept" };
    format!(
        r#"table ip {TABLE} {{
	map ports {{
		type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
	}}
	map ports_any {{
		type inet_proto . inet_service : ipv4_addr . inet_service
	}}
	set published {{
		type ipv4_addr . inet_proto . inet_service
	}}
	chain raw_prerouting {{
		type filter hook prerouting priority raw; policy accept;
		iifname != "{br}" ip daddr {subnet} counter drop
		iifname != "lo" ip daddr 127.0.0.0/8 counter drop
	}}
	chain nat_prerouting {{
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local jump publish
	}}
	chain nat_output {{
		type nat hook output priority -100; policy accept;
		fib daddr type local jump publish
	}}
	chain publish {{
		dnat ip to ip daddr . meta l4proto . th dport map @ports
		dnat ip to meta l4proto . th dport map @ports_any
	}}
	chain nat_postrouting {{
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr {subnet} oifname != "{br}" meta l4proto {{ tcp, udp }} masquerade to :{min}-{max}
		ip saddr {subnet} oifname != "{br}" masquerade
		ip saddr {subnet} oifname "{br}" ct status dnat masquerade
		ip saddr 127.0.0.0/8 oifname "{br}" masquerade
	}}
	chain forward {{
		type filter hook forward priority filter; policy {policy};
		oifname "{br}" ct state established,related accept
		iifname "{br}" accept
		oifname "{br}" ip daddr . meta l4proto . th dport @published accept
		oifname "{br}" drop
	}}
}}
"#
    )
}

/// The map and set elements of some published ports.
#[derive(Default)]
struct Elements {
    ports: Vec<String>,
    ports_any: Vec<String>,
    published: BTreeSet<String>,
}

fn elements(ports: &[Published]) -> Elements {
    let mut e = Elements::default();
    for port in ports {
        let (p, ctr) = (port.spec.proto.name(), port.ctr_ip);
        for (hp, cp) in netfilter::pairs(&port.spec) {
            match port.spec.host_ip {
                Some(ip) => e.ports.push(format!("{ip} . {p} . {hp} : {ctr} . {cp}")),
                None => e.ports_any.push(format!("{p} . {hp} : {ctr} . {cp}")),
            }
            e.published.insert(published_key(port, cp));
        }
    }
    e
}

fn published_key(port: &Published, ctr_port: u16) -> String {
    format!("{} . {} . {ctr_port}", port.ctr_ip, port.spec.proto.name())
}

/// `add element` / `delete element` commands, a thousand elements to a line.
fn element_commands<'a>(
    op: &str,
    set: &str,
    elems: impl IntoIterator<Item = &'a String>,
) -> String {
    let elems: Vec<&String> = elems.into_iter().collect();
    let mut s = String::new();
    for chunk in elems.chunks(1000) {
        let list: Vec<&str> = chunk.iter().map(|e| e.as_str()).collect();
        let _ = writeln!(s, "{op} element ip {TABLE} {set} {{ {} }}", list.join(", "));
    }
    s
}

impl Datapath for Nftables {
    fn setup(&self, state: &LabState) -> Result<()> {
        if table_exists(state)? {
            return Err(Error::Conflict(format!(
                "nftables table ip {TABLE} already exists in the namespace of lab {}'s host: one nftables lab per namespace; take the other one down first (or use --sandbox)",
                state.name
            )));
        }
        netfilter::prepare_host(state)?;
        apply(state, &ruleset(state, &state.nat))
    }

    fn teardown(&self, state: &LabState) -> Result<()> {
        if !topology::host_ns(state).exists() || !table_exists(state)? {
            return Ok(());
        }
        netfilter::run(state, "nft", &["delete", "table", "ip", TABLE], None).map(drop)
    }

    fn publish(&self, state: &LabState, ports: &[Published]) -> Result<()> {
        netfilter::require_conntrack_tool()?;
        netfilter::hairpin(state, ports)?;
        let e = elements(ports);
        let mut script = element_commands("add", "ports", &e.ports);
        script += &element_commands("add", "ports_any", &e.ports_any);
        script += &element_commands("add", "published", &e.published);
        apply(state, &script)?;
        netfilter::forget_stale(state, ports)
    }

    fn unpublish(&self, state: &LabState, ports: &[Published]) -> Result<()> {
        netfilter::require_conntrack_tool()?;
        let mine = elements(ports);
        // Another published port may lead to the same container port: keep it open.
        let others = elements(
            &state
                .ports
                .iter()
                .filter(|p| !ports.contains(p))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let mut script = element_commands("delete", "ports", &mine.ports);
        script += &element_commands("delete", "ports_any", &mine.ports_any);
        script += &element_commands(
            "delete",
            "published",
            mine.published.difference(&others.published),
        );
        apply(state, &script)?;
        netfilter::forget_flows(state, ports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::PortSpec;

    fn published(spec: &str, ctr: &str) -> Published {
        Published {
            container: "web".into(),
            spec: spec.parse::<PortSpec>().unwrap(),
            ctr_ip: ctr.parse().unwrap(),
            id: 1,
        }
    }

    #[test]
    fn elements_per_port() {
        let e = elements(&[
            published("198.51.100.2:8080:80", "172.18.0.2"),
            published("53-54:5353-5354/udp", "172.18.0.3"),
            published("9090:80", "172.18.0.2"),
        ]);
        assert_eq!(e.ports, ["198.51.100.2 . tcp . 8080 : 172.18.0.2 . 80"]);
        assert_eq!(
            e.ports_any,
            [
                "udp . 53 : 172.18.0.3 . 5353",
                "udp . 54 : 172.18.0.3 . 5354",
                "tcp . 9090 : 172.18.0.2 . 80"
            ]
        );
        // Two host ports lead to 172.18.0.2:80: one element.
        assert_eq!(e.published.len(), 3);
    }

    #[test]
    fn commands_are_chunked() {
        let elems: Vec<String> = (0..2500)
            .map(|i| format!("tcp . {i} : 1.2.3.4 . 80"))
            .collect();
        let s = element_commands("add", "ports_any", &elems);
        assert_eq!(s.lines().count(), 3);
        assert!(s.starts_with("add element ip netlab ports_any { tcp . 0 : 1.2.3.4 . 80, "));
        assert_eq!(element_commands("add", "ports", &Vec::new()), "");
    }
}
