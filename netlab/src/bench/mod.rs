//! `netlab bench`: one set of workloads over each datapath, on fresh sandbox labs.
//!
//! A round builds one lab per datapath, in turn, each round starting one further
//! along (A B C, B C A, C A B, ...), so that drift on the machine, and whatever the
//! very first measurement of an invocation pays, spread over all of them; each lab is
//! torn down when its turn is over, whatever happened. The veth reference (one veth
//! pair between two namespaces, the most this machine can do) takes its turn with
//! them. Every ratio between two contenders is computed round by round, from the two
//! measurements of the same round, so that the machine's slow drift cancels, and is
//! reported as the median of those per-round ratios with a confidence interval
//! (`stats.rs`). With `--target-width`, rounds are added, each running only the
//! scenarios and contenders whose ratios are still too wide, until every interval is
//! narrow enough or `--max-runs` is reached. Goals (`--goal`) are decided on the
//! intervals (`goal.rs`), and rounds a busy machine spoiled are said (`disturb.rs`).

/// `eprintln!` that never panics: progress written to a closed pipe (`netlab bench
/// 2>&1 | head`) is lost, and the SIGPIPE the write raised interrupts the benchmark,
/// which then tears its lab down as on Ctrl-C.
macro_rules! progress {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

pub mod disturb;
pub mod goal;
pub mod json;
pub mod lab;
pub mod metric;
pub mod options;
pub mod pps;
pub mod report;
pub mod round;
pub mod rr;
pub mod stats;
pub mod svg;
pub mod table;
pub mod tool;
pub mod workload;

use std::sync::atomic::{AtomicI32, Ordering};

use crate::{
    error::{Error, Result},
    lab::{DatapathKind, Device},
};
use metric::Metric;
pub use options::{Flags, MAX_PORTS, Options};
use report::{Report, Standing};

/// The workloads. `F` is not a workload of its own: it adds the routed baseline
/// (no NAT at all) to scenarios a-c and g.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    A,
    B,
    C,
    D,
    E,
    F,
    G,
    H,
    I,
}

impl Scenario {
    pub const ALL: [Scenario; 9] = [
        Self::A,
        Self::B,
        Self::C,
        Self::D,
        Self::E,
        Self::F,
        Self::G,
        Self::H,
        Self::I,
    ];

    pub fn letter(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::B => "b",
            Self::C => "c",
            Self::D => "d",
            Self::E => "e",
            Self::F => "f",
            Self::G => "g",
            Self::H => "h",
            Self::I => "i",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::A => "egress TCP throughput, container -> wan (iperf3)",
            Self::B => "published port, TCP request/response on one connection (1 byte each way)",
            Self::C => "published port, a new TCP connection per request (CRR)",
            Self::D => "CRR to the last of N published ports",
            Self::E => "time to publish one more port when N are published",
            Self::F => "no-NAT baseline: routing only, containers at their own addresses",
            Self::G => "small packets: 64-byte UDP datagrams, container -> wan, at full rate",
            Self::H => "the CLI with N published ports: netlab publish, unpublish and rm",
            Self::I => "CRR with 1,000,000 flows in the conntrack table, against an empty table",
        }
    }

    /// The figures a scenario produces.
    pub fn metrics(self) -> &'static [Metric] {
        match self {
            Self::A => &[Metric::Throughput],
            Self::B | Self::C | Self::D => &[Metric::Rate, Metric::P50, Metric::P99],
            Self::E => &[Metric::PublishTime],
            Self::F => &[],
            Self::G => &[Metric::PacketRate],
            Self::H => &[
                Metric::CliPublishAll,
                Metric::CliPublishOne,
                Metric::CliUnpublishOne,
                Metric::CliRm,
            ],
            Self::I => &[Metric::Rate, Metric::RateFull],
        }
    }

    /// Whether the scenario publishes ports (the routed baseline and the veth
    /// reference have none to publish).
    pub fn publishes(self) -> bool {
        matches!(self, Self::D | Self::E | Self::H)
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.letter() == s)
    }
}

/// The address family a lab's workloads run on (`--family`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    V4,
    /// A dual-stack lab (`up --ipv6`), every workload over IPv6.
    V6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Self::V4 => "4",
            Self::V6 => "6",
        }
    }

    pub fn parse(s: &str) -> Option<Family> {
        match s {
            "4" => Some(Self::V4),
            "6" => Some(Self::V6),
            _ => None,
        }
    }
}

/// One row of the results: a lab on a datapath with its containers on a device, its
/// workloads over one address family, or the veth reference (over IPv4, or IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contender {
    Lab(DatapathKind, Device, Family),
    /// One veth pair between two fresh namespaces: no bridge, no routing, no NAT, no
    /// netfilter rule. Not a datapath: the most this machine can do at all.
    Veth,
    /// The same pair over IPv6: what the machine's own IPv6 costs, with no datapath.
    Veth6,
}

