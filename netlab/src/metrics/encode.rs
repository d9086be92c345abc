//! The metrics, their types and labels, encoded with `prometheus-client`. One registry
//! per scrape, built from the labs' figures; every series carries a `lab` label, so
//! that one scrape covers every lab.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `netlab_lab_info` | gauge (1) | lab, datapath, device |
//! | `netlab_datapath_events_total` | counter | lab, event (`netlab stats`' counters) |
//! | `netlab_datapath_drops_total` | counter | lab, reason |
//! | `netlab_conntrack_new_flows_total` | counter | lab, reason (`masquerade`, `published`) |
//! | `netlab_conntrack_flows` | gauge | lab, table, state, proto |
//! | `netlab_conntrack_half_open_flows` | gauge | lab, age (`0-1s`, `1-10s`, `10-30s`, `30s+`) |
//! | `netlab_conntrack_pending_evicted_estimate` | gauge | lab |
//! | `netlab_conntrack_table_entries` / `_table_max_entries` / `_table_memory_bytes` | gauge | lab, table |
//! | `netlab_nat_ports_in_use` | gauge | lab, proto (`tcp`, `udp`, `icmp`) |
//! | `netlab_nat_ports` | gauge | lab |
//! | `netlab_published_packets_total` / `_bytes_total` / `_connections_total` | counter | lab, container, host_ip, host_port, proto |
//! | `netlab_gc_runs_total`, `netlab_gc_expired_total` | counter | lab |
//! | `netlab_gc_run_duration_seconds` | gauge | lab, run (`last`, `longest`) |
//! | `netlab_fast_path_ratio` | gauge | lab |

