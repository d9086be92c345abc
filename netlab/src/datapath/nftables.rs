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
//! one transaction each; teardown deletes the table. A dual-stack lab (`--ipv6`) has a
//! second table, `ip6 netlab`, with the same chains on the IPv6 subnet (without the
//! 127/8 rules, and `::1` left alone in output); both are written in one transaction.
//!
//! `nftables-flowtable` is the same table plus netfilter's own fast path, a flowtable:
//!
//! ```text
//! flowtable fastpath   hook ingress on the uplink and every container's veth
//! forward              established TCP/UDP between the bridge and another
//!                      interface: flow add @fastpath (before the rules above)
//! ```
//!
//! From then on a packet of that flow is looked up at its device's ingress hook,
//! translated there (the flowtable entry keeps the NAT) and sent straight out —
//! to the uplink's neighbour, or through the bridge's forwarding path directly to the
//! container's veth — without prerouting, forward or postrouting. The devices are
//! the bridge's ports, not the bridge: a container's packet meets its veth's ingress
//! hook before the bridge sees it, and the kernel resolves a route through the bridge
//! down to the port (`dev_fill_forward_path`) only when that port is in the flowtable.
//! `attach` and `detach` add and remove each container's veth. Hairpin flows (bridge
//! to bridge) and the host's own traffic stay on the classic path; FIN and RST take
//! a flow out of the flowtable, back to conntrack. A dual-stack lab's `ip6 netlab` has
//! a flowtable of its own (a flowtable belongs to its table) on the same devices.

use std::{
    collections::{BTreeSet, HashMap},
    fmt::Write as _,
};

use super::{Datapath, netfilter};
use crate::{
    error::{Error, Result},
    lab::{Container, LabState, NatOptions, Published},
    topology,
};

pub const TABLE: &str = "netlab";
/// The flowtable of `nftables-flowtable`.
pub const FLOWTABLE: &str = "fastpath";
/// Its hook, in every command that names it (adding devices must repeat it).
const FLOWTABLE_HOOK: &str = "hook ingress priority filter;";

pub struct Nftables {
    /// Established flows through a flowtable (`nftables-flowtable`).
    flowtable: bool,
}

impl Nftables {
    /// The `nftables` datapath.
    pub fn plain() -> Nftables {
        Nftables { flowtable: false }
    }

    /// The `nftables-flowtable` datapath.
    pub fn with_flowtable() -> Nftables {
        Nftables { flowtable: true }
    }
}

/// The tables of a lab: `ip netlab`, and `ip6 netlab` with `--ipv6` (the same chains on
/// the IPv6 subnet, without the 127/8 rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
}

fn families(state: &LabState) -> &'static [Family] {
    if state.subnet6.is_some() {
        &[Family::V4, Family::V6]
    } else {
        &[Family::V4]
    }
}

/// Equivalent to `nft -f - < script` in the lab host: one transaction.
fn apply(state: &LabState, script: &str) -> Result<()> {
    netfilter::run(state, "nft", &["-f", "-"], Some(script)).map(drop)
}

/// The comment on the lab's tables: what tells them from a table of the same name
/// someone else made (as the alias does the lab's links).
fn mark(state: &LabState) -> String {
    format!("netlab:{}", state.name)
}

/// Whether the lab's table of `family` is there and is the lab's (carries its mark).
/// Listed terse: without the port maps' elements.
fn table_is_the_labs(state: &LabState, family: Family) -> Result<bool> {
    if !table_exists(state, family)? {
        return Ok(false);
    }
    let table = netfilter::run(
        state,
        "nft",
        &["-t", "list", "table", family.name(), TABLE],
        None,
    )?;
    let mark = format!("comment \"{}\"", mark(state));
    Ok(table.lines().any(|l| l.trim() == mark))
}

fn table_exists(state: &LabState, family: Family) -> Result<bool> {
    let f = family.name();
    let tables = netfilter::run(state, "nft", &["list", "tables", f], None)?;
    Ok(tables
        .lines()
        .any(|l| l.trim() == format!("table {f} {TABLE}")))
}

/// Fails with a one-line error unless the kernel has nftables flowtables: `nft --check`
/// of a flowtable with no device, which the kernel validates and throws away.
fn require_flowtables(state: &LabState) -> Result<()> {
    require_flowtables_in(&topology::host_ns(state))
}