impl Contender {
    /// A lab on a datapath, its containers on veth (the default), over IPv4.
    pub const fn lab(dp: DatapathKind) -> Self {
        Self::Lab(dp, Device::Veth, Family::V4)
    }

    /// `ebpf`; `ebpf6` over IPv6 (as `ip6tables` is iptables' IPv6); `ebpf@netkit`,
    /// `ebpf6@netkit` for a lab on netkit devices; `veth`, `veth6` for the reference.
    pub fn name(self) -> String {
        match self {
            Self::Lab(dp, device, family) => {
                let six = if family == Family::V6 { "6" } else { "" };
                let at = match device {
                    Device::Veth => String::new(),
                    d => format!("@{}", d.name()),
                };
                format!("{}{six}{at}", dp.name())
            }
            Self::Veth => "veth".into(),
            Self::Veth6 => "veth6".into(),
        }
    }

    /// The family its workloads run on.
    pub fn family(self) -> Family {
        match self {
            Self::Lab(_, _, f) => f,
            Self::Veth => Family::V4,
            Self::Veth6 => Family::V6,
        }
    }

    /// The veth reference of a family.
    pub fn reference_of(family: Family) -> Contender {
        match family {
            Family::V4 => Self::Veth,
            Family::V6 => Self::Veth6,
        }
    }

    /// The veth reference its ratios to veth are to: the one of its own family.
    pub fn reference(self) -> Contender {
        Self::reference_of(self.family())
    }

    /// The iptables lab its ratios are to: on veth, of its own family.
    pub fn iptables_base(self) -> Contender {
        Self::Lab(DatapathKind::Iptables, Device::Veth, self.family())
    }

    /// The same lab (or pair) over IPv4, for one over IPv6: what IPv6 costs it.
    pub fn ipv4_twin(self) -> Option<Contender> {
        match self {
            Self::Lab(dp, device, Family::V6) => Some(Self::Lab(dp, device, Family::V4)),
            Self::Veth6 => Some(Self::Veth),
            _ => None,
        }
    }

    pub fn is_reference(self) -> bool {
        matches!(self, Self::Veth | Self::Veth6)
    }

    /// Whether clients reach the server container at its own address (the routed
    /// baseline and the veth reference publish nothing).
    pub fn direct(self) -> bool {
        matches!(self, Self::Lab(DatapathKind::Routed, ..)) || self.is_reference()
    }
}

/// The first signal that came (SIGINT, SIGTERM, SIGHUP, SIGPIPE), 0 before: the
/// benchmark stops at the next check, tears its lab down and exits as that signal says.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    let _ = INTERRUPTED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
}

fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst) != 0
}

/// `Err(Interrupted)` once a signal came.
pub fn check_interrupt() -> Result<()> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        0 => Ok(()),
        signal => Err(Error::Interrupted(signal)),
    }
}

/// Runs the benchmark and returns its report; progress goes to stderr.
pub fn run(opts: &Options) -> Result<Report> {
    catch_signals();
    let mut report = Report::new(opts);
    let contenders = opts.contenders();
    let setups = contenders.iter().filter(|c| !c.is_reference()).count();
    let labs = opts.runs as usize * setups;
    let reference = if contenders.iter().any(|c| c.is_reference()) {
        " and the veth reference"
    } else {
        ""
    };
    let more = match opts.target_width {
        Some(w) => format!(
            "; then as many rounds more, up to {}, as the first rounds' spread says every ratio's interval needs to be within {w} %",
            opts.max_runs
        ),
        None => String::new(),
    };
    // Scenarios e and h time commands rather than run for --duration.
    let measuring = match opts.measuring_secs() {
        0 => "the commands' own time".to_string(),
        secs => format!("about {secs} s of measurement"),
    };
    progress!(
        "netlab bench: {} round(s) x {setups} datapath(s) = {labs} labs{reference}; {measuring} plus setup{more}",
        opts.runs,
    );
    let mut plan: Vec<(Contender, Scenario)> = contenders
        .iter()
        .flat_map(|c| opts.scenarios_for(*c).into_iter().map(|s| (*c, s)))
        .collect();
    // With --target-width: each interval too wide after the first --runs rounds, and
    // the rounds it gets.
    let mut needs: Vec<(Standing, u32)> = Vec::new();
    for round in 1..=opts.max_runs {
        report.start_round(round);
        for c in order(&contenders, round as usize - 1) {
            let scenarios: Vec<Scenario> = plan
                .iter()
                .filter(|(x, _)| *x == c)
                .map(|(_, s)| *s)
                .collect();
            if scenarios.is_empty() {
                continue;
            }
            check_interrupt()?;
            let tag = format!("[{round}/{}] {}", opts.max_runs, c.name());
            round::run_lab(opts, c, &scenarios, &tag, &mut report)?;
        }
        let Some(width) = opts.target_width.filter(|_| round >= opts.runs) else {
            continue;
        };
        // Stein's two stages: the first --runs rounds decide, from their spread alone,
        // how many values each interval too wide needs; the rounds added are not looked
        // at to stop (that would pick the narrowest-looking spread). An interval without
        // a spread from them (a side failed all but one) gets no rounds: nothing would
        // give it one.
        if round == opts.runs {
            needs = report
                .wide(width)
                .into_iter()
                .filter_map(|w| {
                    let values = stats::values_needed(w.estimate.as_ref(), width)?;
                    Some((w, values))
                })
                .collect();
        }
        // The values each is still short of: a round in which a side failed gave none,
        // and so gets one more (counted, not planned: an added round can fail too).
        let short = |(w, values): &(Standing, u32)| {
            let has = report.estimate_of(&w.subject).map_or(0, |e| e.n as u32);
            values.saturating_sub(has)
        };
        let wide: Vec<Standing> = needs
            .iter()
            .filter(|n| short(n) > 0)
            .map(|(w, _)| w.clone())
            .collect();
        if wide.is_empty() || round == opts.max_runs {
            let asked = round + needs.iter().map(short).max().unwrap_or(0);
            if asked > round {
                progress!(
                    "netlab bench: --max-runs {} reached; the first {} round(s) asked for up to {asked} to get within {width} %",
                    opts.max_runs,
                    opts.runs
                );
            } else {
                progress!(
                    "netlab bench: {round} round(s), as many as the first {} asked for to get within {width} %",
                    opts.runs
                );
            }
            break;
        }
        if round < opts.max_runs {
            plan = next_round(opts, &wide);
            let names: Vec<String> = wide.iter().take(3).map(|w| w.subject.describe()).collect();
            let more = if wide.len() > 3 { ", ..." } else { "" };
            progress!(
                "netlab bench: {} interval(s) wider than {width} % ({}{more}): round {}",
                wide.len(),
                names.join(", "),
                round + 1
            );
        }
    }
    Ok(report)
}

