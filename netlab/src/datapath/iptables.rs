//! The iptables datapath: Docker's rules, in the lab host's namespace, applied with
//! `iptables-restore --noflush` (each table commits atomically).
//!
//! ```text
//! raw     PREROUTING  -d SUBNET ! -i BR ! --dst-type LOCAL -j DROP   direct access to containers
//!         PREROUTING  -d 127.0.0.0/8 ! -i lo -j DROP         (route_localnet is on for BR)
//! nat     PREROUTING  -m addrtype --dst-type LOCAL -j NETLAB
//!         OUTPUT      -m addrtype --dst-type LOCAL -j NETLAB
//!         POSTROUTING -s SUBNET ! -o BR -j MASQUERADE        the seed's rule (tcp/udp from --nat-ports)
//!         POSTROUTING -s SUBNET -o BR -m conntrack --ctstate DNAT -j MASQUERADE   hairpin
//!         POSTROUTING -s 127.0.0.0/8 -o BR -j MASQUERADE     host-local on 127.0.0.1
//!         NETLAB      [-d HOST_IP] -p P --dport HP -j DNAT --to-destination CTR:CP   per port
//! filter  FORWARD -> NETLAB-USER, NETLAB-FORWARD
//!         NETLAB-FORWARD -> NETLAB-CT, NETLAB-ISOLATION-STAGE-1, NETLAB-BRIDGE; -i BR ACCEPT
//!         NETLAB-CT      -o BR RELATED,ESTABLISHED ACCEPT
//!         NETLAB-BRIDGE  -o BR -j NETLAB; ! -i BR -o BR DROP
//!         NETLAB         -d CTR ! -i BR -o BR -p P --dport CP -j ACCEPT                  per port
//! ```
//!
//! Every rule carries `-m comment --comment netlab`, and every chain is called
//! `NETLAB...`: `up` refuses a namespace that holds any such rule or chain. Teardown
//! removes exactly the rules `setup` wrote (as `iptables-save` shows them) and the
//! chains it made, and leaves anything else alone, `NETLAB-USER` with the user's rules
//! in it included. The chains are shared by the whole namespace, as Docker's are, so
//! one iptables lab runs per namespace (a sandbox lab has its own). Port ranges are
//! expanded to one rule per port, as Docker does.
//!
//! A dual-stack lab (`--ipv6`) has the same rules in `ip6tables`, on the IPv6 subnet,
//! without the 127/8 ones, and with `! -d ::1/128` on the output jump (as Docker's):
//! a port on every address leads to the container's IPv6 address there too.

use std::{collections::HashSet, fmt::Write as _};

use super::{Datapath, netfilter};
use crate::{
    error::{Error, Result},
    lab::{LabState, NatOptions, Published},
    topology,
};

/// The nat chain of published ports, and the filter chain that lets them in.
const PORTS: &str = "NETLAB";
/// The user's chain, which FORWARD jumps to first (Docker's `DOCKER-USER`).
const USER: &str = "NETLAB-USER";
/// Every netlab chain starts with this.
const PREFIX: &str = "NETLAB";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// iptables over nf_tables (`iptables-nft`, what `iptables` is on Debian 12).
    Nft,
    /// The x_tables kernel interface (`iptables-legacy`).
    Legacy,
}

pub struct Iptables {
    backend: Backend,
}

/// The address families a lab's rules are written for: IPv4, and IPv6 with `--ipv6`
/// (the same rules through `ip6tables`, in its own tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

fn families(state: &LabState) -> &'static [Family] {
    if state.subnet6.is_some() {
        &[Family::V4, Family::V6]
    } else {
        &[Family::V4]
    }
}

impl Iptables {
    pub fn nft() -> Self {
        Self {
            backend: Backend::Nft,
        }
    }

    pub fn legacy() -> Self {
        Self {
            backend: Backend::Legacy,
        }
    }

    fn tool(&self, family: Family, what: &str) -> String {
        let ip = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        let backend = match self.backend {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        };
        format!("{ip}-{backend}-{what}")
    }

    /// Equivalent to `iptables-save` (`ip6tables-save`) in the lab host.
    fn save(&self, state: &LabState, family: Family) -> Result<String> {
        netfilter::run(state, &self.tool(family, "save"), &[], None)
    }

    /// Equivalent to `iptables-restore --noflush < script` (`ip6tables-restore`) in the
    /// lab host.
    fn restore(&self, state: &LabState, family: Family, script: &Script) -> Result<()> {
        if script.is_empty() {
            return Ok(());
        }
        let args: &[&str] = match self.backend {
            Backend::Nft => &["--noflush"],
            // The legacy backend serialises on one machine-wide lock file.
            Backend::Legacy => &["--noflush", "--wait=60"],
        };
        netfilter::run(
            state,
            &self.tool(family, "restore"),
            args,
            Some(&script.text()),
        )
        .map(drop)
    }