/// [`require_flowtables`] in namespace `host` (CNI's STATUS, before any lab is up).
pub fn require_flowtables_in(host: &std::path::Path) -> Result<()> {
    let probe =
        "table ip netlab_probe {\n\tflowtable f {\n\t\thook ingress priority filter;\n\t}\n}\n";
    match netfilter::run_in(host, "nft", &["--check", "-f", "-"], Some(probe)) {
        Ok(_) => Ok(()),
        Err(Error::Command { detail, .. }) => {
            let said = detail
                .split("; ")
                .find_map(|l| l.split_once("Error: ").map(|(_, e)| e))
                .unwrap_or(&detail);
            Err(Error::Invalid(format!(
                "datapath nftables-flowtable needs nftables flowtables, which this kernel does not have (CONFIG_NF_FLOW_TABLE and CONFIG_NFT_FLOW_OFFLOAD; `nft add flowtable`: {said}): use --datapath nftables"
            )))
        }
        Err(e) => Err(e),
    }
}

/// The flowtable and the forward rules that fill it: flows between the bridge and
/// another interface, once established.
fn flowtable_parts(state: &LabState) -> (String, String) {
    let (br, uplink) = (&state.bridge, &state.uplink);
    let table = format!(
        "\tflowtable {FLOWTABLE} {{\n\t\t{FLOWTABLE_HOOK}\n\t\tdevices = {{ \"{uplink}\" }};\n\t}}\n"
    );
    let rules = format!(
        "\t\tiifname \"{br}\" oifname != \"{br}\" meta l4proto {{ tcp, udp }} ct state established flow add @{FLOWTABLE}\n\
         \t\toifname \"{br}\" iifname != \"{br}\" meta l4proto {{ tcp, udp }} ct state established flow add @{FLOWTABLE}\n"
    );
    (table, rules)
}

/// `add flowtable` / `delete flowtable` of one device (a container's veth), in the
/// flowtable of each of the lab's tables (one transaction).
fn flowtable_device(state: &LabState, op: &str, device: &str) -> String {
    families(state)
        .iter()
        .map(|f| {
            format!(
                "{op} flowtable {} {TABLE} {FLOWTABLE} {{ {FLOWTABLE_HOOK} devices = {{ \"{device}\" }}; }}\n",
                f.name()
            )
        })
        .collect()
}

/// Whether the flowtable of the lab's table of `family` lists `device`.
fn flowtable_has(state: &LabState, family: Family, device: &str) -> Result<bool> {
    let listed = netfilter::run(
        state,
        "nft",
        &["list", "flowtable", family.name(), TABLE, FLOWTABLE],
        None,
    )?;
    Ok(listed.lines().filter(|l| l.contains("devices")).any(|l| {
        l.split(|c: char| !(c.is_ascii_alphanumeric() || "-_.@".contains(c)))
            .any(|w| w == device)
    }))
}

