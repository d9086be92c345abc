//! `netlab bench`: one set of workloads over each datapath, on fresh sandbox labs.
//!
//! Every run builds one lab per datapath, in turn, each run starting one further along
//! (A B C, B C A, C A B, ...), so that drift on the machine, and whatever the very
//! first measurement of an invocation pays, spread over all of them; each lab is torn
//! down when its run is over, whatever happened. The veth reference (one veth pair
//! between two namespaces, the most this machine can do) takes its turn with them.
//! The figures are reported as median [min–max] over the runs, as a ratio to iptables
//! measured in the same invocation, and as a fraction of the veth reference.

pub mod lab;
pub mod pps;
pub mod report;
pub mod rr;
pub mod svg;
pub mod workload;

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use crate::{
    error::{Error, Result},
    lab::DatapathKind,
};
use report::{Metric, Report};

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

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.letter() == s)
    }
}

/// One row of the results: a lab on a datapath, or the veth reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contender {
    Lab(DatapathKind),
    /// One veth pair between two fresh namespaces: no bridge, no routing, no NAT, no
    /// netfilter rule. Not a datapath: the most this machine can do at all.
    Veth,
}

impl Contender {
    pub fn name(self) -> &'static str {
        match self {
            Self::Lab(dp) => dp.name(),
            Self::Veth => "veth",
        }
    }

    pub fn is_reference(self) -> bool {
        self == Self::Veth
    }

    /// Whether clients reach the server container at its own address (the routed
    /// baseline and the veth reference publish nothing).
    pub fn direct(self) -> bool {
        matches!(self, Self::Lab(DatapathKind::Routed) | Self::Veth)
    }
}

/// Validated `netlab bench` options.
#[derive(Clone, Debug)]
pub struct Options {
    /// In the order they run; the routed baseline last when scenario f asks for it.
    pub datapaths: Vec<DatapathKind>,
    /// Whether the veth reference runs (in every run, with the datapaths).
    pub reference: bool,
    /// Workloads a-e, g, h, sorted.
    pub scenarios: Vec<Scenario>,
    pub runs: u32,
    pub duration: Duration,
    /// Published-port counts of scenario d, ascending; the largest is e's and h's.
    pub port_counts: Vec<u32>,
    pub json: Option<PathBuf>,
    pub svg: Option<PathBuf>,
}

/// The most ports scenario d publishes (host ports from `workload::SCALE_BASE`).
pub const MAX_PORTS: u32 = 20_000;

fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty())
}

/// The flags of `netlab bench`, as given.
#[derive(Clone, Debug, Default)]
pub struct Flags<'a> {
    pub datapath: &'a str,
    pub scenario: &'a str,
    pub reference: &'a str,
    pub runs: &'a str,
    pub duration: &'a str,
    pub ports: &'a str,
    pub json: Option<PathBuf>,
    pub svg: Option<PathBuf>,
}