    /// Adds the rules of `ports`, the filter table first, family by family: when a
    /// table fails, what this call added is taken back, so nothing is left
    /// half-published.
    fn add_ports(&self, state: &LabState, ports: &[Published]) -> Result<()> {
        let mut done: Vec<(Family, PortRules)> = Vec::new();
        for &family in families(state) {
            let rules = port_rules(state, ports, family);
            let added = self
                .restore(state, family, &rules.script("-A", "filter"))
                .and_then(|()| {
                    self.restore(state, family, &rules.script("-A", "nat"))
                        .inspect_err(|_| {
                            let _ = self.restore(state, family, &rules.script("-D", "filter"));
                        })
                });
            if let Err(e) = added {
                for (f, r) in done.iter().rev() {
                    let _ = self.restore(state, *f, &r.script("-D", "nat"));
                    let _ = self.restore(state, *f, &r.script("-D", "filter"));
                }
                return Err(e);
            }
            done.push((family, rules));
        }
        Ok(())
    }
}

/// An `iptables-restore` input: lines per table, each table one transaction.
#[derive(Default)]
struct Script(Vec<(&'static str, Vec<String>)>);

/// The built-in chains (base chains, for iptables-nft) that `lines` add rules to.
fn base_chains(lines: &[String]) -> Vec<&'static str> {
    const BUILT_IN: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];
    BUILT_IN
        .into_iter()
        .filter(|c| {
            lines.iter().any(|l| {
                l.strip_prefix("-A ")
                    .is_some_and(|r| r.split(' ').next() == Some(c))
            })
        })
        .collect()
}

impl Script {
    fn push(&mut self, table: &'static str, line: impl Into<String>) {
        match self.0.iter_mut().find(|(t, _)| *t == table) {
            Some((_, lines)) => lines.push(line.into()),
            None => self.0.push((table, vec![line.into()])),
        }
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(|(_, lines)| lines.is_empty())
    }

    fn text(&self) -> String {
        let mut s = String::new();
        for (table, lines) in &self.0 {
            if lines.is_empty() {
                continue;
            }
            let _ = writeln!(s, "*{table}");
            for l in lines {
                let _ = writeln!(s, "{l}");
            }
            s.push_str("COMMIT\n");
        }
        s
    }
}

fn tag() -> String {
    format!("-m comment --comment {}", netfilter::TAG)
}

