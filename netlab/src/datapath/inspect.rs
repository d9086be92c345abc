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

/// Tracked flows counted rather than listed, with the tables that hold them: what
/// `metrics` shows of conntrack.
#[derive(Clone, Debug, Default)]
pub struct FlowCensus {
    /// The datapath's tables, as `status` shows them.
    pub tables: Vec<TableInfo>,
    /// Flows by table, state (as [`Flow::state`]) and protocol; kinds with none are
    /// left out.
    pub flows: Vec<FlowKind>,
    /// TCP flows being opened (SYN_SENT, SYN_RECV), by age: below each of
    /// `netlab_common::census::HALF_OPEN_BOUNDS` seconds, then the rest.
    pub half_open: [u64; netlab_common::census::HALF_OPEN_AGES],
    /// Distinct NAT source ports held by masqueraded flows (per protocol, summed).
    pub nat_ports_in_use: u64,
}

/// How many flows of one table, state and protocol there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKind {
    pub table: &'static str,
    pub state: &'static str,
    pub proto: &'static str,
    pub flows: u64,
}

impl FlowCensus {
    /// The census of a listing of flows, with the NAT's port range (inclusive).
    pub fn of(tables: Vec<TableInfo>, flows: &[Flow], nat_ports: (u16, u16)) -> FlowCensus {
        use netlab_common::census::age_bucket;
        let mut kinds: std::collections::BTreeMap<(&'static str, &'static str, &'static str), u64> =
            Default::default();
        let mut half_open = [0u64; netlab_common::census::HALF_OPEN_AGES];
        let mut ports: Vec<(&str, u16)> = Vec::new();
        for f in flows {
            *kinds.entry((f.table, f.state, f.proto)).or_default() += 1;
            if f.proto == "tcp" && matches!(f.state, "SYN_SENT" | "SYN_RECV") {
                half_open[age_bucket(f.age_secs.min(u32::MAX as u64) as u32)] += 1;
            }
            let (lo, hi) = nat_ports;
            if f.translated.src != f.original.src
                && (lo..=hi).contains(&f.translated.sport)
                && matches!(f.proto, "tcp" | "udp" | "icmp")
            {
                ports.push((f.proto, f.translated.sport));
            }
        }
        ports.sort_unstable();
        ports.dedup();
        FlowCensus {
            tables,
            flows: kinds
                .into_iter()
                .map(|((table, state, proto), flows)| FlowKind {
                    table,
                    state,
                    proto,
                    flows,
                })
                .collect(),
            half_open,
            nat_ports_in_use: ports.len() as u64,
        }
    }

    /// Flows of one table.
    pub fn in_table(&self, table: &str) -> u64 {
        self.flows
            .iter()
            .filter(|k| k.table == table)
            .map(|k| k.flows)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(
        table: &'static str,
        proto: &'static str,
        state: &'static str,
        src: [u8; 4],
        sport: u16,
        age: u64,
    ) -> Flow {
        let at = |a: [u8; 4], p| Endpoint {
            src: Ipv4Addr::from(a),
            sport: p,
            dst: Ipv4Addr::new(203, 0, 113, 1),
            dport: 80,
        };
        Flow {
            proto,
            table,
            state,
            original: at([172, 18, 0, 2], 40000),
            translated: at(src, sport),
            age_secs: age,
            idle_secs: 0,
            packets: 1,
            bytes: 60,
            reply_packets: 0,
            reply_bytes: 0,
        }
    }

    /// A listing counted: kinds, half-open ages, and NAT ports once each however many
    /// flows share them (and only masqueraded ones in the range).
    #[test]
    fn a_listing_is_counted_as_the_census_counts() {
        let up = [198, 51, 100, 2];
        let flows = [
            flow("confirmed", "tcp", "ESTABLISHED", up, 20000, 5),
            flow("confirmed", "tcp", "ESTABLISHED", up, 20000, 5),
            flow("pending", "tcp", "SYN_SENT", up, 20001, 0),
            flow("pending", "tcp", "SYN_RECV", [172, 18, 0, 2], 40000, 12),
            flow("confirmed", "udp", "-", up, 20000, 40),
            flow("confirmed", "udp", "-", up, 19999, 40),
        ];
        let c = FlowCensus::of(Vec::new(), &flows, (20000, 29999));
        assert_eq!(c.in_table("confirmed"), 4);
        assert_eq!(c.in_table("pending"), 2);
        assert_eq!(
            c.flows[0],
            FlowKind {
                table: "confirmed",
                state: "-",
                proto: "udp",
                flows: 2
            }
        );
        assert_eq!(c.half_open, [1, 0, 1, 0]);
        // tcp 20000, tcp 20001, udp 20000 (19999 is outside the range, the SYN_RECV
        // flow not masqueraded).
        assert_eq!(c.nat_ports_in_use, 3);
    }
}