/// The table `setup` installs for one family.
fn ruleset(state: &LabState, nat: &NatOptions, flowtable: bool, family: Family) -> String {
    let br = &state.bridge;
    let mark = mark(state);
    let (f, addr, subnet, localnet) = match (family, state.subnet6) {
        (Family::V6, Some(s6)) => ("ip6", "ipv6_addr", s6.to_string(), false),
        _ => ("ip", "ipv4_addr", state.subnet.to_string(), true),
    };
    // ::1 is never routed off the host: a connection to [::1]:PORT is refused rather
    // than translated into a black hole (as in Docker's ip6tables rules).
    let not_lo6 = if localnet { "" } else { "ip6 daddr != ::1 " };
    // Host-local publishing on 127.0.0.1 (route_localnet): IPv4 only.
    let (raw_localnet, nat_localnet) = if localnet {
        (
            "\t\tiifname != \"lo\" ip daddr 127.0.0.0/8 counter drop\n".to_string(),
            format!("\t\tip saddr 127.0.0.0/8 oifname \"{br}\" masquerade\n"),
        )
    } else {
        (String::new(), String::new())
    };
    let (flowtable, offload) = if flowtable {
        flowtable_parts(state)
    } else {
        (String::new(), String::new())
    };
    let (min, max) = (nat.port_min, nat.port_max);
    // Docker's FORWARD policy is DROP; a lab drops only what goes to its bridge, as
    // the last rule below does, so that another network in the same namespace (a CNI
    // network beside the lab, on iptables too) is not dropped by it.
    format!(
        r#"table {f} {TABLE} {{
	comment "{mark}"
	map ports {{
		type {addr} . inet_proto . inet_service : {addr} . inet_service
	}}
	map ports_any {{
		type inet_proto . inet_service : {addr} . inet_service
	}}
	set published {{
		type {addr} . inet_proto . inet_service
	}}
{flowtable}	chain raw_prerouting {{
		type filter hook prerouting priority raw; policy accept;
		iifname != "{br}" {f} daddr {subnet} fib daddr type != local counter drop
{raw_localnet}	}}
	chain nat_prerouting {{
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local jump publish
	}}
	chain nat_output {{
		type nat hook output priority -100; policy accept;
		{not_lo6}fib daddr type local jump publish
	}}
	chain publish {{
		dnat {f} to {f} daddr . meta l4proto . th dport map @ports
		dnat {f} to meta l4proto . th dport map @ports_any
	}}
	chain nat_postrouting {{
		type nat hook postrouting priority srcnat; policy accept;
		{f} saddr {subnet} oifname != "{br}" meta l4proto {{ tcp, udp }} masquerade to :{min}-{max}
		{f} saddr {subnet} oifname != "{br}" masquerade
		{f} saddr {subnet} oifname "{br}" ct status dnat masquerade
{nat_localnet}	}}
	chain forward {{
		type filter hook forward priority filter; policy accept;
{offload}		oifname "{br}" ct state established,related accept
		iifname "{br}" accept
		oifname "{br}" {f} daddr . meta l4proto . th dport @published accept
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

/// The elements of `ports` in one family's table: a port on an address of one family
/// has none in the other; a port on every address leads to the container's address of
/// each.
fn elements(state: &LabState, ports: &[Published], family: Family) -> Elements {
    let mut e = Elements::default();
    for port in ports {
        let p = port.spec.proto.name();
        let (host, ctr) = match family {
            Family::V4 if port.spec.on_ipv4() => (
                port.spec.host_ip4().map(|a| a.to_string()),
                port.ctr_ip.to_string(),
            ),
            Family::V6 if port.spec.on_ipv6() => match state.ip6_of(port.ctr_ip) {
                Some(ip6) => (port.spec.host_ip6().map(|a| a.to_string()), ip6.to_string()),
                None => continue,
            },
            _ => continue,
        };
        for (hp, cp) in netfilter::pairs(&port.spec) {
            match &host {
                Some(ip) => e.ports.push(format!("{ip} . {p} . {hp} : {ctr} . {cp}")),
                None => e.ports_any.push(format!("{p} . {hp} : {ctr} . {cp}")),
            }
            e.published.insert(format!("{ctr} . {p} . {cp}"));
        }
    }
    e
}

/// Whether the tables hold every element of `ports`, in each family, the maps' leading
/// where they should (a key alone is not enough: an element changed behind netlab's
/// back to lead elsewhere is not the port).
fn has_elements(state: &LabState, ports: &[Published]) -> bool {
    families(state).iter().all(|&family| {
        let e = elements(state, ports, family);
        let sets: [(&str, Vec<&String>); 3] = [
            ("ports", e.ports.iter().collect()),
            ("ports_any", e.ports_any.iter().collect()),
            ("published", e.published.iter().collect()),
        ];
        sets.iter().all(|(set, wanted)| {
            // A hundred keys a call: nft 1.0.6 crashes on a few hundred in one `get`.
            wanted.chunks(100).all(|chunk| {
                let keys: Vec<&str> = chunk
                    .iter()
                    .map(|e| e.split(" : ").next().unwrap_or(e))
                    .collect();
                let element = format!("{{ {} }}", keys.join(", "));
                let Ok(listed) = netfilter::run(
                    state,
                    "nft",
                    &["get", "element", family.name(), TABLE, set, &element],
                    None,
                ) else {
                    return false;
                };
                let listed = listed_elements(&listed);
                chunk.iter().all(|e| listed.contains(e.as_str()))
            })
        })
    })
}

/// The elements `nft get element` (or `list`) shows, each as netlab writes them: the
/// list is wrapped over lines, its elements separated by commas.
fn listed_elements(listed: &str) -> BTreeSet<String> {
    let one_line = listed.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(start) = one_line.find("elements = {") else {
        return BTreeSet::new();
    };
    let rest = &one_line[start + "elements = {".len()..];
    rest[..rest.find('}').unwrap_or(rest.len())]
        .split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect()
}

/// Deletes, by key, the elements of `withdrawn` (per family) that the lab's own tables
/// still hold, in one transaction: a family whose table is gone, or is not the lab's,
/// has none.
fn delete_what_is_left(state: &LabState, withdrawn: &[(Family, Elements)]) -> Result<()> {
    let key = |e: &str| e.split(" : ").next().unwrap_or(e).to_string();
    let mut script = String::new();
    for (family, e) in withdrawn {
        if !table_is_the_labs(state, *family)? {
            continue;
        }
        let sets: [(&str, &str, Vec<&String>); 3] = [
            ("map", "ports", e.ports.iter().collect()),
            ("map", "ports_any", e.ports_any.iter().collect()),
            ("set", "published", e.published.iter().collect()),
        ];
        for (kind, set, wanted) in sets {
            if wanted.is_empty() {
                continue;
            }
            let f = family.name();
            let listed = netfilter::run(state, "nft", &["list", kind, f, TABLE, set], None)?;
            let held: BTreeSet<String> = listed_elements(&listed).iter().map(|e| key(e)).collect();
            let gone: Vec<String> = wanted
                .iter()
                .map(|e| key(e))
                .filter(|k| held.contains(k))
                .collect();
            script += &element_commands("delete", *family, set, &gone);
        }
    }
    if script.is_empty() {
        return Ok(());
    }
    apply(state, &script)
}

/// How many rules each chain of a table's text holds (as `nft list` prints it, or as
/// [`ruleset`] writes it): the lines of a chain's block but its `type` line.
fn rules_per_chain(text: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let mut chain: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("chain ") {
            let name = name.trim_end_matches('{').trim().to_string();
            counts.insert(name.clone(), 0);
            chain = Some(name);
        } else if line == "}" {
            chain = None;
        } else if let Some(c) = &chain
            && !line.is_empty()
            && !line.starts_with("type ")
            && !line.starts_with("comment ")
        {
            *counts.get_mut(c).expect("counted") += 1;
        }
    }
    counts
}

/// `add element` / `delete element` commands, a thousand elements to a line.
fn element_commands<'a>(
    op: &str,
    family: Family,
    set: &str,
    elems: impl IntoIterator<Item = &'a String>,
) -> String {
    let f = family.name();
    let elems: Vec<&String> = elems.into_iter().collect();
    let mut s = String::new();
    for chunk in elems.chunks(1000) {
        let list: Vec<&str> = chunk.iter().map(|e| e.as_str()).collect();
        let _ = writeln!(
            s,
            "{op} element {f} {TABLE} {set} {{ {} }}",
            list.join(", ")
        );
    }
    s
}

impl Datapath for Nftables {
    /// Also refuses a flowtable lab on a kernel without flowtables here, before anything
    /// of the lab is made or changed.
    fn check_free(&self, state: &LabState) -> Result<()> {
        if self.flowtable {
            require_flowtables(state)?;
        }
        for &family in families(state) {
            if table_exists(state, family)? {
                return Err(Error::Conflict(format!(
                    "nftables table {} {TABLE} already exists in the namespace of lab {}'s host: one nftables lab per namespace; take the other one down first (or use --sandbox)",
                    family.name(),
                    state.name
                )));
            }
        }
        Ok(())
    }

    fn setup(&self, state: &LabState) -> Result<()> {
        netfilter::prepare_host(state)?;
        // Both families' tables in one transaction.
        let tables: String = families(state)
            .iter()
            .map(|&f| ruleset(state, &state.nat, self.flowtable, f))
            .collect();
        apply(state, &tables)?;
        netfilter::set_timeouts(state)
    }

    fn attach(&self, state: &LabState, c: &Container) -> Result<()> {
        match (&c.veth, self.flowtable) {
            (Some(veth), true) => apply(state, &flowtable_device(state, "add", veth)),
            _ => Ok(()),
        }
    }

    fn detach(&self, state: &LabState, c: &Container) -> Result<()> {
        let (Some(veth), true) = (&c.veth, self.flowtable) else {
            return Ok(());
        };
        // A lab whose host namespace is gone (or someone else's now) has no flowtable.
        if !topology::host_is_the_labs(state) {
            return Ok(());
        }
        if apply(state, &flowtable_device(state, "delete", veth)).is_ok() {
            return Ok(());
        }
        // A veth that is gone already left the flowtables with it, and a lab that is
        // half gone has no flowtable left to leave: it leaves those it is still in, one
        // by one.
        for &f in families(state) {
            if table_exists(state, f)? && flowtable_has(state, f, veth)? {
                let one = format!(
                    "delete flowtable {} {TABLE} {FLOWTABLE} {{ {FLOWTABLE_HOOK} devices = {{ \"{veth}\" }}; }}\n",
                    f.name()
                );
                apply(state, &one)?;
            }
        }
        Ok(())
    }

    fn teardown(&self, state: &LabState) -> Result<()> {
        // A host namespace that is gone, or was made again under its name, holds
        // nothing of the lab's.
        if !topology::host_is_the_labs(state) {
            return Ok(());
        }
        // A table of the name that does not carry the lab's mark is someone else's.
        for &family in families(state) {
            if table_is_the_labs(state, family)? {
                netfilter::run(
                    state,
                    "nft",
                    &["delete", "table", family.name(), TABLE],
                    None,
                )?;
            }
        }
        Ok(())
    }

    fn publish(&self, state: &LabState, ports: &[Published]) -> Result<()> {
        netfilter::require_conntrack_tool()?;
        netfilter::hairpin(state, ports)?;
        // Both families in one transaction.
        let mut script = String::new();
        for &family in families(state) {
            let e = elements(state, ports, family);
            script += &element_commands("add", family, "ports", &e.ports);
            script += &element_commands("add", family, "ports_any", &e.ports_any);
            script += &element_commands("add", family, "published", &e.published);
        }
        if let Err(e) = apply(state, &script) {
            // The lab's table gone (`nft flush ruleset`, a firewall reload): say so,
            // rather than nft's "No such file or directory".
            for &family in families(state) {
                if !table_is_the_labs(state, family)? {
                    return Err(Error::Invalid(format!(
                        "lab {lab}'s nftables table `{} {TABLE}` is gone (removed behind netlab's back: `nft flush ruleset`, a firewall reload): `netlab down --lab {lab}`, then `up` again",
                        family.name(),
                        lab = state.name
                    )));
                }
            }
            return Err(e);
        }
        netfilter::forget_stale(state, ports)
    }

    fn unpublish(&self, state: &LabState, ports: &[Published]) -> Result<()> {
        netfilter::require_conntrack_tool()?;
        let others = state.other_ports(ports);
        // Each element is added, then deleted, in the one transaction (of both
        // families): adding one that is there changes nothing, and one already gone
        // (someone's `nft delete element`, a firewall reload) does not fail the
        // withdrawal of the others.
        let mut script = String::new();
        let mut withdrawn = Vec::new();
        for &family in families(state) {
            let mut mine = elements(state, ports, family);
            // Another published port may lead to the same container port: keep it open.
            let others = elements(state, &others, family);
            mine.published = &mine.published - &others.published;
            for verb in ["add", "delete"] {
                script += &element_commands(verb, family, "ports", &mine.ports);
                script += &element_commands(verb, family, "ports_any", &mine.ports_any);
                script += &element_commands(verb, family, "published", &mine.published);
            }
            withdrawn.push((family, mine));
        }
        if apply(state, &script).is_err() {
            // The lab's table gone (`nft flush ruleset`, a firewall reload) or an
            // element changed to lead elsewhere (a restored snapshot), which `add`
            // cannot add again: what the lab's tables still hold goes, by key.
            delete_what_is_left(state, &withdrawn)?;
        }
        netfilter::forget_flows(state, ports)
    }

    /// The lab's table of each family, and in it each chain holding as many rules as
    /// `setup` wrote (a chain flushed, a rule deleted, shows).
    fn missing_setup(&self, state: &LabState) -> Result<Option<String>> {
        for &family in families(state) {
            if !table_is_the_labs(state, family)? {
                return Ok(Some(format!("table {} {TABLE}", family.name())));
            }
            let listed = netfilter::run(
                state,
                "nft",
                &["-t", "list", "table", family.name(), TABLE],
                None,
            )?;
            let have = rules_per_chain(&listed);
            let want = rules_per_chain(&ruleset(state, &state.nat, self.flowtable, family));
            for (chain, n) in &want {
                if have.get(chain).copied().unwrap_or(0) < *n {
                    return Ok(Some(format!(
                        "chain {chain} of table {} {TABLE}",
                        family.name()
                    )));
                }
            }
        }
        Ok(None)
    }

    /// The ports some of whose elements the tables lack. `nft get element` of many keys
    /// fails when one is missing: all of them are asked for a hundred at a time, and
    /// when something is missing, halves of them until the ports lacking it are found.
    fn absent(&self, state: &LabState, ports: &[Published]) -> Result<Vec<Published>> {
        // Halves that have all their elements are done in one look; only the halves
        // with a missing one are looked into further.
        let mut gone = Vec::new();
        let mut todo = vec![ports];
        while let Some(part) = todo.pop() {
            if part.is_empty() || has_elements(state, part) {
                continue;
            }
            match part {
                [one] => gone.push(one.clone()),
                _ => {
                    let (a, b) = part.split_at(part.len() / 2);
                    todo.extend([b, a]);
                }
            }
        }
        Ok(gone)
    }

    /// `publish` and `unpublish` are each one transaction: the elements of `ports` are
    /// all in the maps, or none; one of them says which.
    fn withdraw_leftovers(&self, state: &LabState, ports: &[Published]) -> Result<()> {
        // A port of one family has its elements in that family's table only.
        let (family, e) = match families(state)
            .iter()
            .map(|&f| (f, elements(state, ports, f)))
            .find(|(_, e)| !e.ports.is_empty() || !e.ports_any.is_empty())
        {
            Some(found) => found,
            None => return netfilter::forget_flows(state, ports),
        };
        let probe = match (e.ports.first(), e.ports_any.first()) {
            (Some(p), _) => ("ports", p),
            (None, Some(p)) => ("ports_any", p),
            (None, None) => return Ok(()),
        };
        let key = probe.1.split(" : ").next().unwrap_or(probe.1);
        let element = format!("{{ {key} }}");
        let present = netfilter::run(
            state,
            "nft",
            &["get", "element", family.name(), TABLE, probe.0, &element],
            None,
        )
        .is_ok();
        if present {
            self.unpublish(state, ports)
        } else {
            netfilter::forget_flows(state, ports)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_elements_are_read_whole() {
        let listed = "table ip netlab {\n\tmap ports_any {\n\t\ttype inet_proto . inet_service : ipv4_addr . inet_service\n\t\telements = { tcp . 8080 : 10.77.0.2 . 7000,\n\t\t\t     udp . 53 : 10.77.0.3 . 5353 }\n\t}\n}\n";
        let got = listed_elements(listed);
        assert!(got.contains("tcp . 8080 : 10.77.0.2 . 7000"));
        assert!(got.contains("udp . 53 : 10.77.0.3 . 5353"));
        // A value that only begins like the one listed is not it.
        assert!(!got.contains("tcp . 8080 : 10.77.0.2 . 700"));
    }
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
        let ports = [
            published("198.51.100.2:8080:80", "172.18.0.2"),
            published("53-54:5353-5354/udp", "172.18.0.3"),
            published("9090:80", "172.18.0.2"),
        ];
        let mut lab = state();
        let e = elements(&lab, &ports, Family::V4);
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
        // In IPv6, the ports on every address, to the containers' IPv6 addresses.
        lab.subnet6 = Some("fd00:ac12::/64".parse().unwrap());
        let e6 = elements(&lab, &ports, Family::V6);
        assert!(e6.ports.is_empty());
        assert_eq!(
            e6.ports_any,
            [
                "udp . 53 : fd00:ac12::3 . 5353",
                "udp . 54 : fd00:ac12::3 . 5354",
                "tcp . 9090 : fd00:ac12::2 . 80"
            ]
        );
        let table = ruleset(&lab, &lab.nat, false, Family::V6);
        assert!(table.starts_with("table ip6 netlab {"), "{table}");
        assert!(table.contains("ip6 saddr fd00:ac12::/64 oifname != \"nl-doc\" masquerade\n"));
        assert!(!table.contains("127.0.0.0/8"), "{table}");
    }

    fn state() -> LabState {
        LabState::sample("doc", crate::lab::DatapathKind::NftablesFlowtable)
    }

    #[test]
    fn the_flowtable_is_added_only_to_nftables_flowtable() {
        let s = state();
        let plain = ruleset(&s, &s.nat, false, Family::V4);
        assert!(
            !plain.contains("flowtable") && !plain.contains("flow add"),
            "{plain}"
        );
        let fast = ruleset(&s, &s.nat, true, Family::V4);
        assert!(
            fast.contains("\tflowtable fastpath {\n\t\thook ingress priority filter;\n\t\tdevices = { \"eth0\" };\n\t}\n"),
            "{fast}"
        );
        // Offload before the forward chain's verdicts, so that every established flow
        // between the bridge and the uplink meets it.
        let forward = fast.split("chain forward").nth(1).unwrap();
        let offload = forward.find("flow add @fastpath").unwrap();
        assert!(offload < forward.find(" accept\n").unwrap(), "{forward}");
        assert!(forward.contains(
            "iifname \"nl-doc\" oifname != \"nl-doc\" meta l4proto { tcp, udp } ct state established flow add @fastpath"
        ));
        // Everything else is the nftables datapath's.
        let without: String = fast
            .lines()
            .filter(|l| {
                !l.contains("flow") && !l.contains("devices") && !l.contains("hook ingress")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let without = without.replace("\t}\n\tchain raw", "\tchain raw");
        assert_eq!(without, plain);
        assert_eq!(
            flowtable_device(&s, "add", "veth1234567"),
            "add flowtable ip netlab fastpath { hook ingress priority filter; devices = { \"veth1234567\" }; }\n"
        );
        // A dual-stack lab: the IPv6 table has a flowtable of its own, on the same
        // devices, filled by the same rules.
        let mut s6 = state();
        s6.subnet6 = Some(crate::lab::subnet6::DEFAULT.parse().unwrap());
        let fast6 = ruleset(&s6, &s6.nat, true, Family::V6);
        assert!(fast6.starts_with("table ip6 netlab {"), "{fast6}");
        assert!(fast6.contains("\tflowtable fastpath {\n\t\thook ingress priority filter;\n\t\tdevices = { \"eth0\" };\n\t}\n"), "{fast6}");
        assert!(
            fast6.contains("ct state established flow add @fastpath"),
            "{fast6}"
        );
        assert_eq!(
            flowtable_device(&s6, "delete", "veth1"),
            "delete flowtable ip netlab fastpath { hook ingress priority filter; devices = { \"veth1\" }; }\n\
             delete flowtable ip6 netlab fastpath { hook ingress priority filter; devices = { \"veth1\" }; }\n"
        );
    }

    #[test]
    fn rules_are_counted_per_chain() {
        let state = state();
        let counts = rules_per_chain(&ruleset(&state, &state.nat, false, Family::V4));
        assert_eq!(counts["publish"], 2);
        assert_eq!(counts["nat_prerouting"], 1);
        assert_eq!(counts["forward"], 4);
        let listed = "table ip netlab {\n\tcomment \"netlab:x\"\n\tchain publish {\n\t}\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tiifname \"br\" accept\n\t}\n}\n";
        let counts = rules_per_chain(listed);
        assert_eq!((counts["publish"], counts["forward"]), (0, 1));
    }

    #[test]
    fn commands_are_chunked() {
        let elems: Vec<String> = (0..2500)
            .map(|i| format!("tcp . {i} : 1.2.3.4 . 80"))
            .collect();
        let s = element_commands("add", Family::V4, "ports_any", &elems);
        assert_eq!(s.lines().count(), 3);
        assert!(s.starts_with("add element ip netlab ports_any { tcp . 0 : 1.2.3.4 . 80, "));
        assert_eq!(
            element_commands("add", Family::V4, "ports", &Vec::new()),
            ""
        );
    }
}