/// The rules `setup` installs for one family (IPv6: the same, without the 127/8 ones).
fn setup_script(state: &LabState, nat: &NatOptions, family: Family) -> Script {
    let subnet = match (family, state.subnet6) {
        (Family::V6, Some(s6)) => s6.to_string(),
        _ => state.subnet.to_string(),
    };
    let (br, t, v4) = (&state.bridge, tag(), family == Family::V4);
    let mut s = Script::default();

    // Docker 28's "direct access" drop: nothing but published ports (DNAT, which comes
    // later) and replies reaches a container from outside the bridge. Its addresses,
    // not the bridge's own, which is the host's (Docker's rule is per container
    // address): the host's own connections to it come in by lo. Localhost is routable
    // on the bridge (route_localnet), so 127/8 from anywhere but lo is dropped too.
    s.push(
        "raw",
        format!("-A PREROUTING -d {subnet} ! -i {br} -m addrtype ! --dst-type LOCAL {t} -j DROP"),
    );
    if v4 {
        s.push(
            "raw",
            format!("-A PREROUTING -d 127.0.0.0/8 ! -i lo {t} -j DROP"),
        );
    }

    s.push("nat", format!(":{PORTS} - [0:0]"));
    s.push(
        "nat",
        format!("-A PREROUTING -m addrtype --dst-type LOCAL {t} -j {PORTS}"),
    );
    // No userland proxy, so unlike Docker's default 127.0.0.0/8 is not excluded; ::1 is,
    // as in Docker's ip6tables rules: the kernel never routes it off the host, so a
    // connection to [::1]:PORT is refused rather than translated into a black hole.
    let not_lo6 = if v4 { "" } else { "! -d ::1/128 " };
    s.push(
        "nat",
        format!("-A OUTPUT {not_lo6}-m addrtype --dst-type LOCAL {t} -j {PORTS}"),
    );
    // As `iptables-save` prints it (one port without a range), so that teardown and
    // CHECK find the rule again.
    let ports = match nat.port_min == nat.port_max {
        true => nat.port_min.to_string(),
        false => format!("{}-{}", nat.port_min, nat.port_max),
    };
    for proto in ["tcp", "udp"] {
        s.push(
            "nat",
            format!(
                "-A POSTROUTING -s {subnet} ! -o {br} -p {proto} {t} -j MASQUERADE --to-ports {ports}"
            ),
        );
    }
    s.push(
        "nat",
        format!("-A POSTROUTING -s {subnet} ! -o {br} {t} -j MASQUERADE"),
    );
    // Hairpin: a container reaching a published port (its own or another's) is
    // SNATed to the bridge address so that the reply comes back through the host.
    // One rule for all ports, rather than Docker's one per port.
    s.push(
        "nat",
        format!("-A POSTROUTING -s {subnet} -o {br} -m conntrack --ctstate DNAT {t} -j MASQUERADE"),
    );
    if v4 {
        s.push(
            "nat",
            format!("-A POSTROUTING -s 127.0.0.0/8 -o {br} {t} -j MASQUERADE"),
        );
    }

    for chain in [
        "NETLAB-USER",
        "NETLAB-FORWARD",
        "NETLAB-CT",
        "NETLAB-ISOLATION-STAGE-1",
        "NETLAB-ISOLATION-STAGE-2",
        "NETLAB-BRIDGE",
        PORTS,
    ] {
        s.push("filter", format!(":{chain} - [0:0]"));
    }
    // FORWARD's policy stays as it is (Docker sets DROP): the lab drops only what
    // goes to its own bridge (NETLAB-BRIDGE's last rule), so that another network in
    // the same namespace (a CNI network beside the lab, on nftables too) is not
    // dropped by it.
    for rule in [
        format!("-A FORWARD {t} -j NETLAB-USER"),
        format!("-A FORWARD {t} -j NETLAB-FORWARD"),
        format!("-A NETLAB-FORWARD {t} -j NETLAB-CT"),
        format!("-A NETLAB-FORWARD {t} -j NETLAB-ISOLATION-STAGE-1"),
        format!("-A NETLAB-FORWARD {t} -j NETLAB-BRIDGE"),
        format!("-A NETLAB-FORWARD -i {br} {t} -j ACCEPT"),
        format!("-A NETLAB-CT -o {br} -m conntrack --ctstate RELATED,ESTABLISHED {t} -j ACCEPT"),
        format!("-A NETLAB-ISOLATION-STAGE-1 -i {br} ! -o {br} {t} -j NETLAB-ISOLATION-STAGE-2"),
        format!("-A NETLAB-ISOLATION-STAGE-2 -o {br} {t} -j DROP"),
        format!("-A NETLAB-BRIDGE -o {br} {t} -j {PORTS}"),
        // After the per-port ACCEPTs (which are appended to NETLAB, in publish order).
        format!("-A NETLAB-BRIDGE ! -i {br} -o {br} {t} -j DROP"),
    ] {
        s.push("filter", rule);
    }
    s
}

/// The per-port rules of some published ports, without `-A CHAIN`.
struct PortRules {
    nat: Vec<String>,
    filter: Vec<String>,
}

impl PortRules {
    fn script(&self, op: &str, table: &'static str) -> Script {
        let rules = if table == "nat" {
            &self.nat
        } else {
            &self.filter
        };
        let mut s = Script::default();
        for r in rules {
            s.push(table, format!("{op} {PORTS} {r}"));
        }
        s
    }
}

/// The rules of `ports` in one family: a port on an address of one family has none in
/// the other; a port on every address leads to the container's address of each.
fn port_rules(state: &LabState, ports: &[Published], family: Family) -> PortRules {
    let (br, t) = (&state.bridge, tag());
    let mut rules = PortRules {
        nat: Vec::new(),
        filter: Vec::new(),
    };
    for port in ports {
        let p = port.spec.proto.name();
        let (dst, to, ctr) = match family {
            Family::V4 if port.spec.on_ipv4() => (
                port.spec
                    .host_ip4()
                    .map(|ip| format!("-d {ip}/32 "))
                    .unwrap_or_default(),
                port.ctr_ip.to_string(),
                format!("{}/32", port.ctr_ip),
            ),
            Family::V6 if port.spec.on_ipv6() => match state.ip6_of(port.ctr_ip) {
                Some(ip6) => (
                    port.spec
                        .host_ip6()
                        .map(|ip| format!("-d {ip}/128 "))
                        .unwrap_or_default(),
                    format!("[{ip6}]"),
                    format!("{ip6}/128"),
                ),
                None => continue,
            },
            _ => continue,
        };
        for (hp, cp) in netfilter::pairs(&port.spec) {
            rules.nat.push(format!(
                "{dst}-p {p} -m {p} --dport {hp} {t} -j DNAT --to-destination {to}:{cp}"
            ));
            rules.filter.push(format!(
                "-d {ctr} ! -i {br} -o {br} -p {p} -m {p} --dport {cp} {t} -j ACCEPT"
            ));
        }
    }
    rules
}

