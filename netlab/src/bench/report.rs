//! The benchmark's figures: samples per (scenario, contender, ports, metric), their
//! median and min–max, the ratio to iptables and the fraction of the veth reference,
//! the terminal table and the JSON file.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Contender, Options, Scenario};
use crate::lab::DatapathKind;

/// Bumped when the JSON changes incompatibly (fields are only ever added otherwise).
pub const JSON_FORMAT: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// Gbit/s received by the far end.
    Throughput,
    /// Transactions (RR) or connections (CRR) per second.
    Rate,
    /// Median latency of a transaction, microseconds.
    P50,
    /// 99th percentile latency, microseconds.
    P99,
    /// Milliseconds for `Datapath::publish` of one port.
    PublishTime,
    /// Datagrams per second received by the far end.
    PacketRate,
    /// Milliseconds for `netlab publish` of N specs in one command.
    CliPublishAll,
    /// Milliseconds for `netlab publish` of one more port when N are published.
    CliPublishOne,
    /// Milliseconds for `netlab unpublish` of one port when N are published.
    CliUnpublishOne,
    /// Milliseconds for `netlab rm` of a container with N published ports.
    CliRm,
    /// Connections per second with the conntrack table holding a million flows.
    RateFull,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Self::Throughput => "throughput",
            Self::Rate => "rate",
            Self::P50 => "p50",
            Self::P99 => "p99",
            Self::PublishTime => "publish_time",
            Self::PacketRate => "packet_rate",
            Self::CliPublishAll => "cli_publish_all",
            Self::CliPublishOne => "cli_publish_one",
            Self::CliUnpublishOne => "cli_unpublish_one",
            Self::CliRm => "cli_rm",
            Self::RateFull => "rate_full",
        }
    }

    /// The column heading in the table.
    pub fn heading(self, scenario: Scenario) -> String {
        let unit = self.unit_shown(scenario);
        match self {
            Self::P50 | Self::P99 => format!("{} {unit}", self.name()),
            Self::CliPublishAll => format!("publish N, {unit}"),
            Self::CliPublishOne => format!("publish 1 more, {unit}"),
            Self::CliUnpublishOne => format!("unpublish 1, {unit}"),
            Self::CliRm => format!("rm, {unit}"),
            Self::Rate if scenario == Scenario::I => format!("{unit}, empty table"),
            Self::RateFull => format!("{unit}, 1M flows"),
            _ => unit.to_string(),
        }
    }

    /// The unit, in the JSON's ASCII spelling.
    pub fn unit(self, scenario: Scenario) -> &'static str {
        match self {
            Self::Throughput => "Gbit/s",
            Self::Rate if scenario == Scenario::B => "trans/s",
            Self::Rate | Self::RateFull => "conn/s",
            Self::P50 | Self::P99 => "us",
            Self::PacketRate => "pps",
            Self::PublishTime
            | Self::CliPublishAll
            | Self::CliPublishOne
            | Self::CliUnpublishOne
            | Self::CliRm => "ms",
        }
    }

    /// The unit as the terminal shows it.
    pub fn unit_shown(self, scenario: Scenario) -> &'static str {
        match self.unit(scenario) {
            "us" => "µs",
            u => u,
        }
    }

    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Self::Throughput | Self::Rate | Self::RateFull | Self::PacketRate
        )
    }
}

/// One figure: what each run measured, or why it could not.
#[derive(Clone, Debug)]
pub struct Figure {
    pub scenario: Scenario,
    pub datapath: Contender,
    /// Scenarios d, e and h: the number of published ports.
    pub ports: Option<u32>,
    pub metric: Metric,
    pub samples: Vec<f64>,
    pub errors: Vec<String>,
}

/// Median (mean of the middle two for an even count), min and max.
pub fn summary(samples: &[f64]) -> Option<(f64, f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((median, v[0], v[n - 1]))
}

impl Figure {
    pub fn median(&self) -> Option<f64> {
        summary(&self.samples).map(|s| s.0)
    }
}

