//! The benchmark's figures: samples per (scenario, contender, ports, metric), each
//! from a numbered round; their medians and confidence intervals; ratios between
//! contenders computed round by round, so that the machine's drift between rounds
//! cancels; the rounds a disturbed machine spoiled; and what the targets and goals
//! ask of them. The terminal table is `table.rs`, the JSON `json.rs`.

use std::collections::BTreeMap;

use super::{
    Contender, Scenario,
    disturb::{self, Load},
    goal::{self, Goal, Verdict},
    metric::{Metric, Subject},
    options::Options,
    stats::{self, Estimate},
};

/// One figure: what each round measured, or why it could not.
#[derive(Clone, Debug)]
pub struct Figure {
    pub scenario: Scenario,
    pub datapath: Contender,
    /// Scenarios d, e and h: the number of published ports.
    pub ports: Option<u32>,
    pub metric: Metric,
    pub samples: Vec<f64>,
    /// The round each sample came from.
    pub rounds: Vec<u32>,
    pub errors: Vec<String>,
    /// The round each error came from.
    pub failed: Vec<u32>,
}

/// Median (mean of the middle two for an even count), min and max.
pub fn summary(samples: &[f64]) -> Option<(f64, f64, f64)> {
    let median = stats::median(samples)?;
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((median, min, max))
}

impl Figure {
    pub fn median(&self) -> Option<f64> {
        stats::median(&self.samples)
    }

    /// Whether `other` is the same figure of (perhaps) another contender.
    fn same(&self, other: &Figure) -> bool {
        self.scenario == other.scenario && self.ports == other.ports && self.metric == other.metric
    }
}

/// What the machine did while one contender measured one scenario in one round.
#[derive(Clone, Debug)]
pub struct Watched {
    pub round: u32,
    pub contender: Contender,
    pub scenario: Scenario,
    pub ports: Option<u32>,
    pub load: Load,
}

/// A subject and where it stands.
#[derive(Clone, Debug)]
pub struct Standing {
    pub subject: Subject,
    pub estimate: Option<Estimate>,
}

/// The scenarios whose ratios `--target-width` narrows: the data paths' rates. e and h
/// time the control plane, where ratios of a hundred or more need no second digit.
pub const TARGET_SCENARIOS: [Scenario; 5] = [
    Scenario::A,
    Scenario::B,
    Scenario::C,
    Scenario::D,
    Scenario::G,
];

#[derive(Clone, Debug)]
pub struct Report {
    pub options: Options,
    pub nproc: usize,
    pub kernel: String,
    /// What kind of virtual machine this is, if one ([`virtualized`]).
    pub virtualized: Option<String>,
    pub figures: Vec<Figure>,
    /// The round being measured, then the number of rounds run.
    pub round: u32,
    pub watched: Vec<Watched>,
}

/// What kind of virtual machine the benchmark runs in: `qemu-tcg` (emulated, about
/// twelve times slower than its host: its absolute figures are not a real machine's)
/// or `qemu-kvm` in a guest of `cargo xtask vm` (which names it on the kernel command
/// line), `hypervisor` where the CPU says it runs under one, nothing on bare metal.
/// Ratios inside one run are what such a machine's figures are good for.
fn virtualized() -> Option<String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if let Some(accel) = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("netlab.accel="))
    {
        return Some(format!("qemu-{accel}"));
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == "hypervisor"))
        .then(|| "hypervisor".to_string())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
const IPTABLES: Contender = Contender::lab(crate::lab::DatapathKind::Iptables);

impl Report {
    pub fn new(options: &Options) -> Report {
        Report {
            options: options.clone(),
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: kernel(),
            virtualized: virtualized(),
            figures: Vec::new(),
            round: 0,
            watched: Vec::new(),
        }
    }

    /// Samples added from now on belong to round `round`.
    pub fn start_round(&mut self, round: u32) {
        self.round = round;
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
                rounds: Vec::new(),
                errors: Vec::new(),
                failed: Vec::new(),
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
        let round = self.round;
        let f = self.figure(scenario, datapath, ports, metric);
        f.samples.push(value);
        f.rounds.push(round);
    }

    /// Records that one round could not measure `metrics` of a scenario on a
    /// datapath.
    pub fn fail(
        &mut self,
        scenario: Scenario,
        datapath: Contender,
        ports: Option<u32>,
        metrics: &[Metric],
        error: &str,
    ) {
        let round = self.round;
        for &m in metrics {
            let f = self.figure(scenario, datapath, ports, m);
            f.errors.push(error.to_string());
            f.failed.push(round);
        }
    }