fn is_tagged(rule: &str) -> bool {
    let words: Vec<&str> = rule.split_whitespace().collect();
    // iptables-save quotes a comment with spaces: `"netlab rules"` is not ours.
    let quoted = format!("\"{}\"", netfilter::TAG);
    words
        .windows(2)
        .any(|w| w[0] == "--comment" && (w[1] == netfilter::TAG || w[1] == quoted))
}

/// Whether an `iptables-save` output holds anything that looks like netlab's: a chain
/// `setup` makes, or a rule tagged as netlab's in a chain not called `NETLAB...`. Not
/// `NETLAB-USER`, which is the user's and stays with their rules (as Docker's
/// `DOCKER-USER`): the next lab's `setup` takes it as it is.
fn holds_netlabs(saved: &str) -> bool {
    saved.lines().map(str::trim).any(|line| {
        if let Some(decl) = line.strip_prefix(':') {
            let chain = decl.split_whitespace().next().unwrap_or("");
            return chain != USER && CHAINS.iter().any(|(_, chains)| chains.contains(&chain));
        }
        line.strip_prefix("-A ").is_some_and(|rule| {
            let chain = rule.split_whitespace().next().unwrap_or("");
            is_tagged(rule) && !chain.starts_with(PREFIX)
        })
    })
}

/// The first of the chains `setup` makes that `iptables-save`'s output `saved` lacks,
/// with its table.
fn missing_chain(saved: &str) -> Option<(&'static str, &'static str)> {
    CHAINS.iter().find_map(|(table, chains)| {
        let section = saved
            .split("\n*")
            .find(|t| t.trim_start_matches('*').starts_with(&format!("{table}\n")))
            .unwrap_or("");
        chains
            .iter()
            .find(|c| !section.lines().any(|l| l.starts_with(&format!(":{c} "))))
            .map(|c| (*table, *c))
    })
}

/// The chains `setup` makes, by table.
const CHAINS: [(&str, &[&str]); 2] = [
    ("nat", &[PORTS]),
    (
        "filter",
        &[
            "NETLAB-USER",
            "NETLAB-FORWARD",
            "NETLAB-CT",
            "NETLAB-ISOLATION-STAGE-1",
            "NETLAB-ISOLATION-STAGE-2",
            "NETLAB-BRIDGE",
            PORTS,
        ],
    ),
];

/// The chain a rule line (`-A CHAIN ...`) is in.
fn chain_of(line: &str) -> &str {
    line.split_whitespace().nth(1).unwrap_or("")
}

/// The restore script that removes what the lab's `setup` installed and `saved` (an
/// `iptables-save`) still shows, and nothing else: its rules in the built-in chains,
/// exactly as `setup` wrote them, then its own chains (flushed first, as they jump to
/// each other; the per-port rules go with them). `NETLAB-USER` is the user's to fill,
/// as Docker's `DOCKER-USER`: holding rules, it stays, with them.
fn teardown_script(saved: &str, state: &LabState, family: Family) -> Script {
    // What `saved` holds, by table: its chains and its rule lines.
    let mut tables: Vec<(&str, Vec<&str>, Vec<&str>)> = Vec::new();
    for line in saved.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('*') {
            tables.push((name, Vec::new(), Vec::new()));
        } else if let Some(t) = tables.last_mut() {
            if let Some(decl) = line.strip_prefix(':') {
                t.1.push(decl.split_whitespace().next().unwrap_or(""));
            } else if line.starts_with("-A ") {
                t.2.push(line);
            }
        }
    }
    let find = |name: &str| tables.iter().find(|t| t.0 == name);
    let ours = |table: &str| {
        CHAINS
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(&[][..], |(_, c)| *c)
    };
    let mut s = Script::default();
    for (table, lines) in &setup_script(state, &state.nat, family).0 {
        let Some((_, _, rules)) = find(table) else {
            continue;
        };
        for l in lines {
            if l.starts_with("-A ")
                && !ours(table).contains(&chain_of(l))
                && rules.contains(&l.as_str())
            {
                s.push(table, format!("-D {}", &l[3..]));
            }
        }
    }
    for (table, chains) in CHAINS {
        let Some((_, present, rules)) = find(table) else {
            continue;
        };
        let kept = |c: &str| c == "NETLAB-USER" && rules.iter().any(|r| chain_of(r) == c);
        let gone: Vec<&str> = chains
            .iter()
            .copied()
            .filter(|c| present.contains(c) && !kept(c))
            .collect();
        for c in &gone {
            s.push(table, format!("-F {c}"));
        }
        for c in &gone {
            s.push(table, format!("-X {c}"));
        }
    }
    s
}

