//! What a datapath shows of itself: flows, counters, per-mapping counters. The
//! `--json` shapes of `netlab conntrack`, `stats` and `ports` are these types.

use std::net::Ipv4Addr;

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Endpoint {
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

/// One tracked flow, listed once (from the direction that opened it).
#[derive(Clone, Debug, Serialize)]
pub struct Flow {
    pub proto: &'static str,
    /// Which table holds it (`confirmed`, `pending`).
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

/// Named counters and drop reasons, in index order.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub counters: Vec<(&'static str, u64)>,
    pub drops: Vec<(&'static str, u64)>,
}

/// Traffic through one published mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PortCounters {
    pub packets: u64,
    pub bytes: u64,
    pub connections: u64,
}

/// One of a datapath's tables, as `netlab status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TableInfo {
    pub name: &'static str,
    /// Entries it holds at most (two per flow for conntrack).
    pub max_entries: u32,
    /// Memory the kernel charges for it (`memlock` of the map).
    pub memory_bytes: u64,
    /// Entries it holds now. A least-recently-used table that is full is evicting:
    /// under a flood of new flows that is where the pressure shows, as nothing is
    /// dropped.
    pub in_use: u64,
}