use prometheus_client::{
    encoding::{EncodeLabelSet, prometheus_text, text},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use netlab_common::stats::RETIRED_DROPS;

use super::LabFigures;
use crate::datapath::inspect::{HALF_OPEN_AGES, NAT_PROTOS};

/// How a scrape is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus' text format 0.0.4: `promtool`, node_exporter's textfile collector.
    Prometheus,
    /// OpenMetrics 1.0 text, for a scraper that asks for it.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => prometheus_text::CONTENT_TYPE,
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LabL {
    lab: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoL {
    lab: String,
    datapath: String,
    device: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventL {
    lab: String,
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonL {
    lab: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowL {
    lab: String,
    table: String,
    state: String,
    proto: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgeL {
    lab: String,
    age: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtoL {
    lab: String,
    proto: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableL {
    lab: String,
    table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunL {
    lab: String,
    run: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MappingL {
    lab: String,
    container: String,
    host_ip: String,
    host_port: String,
    proto: String,
}

/// The families of one scrape.
#[derive(Default)]
struct Families {
    info: Family<InfoL, Gauge>,
    events: Family<EventL, Counter>,
    drops: Family<ReasonL, Counter>,
    new_flows: Family<ReasonL, Counter>,
    flows: Family<FlowL, Gauge>,
    half_open: Family<AgeL, Gauge>,
    evicted: Family<LabL, Gauge>,
    table_entries: Family<TableL, Gauge>,
    table_max: Family<TableL, Gauge>,
    table_bytes: Family<TableL, Gauge>,
    nat_in_use: Family<ProtoL, Gauge>,
    nat_ports: Family<LabL, Gauge>,
    pub_packets: Family<MappingL, Counter>,
    pub_bytes: Family<MappingL, Counter>,
    pub_connections: Family<MappingL, Counter>,
    gc_runs: Family<LabL, Counter>,
    gc_expired: Family<LabL, Counter>,
    gc_duration: Family<RunL, Gauge<f64, std::sync::atomic::AtomicU64>>,
    fast_ratio: Family<LabL, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl Families {
    fn register(&self, r: &mut Registry) {
        r.register(
            "netlab_lab_info",
            "A lab that is up: its datapath and its containers' device (always 1)",
            self.info.clone(),
        );
        r.register(
            "netlab_datapath_events",
            "The eBPF datapath's event counters, as netlab stats names them",
            self.events.clone(),
        );
        r.register(
            "netlab_datapath_drops",
            "Packets the eBPF datapath dropped, by reason",
            self.drops.clone(),
        );
        r.register("netlab_conntrack_new_flows", "Flows opened in the table of flows being opened, by why: masquerade (a container's), published (to a published port)", self.new_flows.clone());
        r.register(
            "netlab_conntrack_flows",
            "Tracked flows (each counted once), by table, TCP state and protocol",
            self.flows.clone(),
        );
        r.register(
            "netlab_conntrack_half_open_flows",
            "TCP flows being opened (SYN_SENT, SYN_SENT2, SYN_RECV), by age",
            self.half_open.clone(),
        );
        r.register("netlab_conntrack_pending_evicted_estimate", "Flows pushed out of the table of flows being opened before they completed, derived: opened + closed - confirmed - expired - withdrawn - refused - still in the table, alive or dead (an LRU eviction is invisible to BPF; conntrack --flush makes it an estimate)", self.evicted.clone());
        r.register(
            "netlab_conntrack_table_entries",
            "Entries a conntrack table holds now (two per flow)",
            self.table_entries.clone(),
        );
        r.register(
            "netlab_conntrack_table_max_entries",
            "Entries a conntrack table holds at most",
            self.table_max.clone(),
        );
        r.register(
            "netlab_conntrack_table_memory_bytes",
            "Memory the kernel charges for a conntrack table",
            self.table_bytes.clone(),
        );
        r.register(
            "netlab_nat_ports_in_use",
            "NAT source ports held by masqueraded flows, per protocol (each has the whole range)",
            self.nat_in_use.clone(),
        );
        r.register(
            "netlab_nat_ports",
            "NAT source ports in the range (netlab up --nat-ports)",
            self.nat_ports.clone(),
        );
        r.register(
            "netlab_published_packets",
            "Packets through a published mapping, both ways",
            self.pub_packets.clone(),
        );
        r.register(
            "netlab_published_bytes",
            "Bytes through a published mapping, both ways",
            self.pub_bytes.clone(),
        );
        r.register(
            "netlab_published_connections",
            "Flows opened to a published mapping",
            self.pub_connections.clone(),
        );
        r.register(
            "netlab_gc_runs",
            "Runs of the in-kernel conntrack collector",
            self.gc_runs.clone(),
        );
        r.register(
            "netlab_gc_expired",
            "Established flows the collector expired",
            self.gc_expired.clone(),
        );
        r.register(
            "netlab_gc_run_duration_seconds",
            "How long the collector's last run, and its longest, took",
            self.gc_duration.clone(),
        );
        r.register(
            "netlab_fast_path_ratio",
            "Share of the packets the hooks saw that the fast path forwarded itself",
            self.fast_ratio.clone(),
        );
    }

    fn add(&self, f: &LabFigures) {
        let lab = || f.lab.clone();
        self.info
            .get_or_create(&InfoL {
                lab: lab(),
                datapath: f.datapath.into(),
                device: f.device.into(),
            })
            .set(1);
        for (p, c) in &f.ports {
            let Some(c) = c else { continue };
            let l = MappingL {
                lab: lab(),
                container: p.container.clone(),
                // Empty for every address (as in the spec `:8080:80`): `0.0.0.0` is
                // every IPv4 address only, a mapping of its own in a dual-stack lab.
                host_ip: p.spec.host_ip.map_or(String::new(), |a| a.to_string()),
                host_port: if p.spec.host_end == p.spec.host_port {
                    p.spec.host_port.to_string()
                } else {
                    format!("{}-{}", p.spec.host_port, p.spec.host_end)
                },
                proto: p.spec.proto.name().into(),
            };
            self.pub_packets.get_or_create(&l).inc_by(c.packets);
            self.pub_bytes.get_or_create(&l).inc_by(c.bytes);
            self.pub_connections.get_or_create(&l).inc_by(c.connections);
        }
        let Some(counters) = &f.counters else {
            return;
        };
        for (name, v) in &counters.counters {
            // The collector's run times are durations, not counts.
            if let Some(run) = name
                .strip_prefix("ct_gc_")
                .and_then(|n| n.strip_suffix("_us"))
            {
                let l = RunL {
                    lab: lab(),
                    run: run.into(),
                };
                self.gc_duration.get_or_create(&l).set(*v as f64 / 1e6);
                continue;
            }
            let l = EventL {
                lab: lab(),
                event: (*name).into(),
            };
            self.events.get_or_create(&l).inc_by(*v);
        }
        for (name, v) in &counters.drops {
            if RETIRED_DROPS.contains(name) {
                continue;
            }
            let l = ReasonL {
                lab: lab(),
                reason: (*name).into(),
            };
            self.drops.get_or_create(&l).inc_by(*v);
        }
        for (reason, counter) in [
            ("masquerade", "snat_new_flows"),
            ("published", "dnat_new_flows"),
        ] {
            let l = ReasonL {
                lab: lab(),
                reason: reason.into(),
            };
            self.new_flows.get_or_create(&l).inc_by(f.count(counter));
        }
        self.add_flows(f);
        for t in &f.conntrack.tables {
            let l = TableL {
                lab: lab(),
                table: t.name.into(),
            };
            self.table_entries.get_or_create(&l).set(t.in_use as i64);
            self.table_max.get_or_create(&l).set(t.max_entries as i64);
            self.table_bytes
                .get_or_create(&l)
                .set(t.memory_bytes as i64);
        }
        for (proto, n) in NAT_PROTOS.iter().zip(f.conntrack.nat_ports_in_use) {
            self.nat_in_use
                .get_or_create(&ProtoL {
                    lab: lab(),
                    proto: (*proto).into(),
                })
                .set(n as i64);
        }
        let l = LabL { lab: lab() };
        let (lo, hi) = f.nat_ports;
        self.nat_ports
            .get_or_create(&l)
            .set(i64::from(hi) - i64::from(lo) + 1);
        self.gc_runs.get_or_create(&l).inc_by(f.count("ct_gc_runs"));
        self.gc_expired
            .get_or_create(&l)
            .inc_by(f.count("ct_gc_expired"));
        let seen = f.count("uplink_ingress_packets") + f.count("endpoint_packets");
        let fast = f.count("fast_path_redirects");
        let ratio = if seen == 0 {
            0.0
        } else {
            fast as f64 / seen as f64
        };
        self.fast_ratio.get_or_create(&l).set(ratio);
    }

    fn add_flows(&self, f: &LabFigures) {
        let c = &f.conntrack;
        for k in &c.flows {
            let l = FlowL {
                lab: f.lab.clone(),
                table: k.table.into(),
                state: if k.state == "-" { "none" } else { k.state }.into(),
                proto: k.proto.into(),
            };
            self.flows.get_or_create(&l).set(k.flows as i64);
        }
        // Every age bucket is there, empty or not: a query need not tell "none" from
        // "not scraped".
        for ((age, _), n) in HALF_OPEN_AGES.iter().zip(c.half_open) {
            self.half_open
                .get_or_create(&AgeL {
                    lab: f.lab.clone(),
                    age: (*age).into(),
                })
                .set(n as i64);
        }
        // Flows still there count whether alive or dead: one that expired unmet (a
        // TIME_WAIT, an unanswered datagram) was not pushed out, nor one refused (its
        // SYN answered by a reset, removed at once).
        let added = f.count("snat_new_flows") + f.count("dnat_new_flows") + f.count("ct_closed");
        let left = f.count("ct_confirmed")
            + f.count("ct_expired")
            + f.count("ct_withdrawn")
            + f.count("ct_reset_unanswered");
        let evicted = added.saturating_sub(left).saturating_sub(c.pending_present);
        self.evicted
            .get_or_create(&LabL { lab: f.lab.clone() })
            .set(evicted as i64);
    }
}

/// One scrape of `labs`.
pub fn encode(labs: &[LabFigures], format: Format) -> String {
    let families = Families::default();
    for f in labs {
        families.add(f);
    }
    let mut registry = Registry::default();
    families.register(&mut registry);
    let mut out = String::new();
    let written = match format {
        Format::Prometheus => prometheus_text::encode(&mut out, &registry),
        Format::OpenMetrics => text::encode(&mut out, &registry),
    };
    written.expect("writing to a String cannot fail");
    out
}