impl Options {
    /// Parses and checks the flags; every error is one line naming the flag.
    pub fn parse(flags: Flags<'_>) -> Result<Options> {
        let Flags {
            datapath,
            scenario,
            reference,
            runs,
            duration,
            ports,
            json,
            svg,
        } = flags;
        let mut datapaths = Vec::new();
        for name in list(datapath) {
            if name == "veth" {
                return Err(Error::Invalid(
                    "veth in --datapath is the reference, not a datapath: it runs unless --reference none".into(),
                ));
            }
            let kind = DatapathKind::from_name(name).ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown datapath {name:?} in --datapath: use {}",
                    DatapathKind::names()
                ))
            })?;
            if datapaths.contains(&kind) {
                return Err(Error::Invalid(format!(
                    "datapath {name} is given twice in --datapath"
                )));
            }
            datapaths.push(kind);
        }
        let reference = match reference.trim() {
            "veth" => true,
            "none" => false,
            other => {
                return Err(Error::Invalid(format!(
                    "unknown reference {other:?} in --reference: use veth or none"
                )));
            }
        };
        let mut scenarios = Vec::new();
        for letter in list(scenario) {
            let s = Scenario::parse(letter).ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown scenario {letter:?} in --scenario: use letters a to h"
                ))
            })?;
            if !scenarios.contains(&s) {
                scenarios.push(s);
            }
        }
        scenarios.sort();
        if scenarios.contains(&Scenario::F) {
            scenarios.retain(|s| *s != Scenario::F);
            if scenarios.iter().all(|s| s.publishes()) {
                return Err(Error::Invalid(
                    "scenario f (the routed baseline) compares scenarios a-c and g: add at least one of them to --scenario".into(),
                ));
            }
            if !datapaths.contains(&DatapathKind::Routed) {
                datapaths.push(DatapathKind::Routed);
            }
        }
        if datapaths.is_empty() || scenarios.is_empty() {
            return Err(Error::Invalid(
                "nothing to measure: give --datapath and --scenario at least one each".into(),
            ));
        }
        if datapaths == [DatapathKind::Routed] && scenarios.iter().all(|s| s.publishes()) {
            return Err(Error::Invalid(
                "the routed baseline publishes nothing, so it has no scenario d, e or h: add a, b, c or g".into(),
            ));
        }
        let runs: u32 = runs
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "invalid --runs {runs:?}: give a whole number of runs from 1 to 100"
                ))
            })?;
        let secs: u64 = duration
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=600).contains(n))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "invalid --duration {duration:?}: give whole seconds from 1 to 600"
                ))
            })?;
        let mut port_counts = Vec::new();
        for p in list(ports) {
            let n: u32 = p
                .parse()
                .ok()
                .filter(|n| (1..=MAX_PORTS).contains(n))
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "invalid port count {p:?} in --ports: give counts from 1 to {MAX_PORTS}"
                    ))
                })?;
            if port_counts.last().is_some_and(|last| *last >= n) {
                return Err(Error::Invalid(format!(
                    "--ports {ports:?} must be in ascending order, each once"
                )));
            }
            port_counts.push(n);
        }
        if port_counts.is_empty() {
            return Err(Error::Invalid("--ports needs at least one count".into()));
        }
        for (flag, path) in [("--json", &json), ("--svg", &svg)] {
            if let Some(p) = path {
                check_output(flag, p)?;
            }
        }
        Ok(Options {
            datapaths,
            reference,
            scenarios,
            runs,
            duration: Duration::from_secs(secs),
            port_counts,
            json,
            svg,
        })
    }

    /// Who runs, in the order of the first run (each later run starts one further
    /// along): the datapaths, then the veth reference when it has a scenario to run.
    pub fn contenders(&self) -> Vec<Contender> {
        let mut v: Vec<Contender> = self.datapaths.iter().map(|d| Contender::Lab(*d)).collect();
        if self.reference && !self.scenarios_for(Contender::Veth).is_empty() {
            v.push(Contender::Veth);
        }
        v
    }

    /// The scenarios a contender runs: the routed baseline and the veth reference
    /// publish nothing.
    pub fn scenarios_for(&self, c: Contender) -> Vec<Scenario> {
        self.scenarios
            .iter()
            .copied()
            .filter(|s| !c.direct() || !s.publishes())
            // Only the eBPF datapath's table can be filled; the kernel's is another matter.
            .filter(|s| *s != Scenario::I || c == Contender::Lab(DatapathKind::Ebpf))
            .collect()
    }

    /// Seconds spent measuring (without lab setup and publishing).
    pub fn measuring_secs(&self) -> u64 {
        let per_scenario = |s: Scenario| match s {
            Scenario::D => self.port_counts.len() as u64,
            Scenario::E | Scenario::H => 0,
            Scenario::I => 2,
            _ => 1,
        };
        let per_run: u64 = self
            .contenders()
            .iter()
            .map(|c| {
                self.scenarios_for(*c)
                    .into_iter()
                    .map(per_scenario)
                    .sum::<u64>()
            })
            .sum();
        per_run * self.duration.as_secs() * self.runs as u64
    }
}

