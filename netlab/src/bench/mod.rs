//! `netlab bench`: one set of workloads over each datapath, on fresh sandbox labs.
//!
//! Every run builds one lab per datapath, in turn (A B C A B C ...), so that drift on
//! the machine spreads over all of them; each lab is torn down when its run is over,
//! whatever happened. The figures are reported as median [min–max] over the runs,
//! and as a ratio to iptables measured in the same invocation.

pub mod lab;
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
/// (no NAT at all) to scenarios a-c.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    A,
    B,
    C,
    D,
    E,
    F,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [Self::A, Self::B, Self::C, Self::D, Self::E, Self::F];

    pub fn letter(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::B => "b",
            Self::C => "c",
            Self::D => "d",
            Self::E => "e",
            Self::F => "f",
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
        }
    }

    /// The figures a scenario produces.
    pub fn metrics(self) -> &'static [Metric] {
        match self {
            Self::A => &[Metric::Throughput],
            Self::B | Self::C | Self::D => &[Metric::Rate, Metric::P50, Metric::P99],
            Self::E => &[Metric::PublishTime],
            Self::F => &[],
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.letter() == s)
    }
}

/// Validated `netlab bench` options.
#[derive(Clone, Debug)]
pub struct Options {
    /// In the order they run; the routed baseline last when scenario f asks for it.
    pub datapaths: Vec<DatapathKind>,
    /// Workloads a-e, sorted.
    pub scenarios: Vec<Scenario>,
    pub runs: u32,
    pub duration: Duration,
    /// Published-port counts of scenario d, ascending; the largest is e's.
    pub port_counts: Vec<u32>,
    pub json: Option<PathBuf>,
    pub svg: Option<PathBuf>,
}

/// The most ports scenario d publishes (host ports from `workload::SCALE_BASE`).
pub const MAX_PORTS: u32 = 20_000;

fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty())
}

impl Options {
    /// Parses and checks the flags; every error is one line naming the flag.
    pub fn parse(
        datapath: &str,
        scenario: &str,
        runs: &str,
        duration: &str,
        ports: &str,
        json: Option<PathBuf>,
        svg: Option<PathBuf>,
    ) -> Result<Options> {
        let mut datapaths = Vec::new();
        for name in list(datapath) {
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
        let mut scenarios = Vec::new();
        for letter in list(scenario) {
            let s = Scenario::parse(letter).ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown scenario {letter:?} in --scenario: use letters a to f"
                ))
            })?;
            if !scenarios.contains(&s) {
                scenarios.push(s);
            }
        }
        scenarios.sort();
        if scenarios.contains(&Scenario::F) {
            scenarios.retain(|s| *s != Scenario::F);
            if !scenarios
                .iter()
                .any(|s| matches!(s, Scenario::A | Scenario::B | Scenario::C))
            {
                return Err(Error::Invalid(
                    "scenario f (the routed baseline) compares scenarios a-c: add at least one of them to --scenario".into(),
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
        if datapaths == [DatapathKind::Routed]
            && scenarios
                .iter()
                .all(|s| matches!(s, Scenario::D | Scenario::E))
        {
            return Err(Error::Invalid(
                "the routed baseline publishes nothing, so it has no scenario d or e: add a, b or c".into(),
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
            scenarios,
            runs,
            duration: Duration::from_secs(secs),
            port_counts,
            json,
            svg,
        })
    }

    /// The scenarios a datapath runs: the routed baseline has no published ports.
    pub fn scenarios_for(&self, dp: DatapathKind) -> Vec<Scenario> {
        self.scenarios
            .iter()
            .copied()
            .filter(|s| {
                dp != DatapathKind::Routed || matches!(s, Scenario::A | Scenario::B | Scenario::C)
            })
            .collect()
    }

    /// Seconds spent measuring (without lab setup and publishing).
    pub fn measuring_secs(&self) -> u64 {
        let per_scenario = |s: Scenario| match s {
            Scenario::D => self.port_counts.len() as u64,
            Scenario::E => 0,
            _ => 1,
        };
        let per_run: u64 = self
            .datapaths
            .iter()
            .map(|dp| {
                self.scenarios_for(*dp)
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
    let labs = opts.runs as usize * opts.datapaths.len();
    eprintln!(
        "netlab bench: {} run(s) x {} datapath(s) = {labs} labs; about {} s of measurement plus setup",
        opts.runs,
        opts.datapaths.len(),
        opts.measuring_secs()
    );
    for run in 1..=opts.runs {
        for &dp in &opts.datapaths {
            check_interrupt()?;
            let tag = format!("[{run}/{}] {}", opts.runs, dp.name());
            workload::run_lab(opts, dp, &tag, &mut report)?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(dp: &str, sc: &str, runs: &str, dur: &str, ports: &str) -> Result<Options> {
        Options::parse(dp, sc, runs, dur, ports, None, None)
    }

    #[test]
    fn defaults_and_the_baseline() {
        let o = parse(
            "ebpf,iptables,nftables",
            "a,b,c,d,e,f",
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
        assert_eq!(
            o.scenarios,
            [
                Scenario::A,
                Scenario::B,
                Scenario::C,
                Scenario::D,
                Scenario::E
            ]
        );
        assert_eq!(
            o.scenarios_for(DatapathKind::Routed),
            [Scenario::A, Scenario::B, Scenario::C]
        );
        // 3 NAT datapaths x (a b c + 4 counts of d) + routed x (a b c), 5 s each, 5 runs.
        assert_eq!(o.measuring_secs(), (3 * 7 + 3) * 5 * 5);
        let o = parse("iptables", "c,a", "1", "1", "5").unwrap();
        assert_eq!(o.scenarios, [Scenario::A, Scenario::C]);
        assert_eq!(o.datapaths, [DatapathKind::Iptables]);
    }

    #[test]
    fn bad_flags_are_one_line_errors() {
        for (dp, sc, runs, dur, ports) in [
            ("pf", "a", "1", "1", "10"),
            ("iptables,iptables", "a", "1", "1", "10"),
            ("iptables", "z", "1", "1", "10"),
            ("iptables", "f", "1", "1", "10"),
            ("iptables", "a", "0", "1", "10"),
            ("iptables", "a", "x", "1", "10"),
            ("iptables", "a", "1", "0", "10"),
            ("iptables", "a", "1", "1.5", "10"),
            ("iptables", "a", "1", "1", "0"),
            ("iptables", "a", "1", "1", "100,10"),
            ("iptables", "a", "1", "1", "30000"),
            ("", "a", "1", "1", "10"),
            ("routed", "d,e", "1", "1", "10"),
        ] {
            let e = parse(dp, sc, runs, dur, ports).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{e}");
            assert_eq!(e.to_string().lines().count(), 1, "{e}");
        }
        let e = Options::parse(
            "iptables",
            "a",
            "1",
            "1",
            "10",
            Some("/nonexistent/dir/x.json".into()),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