/// What an added round runs: the scenarios of the ratios still too wide, on both
/// sides of each, and on the veth reference where it runs them (its spread is how a
/// disturbed round shows).
fn next_round(opts: &Options, wide: &[Standing]) -> Vec<(Contender, Scenario)> {
    let mut plan = Vec::new();
    for w in wide {
        let s = w.subject.scenario;
        let sides = [
            Some(w.subject.numerator),
            w.subject.denominator,
            Some(w.subject.numerator.reference()),
        ];
        for c in sides.into_iter().flatten() {
            let runs = opts.contenders().contains(&c) && opts.scenarios_for(c).contains(&s);
            if runs && !plan.contains(&(c, s)) {
                plan.push((c, s));
            }
        }
    }
    plan
}

/// The order of round `round` (from 0): `contenders` starting one further along every
/// second round, and backwards in every odd one (A B C, C B A, B C A, A C B, ...), so
/// that any two contenders swap places between rounds 0 and 1, 2 and 3, ...: each goes
/// first as often as the others over twice as many rounds as contenders, and a drift
/// within a round cancels over each such pair. A rotation alone keeps every contender
/// behind the same one (A B C, B C A: A before B in two rounds of three, and always
/// just before it).
fn order(contenders: &[Contender], round: usize) -> Vec<Contender> {
    let n = contenders.len().max(1);
    let by = round / 2;
    let mut o: Vec<Contender> = (0..contenders.len())
        .map(|i| contenders[(i + by) % n])
        .collect();
    if round % 2 == 1 {
        o.reverse();
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_two_contenders_swap_places_from_round_to_round() {
        use Contender::*;
        let (e, i) = (
            Contender::lab(DatapathKind::Ebpf),
            Contender::lab(DatapathKind::Iptables),
        );
        let all = [e, i, Veth];
        assert_eq!(order(&all, 0), [e, i, Veth]);
        assert_eq!(order(&all, 1), [Veth, i, e]);
        assert_eq!(order(&all, 2), [i, Veth, e]);
        assert_eq!(order(&all, 3), [e, Veth, i]);
        assert_eq!(order(&all, 4), [Veth, e, i]);
        assert_eq!(order(&all, 5), [i, e, Veth]);
        assert!(order(&[], 4).is_empty());
        // Over any two rounds, each of six contenders goes before each other one once.
        let six: Vec<Contender> = [
            DatapathKind::Ebpf,
            DatapathKind::Iptables,
            DatapathKind::Nftables,
            DatapathKind::NftablesFlowtable,
            DatapathKind::Routed,
        ]
        .into_iter()
        .map(Contender::lab)
        .chain([Veth])
        .collect();
        for round in (0..12).step_by(2) {
            let (a, b) = (order(&six, round), order(&six, round + 1));
            let at = |o: &[Contender], c| o.iter().position(|x| *x == c).unwrap();
            for x in &six {
                for y in &six {
                    if x != y {
                        assert_ne!(at(&a, *x) < at(&a, *y), at(&b, *x) < at(&b, *y));
                    }
                }
            }
        }
    }
}