fn check_output(flag: &str, path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::Invalid(format!(
            "{flag} {}: directory {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    if path.is_dir() {
        return Err(Error::Invalid(format!(
            "{flag} {}: is a directory, give a file name",
            path.display()
        )));
    }
    Ok(())
}

/// Set by SIGINT/SIGTERM: the benchmark stops at the next check, tears its lab down
/// and exits.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once a signal came.
pub fn check_interrupt() -> Result<()> {
    if interrupted() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

/// Runs the benchmark and returns its report; progress goes to stderr.
pub fn run(opts: &Options) -> Result<Report> {
    catch_signals();
    let mut report = Report::new(opts);
    let contenders = opts.contenders();
    let labs = opts.runs as usize * opts.datapaths.len();
    let reference = if contenders.contains(&Contender::Veth) {
        " and the veth reference"
    } else {
        ""
    };
    eprintln!(
        "netlab bench: {} run(s) x {} datapath(s) = {labs} labs{reference}; about {} s of measurement plus setup",
        opts.runs,
        opts.datapaths.len(),
        opts.measuring_secs()
    );
    for run in 1..=opts.runs {
        for c in rotated(&contenders, run as usize - 1) {
            check_interrupt()?;
            let tag = format!("[{run}/{}] {}", opts.runs, c.name());
            workload::run_lab(opts, c, &tag, &mut report)?;
        }
    }
    Ok(report)
}

/// `contenders` starting at the `by`-th (wrapping): the order of one run.
fn rotated(contenders: &[Contender], by: usize) -> Vec<Contender> {
    let n = contenders.len().max(1);
    (0..contenders.len())
        .map(|i| contenders[(i + by) % n])
        .collect()
}

/// Options for unit tests: `datapaths`, `scenarios`, the veth reference, one run of
/// one second, `ports`.
#[cfg(test)]
pub fn test_options(datapaths: &str, scenarios: &str, ports: &str) -> Options {
    Options::parse(Flags {
        datapath: datapaths,
        scenario: scenarios,
        reference: "veth",
        runs: "1",
        duration: "1",
        ports,
        ..Flags::default()
    })
    .expect("valid options")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(dp: &str, sc: &str, runs: &str, dur: &str, ports: &str) -> Result<Options> {
        Options::parse(Flags {
            datapath: dp,
            scenario: sc,
            reference: "veth",
            runs,
            duration: dur,
            ports,
            ..Flags::default()
        })
    }

    #[test]
    fn each_run_starts_one_contender_further_along() {
        use Contender::*;
        let (e, i) = (Lab(DatapathKind::Ebpf), Lab(DatapathKind::Iptables));
        let all = [e, i, Veth];
        assert_eq!(rotated(&all, 0), [e, i, Veth]);
        assert_eq!(rotated(&all, 1), [i, Veth, e]);
        assert_eq!(rotated(&all, 2), [Veth, e, i]);
        assert_eq!(rotated(&all, 3), [e, i, Veth]);
        assert!(rotated(&[], 4).is_empty());
    }

    #[test]
    fn defaults_the_baseline_and_the_reference() {
        let o = parse(
            "ebpf,iptables,nftables",
            "a,b,c,d,e,f,g,h",
            "5",
            "5",
            "10,100,1000,10000",
        )
        .unwrap();
        assert_eq!(
            o.datapaths,
            [
                DatapathKind::Ebpf,
                DatapathKind::Iptables,
                DatapathKind::Nftables,
                DatapathKind::Routed
            ]
        );
        use Scenario::*;
        assert_eq!(o.scenarios, [A, B, C, D, E, G, H]);
        assert_eq!(
            o.contenders().last(),
            Some(&Contender::Veth),
            "the reference comes last in the first run"
        );
        assert_eq!(o.contenders().len(), 5);
        for c in [Contender::Lab(DatapathKind::Routed), Contender::Veth] {
            assert_eq!(o.scenarios_for(c), [A, B, C, G]);
        }
        assert_eq!(o.scenarios_for(Contender::Lab(DatapathKind::Ebpf)).len(), 7);
        // 3 NAT datapaths x (a b c g + 4 counts of d) + routed and veth x (a b c g),
        // 5 s each, 5 runs.
        assert_eq!(o.measuring_secs(), (3 * 8 + 2 * 4) * 5 * 5);
        let o = parse("iptables", "c,a", "1", "1", "5").unwrap();
        assert_eq!(o.scenarios, [A, C]);
        assert_eq!(o.datapaths, [DatapathKind::Iptables]);
        // The reference has nothing to do in scenarios that publish.
        let o = parse("iptables", "d,e,h", "1", "1", "5").unwrap();
        assert_eq!(o.contenders(), [Contender::Lab(DatapathKind::Iptables)]);
        let o = Options::parse(Flags {
            datapath: "nftables-flowtable",
            scenario: "b",
            reference: "none",
            runs: "1",
            duration: "1",
            ports: "5",
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(
            o.contenders(),
            [Contender::Lab(DatapathKind::NftablesFlowtable)]
        );
    }

    #[test]
    fn the_full_table_scenario_is_the_ebpf_datapaths_only() {
        let o = parse("ebpf,iptables", "c,i", "1", "1", "10").unwrap();
        assert_eq!(
            o.scenarios_for(Contender::Lab(DatapathKind::Ebpf)),
            [Scenario::C, Scenario::I]
        );
        assert_eq!(
            o.scenarios_for(Contender::Lab(DatapathKind::Iptables)),
            [Scenario::C]
        );
        assert_eq!(Scenario::I.metrics(), [Metric::Rate, Metric::RateFull]);
    }

    #[test]
    fn bad_flags_are_one_line_errors() {
        for (dp, sc, runs, dur, ports) in [
            ("pf", "a", "1", "1", "10"),
            ("veth", "a", "1", "1", "10"),
            ("iptables,iptables", "a", "1", "1", "10"),
            ("iptables", "z", "1", "1", "10"),
            ("iptables", "f", "1", "1", "10"),
            ("iptables", "f,h", "1", "1", "10"),
            ("iptables", "a", "0", "1", "10"),
            ("iptables", "a", "x", "1", "10"),
            ("iptables", "a", "1", "0", "10"),
            ("iptables", "a", "1", "1.5", "10"),
            ("iptables", "a", "1", "1", "0"),
            ("iptables", "a", "1", "1", "100,10"),
            ("iptables", "a", "1", "1", "30000"),
            ("", "a", "1", "1", "10"),
            ("routed", "d,e,h", "1", "1", "10"),
        ] {
            let e = parse(dp, sc, runs, dur, ports).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{e}");
            assert_eq!(e.to_string().lines().count(), 1, "{e}");
        }
        let flags = |reference, json: Option<&str>| Flags {
            datapath: "iptables",
            scenario: "a",
            reference,
            runs: "1",
            duration: "1",
            ports: "10",
            json: json.map(PathBuf::from),
            svg: None,
        };
        let e = Options::parse(flags("veth", Some("/nonexistent/dir/x.json"))).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = Options::parse(flags("loopback", None)).unwrap_err();
        assert!(e.to_string().contains("--reference"), "{e}");
    }
}