impl Datapath for Iptables {
    fn check_free(&self, state: &LabState) -> Result<()> {
        for &family in families(state) {
            if holds_netlabs(&self.save(state, family)?) {
                return Err(Error::Conflict(format!(
                    "netlab's {} rules (NETLAB chains, or rules commented `netlab`) are already in the namespace of lab {}'s host: one iptables lab per namespace; take the other one down first, remove those no lab of netlab's made (`iptables-save` shows them), or use --sandbox",
                    match family {
                        Family::V4 => "iptables",
                        Family::V6 => "ip6tables",
                    },
                    state.name
                )));
            }
        }
        Ok(())
    }

    fn setup(&self, state: &LabState) -> Result<()> {
        netfilter::prepare_host(state)?;
        if self.backend == Backend::Nft {
            // The tables, and the base chains, iptables-nft makes with the first rule,
            // recorded first.
            let scripts: Vec<(&str, Script)> = families(state)
                .iter()
                .map(|&f| {
                    let nft_family = match f {
                        Family::V4 => "ip",
                        Family::V6 => "ip6",
                    };
                    (nft_family, setup_script(state, &state.nat, f))
                })
                .collect();
            let mut wanted = Vec::new();
            let mut chains = Vec::new();
            for (nft_family, script) in &scripts {
                for (table, lines) in &script.0 {
                    wanted.push((*nft_family, *table));
                    for chain in base_chains(lines) {
                        if !chains.contains(&(*nft_family, *table, chain)) {
                            chains.push((*nft_family, *table, chain));
                        }
                    }
                }
            }
            super::nft_tables::record_missing(state, &wanted, &chains)?;
        }
        for &family in families(state) {
            let mut script = setup_script(state, &state.nat, family);
            // A `NETLAB-USER` left with the user's rules is taken as it is: declared
            // again, `iptables-restore --noflush` would flush it.
            let declared = format!(":{USER} ");
            if self
                .save(state, family)?
                .lines()
                .any(|l| l.starts_with(&declared))
            {
                for (_, lines) in &mut script.0 {
                    lines.retain(|l| !l.starts_with(&declared));
                }
            }
            // FORWARD's jumps go first, as Docker inserts its own: a host whose
            // FORWARD ends in a REJECT (firewalld's) would refuse the lab's traffic
            // before them. (`save` lists them as `-A`, as teardown looks for them.)
            for (_, lines) in &mut script.0 {
                let mut at = 0;
                for l in lines.iter_mut() {
                    if let Some(rule) = l.strip_prefix("-A FORWARD ") {
                        at += 1;
                        *l = format!("-I FORWARD {at} {rule}");
                    }
                }
            }
            self.restore(state, family, &script)?;
        }
        netfilter::set_timeouts(state)
    }

    fn missing_setup(&self, state: &LabState) -> Result<Option<String>> {
        for &family in families(state) {
            let saved = self.save(state, family)?;
            let held: HashSet<&str> = saved.lines().map(str::trim).collect();
            for (table, lines) in &setup_script(state, &state.nat, family).0 {
                if let Some(rule) = lines
                    .iter()
                    .find(|l| l.starts_with("-A ") && !held.contains(l.as_str()))
                {
                    return Ok(Some(format!("{table} rule `{rule}`")));
                }
            }
        }
        Ok(None)
    }

    fn teardown(&self, state: &LabState) -> Result<()> {
        // A host namespace that is gone, or was made again under its name, holds
        // nothing of the lab's.
        if !topology::host_is_the_labs(state) {
            return Ok(());
        }
        let mut errors = crate::error::Errors::default();
        for &family in families(state) {
            errors.check(self.save(state, family).and_then(|saved| {
                self.restore(state, family, &teardown_script(&saved, state, family))
            }));
        }
        if errors.is_empty() && self.backend == Backend::Nft {
            super::nft_tables::remove_unused(state);
        }
        errors.into_result()
    }

