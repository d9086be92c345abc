//! A forward chain of someone else's that drops by policy: iptables' `FORWARD` set to
//! DROP (by Docker with iptables, by a firewall), or an nftables base chain on the
//! forward hook. Netfilter lets a packet through a hook only when every base chain on
//! it accepts, so a lab's forwarded packets are dropped there whatever its own rules
//! accept, as Docker documents for its nftables backend. `up` says so in one warning
//! line, with what to do: the eBPF fast path goes past the hook, but hairpin and what
//! the fast path leaves to the stack (and everything with `--no-fast-path`) do not.
//!
//! Read with `nft`, which sees iptables-nft's chains too (not iptables-legacy's); where
//! there is no `nft`, nothing is said.

use serde_json::Value;

use super::netfilter;
use crate::lab::{DatapathKind, LabState};

/// Warns on stderr of each forward chain that drops by policy and that the lab's
/// packets go through, for a lab outside a sandbox (a sandbox's host namespace has
/// only the lab's own rules).
pub fn warn(state: &LabState) {
    if state.sandbox || !netfilter::on_path("nft") {
        return;
    }
    let Ok(text) = netfilter::run(state, "nft", &["-j", "list", "chains"], None) else {
        return;
    };
    for chain in dropping(state, &text) {
        eprintln!(
            "netlab: warning: the forward chain `{chain}` drops by policy: the lab's packets that pass netfilter's forward hook {} are dropped there unless a rule of that chain accepts them ({})",
            what_passes(state.datapath),
            accept_hint(&chain, state),
        );
    }
}

/// The rules that would let the lab's subnets through `chain` (`FAMILY TABLE NAME`).
fn accept_hint(chain: &str, state: &LabState) -> String {
    let net = state.subnet;
    let nft = |selector: &str, net: &str| {
        format!(
            "nft insert rule {chain} {selector} saddr {net} accept, and {selector} daddr {net} accept"
        )
    };
    let family = chain.split(' ').next().unwrap_or_default();
    match chain {
        "ip filter FORWARD" => format!(
            "iptables -I FORWARD -s {net} -j ACCEPT and iptables -I FORWARD -d {net} -j ACCEPT would"
        ),
        "ip6 filter FORWARD" => match state.subnet6 {
            Some(net6) => format!(
                "ip6tables -I FORWARD -s {net6} -j ACCEPT and ip6tables -I FORWARD -d {net6} -j ACCEPT would"
            ),
            None => "ip6tables -I FORWARD rules accepting the lab's IPv6 subnet would".into(),
        },
        _ => {
            let mut rules = Vec::new();
            if family != "ip6" {
                rules.push(nft("ip", &net.to_string()));
            }
            if let (true, Some(net6)) = (family != "ip", state.subnet6) {
                rules.push(nft("ip6", &net6.to_string()));
            }
            format!("{}, would", rules.join("; "))
        }
    }
}

/// What of the lab's traffic goes through the forward hook on `datapath`.
fn what_passes(datapath: DatapathKind) -> &'static str {
    match datapath {
        DatapathKind::Ebpf => {
            "(on eBPF: hairpin, what the fast path leaves to the stack, and with --no-fast-path everything)"
        }
        _ => "(every packet in or out of a container)",
    }
}

/// The forward base chains in `nft -j list chains` output that drop by policy and that
/// the lab's packets meet: of a family it uses, and not the chain the lab's own accept
/// rules are in (the iptables datapath's, in iptables-nft's `filter FORWARD`).
fn dropping(state: &LabState, json: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    let families: &[&str] = match state.subnet6 {
        Some(_) => &["ip", "ip6", "inet"],
        None => &["ip", "inet"],
    };
    let mut found = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let c = &item["chain"];
        let (Some(family), Some(table), Some(name)) = (
            c["family"].as_str(),
            c["table"].as_str(),
            c["name"].as_str(),
        ) else {
            continue;
        };
        if c["hook"] != "forward" || c["policy"] != "drop" || !families.contains(&family) {
            continue;
        }
        let own = state.datapath == DatapathKind::Iptables
            && matches!(family, "ip" | "ip6")
            && table == "filter"
            && name == "FORWARD";
        if !own {
            found.push(format!("{family} {table} {name}"));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAINS: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
        {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "hook": "forward", "policy": "drop"}},
        {"chain": {"family": "ip6", "table": "filter", "name": "FORWARD", "hook": "forward", "policy": "drop"}},
        {"chain": {"family": "inet", "table": "mine", "name": "fw", "hook": "forward", "policy": "accept"}},
        {"chain": {"family": "inet", "table": "fw", "name": "in", "hook": "input", "policy": "drop"}},
        {"chain": {"family": "ip", "table": "mine", "name": "user"}}]}"#;

    #[test]
    fn only_forward_chains_dropping_by_policy_that_the_lab_meets() {
        let mut state = LabState::sample("x", DatapathKind::Ebpf);
        state.sandbox = false;
        assert_eq!(dropping(&state, CHAINS), ["ip filter FORWARD"]);
        state.subnet6 = Some("fd00:ac12::/64".parse().unwrap());
        assert_eq!(
            dropping(&state, CHAINS),
            ["ip filter FORWARD", "ip6 filter FORWARD"]
        );
        // The iptables datapath's own accepts are in filter FORWARD.
        state.datapath = DatapathKind::Iptables;
        assert!(dropping(&state, CHAINS).is_empty());
        state.datapath = DatapathKind::IptablesLegacy;
        assert_eq!(dropping(&state, CHAINS).len(), 2);
        assert!(dropping(&state, "not json").is_empty());
        assert!(accept_hint("inet fw fwd", &state).starts_with(
            "nft insert rule inet fw fwd ip saddr 172.18.0.0/16 accept, and ip daddr"
        ));
        // An inet chain in a dual-stack lab: both families; an ip6 chain: IPv6 only.
        assert!(accept_hint("inet fw fwd", &state).contains("ip6 saddr fd00:ac12::/64"));
        let ip6 = accept_hint("ip6 fw fwd", &state);
        assert!(
            ip6.contains("ip6 saddr fd00:ac12::/64") && !ip6.contains("ip saddr"),
            "{ip6}"
        );
        // A table of the user's named `filter` in the inet family is not the datapath's.
        state.datapath = DatapathKind::Iptables;
        let inet = CHAINS.replace(
            r#""family": "ip6", "table": "filter""#,
            r#""family": "inet", "table": "filter""#,
        );
        assert_eq!(dropping(&state, &inet), ["inet filter FORWARD"]);
    }
}