    /// Records what the machine did during a measurement of this round.
    pub fn watch(
        &mut self,
        scenario: Scenario,
        contender: Contender,
        ports: Option<u32>,
        load: Load,
    ) {
        self.watched.push(Watched {
            round: self.round,
            contender,
            scenario,
            ports,
            load,
        });
    }

    /// The figures in reading order: scenario, ports, metric, then contender as run.
    pub fn sorted(&self) -> Vec<&Figure> {
        let contenders = self.options.contenders();
        let order = |c: Contender| contenders.iter().position(|x| *x == c);
        let metrics = |s: Scenario| self.options.metrics(s);
        let mut v: Vec<&Figure> = self.figures.iter().collect();
        v.sort_by_key(|f| {
            let m = metrics(f.scenario).iter().position(|m| *m == f.metric);
            (f.scenario, f.ports, m, order(f.datapath))
        });
        v
    }

    /// The same figure of another contender.
    pub fn of(&self, f: &Figure, other: Contender) -> Option<&Figure> {
        self.figures
            .iter()
            .find(|b| b.datapath == other && b.same(f))
    }

    fn find(&self, s: &Subject, c: Contender, metric: Metric) -> Option<&Figure> {
        self.figures.iter().find(|f| {
            f.datapath == c && f.scenario == s.scenario && f.ports == s.ports && f.metric == metric
        })
    }

    /// A subject's two figures: its own, and its base's (when it has one).
    fn sides(&self, s: &Subject) -> (Option<&Figure>, Option<&Figure>) {
        let base = s
            .denominator
            .and_then(|d| self.find(s, d, s.base_metric.unwrap_or(s.metric)));
        (self.find(s, s.numerator, s.metric), base)
    }

    /// The disturbed rounds of a scenario (at one port count), each with why: a
    /// measurement during which the machine was busy or stolen from, or the veth
    /// reference far from its median.
    pub fn disturbed(&self, scenario: Scenario, ports: Option<u32>) -> BTreeMap<u32, Vec<String>> {
        // The worst of each contender's measurements (netlab's and a peer tool's) in
        // each round.
        let mut worst: Vec<(u32, Contender, Load)> = Vec::new();
        for w in self
            .watched
            .iter()
            .filter(|w| w.scenario == scenario && w.ports == ports)
        {
            match worst
                .iter_mut()
                .find(|(r, c, _)| *r == w.round && *c == w.contender)
            {
                Some(x) => x.2 = x.2.worst(w.load),
                None => worst.push((w.round, w.contender, w.load)),
            }
        }
        let mut out: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for (round, c, load) in worst {
            if let Some(why) = load.disturbed() {
                out.entry(round)
                    .or_default()
                    .push(format!("{}: {why}", c.name()));
            }
        }
        // Each reference that ran the scenario (veth, and veth6 with IPv6): an added
        // round may run only the one of its ratio's family.
        let references = self.figures.iter().filter(|f| {
            f.datapath.is_reference()
                && f.scenario == scenario
                && f.ports == ports
                && f.metric == scenario.metrics()[0]
        });
        for f in references {
            let median = f.median().unwrap_or(0.0);
            for (&round, &v) in f.rounds.iter().zip(&f.samples) {
                let off = disturb::off_by_pct(v, median);
                if off.abs() > disturb::VETH_LIMIT_PCT {
                    out.entry(round).or_default().push(format!(
                        "{} reference {off:+.0} % off its median",
                        f.datapath.name()
                    ));
                }
            }
        }
        out
    }

    /// The rounds left out of a scenario's figures (`--drop-disturbed`).
    pub fn dropped(&self, scenario: Scenario, ports: Option<u32>) -> Vec<u32> {
        if self.options.drop_disturbed {
            self.disturbed(scenario, ports).into_keys().collect()
        } else {
            Vec::new()
        }
    }

    /// A figure's (round, sample) pairs that count.
    pub fn kept(&self, f: &Figure) -> Vec<(u32, f64)> {
        let dropped = self.dropped(f.scenario, f.ports);
        f.rounds
            .iter()
            .copied()
            .zip(f.samples.iter().copied())
            .filter(|(r, _)| !dropped.contains(r))
            .collect()
    }