#[derive(Clone, Debug)]
pub struct Report {
    pub options: Options,
    pub nproc: usize,
    pub kernel: String,
    pub figures: Vec<Figure>,
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Report {
    pub fn new(options: &Options) -> Report {
        Report {
            options: options.clone(),
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: kernel(),
            figures: Vec::new(),
        }
    }

    fn figure(
        &mut self,
        scenario: Scenario,
        datapath: Contender,
        ports: Option<u32>,
        metric: Metric,
    ) -> &mut Figure {
        let at = self.figures.iter().position(|f| {
            f.scenario == scenario
                && f.datapath == datapath
                && f.ports == ports
                && f.metric == metric
        });
        let i = at.unwrap_or_else(|| {
            self.figures.push(Figure {
                scenario,
                datapath,
                ports,
                metric,
                samples: Vec::new(),
                errors: Vec::new(),
            });
            self.figures.len() - 1
        });
        &mut self.figures[i]
    }

    pub fn add(
        &mut self,
        scenario: Scenario,
        datapath: Contender,
        ports: Option<u32>,
        metric: Metric,
        value: f64,
    ) {
        self.figure(scenario, datapath, ports, metric)
            .samples
            .push(value);
    }

    /// Records that one run of a scenario could not be measured on a datapath.
    pub fn fail(
        &mut self,
        scenario: Scenario,
        datapath: Contender,
        ports: Option<u32>,
        error: &str,
    ) {
        for &m in scenario.metrics() {
            self.figure(scenario, datapath, ports, m)
                .errors
                .push(error.to_string());
        }
    }

    /// The figures in reading order: scenario, ports, metric, then contender as run.
    pub fn sorted(&self) -> Vec<&Figure> {
        let contenders = self.options.contenders();
        let order = |c: Contender| contenders.iter().position(|x| *x == c);
        let mut v: Vec<&Figure> = self.figures.iter().collect();
        v.sort_by_key(|f| (f.scenario, f.ports, f.metric, order(f.datapath)));
        v
    }

    /// The same figure of another contender.
    pub fn of(&self, f: &Figure, other: Contender) -> Option<&Figure> {
        self.figures.iter().find(|b| {
            b.datapath == other
                && b.scenario == f.scenario
                && b.ports == f.ports
                && b.metric == f.metric
        })
    }

    fn median_ratio(&self, f: &Figure, base: Contender) -> Option<f64> {
        let (m, b) = (f.median()?, self.of(f, base)?.median()?);
        (b > 0.0).then(|| m / b)
    }

    /// median / iptables' median of the same figure.
    pub fn ratio(&self, f: &Figure) -> Option<f64> {
        self.median_ratio(f, Contender::Lab(DatapathKind::Iptables))
    }

    /// median / the veth reference's median of the same figure: how much of what the
    /// machine can do at all (of its latency, for p50 and p99).
    pub fn ratio_to_veth(&self, f: &Figure) -> Option<f64> {
        self.median_ratio(f, Contender::Veth)
    }

    /// The stable JSON document (see the README).
    pub fn json(&self) -> Value {
        let o = &self.options;
        let figures: Vec<Value> = self
            .sorted()
            .into_iter()
            .map(|f| {
                let s = summary(&f.samples);
                json!({
                    "scenario": f.scenario.letter(),
                    "title": f.scenario.title(),
                    "datapath": f.datapath.name(),
                    "ports": f.ports,
                    "metric": f.metric.name(),
                    "unit": f.metric.unit(f.scenario),
                    "higher_is_better": f.metric.higher_is_better(),
                    "status": if f.samples.is_empty() { "n/a" } else { "ok" },
                    "samples": f.samples,
                    "median": s.map(|s| s.0),
                    "min": s.map(|s| s.1),
                    "max": s.map(|s| s.2),
                    "ratio_to_iptables": self.ratio(f),
                    "errors": f.errors,
                    "kind": if f.datapath.is_reference() { "reference" } else { "datapath" },
                    "ratio_to_veth": self.ratio_to_veth(f),
                })
            })
            .collect();
        json!({
            "format": JSON_FORMAT,
            "netlab_version": env!("CARGO_PKG_VERSION"),
            "machine": {"nproc": self.nproc, "kernel": self.kernel},
            "options": {
                "datapaths": o.datapaths.iter().map(|d| d.name()).collect::<Vec<_>>(),
                "scenarios": o.scenarios.iter().map(|s| s.letter()).collect::<Vec<_>>(),
                "runs": o.runs,
                "duration_secs": o.duration.as_secs(),
                "port_counts": o.port_counts,
                "references": if o.reference { vec!["veth"] } else { Vec::new() },
            },
            "figures": figures,
        })
    }

    /// The table printed at the end.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let o = &self.options;
        let _ = writeln!(
            out,
            "netlab bench: {} run(s) of {} s on {} CPU(s), kernel {}",
            o.runs,
            o.duration.as_secs(),
            self.nproc,
            self.kernel
        );
        let _ = writeln!(
            out,
            "each cell: median [min-max] over the runs, xR = median / iptables' median, vR = median / the veth reference's median"
        );
        let figures = self.sorted();
        // Blocks: one per (scenario, ports).
        let mut blocks: Vec<(Scenario, Option<u32>)> =
            figures.iter().map(|f| (f.scenario, f.ports)).collect();
        blocks.dedup();
        for (scenario, ports) in blocks {
            let title = match (scenario, ports) {
                (Scenario::D | Scenario::E | Scenario::H, Some(n)) => {
                    format!("({}) {}, N = {n}", scenario.letter(), scenario.title())
                }
                _ => format!("({}) {}", scenario.letter(), scenario.title()),
            };
            let _ = writeln!(out, "\n{title}");
            let metrics = scenario.metrics();
            let mut rows: Vec<(Contender, Vec<String>)> = Vec::new();
            for c in o.contenders() {
                let row: Vec<&Figure> = metrics
                    .iter()
                    .filter_map(|m| {
                        figures.iter().copied().find(|f| {
                            f.scenario == scenario
                                && f.ports == ports
                                && f.datapath == c
                                && f.metric == *m
                        })
                    })
                    .collect();
                if row.is_empty() {
                    continue;
                }
                let cells = if row.iter().all(|f| f.samples.is_empty()) {
                    let why = row[0].errors.first().map(String::as_str).unwrap_or("");
                    vec![format!("n/a: {why}")]
                } else {
                    row.iter().map(|f| self.cell(f)).collect()
                };
                rows.push((c, cells));
            }
            let headings: Vec<String> = metrics.iter().map(|m| m.heading(scenario)).collect();
            // Each column as wide as its widest cell (an n/a line spans the row).
            let widths: Vec<usize> = (0..metrics.len())
                .map(|i| {
                    rows.iter()
                        .filter(|(_, cells)| cells.len() == metrics.len())
                        .map(|(_, cells)| cells[i].chars().count())
                        .chain([headings[i].chars().count()])
                        .max()
                        .unwrap_or(0)
                        + 4
                })
                .collect();
            let mut header = format!("  {:<20}", "datapath");
            for (h, w) in headings.iter().zip(&widths) {
                let _ = write!(header, "{h:<w$}");
            }
            let _ = writeln!(out, "{}", header.trim_end());
            for (c, cells) in rows {
                let mut line = format!("  {:<20}", c.name());
                for (cell, w) in cells.iter().zip(widths.iter().chain(std::iter::repeat(&0))) {
                    let _ = write!(line, "{cell:<w$}");
                }
                let _ = writeln!(out, "{}", line.trim_end());
            }
        }
        out
    }