    fn publish(&self, state: &LabState, ports: &[Published]) -> Result<()> {
        netfilter::require_conntrack_tool()?;
        netfilter::hairpin(state, ports)?;
        if let Err(e) = self.add_ports(state, ports) {
            // The lab's chains gone (`iptables -F -X`, a firewall reload): say so,
            // rather than iptables-restore's "No chain/target/match by that name".
            for &family in families(state) {
                let saved = self.save(state, family)?;
                if let Some((table, chain)) = missing_chain(&saved) {
                    return Err(Error::Invalid(format!(
                        "lab {lab}'s chain {chain} (table {table}, {}) is gone (removed behind netlab's back: `iptables -X`, a firewall reload): `netlab down --lab {lab}`, then `up` again",
                        self.tool(family, "save").trim_end_matches("-save"),
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
        let deleted = families(state).iter().try_for_each(|&family| {
            let rules = port_rules(state, ports, family);
            self.restore(state, family, &rules.script("-D", "nat"))
                .and_then(|()| self.restore(state, family, &rules.script("-D", "filter")))
        });
        if deleted.is_err() {
            // A rule already gone (a firewall reload, someone's `iptables -F`) fails
            // the whole table's transaction: what is still there goes, one by one.
            return self.withdraw_leftovers(state, ports);
        }
        netfilter::forget_flows(state, ports)
    }

    /// The ports some of whose rules `iptables-save` (or `ip6tables-save`) lacks.
    fn absent(&self, state: &LabState, ports: &[Published]) -> Result<Vec<Published>> {
        let mut gone: Vec<Published> = Vec::new();
        for &family in families(state) {
            let saved = self.save(state, family)?;
            for p in absent_in(&saved, state, ports, family) {
                if !gone.contains(&p) {
                    gone.push(p);
                }
            }
        }
        Ok(gone)
    }

    /// The rules of `ports` that `iptables-save` shows, deleted (an interrupted publish
    /// may have committed the filter table and not the nat table).
    fn withdraw_leftovers(&self, state: &LabState, ports: &[Published]) -> Result<()> {
        netfilter::require_conntrack_tool()?;
        for &family in families(state) {
            let saved = self.save(state, family)?;
            for (table, lines) in leftovers_script(&saved, state, ports, family).0 {
                let mut one = Script::default();
                for l in lines {
                    one.push(table, l);
                }
                self.restore(state, family, &one)?;
            }
        }
        netfilter::forget_flows(state, ports)
    }
}

/// How many copies of each per-port rule `saved` (an `iptables-save`) holds that are
/// not another mapping's: a filter rule is the same line for every host port that
/// leads to one container port (`-d CTR ... --dport CP -j ACCEPT`), one copy per
/// mapping, so presence is counted, never just looked up, and the copies of the lab's
/// other mappings (`state.ports` but `ports`) are theirs.
fn unclaimed(
    saved: &str,
    state: &LabState,
    ports: &[Published],
    family: Family,
) -> std::collections::HashMap<String, usize> {
    let mut copies: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for line in saved.lines().map(str::trim) {
        if line.starts_with(&format!("-A {PORTS} ")) {
            *copies.entry(line.to_string()).or_default() += 1;
        }
    }
    let others = state.other_ports(ports);
    let theirs = port_rules(state, &others, family);
    for r in theirs.nat.iter().chain(&theirs.filter) {
        if let Some(n) = copies.get_mut(&format!("-A {PORTS} {r}")) {
            *n = n.saturating_sub(1);
        }
    }
    copies
}

/// The deletions that remove what `saved` holds of `ports`' rules, a copy per rule of
/// theirs at most, none of another mapping's.
fn leftovers_script(saved: &str, state: &LabState, ports: &[Published], family: Family) -> Script {
    let mut copies = unclaimed(saved, state, ports, family);
    let rules = port_rules(state, ports, family);
    let mut s = Script::default();
    for (table, list) in [("nat", &rules.nat), ("filter", &rules.filter)] {
        for r in list {
            if let Some(n) = copies.get_mut(&format!("-A {PORTS} {r}"))
                && *n > 0
            {
                *n -= 1;
                s.push(table, format!("-D {PORTS} {r}"));
            }
        }
    }
    s
}

/// The ports of `ports` (published, as the state says) some of whose rules `saved`
/// lacks, counting copies as [`unclaimed`] does.
fn absent_in(saved: &str, state: &LabState, ports: &[Published], family: Family) -> Vec<Published> {
    let mut copies = unclaimed(saved, state, ports, family);
    let mut gone = Vec::new();
    for p in ports {
        let rules = port_rules(state, std::slice::from_ref(p), family);
        let mut whole = true;
        for r in rules.nat.iter().chain(&rules.filter) {
            match copies.get_mut(&format!("-A {PORTS} {r}")) {
                Some(n) if *n > 0 => *n -= 1,
                _ => whole = false,
            }
        }
        if !whole {
            gone.push(p.clone());
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::{DatapathKind, LabState, PortSpec};

    fn lab() -> LabState {
        LabState::sample("x", DatapathKind::Iptables)
    }

    fn published(spec: &str) -> Published {
        Published {
            container: "web".into(),
            spec: spec.parse::<PortSpec>().unwrap(),
            ctr_ip: "172.18.0.2".parse().unwrap(),
            id: 1,
        }
    }

    #[test]
    fn a_missing_chain_is_found_in_its_table() {
        let filter = ":NETLAB-USER - [0:0]\n:NETLAB-FORWARD - [0:0]\n:NETLAB-CT - [0:0]\n:NETLAB-ISOLATION-STAGE-1 - [0:0]\n:NETLAB-ISOLATION-STAGE-2 - [0:0]\n:NETLAB-BRIDGE - [0:0]\n:NETLAB - [0:0]\nCOMMIT\n";
        let whole = format!("# Generated\n*nat\n:NETLAB - [0:0]\nCOMMIT\n*filter\n{filter}");
        assert_eq!(missing_chain(&whole), None);
        // The nat table's NETLAB gone, the filter table's of the same name still there.
        let nat_gone = format!("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n{filter}");
        assert_eq!(missing_chain(&nat_gone), Some(("nat", "NETLAB")));
        let bridge_gone = whole.replace(":NETLAB-BRIDGE - [0:0]\n", "");
        assert_eq!(
            missing_chain(&bridge_gone),
            Some(("filter", "NETLAB-BRIDGE"))
        );
        assert_eq!(missing_chain(""), Some(("nat", "NETLAB")));
    }

    #[test]
    fn setup_has_the_seed_rule_and_dockers_forward_structure() {
        let text = setup_script(&lab(), &NatOptions::default(), Family::V4).text();
        assert!(text.contains(
            "-A POSTROUTING -s 172.18.0.0/16 ! -o nl-x -m comment --comment netlab -j MASQUERADE\n"
        ));
        assert!(
            !text.contains(":FORWARD"),
            "FORWARD's policy is not netlab's"
        );
        assert!(text.contains("-A NETLAB-CT -o nl-x -m conntrack --ctstate RELATED,ESTABLISHED"));
        assert!(text.contains("*raw\n-A PREROUTING -d 172.18.0.0/16 ! -i nl-x"));
        // Every rule is tagged.
        for line in text.lines().filter(|l| l.starts_with("-A")) {
            assert!(is_tagged(line), "untagged: {line}");
        }
    }

    #[test]
    fn one_rule_per_port_in_each_table() {
        let lab = lab();
        let rules = port_rules(
            &lab,
            &[
                published("198.51.100.2:8080:80"),
                published("5000-5001:6000-6001/udp"),
            ],
            Family::V4,
        );
        assert_eq!(
            rules.nat,
            [
                "-d 198.51.100.2/32 -p tcp -m tcp --dport 8080 -m comment --comment netlab -j DNAT --to-destination 172.18.0.2:80",
                "-p udp -m udp --dport 5000 -m comment --comment netlab -j DNAT --to-destination 172.18.0.2:6000",
                "-p udp -m udp --dport 5001 -m comment --comment netlab -j DNAT --to-destination 172.18.0.2:6001",
            ]
        );
        assert_eq!(
            rules.filter[0],
            "-d 172.18.0.2/32 ! -i nl-x -o nl-x -p tcp -m tcp --dport 80 -m comment --comment netlab -j ACCEPT"
        );
        assert_eq!(
            rules.script("-D", "nat").text().lines().nth(1).unwrap(),
            format!("-D NETLAB {}", rules.nat[0])
        );
    }

    #[test]
    fn ipv6_has_the_same_rules_on_the_ipv6_subnet() {
        let mut lab = lab();
        lab.subnet6 = Some("fd00:ac12::/64".parse().unwrap());
        let text = setup_script(&lab, &NatOptions::default(), Family::V6).text();
        assert!(text.contains(
            "-A POSTROUTING -s fd00:ac12::/64 ! -o nl-x -m comment --comment netlab -j MASQUERADE\n"
        ));
        assert!(text.contains("*raw\n-A PREROUTING -d fd00:ac12::/64 ! -i nl-x"));
        assert!(!text.contains("127.0.0.0/8"), "{text}");
        let rules = port_rules(
            &lab,
            &[published("8080:80"), published("198.51.100.2:9090:90")],
            Family::V6,
        );
        assert_eq!(
            rules.nat,
            [
                "-p tcp -m tcp --dport 8080 -m comment --comment netlab -j DNAT --to-destination [fd00:ac12::2]:80"
            ]
        );
        assert_eq!(
            rules.filter,
            [
                "-d fd00:ac12::2/128 ! -i nl-x -o nl-x -p tcp -m tcp --dport 80 -m comment --comment netlab -j ACCEPT"
            ]
        );
    }

    /// What `iptables-save` shows of the rules of `ports` (both tables).
    fn saved(state: &LabState, ports: &[Published]) -> String {
        let rules = port_rules(state, ports, Family::V4);
        rules.script("-A", "nat").text() + &rules.script("-A", "filter").text()
    }

    fn mapping(spec: &str, id: u32) -> Published {
        Published {
            id,
            ..published(spec)
        }
    }

    #[test]
    fn leftovers_are_counted_not_looked_up() {
        // 8080:80 is published; 9090:80 and 9091:80, being published, were interrupted.
        // All three share the filter rule of container port 80.
        let mut state = lab();
        let (a, b, c) = (
            mapping("8080:80", 1),
            mapping("9090:80", 2),
            mapping("9091:80", 3),
        );
        state.ports = vec![a.clone()];
        let nothing_yet = saved(&state, std::slice::from_ref(&a));
        let todo = [b.clone(), c.clone()];
        let s = leftovers_script(&nothing_yet, &state, &todo, Family::V4);
        assert!(s.is_empty(), "8080:80's rule taken:\n{}", s.text());
        // 9090:80 went in whole, 9091:80 not at all: one copy of the shared rule goes.
        let half = nothing_yet + &saved(&state, std::slice::from_ref(&b));
        let s = leftovers_script(&half, &state, &todo, Family::V4).text();
        assert_eq!(s.matches("-D NETLAB").count(), 2, "{s}");
        assert!(s.contains("--dport 9090"), "{s}");
        assert!(!s.contains("--dport 9091"), "{s}");
    }

    #[test]
    fn a_port_whose_shared_rule_another_holds_is_absent() {
        let mut state = lab();
        let (a, b) = (mapping("8080:80", 1), mapping("9090:80", 2));
        state.ports = vec![a.clone(), b.clone()];
        // 9090:80's filter rule was deleted behind netlab's back; 8080:80's copy is there.
        let mut only_a = saved(&state, std::slice::from_ref(&a));
        only_a += &port_rules(&state, std::slice::from_ref(&b), Family::V4)
            .script("-A", "nat")
            .text();
        let gone = absent_in(&only_a, &state, &state.ports.clone(), Family::V4);
        assert_eq!(gone.len(), 1, "{gone:?}");
        let full = saved(&state, &state.ports.clone());
        assert!(absent_in(&full, &state, &state.ports.clone(), Family::V4).is_empty());
    }

    #[test]
    fn teardown_removes_what_setup_wrote_and_nothing_else() {
        let state = lab();
        // What `iptables-save` shows after `setup`, with the user's own things beside
        // it: a rule carrying netlab's tag, a chain with netlab's prefix, a rule of
        // theirs in NETLAB-USER.
        let mut saved = setup_script(&state, &state.nat, Family::V4)
            .text()
            .replace("COMMIT\n", "");
        saved = saved.replace(
            "*filter\n",
            "*filter\n:NETLAB-MINE - [0:0]\n-A NETLAB-USER -s 172.18.0.9/32 -j DROP\n",
        );
        saved = saved.replace(
            "*nat\n",
            "*nat\n-A POSTROUTING -s 10.0.0.0/8 -m comment --comment netlab -j MASQUERADE\n",
        );
        let text = teardown_script(&saved, &state, Family::V4).text();
        for theirs in [
            "10.0.0.0/8",
            "NETLAB-MINE",
            "-F NETLAB-USER",
            "-X NETLAB-USER",
        ] {
            assert!(!text.contains(theirs), "{theirs} in:\n{text}");
        }
        for ours in [
            "-D PREROUTING -d 172.18.0.0/16 ! -i nl-x -m addrtype ! --dst-type LOCAL -m comment --comment netlab -j DROP",
            "-D FORWARD -m comment --comment netlab -j NETLAB-USER",
            "-X NETLAB-FORWARD",
            "-X NETLAB-BRIDGE",
            "-X NETLAB\n",
        ] {
            assert!(text.contains(ours), "no {ours} in:\n{text}");
        }
        // Without the user's rule, NETLAB-USER goes too; with nothing of netlab's, nothing.
        let bare = setup_script(&state, &state.nat, Family::V4).text();
        assert!(
            teardown_script(&bare, &state, Family::V4)
                .text()
                .contains("-X NETLAB-USER")
        );
        assert!(
            teardown_script(
                "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n",
                &state,
                Family::V4
            )
            .is_empty()
        );
    }
}