    /// A figure's median and interval over the rounds that count.
    pub fn estimate(&self, f: &Figure) -> Option<Estimate> {
        self.interval(&self.kept(f))
    }

    /// The median and interval of per-round values. With `--target-width`, the rounds
    /// after the first `--runs` were added for the spread those showed: the interval
    /// takes its spread from them alone (Stein's two-stage interval, see
    /// [`stats::estimate_after`]).
    fn interval(&self, rounds: &[(u32, f64)]) -> Option<Estimate> {
        let values: Vec<f64> = rounds.iter().map(|(_, v)| *v).collect();
        let pilot = match self.options.target_width {
            Some(_) => rounds
                .iter()
                .filter(|(r, _)| *r <= self.options.runs)
                .count(),
            None => values.len(),
        };
        stats::estimate_after(&values, pilot, self.options.confidence)
    }

    /// `f / base`'s figure, round by round: (round, ratio) for every round that
    /// counts in which both measured it.
    pub fn paired(&self, f: &Figure, base: Contender) -> Vec<(u32, f64)> {
        match self.of(f, base) {
            Some(b) => self.paired_with(f, b),
            None => Vec::new(),
        }
    }

    /// `f / b`, round by round, for any two figures.
    fn paired_with(&self, f: &Figure, b: &Figure) -> Vec<(u32, f64)> {
        let theirs = self.kept(b);
        self.kept(f)
            .into_iter()
            .filter_map(|(r, v)| {
                let (_, d) = theirs.iter().find(|(rb, _)| *rb == r)?;
                (*d > 0.0).then(|| (r, v / d))
            })
            .collect()
    }

    /// The median of the per-round ratios `f / base` and its interval.
    pub fn ratio_estimate(&self, f: &Figure, base: Contender) -> Option<Estimate> {
        let paired = self.paired(f, base);
        // A figure against itself is 1 in every round, exactly: no resolution of a
        // measurement to allow for (`stats::estimate_after`'s floor).
        if f.datapath == base {
            return (!paired.is_empty()).then(|| Estimate {
                median: 1.0,
                interval: (paired.len() >= 2).then_some((1.0, 1.0)),
                n: paired.len(),
            });
        }
        self.interval(&paired)
    }

    /// The median of the per-round ratios to iptables (of the figure's family).
    pub fn ratio(&self, f: &Figure) -> Option<f64> {
        self.ratio_estimate(f, f.datapath.iptables_base())
            .map(|e| e.median)
    }

    /// The median of the per-round ratios to the veth reference: how much of what the
    /// machine can do at all (of its latency, for p50 and p99).
    pub fn ratio_to_veth(&self, f: &Figure) -> Option<f64> {
        self.ratio_estimate(f, f.datapath.reference())
            .map(|e| e.median)
    }

    /// Where a subject stands: `None` while a side has nothing that counts.
    pub fn estimate_of(&self, s: &Subject) -> Option<Estimate> {
        match self.sides(s) {
            (Some(f), None) if s.denominator.is_none() => self.estimate(f),
            (Some(f), Some(b)) => self.interval(&self.paired_with(f, b)),
            _ => None,
        }
    }

    /// Whether more rounds could ever tell anything about a subject: both sides
    /// measured it at least once.
    fn measurable(&self, s: &Subject) -> bool {
        let has = |f: Option<&Figure>| f.is_some_and(|f| !f.samples.is_empty());
        let (f, b) = self.sides(s);
        has(f) && (s.denominator.is_none() || has(b))
    }

    /// What `--target-width` narrows: every contender's ratio to iptables (of its
    /// family) and to the veth reference on the first figure of a, b, c, d (each port
    /// count) and g, a lab over IPv6's to itself over IPv4, and every goal's subject.
    pub fn targets(&self) -> Vec<Subject> {
        let mut v = self.rate_targets();
        for g in &self.options.goals {
            let s = g.subject();
            if !v.contains(&s) {
                v.push(s);
            }
        }
        v
    }

