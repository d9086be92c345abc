//! `netlab conntrack [--json] [--flush]`: the eBPF datapath's flows.
//!
//! Each flow is two map entries, one per direction; it is listed once, from the entry of
//! the direction that opened it, with the reply direction's counters beside it. Entries
//! past their timeout are not listed (the datapath deletes them lazily, on their next
//! packet, or the LRU reclaims them).

use std::net::Ipv4Addr;

use netlab_common::{
    conntrack::{
        CtEntry, CtKey, FLAG_ORIGIN, TCP_CLOSED, TCP_CLOSING, TCP_ESTABLISHED, TCP_SYN_SENT,
        expired,
    },
    proto::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
};
use serde::Serialize;

use crate::{datapath::ebpf, error::Result};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON (the format is stable; see the README).
    #[arg(long)]
    pub json: bool,
    /// Delete every entry instead of listing them.
    #[arg(long)]
    pub flush: bool,
}

#[derive(Serialize)]
pub struct Endpoint {
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

#[derive(Serialize)]
pub struct Flow {
    pub proto: &'static str,
    /// `confirmed` (seen both ways) or `pending` (no reply yet).
    pub table: &'static str,
    pub state: &'static str,
    pub original: Endpoint,
    pub translated: Endpoint,
    pub age_secs: u64,
    pub idle_secs: u64,
    pub packets: u64,
    pub bytes: u64,
    pub reply_packets: u64,
    pub reply_bytes: u64,
}

fn ip(raw: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be(raw))
}

fn proto_name(p: u8) -> &'static str {
    match p {
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        IPPROTO_ICMP => "icmp",
        _ => "other",
    }
}

fn state_name(proto: u8, s: u8) -> &'static str {
    if proto != IPPROTO_TCP {
        return "-";
    }
    match s {
        TCP_SYN_SENT => "SYN_SENT",
        TCP_ESTABLISHED => "ESTABLISHED",
        TCP_CLOSING => "CLOSING",
        TCP_CLOSED => "CLOSED",
        _ => "NEW",
    }
}

/// Live flows of a lab's eBPF datapath.
pub fn flows(lab: &str) -> Result<Vec<Flow>> {
    let cfg = ebpf::read_config(lab)?;
    let now = ebpf::monotonic_ns();
    let mut out = Vec::new();
    for (table, map) in ["confirmed", "pending"]
        .into_iter()
        .zip(ebpf::conntrack(lab)?)
    {
        let entries: Vec<(CtKey, CtEntry)> = map.iter().filter_map(|r| r.ok()).collect();
        for (k, e) in &entries {
            if e.flags & FLAG_ORIGIN == 0 {
                continue;
            }
            let pair = e.pair_key(k.proto);
            let reply = entries
                .iter()
                .find(|(pk, _)| *pk == pair)
                .map(|(_, pe)| *pe)
                .unwrap_or_default();
            let last = e.last_seen_ns.max(reply.last_seen_ns);
            if expired(&cfg, k.proto, e.state, last, now) {
                continue;
            }
            out.push(Flow {
                proto: proto_name(k.proto),
                table,
                state: state_name(k.proto, e.state.max(reply.state)),
                original: Endpoint {
                    src: ip(k.saddr),
                    sport: u16::from_be(k.sport),
                    dst: ip(k.daddr),
                    dport: u16::from_be(k.dport),
                },
                translated: Endpoint {
                    src: ip(e.saddr),
                    sport: u16::from_be(e.sport),
                    dst: ip(e.daddr),
                    dport: u16::from_be(e.dport),
                },
                age_secs: now.saturating_sub(e.created_ns) / 1_000_000_000,
                idle_secs: now.saturating_sub(last) / 1_000_000_000,
                packets: e.packets,
                bytes: e.bytes,
                reply_packets: reply.packets,
                reply_bytes: reply.bytes,
            });
        }
    }
    out.sort_by_key(|f| f.age_secs);
    Ok(out)
}

/// Deletes every entry of both tables; returns how many were deleted.
pub fn flush(lab: &str) -> Result<usize> {
    let mut n = 0;
    for mut map in ebpf::conntrack(lab)? {
        let keys: Vec<CtKey> = map.keys().filter_map(|k| k.ok()).collect();
        for k in keys {
            if map.remove(&k).is_ok() {
                n += 1;
            }
        }
    }
    Ok(n)
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    super::require_ebpf(
        lab,
        "its conntrack is the kernel's (`conntrack -L` in the host namespace)",
    )?;
    if args.flush {
        let n = flush(lab)?;
        println!("flushed {n} conntrack entries");
        return Ok(());
    }
    let flows = flows(lab)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&flows).expect("json"));
        return Ok(());
    }
    println!(
        "{:<5} {:<11} {:<22} {:<22} {:<22} {:>6} {:>14} {:>14}",
        "PROTO",
        "STATE",
        "SOURCE",
        "DESTINATION",
        "TRANSLATED SOURCE",
        "AGE",
        "PKTS OUT/IN",
        "BYTES OUT/IN"
    );
    for f in &flows {
        let t = if f.translated.src != f.original.src || f.translated.sport != f.original.sport {
            format!("{}:{}", f.translated.src, f.translated.sport)
        } else {
            format!("-> {}:{}", f.translated.dst, f.translated.dport)
        };
        println!(
            "{:<5} {:<11} {:<22} {:<22} {:<22} {:>5}s {:>14} {:>14}",
            f.proto,
            f.state,
            format!("{}:{}", f.original.src, f.original.sport),
            format!("{}:{}", f.original.dst, f.original.dport),
            t,
            f.age_secs,
            format!("{}/{}", f.packets, f.reply_packets),
            format!("{}/{}", f.bytes, f.reply_bytes),
        );
    }
    Ok(())
}
