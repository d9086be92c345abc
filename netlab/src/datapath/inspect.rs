//! What a datapath shows of itself: flows, counters, per-mapping counters. The
//! `--json` shapes of `netlab conntrack`, `stats` and `ports` are these types.

use std::net::IpAddr;

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Endpoint {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
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
    /// Seconds until the flow expires if no packet comes either way: the timeout of
    /// its state (`up`'s flags) less its idle time, as `conntrack -L` shows it.
    pub expires_secs: u64,
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
    /// TCP flows being opened (SYN_SENT, SYN_SENT2, SYN_RECV), by age
    /// ([`HALF_OPEN_AGES`]).
    pub half_open: [u64; HALF_OPEN_AGES.len()],
    /// Distinct NAT source ports held by masqueraded flows, per protocol
    /// ([`NAT_PROTOS`]): each protocol has the whole range.
    pub nat_ports_in_use: [u64; 3],
    /// Whole flows the LRU table holds, alive or dead (idle past their timeout, their
    /// mapping withdrawn, not yet met or evicted): what is there to push out.
    pub pending_present: u64,
}

/// The protocols that take NAT ports, in the order of [`FlowCensus::nat_ports_in_use`].
pub const NAT_PROTOS: [&str; 3] = ["tcp", "udp", "icmp"];

/// Half-open age buckets: a name, and the age (seconds) a flow is below.
pub const HALF_OPEN_AGES: [(&str, u64); 4] = [
    ("0-1s", 1),
    ("1-10s", 10),
    ("10-30s", 30),
    ("30s+", u64::MAX),
];

/// How many flows of one table, state and protocol there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKind {
    pub table: &'static str,
    pub state: &'static str,
    pub proto: &'static str,
    pub flows: u64,
}

/// A census being taken, one flow at a time (a million of them in a scrape: a few
/// kinds found by identity, ports in bitmaps).
pub struct Tally {
    /// (table, state, protocol, flows), in the order first seen.
    kinds: Vec<(&'static str, &'static str, &'static str, u64)>,
    half_open: [u64; HALF_OPEN_AGES.len()],
    /// A bit per port of the NAT's range, for TCP, UDP and ICMP.
    ports: [Vec<u64>; 3],
    nat_ports: (u16, u16),
    pending_present: u64,
}

/// The same string, by identity first (the names are static).
fn same(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

impl Tally {
    /// For a NAT with this port range (inclusive).
    pub fn new(nat_ports: (u16, u16)) -> Tally {
        let words = (usize::from(nat_ports.1.saturating_sub(nat_ports.0)) + 1).div_ceil(64);
        Tally {
            kinds: Vec::new(),
            half_open: [0; HALF_OPEN_AGES.len()],
            ports: [vec![0; words], vec![0; words], vec![0; words]],
            nat_ports,
            pending_present: 0,
        }
    }

    /// An empty tally for the same NAT port range (one per thread of a census).
    pub fn empty(&self) -> Tally {
        Tally::new(self.nat_ports)
    }

    /// Adds the counts of `other`, a tally of other flows.
    pub fn merge(&mut self, other: Tally) {
        for (table, state, proto, flows) in other.kinds {
            self.count(table, state, proto, flows);
        }
        for (mine, theirs) in self.half_open.iter_mut().zip(other.half_open) {
            *mine += theirs;
        }
        for (mine, theirs) in self.ports.iter_mut().zip(other.ports) {
            for (m, t) in mine.iter_mut().zip(theirs) {
                *m |= t;
            }
        }
        self.pending_present += other.pending_present;
    }

    /// Adds `flows` to a kind's count.
    fn count(&mut self, table: &'static str, state: &'static str, proto: &'static str, flows: u64) {
        match self
            .kinds
            .iter_mut()
            .find(|k| same(k.0, table) && same(k.1, state) && same(k.2, proto))
        {
            Some(k) => k.3 += flows,
            None => self.kinds.push((table, state, proto, flows)),
        }
    }

    /// Counts a whole flow of the LRU table, alive or dead.
    pub fn pending_present(&mut self) {
        self.pending_present += 1;
    }

    /// Counts one flow: its kind, its age if it is being opened, and its NAT port if it
    /// is masqueraded (its translated source address is not its own) within the range.
    pub fn add(
        &mut self,
        table: &'static str,
        state: &'static str,
        proto: &'static str,
        age_secs: u64,
        masqueraded: bool,
        translated_sport: u16,
    ) {
        self.count(table, state, proto, 1);
        if proto == "tcp" && matches!(state, "SYN_SENT" | "SYN_SENT2" | "SYN_RECV") {
            let bucket = HALF_OPEN_AGES
                .iter()
                .position(|(_, below)| age_secs < *below)
                .unwrap_or(HALF_OPEN_AGES.len() - 1);
            self.half_open[bucket] += 1;
        }
        let (lo, hi) = self.nat_ports;
        // Both families' flows take their ports from the one range: an ICMPv6 echo's
        // identifier is counted with ICMP's.
        let family_free = if proto == "icmpv6" { "icmp" } else { proto };
        let Some(bitmap) = NAT_PROTOS.iter().position(|p| *p == family_free) else {
            return;
        };
        if masqueraded && (lo..=hi).contains(&translated_sport) {
            let bit = usize::from(translated_sport - lo);
            self.ports[bitmap][bit / 64] |= 1 << (bit % 64);
        }
    }

    /// The census, with the lab's tables.
    pub fn finish(mut self, tables: Vec<TableInfo>) -> FlowCensus {
        self.kinds.sort_unstable();
        FlowCensus {
            tables,
            flows: self
                .kinds
                .into_iter()
                .map(|(table, state, proto, flows)| FlowKind {
                    table,
                    state,
                    proto,
                    flows,
                })
                .collect(),
            half_open: self.half_open,
            nat_ports_in_use: self
                .ports
                .map(|bitmap| bitmap.iter().map(|w| u64::from(w.count_ones())).sum()),
            pending_present: self.pending_present,
        }
    }
}

impl FlowCensus {
    /// The census of a listing of flows, with the NAT's port range (inclusive).
    pub fn of(tables: Vec<TableInfo>, flows: &[Flow], nat_ports: (u16, u16)) -> FlowCensus {
        let mut tally = Tally::new(nat_ports);
        for f in flows {
            tally.add(
                f.table,
                f.state,
                f.proto,
                f.age_secs,
                f.translated.src != f.original.src,
                f.translated.sport,
            );
        }
        tally.finish(tables)
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
    use std::net::Ipv4Addr;

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
            src: Ipv4Addr::from(a).into(),
            sport: p,
            dst: Ipv4Addr::new(203, 0, 113, 1).into(),
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
            expires_secs: 30,
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
            flow("pending", "icmpv6", "-", up, 20005, 1),
        ];
        let c = FlowCensus::of(Vec::new(), &flows, (20000, 29999));
        assert_eq!(c.in_table("confirmed"), 4);
        assert_eq!(c.in_table("pending"), 3);
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
        // tcp 20000, tcp 20001, udp 20000, and the ICMPv6 echo's 20005 with ICMP's
        // (19999 is outside the range, the SYN_RECV flow not masqueraded).
        assert_eq!(c.nat_ports_in_use, [2, 1, 1]);
    }
}