    /// The ratios on the data paths' rates that `--target-width` narrows.
    fn rate_targets(&self) -> Vec<Subject> {
        let o = &self.options;
        let contenders = o.contenders();
        let mut v = Vec::new();
        for &s in o.scenarios.iter().filter(|s| TARGET_SCENARIOS.contains(s)) {
            let ports: Vec<Option<u32>> = if s == Scenario::D {
                o.port_counts.iter().map(|n| Some(*n)).collect()
            } else {
                vec![None]
            };
            let runs = |c: &Contender| o.scenarios_for(*c).contains(&s);
            for p in ports {
                // By base: every ratio to iptables, then to veth, then to IPv4.
                let bases: [fn(Contender) -> Option<Contender>; 3] = [
                    |c| Some(c.iptables_base()),
                    |c| Some(c.reference()),
                    Contender::ipv4_twin,
                ];
                for base_of in bases {
                    for c in contenders.iter().filter(|c| runs(c)) {
                        let Some(base) = base_of(*c) else { continue };
                        if base == *c || !contenders.contains(&base) || !runs(&base) {
                            continue;
                        }
                        v.push(Subject {
                            scenario: s,
                            ports: p,
                            metric: s.metrics()[0],
                            numerator: *c,
                            denominator: Some(base),
                            base_metric: None,
                        });
                    }
                }
            }
        }
        v
    }

    /// The targets whose interval is wider than `width` % (or has none yet) and that
    /// more rounds could narrow, goals' included. Rounds are added by width alone:
    /// stopping once a goal's interval leaves its line would be optional stopping,
    /// which makes wrong verdicts several times as common as the confidence says.
    pub fn wide(&self, width: f64) -> Vec<Standing> {
        let mut seen = Vec::new();
        self.targets()
            .into_iter()
            .filter(|s| self.measurable(s))
            .map(|s| Standing {
                estimate: self.estimate_of(&s),
                subject: s,
            })
            .filter(|st| st.estimate.as_ref().is_none_or(|e| e.width_pct() > width))
            // A goal on a rate's ratio names the same interval as the rate: listed once.
            .filter(|st| {
                let d = st.subject.describe();
                let new = !seen.contains(&d);
                seen.push(d);
                new
            })
            .collect()
    }

    /// Every goal with where it stands and its verdict.
    pub fn verdicts(&self) -> Vec<(&Goal, Option<Estimate>, Verdict)> {
        self.options
            .goals
            .iter()
            .map(|g| {
                let e = self.estimate_of(&g.subject());
                let v = self.verdict(g, e.as_ref());
                (g, e, v)
            })
            .collect()
    }

    /// A goal's verdict on `e`, its subject's interval: undecided while a round
    /// failed on either side, since the rounds that are left are not the rounds run
    /// (a datapath that delivered nothing in a round must not be judged on the others).
    fn verdict(&self, g: &Goal, e: Option<&Estimate>) -> Verdict {
        if self.failed_rounds(&g.subject()) > 0 {
            return Verdict::Undecided;
        }
        // Measured, but every round left out as disturbed: nothing to decide on,
        // which is not "never measured".
        if e.is_none() && self.all_dropped(&g.subject()) {
            return Verdict::Undecided;
        }
        goal::decide(g.op, g.value, e)
    }

    /// Whether a subject's sides were measured and `--drop-disturbed` left out every
    /// round of them (the disturbed rounds are a scenario's, the same for every side).
    fn all_dropped(&self, s: &Subject) -> bool {
        let (f, b) = self.sides(s);
        let measured = |x: Option<&Figure>| x.is_some_and(|x| !x.samples.is_empty());
        measured(f)
            && (s.denominator.is_none() || measured(b))
            && f.is_some_and(|f| self.kept(f).is_empty())
    }

    /// How many rounds failed to measure either side of a subject (a round in which
    /// both failed is one).
    pub fn failed_rounds(&self, s: &Subject) -> usize {
        let (f, b) = self.sides(s);
        let mut rounds: Vec<u32> = [f, b]
            .into_iter()
            .flatten()
            .flat_map(|f| f.failed.iter().copied())
            .collect();
        rounds.sort_unstable();
        rounds.dedup();
        rounds.len()
    }

    /// Whether anything at all was measured.
    pub fn measured_anything(&self) -> bool {
        self.figures.iter().any(|f| !f.samples.is_empty())
    }

    /// The veth reference's own spread on a scenario's first figure, max - min over
    /// the median, %: what the machine does to a path that does not change.
    pub fn veth_spread(&self, scenario: Scenario) -> Option<f64> {
        let f = self.figures.iter().find(|f| {
            f.datapath.is_reference() && f.scenario == scenario && f.metric == scenario.metrics()[0]
        })?;
        let (median, min, max) = summary(&f.samples)?;
        (f.samples.len() > 1 && median > 0.0).then(|| (max - min) / median * 100.0)
    }
}

