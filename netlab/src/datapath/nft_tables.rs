//! The nf_tables tables `iptables-nft` makes for the iptables datapath's rules (`ip
//! raw`, `ip nat`, `ip filter`, and `ip6`'s with IPv6). A namespace without one gets it
//! with the lab's first rule there, and the tool never removes it: after `down` the
//! namespace kept empty tables of base chains it did not have before. So `up` records
//! the tables that were not there, beside the lab's state, before its first rule; and
//! `down`, once the lab's rules are out, removes each recorded table that holds
//! nothing but base chains without rules, whose policy is accept. A table that was
//! there before `up` is never touched; one that another program put a rule, chain, set
//! or policy in since is left as it is. The removal is one transaction that deletes the
//! base chains first: a rule put in one since they were looked at makes that delete
//! fail, and the table stays whole. In a table that was there, the base chains the
//! lab's rules made (`-A OUTPUT` makes `OUTPUT` in a `nat` table without one) are
//! recorded the same way, and removed the same way: each only while it holds no rule
//! and accepts by policy. A sandbox's namespace goes whole: nothing to do.

use std::fs;

use serde_json::Value;

use super::netfilter;
use crate::{
    error::{Error, Result},
    lab::LabState,
    store,
};

/// Where `up` records the tables it found missing (one `FAMILY TABLE` a line), and the
/// base chains missing in tables that were there (`FAMILY TABLE CHAIN`).
const RECORD: &str = "iptables-nft-tables";

/// The tables `wanted` (`(family, table)`, as nft names them) that the lab host lacks
/// now, and the base chains `chains` (`(family, table, chain)`) that the tables it has
/// lack, recorded for [`remove_unused`] before the caller makes any of them.
/// Without the `nft` tool nothing is recorded (nor removed later).
pub fn record_missing(
    state: &LabState,
    wanted: &[(&str, &str)],
    chains: &[(&str, &str, &str)],
) -> Result<()> {
    if state.sandbox {
        return Ok(());
    }
    let Ok(listed) = nft(state, &["-j", "list", "tables"]) else {
        return Ok(());
    };
    let have: Vec<(String, String)> = objects(&listed, "table")
        .map(|t| (text(t, "family"), text(t, "name")))
        .collect();
    let has = |f: &str, t: &str| have.iter().any(|(hf, ht)| hf == f && ht == t);
    let mut missing: String = wanted
        .iter()
        .filter(|(f, t)| !has(f, t))
        .map(|(f, t)| format!("{f} {t}\n"))
        .collect();
    // Chains as tables: without a listing, nothing is recorded (nor removed later).
    if let Ok(listed) = nft(state, &["-j", "list", "chains"]) {
        let there: Vec<(String, String, String)> = objects(&listed, "chain")
            .map(|c| (text(c, "family"), text(c, "table"), text(c, "name")))
            .collect();
        for (f, t, c) in chains.iter().filter(|(f, t, _)| has(f, t)) {
            if !there
                .iter()
                .any(|(tf, tt, tc)| tf == f && tt == t && tc == c)
            {
                missing.push_str(&format!("{f} {t} {c}\n"));
            }
        }
    }
    let record = store::record_file(&state.name, RECORD);
    fs::write(&record, missing).map_err(|e| Error::io("write", &record, e))
}

/// Removes each table [`record_missing`] recorded that holds nothing now but base
/// chains without rules, and each recorded base chain that holds no rule. One it
/// cannot remove is said on stderr and left: what is left is empty of the lab's rules,
/// and `down` goes on.
pub fn remove_unused(state: &LabState) {
    let Ok(recorded) = fs::read_to_string(store::record_file(&state.name, RECORD)) else {
        return;
    };
    for line in recorded.lines() {
        let removed = match line.split(' ').collect::<Vec<_>>()[..] {
            [family, table] => remove_if_unused(state, family, table),
            [family, table, chain] => remove_chain_if_unused(state, family, table, chain),
            _ => continue,
        };
        if let Err(e) = removed {
            eprintln!("netlab: {line} left in place: {e}");
        }
    }
}

/// Removes base chain `chain` of a table that was there before `up`, if it holds no
/// rule and accepts by policy (as iptables-nft made it).
fn remove_chain_if_unused(state: &LabState, family: &str, table: &str, chain: &str) -> Result<()> {
    let Ok(listed) = nft(state, &["-j", "list", "table", family, table]) else {
        return Ok(());
    };
    let Some(body) = objects(&listed, "chain").find(|c| text(c, "name") == chain) else {
        return Ok(());
    };
    let used = objects(&listed, "rule").any(|r| text(r, "chain") == chain);
    if used || body.get("hook").is_none() || body["policy"] != "accept" {
        return Ok(());
    }
    let script = format!("delete chain {family} {table} handle {}\n", body["handle"]);
    netfilter::run(state, "nft", &["-f", "-"], Some(&script)).map(drop)
}

fn remove_if_unused(state: &LabState, family: &str, table: &str) -> Result<()> {
    let Ok(listed) = nft(state, &["-j", "list", "table", family, table]) else {
        // Gone already.
        return Ok(());
    };
    let mut chains = Vec::new();
    for item in listed["nftables"].as_array().into_iter().flatten() {
        let Some((kind, body)) = item.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        match kind.as_str() {
            "metainfo" | "table" => {}
            // A base chain accepting what it does not match, as iptables-nft makes
            // them. Any other chain is someone's, and a policy set since (`iptables -P
            // FORWARD DROP`, as Docker sets) is someone's firewall.
            "chain" if body.get("hook").is_some() && body["policy"] == "accept" => {
                chains.push(body["handle"].clone())
            }
            _ => return Ok(()),
        }
    }
    let mut script: String = chains
        .iter()
        .map(|h| format!("delete chain {family} {table} handle {h}\n"))
        .collect();
    script.push_str(&format!("delete table {family} {table}\n"));
    netfilter::run(state, "nft", &["-f", "-"], Some(&script)).map(drop)
}

fn nft(state: &LabState, args: &[&str]) -> Result<Value> {
    let out = netfilter::run(state, "nft", args, None)?;
    serde_json::from_str(&out).map_err(|e| Error::Command {
        command: format!("nft {}", args.join(" ")),
        detail: format!("unreadable JSON: {e}"),
    })
}

/// The bodies of the listing's objects of `kind` (`{"table": {...}}`).
fn objects<'a>(listed: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    listed["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(move |item| item.get(kind))
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}