    fn cell(&self, f: &Figure) -> String {
        let Some((med, min, max)) = summary(&f.samples) else {
            return "n/a".into();
        };
        let mut s = format!("{} [{}-{}]", num(med), num(min), num(max));
        if let Some(r) = self.ratio(f) {
            let _ = write!(s, " x{r:.2}");
        }
        if let Some(r) = self.ratio_to_veth(f) {
            let _ = write!(s, " v{r:.2}");
        }
        if !f.errors.is_empty() {
            let _ = write!(s, " ({} failed)", f.errors.len());
        }
        s
    }
}

/// A figure with as many digits as it deserves.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::test_options;

    const EBPF: Contender = Contender::Lab(DatapathKind::Ebpf);
    const IPTABLES: Contender = Contender::Lab(DatapathKind::Iptables);

    #[test]
    fn medians_and_ranges() {
        assert_eq!(summary(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(summary(&[4.0, 1.0, 2.0, 3.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(summary(&[]), None);
        assert_eq!(num(12345.6), "12346");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(1.2345), "1.23");
    }

    #[test]
    fn ratios_json_and_table() {
        let mut r = Report::new(&test_options("ebpf,iptables", "a,b,h", "10"));
        for v in [10.0, 12.0, 11.0] {
            r.add(Scenario::A, IPTABLES, None, Metric::Throughput, v);
            r.add(Scenario::A, EBPF, None, Metric::Throughput, v * 1.5);
            r.add(
                Scenario::A,
                Contender::Veth,
                None,
                Metric::Throughput,
                v * 2.0,
            );
        }
        r.fail(Scenario::B, EBPF, None, "publishing is not implemented");
        for m in [Metric::Rate, Metric::P50, Metric::P99] {
            r.add(Scenario::B, IPTABLES, None, m, 100.0);
        }
        for m in Scenario::H.metrics() {
            r.add(Scenario::H, EBPF, Some(10), *m, 2.0);
            r.add(Scenario::H, IPTABLES, Some(10), *m, 40.0);
        }
        let ebpf_a = r
            .figures
            .iter()
            .find(|f| f.datapath == EBPF && f.scenario == Scenario::A)
            .unwrap();
        assert!((r.ratio(ebpf_a).unwrap() - 1.5).abs() < 1e-9);
        assert!((r.ratio_to_veth(ebpf_a).unwrap() - 0.75).abs() < 1e-9);

        let j = r.json();
        assert_eq!(j["format"], 1);
        assert_eq!(j["options"]["references"], serde_json::json!(["veth"]));
        assert_eq!(
            j["options"]["datapaths"],
            serde_json::json!(["ebpf", "iptables"])
        );
        let figs = j["figures"].as_array().unwrap();
        // a: ebpf, iptables, veth (the order they run); then b's three metrics.
        assert_eq!(figs[0]["datapath"], "ebpf");
        assert_eq!(figs[0]["median"], 16.5);
        assert_eq!(figs[0]["ratio_to_veth"], 0.75);
        assert_eq!(figs[0]["kind"], "datapath");
        assert_eq!(figs[1]["ratio_to_iptables"], 1.0);
        assert_eq!(figs[2]["datapath"], "veth");
        assert_eq!(figs[2]["kind"], "reference");
        assert_eq!(figs[2]["ratio_to_veth"], 1.0);
        let na = figs
            .iter()
            .find(|f| f["datapath"] == "ebpf" && f["scenario"] == "b")
            .unwrap();
        assert_eq!(na["status"], "n/a");
        assert_eq!(na["median"], Value::Null);
        assert_eq!(na["ratio_to_veth"], Value::Null);
        assert_eq!(na["errors"][0], "publishing is not implemented");
        let rm = figs
            .iter()
            .find(|f| f["datapath"] == "ebpf" && f["metric"] == "cli_rm")
            .unwrap();
        assert_eq!(rm["unit"], "ms");
        assert_eq!(rm["ports"], 10);
        assert_eq!(rm["higher_is_better"], false);
        assert_eq!(rm["ratio_to_iptables"], 0.05);

        let t = r.table();
        assert!(t.contains("16.5 [15.0-18.0] x1.50 v0.75"), "{t}");
        assert!(t.contains("n/a: publishing is not implemented"), "{t}");
        assert!(t.contains("(h) the CLI with N published ports"), "{t}");
        assert!(t.contains("publish N, ms"), "{t}");
        assert!(t.contains("2.00 [2.00-2.00] x0.05"), "{t}");
    }
}