/// Which way a value is rounded for display. An interval's bounds are rounded
/// outward, so that the interval shown holds the one computed and a goal's verdict
/// never contradicts the figures beside it (a lower bound of 1.3951 against a goal
/// of 1.4 shows as 1.39, not 1.40).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Rounding {
    Nearest,
    Down,
    Up,
}

/// `v` with `decimals` decimals, rounded as `r` says.
fn fixed(v: f64, decimals: usize, r: Rounding) -> String {
    let scale = 10f64.powi(decimals as i32);
    // The nudge keeps a value that is exact in decimal (0.29 is 28.999999999999996
    // hundredths in binary) from being rounded past itself.
    let v = match r {
        Rounding::Nearest => v,
        Rounding::Down => (v * scale + 1e-9).floor() / scale,
        Rounding::Up => (v * scale - 1e-9).ceil() / scale,
    };
    format!("{v:.decimals$}")
}

/// A figure with as many digits as it deserves.
pub fn num(v: f64) -> String {
    num_rounded(v, Rounding::Nearest)
}

/// [`num`], rounded as `r` says.
pub fn num_rounded(v: f64, r: Rounding) -> String {
    fixed(v, num_decimals(v), r)
}

/// The decimals [`num`] gives `v`.
fn num_decimals(v: f64) -> usize {
    let a = v.abs();
    if a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else {
        2
    }
}

/// A ratio: two decimals, one from ×10, two significant digits below ×0.1 (eBPF's
/// publish time is a few ten-thousandths of iptables').
pub fn ratio_num(r: f64) -> String {
    ratio_rounded(r, Rounding::Nearest)
}

/// [`ratio_num`], rounded as `how` says.
pub fn ratio_rounded(r: f64, how: Rounding) -> String {
    fixed(r, ratio_decimals(r), how)
}

/// The decimals [`ratio_num`] gives `r`.
fn ratio_decimals(r: f64) -> usize {
    if r >= 10.0 {
        1
    } else if r >= 0.1 || r == 0.0 {
        2
    } else {
        (-r.log10().floor()) as usize + 1
    }
}

/// An interval's bound beside a goal of `goal`: rounded outward as [`num_rounded`] or
/// (`ratio`) [`ratio_rounded`] round it, with as many more decimals (up to six more)
/// as it takes not to reach the goal's value when the bound does not: an upper bound
/// of 999.6 beside `<1000` shows as 999.6, not 1000, which read against its "met".
pub fn bound_beside(v: f64, how: Rounding, goal: f64, ratio: bool) -> String {
    let first = if ratio {
        ratio_decimals(v)
    } else {
        num_decimals(v)
    };
    let side = |x: f64| x.partial_cmp(&goal);
    (first..=first + 6)
        .map(|d| fixed(v, d, how))
        .find(|s| s.parse::<f64>().ok().and_then(side) == side(v))
        .unwrap_or_else(|| fixed(v, first + 6, how))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::options::test_options;
    use crate::lab::DatapathKind;

    const EBPF: Contender = Contender::lab(DatapathKind::Ebpf);

    #[test]
    fn a_bound_beside_a_goal_never_reads_against_it() {
        assert_eq!(bound_beside(999.6, Rounding::Up, 1000.0, false), "999.6");
        assert_eq!(bound_beside(999.6, Rounding::Up, 2000.0, false), "1000");
        assert_eq!(bound_beside(1.3951, Rounding::Down, 1.395, true), "1.3951");
        assert_eq!(bound_beside(1.3951, Rounding::Down, 1.4, true), "1.39");
        assert_eq!(bound_beside(1.4, Rounding::Down, 1.4, true), "1.40");
    }

    #[test]
    fn medians_and_ranges() {
        assert_eq!(summary(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(summary(&[4.0, 1.0, 2.0, 3.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(summary(&[]), None);
        assert_eq!(num(12345.6), "12346");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(1.2345), "1.23");
        assert_eq!(ratio_num(14.39), "14.4");
        assert_eq!(ratio_num(1.333), "1.33");
        assert_eq!(ratio_num(0.000268), "0.00027");
        // Bounds outward: what is shown holds what was computed.
        assert_eq!(ratio_rounded(1.3951, Rounding::Down), "1.39");
        assert_eq!(ratio_rounded(1.3951, Rounding::Up), "1.40");
        assert_eq!(ratio_rounded(0.29, Rounding::Down), "0.29");
        assert_eq!(ratio_rounded(0.29, Rounding::Up), "0.29");
        assert_eq!(ratio_rounded(0.000268, Rounding::Down), "0.00026");
        assert_eq!(num_rounded(12.345, Rounding::Up), "12.4");
        assert_eq!(num_rounded(12345.6, Rounding::Down), "12345");
    }

    /// A report of `rounds` rounds of a: iptables at `base[r]`, eBPF at `ebpf[r]`,
    /// veth at 2 × iptables.
    fn report(ebpf: &[f64], base: &[f64]) -> Report {
        let mut r = Report::new(&test_options("ebpf,iptables", "a,c", "10"));
        for (i, (e, b)) in ebpf.iter().zip(base).enumerate() {
            r.start_round(i as u32 + 1);
            r.add(Scenario::A, EBPF, None, Metric::Throughput, *e);
            r.add(Scenario::A, IPTABLES, None, Metric::Throughput, *b);
            r.add(
                Scenario::A,
                Contender::Veth,
                None,
                Metric::Throughput,
                b * 2.0,
            );
        }
        r
    }

    #[test]
    fn ratios_are_paired_round_by_round() {
        // The machine halves its speed in round 3; each round's pair still says 1.5.
        let r = report(&[15.0, 15.0, 7.5, 15.0], &[10.0, 10.0, 5.0, 10.0]);
        let f = r.figures.iter().find(|f| f.datapath == EBPF).unwrap();
        assert_eq!(
            r.paired(f, IPTABLES),
            [(1, 1.5), (2, 1.5), (3, 1.5), (4, 1.5)]
        );
        // Only the figures' resolution widens it (a thousandth each).
        let e = r.ratio_estimate(f, IPTABLES).unwrap();
        let (lo, hi) = e.interval.unwrap();
        assert_eq!(e.median, 1.5);
        assert!(
            lo > 1.498 && lo < 1.5 && hi > 1.5 && hi < 1.502,
            "{lo} {hi}"
        );
        // A figure against itself is exactly 1.
        let base = r.figures.iter().find(|f| f.datapath == IPTABLES).unwrap();
        let e = r.ratio_estimate(base, IPTABLES).unwrap();
        assert_eq!((e.median, e.interval), (1.0, Some((1.0, 1.0))));
        assert_eq!(r.ratio_to_veth(f), Some(0.75));
        // The figure itself spreads with the machine.
        assert!(r.estimate(f).unwrap().width_pct() > 50.0);
        // A round one side missed is not paired.
        let mut r = report(&[15.0, 16.0], &[10.0, 10.0]);
        r.start_round(3);
        r.add(Scenario::A, EBPF, None, Metric::Throughput, 30.0);
        let f = r.figures.iter().find(|f| f.datapath == EBPF).unwrap();
        assert_eq!(r.paired(f, IPTABLES), [(1, 1.5), (2, 1.6)]);
    }

    #[test]
    fn disturbed_rounds_are_said_and_dropped_on_request() {
        // veth 10 % and more off its median in round 4; a busy machine in round 2.
        let mut r = report(
            &[15.0, 9.0, 15.0, 15.0, 15.0],
            &[10.0, 10.0, 10.0, 8.0, 10.0],
        );
        r.round = 2;
        r.watch(
            Scenario::A,
            EBPF,
            None,
            Load {
                steal_pct: 0.1,
                others_pct: Some(80.0),
            },
        );
        r.watch(
            Scenario::A,
            IPTABLES,
            None,
            Load {
                steal_pct: 0.1,
                others_pct: None,
            },
        );
        let d = r.disturbed(Scenario::A, None);
        assert_eq!(d.keys().copied().collect::<Vec<_>>(), [2, 4]);
        assert_eq!(d[&2], ["ebpf: other CPUs 80 % busy"]);
        assert_eq!(d[&4], ["veth reference -20 % off its median"]);
        assert!(r.disturbed(Scenario::C, None).is_empty());
        let f = r
            .figures
            .iter()
            .find(|f| f.datapath == EBPF)
            .unwrap()
            .clone();
        // Kept by default: round 2's 0.9 widens the interval.
        assert_eq!(r.paired(&f, IPTABLES).len(), 5);
        assert!(r.dropped(Scenario::A, None).is_empty());
        let wide = r.ratio_estimate(&f, IPTABLES).unwrap();
        r.options.drop_disturbed = true;
        assert_eq!(r.dropped(Scenario::A, None), [2, 4]);
        assert_eq!(r.paired(&f, IPTABLES), [(1, 1.5), (3, 1.5), (5, 1.5)]);
        let narrow = r.ratio_estimate(&f, IPTABLES).unwrap();
        assert!(narrow.width_pct() < wide.width_pct());
        assert!((r.veth_spread(Scenario::A).unwrap() - 20.0).abs() < 1e-9);
    }

    #[test]
    fn a_goal_of_rounds_all_dropped_is_undecided_not_unmeasured() {
        let mut r = report(&[15.0, 15.0], &[10.0, 10.0]);
        for round in [1, 2] {
            r.round = round;
            r.watch(
                Scenario::A,
                EBPF,
                None,
                Load {
                    steal_pct: 0.1,
                    others_pct: Some(90.0),
                },
            );
        }
        let goal = "a:ebpf/iptables>=1".to_string();
        r.options.goals = vec![crate::bench::options::parse_goal(&goal, &r.options).unwrap()];
        assert_eq!(r.verdicts()[0].2, Verdict::Met);
        r.options.drop_disturbed = true;
        assert_eq!(r.verdicts()[0].2, Verdict::Undecided);
        let json = crate::bench::json::render(&r);
        let ebpf = json["figures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["datapath"] == "ebpf")
            .unwrap();
        assert_eq!(ebpf["status"], "dropped");
    }

    #[test]
    fn each_reference_says_its_disturbed_rounds() {
        // veth steady; veth6 30 % off its median in round 3 only (an added round may
        // run only veth6).
        let mut r = report(&[15.0; 5], &[10.0; 5]);
        for (i, v) in [20.0, 20.0, 26.0, 20.0, 20.0].iter().enumerate() {
            r.round = i as u32 + 1;
            r.add(Scenario::A, Contender::Veth6, None, Metric::Throughput, *v);
        }
        let d = r.disturbed(Scenario::A, None);
        assert_eq!(d.keys().copied().collect::<Vec<_>>(), [3]);
        assert_eq!(d[&3], ["veth6 reference +30 % off its median"]);
    }

    #[test]
    fn targets_are_the_rates_ratios_and_the_goals() {
        let goals = ["c:p99:ebpf/iptables<=1".to_string()];
        let mut o = test_options("ebpf,iptables", "a,c,e", "10");
        o.goals = vec![crate::bench::options::parse_goal(&goals[0], &o).unwrap()];
        let mut r = Report::new(&o);
        let t: Vec<String> = r.targets().iter().map(Subject::describe).collect();
        assert_eq!(
            t,
            [
                "(a) Gbit/s ebpf / iptables",
                "(a) Gbit/s veth / iptables",
                "(a) Gbit/s ebpf / veth",
                "(a) Gbit/s iptables / veth",
                "(c) conn/s ebpf / iptables",
                "(c) conn/s veth / iptables",
                "(c) conn/s ebpf / veth",
                "(c) conn/s iptables / veth",
                "(c) p99 µs ebpf / iptables",
            ]
        );
        // Nothing measured: nothing more rounds could narrow... until a side has a
        // sample; one round has no interval, so it is wide.
        assert!(r.wide(5.0).is_empty());
        r.start_round(1);
        r.add(Scenario::A, EBPF, None, Metric::Throughput, 15.0);
        r.add(Scenario::A, IPTABLES, None, Metric::Throughput, 10.0);
        let w = r.wide(5.0);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].subject.describe(), "(a) Gbit/s ebpf / iptables");
        r.start_round(2);
        r.add(Scenario::A, EBPF, None, Metric::Throughput, 15.3);
        r.add(Scenario::A, IPTABLES, None, Metric::Throughput, 10.0);
        // Two rounds, 1.5 and 1.53: t(0.975, 1) = 12.7 makes that 20 % wide.
        let w = r.wide(5.0);
        assert!(w[0].estimate.unwrap().width_pct() > 5.0, "{w:?}");
        r.start_round(3);
        r.add(Scenario::A, EBPF, None, Metric::Throughput, 15.15);
        r.add(Scenario::A, IPTABLES, None, Metric::Throughput, 10.0);
        assert!(r.wide(5.0).is_empty(), "{:?}", r.wide(5.0));
        // The goal's p99 ratio is narrowed by its width alone: decided (met) over
        // three rounds, it is still 46 % wide, so it is still narrowed (stopping on a
        // decision would be optional stopping).
        for (round, p99) in [(1, 50.0), (2, 60.0), (3, 55.0)] {
            r.start_round(round);
            r.add(Scenario::C, EBPF, None, Metric::P99, p99);
            r.add(Scenario::C, IPTABLES, None, Metric::P99, 100.0);
            let w = r.wide(5.0);
            if round >= 2 {
                assert_eq!(w.len(), 1, "{w:?}");
                assert_eq!(w[0].subject.describe(), "(c) p99 µs ebpf / iptables");
            }
        }
        assert_eq!(r.verdicts()[0].2, Verdict::Met);
        let e = r.estimate_of(&o.goals[0].subject()).unwrap();
        assert!(e.width_pct() > 40.0, "{e:?}");
    }

    #[test]
    fn goals_are_judged_on_the_interval() {
        let mut o = test_options("ebpf,iptables", "c,h", "10");
        for g in [
            "c:ebpf/iptables>=1.4",
            "c:ebpf/iptables>=1.2",
            "c:ebpf/iptables>=1.6",
            "h:cli_rm:ebpf<1000",
            "c:ebpf/veth>=0.5",
            "c:p50:ebpf/p99<=1",
        ] {
            let g = crate::bench::options::parse_goal(g, &o).unwrap();
            o.goals.push(g);
        }
        let mut r = Report::new(&o);
        for (i, e) in [13_300.0, 13_100.0, 13_500.0, 13_200.0, 13_400.0]
            .iter()
            .enumerate()
        {
            r.start_round(i as u32 + 1);
            r.add(Scenario::C, EBPF, None, Metric::Rate, *e);
            r.add(Scenario::C, EBPF, None, Metric::P50, 60.0);
            r.add(Scenario::C, EBPF, None, Metric::P99, 90.0);
            r.add(Scenario::C, IPTABLES, None, Metric::Rate, 9_500.0);
            r.add(Scenario::H, EBPF, Some(10), Metric::CliRm, 60.0 + i as f64);
        }
        let v: Vec<(String, Verdict)> = r
            .verdicts()
            .into_iter()
            .map(|(g, _, v)| (g.text.clone(), v))
            .collect();
        assert_eq!(
            v,
            [
                ("c:ebpf/iptables>=1.4".to_string(), Verdict::Undecided),
                ("c:ebpf/iptables>=1.2".to_string(), Verdict::Met),
                ("c:ebpf/iptables>=1.6".to_string(), Verdict::Missed),
                ("h:cli_rm:ebpf<1000".to_string(), Verdict::Met),
                ("c:ebpf/veth>=0.5".to_string(), Verdict::NotMeasured),
                ("c:p50:ebpf/p99<=1".to_string(), Verdict::Met),
            ]
        );
    }

    /// A goal whose subject failed in a round, on either side, is undecided however
    /// far the rounds that are left stand from the line.
    #[test]
    fn a_goal_with_failed_rounds_is_undecided() {
        let mut o = test_options("ebpf,iptables", "c,h", "10");
        for g in ["c:ebpf/iptables>=1.2", "h:cli_rm:ebpf<1000"] {
            let g = crate::bench::options::parse_goal(g, &o).unwrap();
            o.goals.push(g);
        }
        let mut r = Report::new(&o);
        for round in 1..=5u32 {
            r.start_round(round);
            r.add(Scenario::C, IPTABLES, None, Metric::Rate, 9_500.0);
            if round <= 3 {
                r.add(
                    Scenario::C,
                    EBPF,
                    None,
                    Metric::Rate,
                    13_300.0 + round as f64,
                );
                r.add(
                    Scenario::H,
                    EBPF,
                    Some(10),
                    Metric::CliRm,
                    60.0 + round as f64,
                );
            } else {
                r.fail(Scenario::C, EBPF, None, &[Metric::Rate], "no answer");
                r.fail(Scenario::H, EBPF, Some(10), &[Metric::CliRm], "rm failed");
            }
        }
        for (g, _, v) in r.verdicts() {
            assert_eq!(v, Verdict::Undecided, "{}", g.text);
            assert_eq!(r.failed_rounds(&g.subject()), 2, "{}", g.text);
        }
        // A round in which both sides failed is one round.
        r.start_round(6);
        r.fail(Scenario::C, EBPF, None, &[Metric::Rate], "no answer");
        r.fail(Scenario::C, IPTABLES, None, &[Metric::Rate], "no answer");
        let g = &r.options.goals[0];
        assert_eq!(r.failed_rounds(&g.subject()), 3, "{}", g.text);
    }
}
