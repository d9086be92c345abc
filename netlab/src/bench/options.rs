//! `netlab bench`'s flags, checked before any lab is built: every error is one line
//! that names the flag.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use super::{
    Contender, Family, Scenario,
    goal::{Goal, Op},
    metric::{Metric, Subject},
};
use crate::{
    error::{Error, Result},
    lab::{DatapathKind, Device},
};

/// Validated `netlab bench` options.
#[derive(Clone, Debug)]
pub struct Options {
    /// In the order they run; the routed baseline last when scenario f asks for it.
    pub datapaths: Vec<DatapathKind>,
    /// The containers' devices each datapath runs on (`--device`), veth first.
    pub devices: Vec<Device>,
    /// The address families each lab runs its workloads on (`--family`), IPv4 first.
    pub families: Vec<Family>,
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
    /// Of every interval, 0.5-1 (`--confidence` is in %).
    pub confidence: f64,
    /// `--target-width`: as many rounds more as the first rounds' spread says every
    /// ratio's interval needs to be at most this wide, % of the ratio.
    pub target_width: Option<f64>,
    /// The most rounds; `runs` without a target.
    pub max_runs: u32,
    pub goals: Vec<Goal>,
    /// Whether disturbed rounds are left out of the figures (they are always said).
    pub drop_disturbed: bool,
    /// Peer tools run beside netlab's own clients.
    pub tools: Vec<Tool>,
}

/// The most rounds an invocation may run.
pub const MAX_ROUNDS: u32 = 100;
/// `--max-runs` when `--target-width` is given without it (netperf's `-i 30,3` stops
/// at 30; a round here runs every contender, so fewer).
pub const DEFAULT_MAX_RUNS: u32 = 20;

/// The most ports scenario d publishes (host ports from `workload::SCALE_BASE`).
pub const MAX_PORTS: u32 = 20_000;

fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty())
}

/// The flags of `netlab bench`, as given.
#[derive(Clone, Debug)]
pub struct Flags<'a> {
    pub datapath: &'a str,
    pub device: &'a str,
    pub family: &'a str,
    /// `None`: every scenario the families run (d, e, h and i need IPv4).
    pub scenario: Option<&'a str>,
    pub reference: &'a str,
    pub runs: &'a str,
    pub duration: &'a str,
    pub ports: &'a str,
    pub json: Option<PathBuf>,
    pub svg: Option<PathBuf>,
    pub confidence: &'a str,
    pub target_width: Option<&'a str>,
    pub max_runs: Option<&'a str>,
    pub goals: &'a [String],
    pub drop_disturbed: bool,
    pub tool: &'a str,
}

impl Default for Flags<'_> {
    /// The defaults of the command line.
    fn default() -> Self {
        Flags {
            datapath: "ebpf,iptables,nftables,nftables-flowtable",
            device: "veth",
            family: "4",
            scenario: None,
            reference: "veth",
            runs: "5",
            duration: "5",
            ports: "10,100,1000,10000",
            json: None,
            svg: None,
            confidence: "95",
            target_width: None,
            max_runs: None,
            goals: &[],
            drop_disturbed: false,
            tool: "",
        }
    }
}

impl Options {
    /// Parses and checks the flags; every error is one line naming the flag.
    pub fn parse(flags: Flags<'_>) -> Result<Options> {
        let Flags {
            datapath,
            device,
            family,
            scenario,
            reference,
            runs,
            duration,
            ports,
            json,
            svg,
            confidence,
            target_width,
            max_runs,
            goals,
            drop_disturbed,
            tool,
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
        if datapaths.is_empty() {
            return Err(Error::Invalid(
                "nothing to measure: give --datapath at least one datapath".into(),
            ));
        }
        let mut devices = Vec::new();
        for name in list(device) {
            let d = Device::parse(name).map_err(|e| Error::Invalid(format!("{e} in --device")))?;
            if devices.contains(&d) {
                return Err(Error::Invalid(format!(
                    "device {name} is given twice in --device"
                )));
            }
            devices.push(d);
        }
        devices.sort_by_key(|d| *d != Device::Veth);
        if devices.is_empty() {
            return Err(Error::Invalid(
                "nothing to measure: give --device veth, netkit or both".into(),
            ));
        }
        if devices.contains(&Device::Netkit) {
            crate::topology::require_device(Device::Netkit)?;
        }
        let mut families = Vec::new();
        for name in list(family) {
            let f = Family::parse(name).ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown family {name:?} in --family: use 4, 6 or 4,6"
                ))
            })?;
            if families.contains(&f) {
                return Err(Error::Invalid(format!(
                    "family {name} is given twice in --family"
                )));
            }
            families.push(f);
        }
        families.sort();
        if families.is_empty() {
            return Err(Error::Invalid(
                "nothing to measure: give --family 4, 6 or 4,6".into(),
            ));
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
        let scenario = scenario.unwrap_or(if families.contains(&Family::V4) {
            "a,b,c,d,e,f,g,h,i"
        } else {
            "a,b,c,f,g"
        });
        let mut scenarios = Vec::new();
        for letter in list(scenario) {
            let s = Scenario::parse(letter).ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown scenario {letter:?} in --scenario: use letters a to i"
                ))
            })?;
            if scenarios.contains(&s) {
                return Err(Error::Invalid(format!(
                    "scenario {letter} is given twice in --scenario"
                )));
            }
            scenarios.push(s);
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
        if scenarios.contains(&Scenario::I) && !datapaths.contains(&DatapathKind::Ebpf) {
            return Err(Error::Invalid(
                "scenario i (a full conntrack table) runs on the eBPF datapath only: add ebpf to --datapath".into(),
            ));
        }
        // Each scenario asked for runs somewhere: one the routed baseline cannot run
        // was once left out without a word when it was the only datapath.
        let publishing: Vec<&str> = scenarios
            .iter()
            .filter(|s| s.publishes())
            .map(|s| s.letter())
            .collect();
        if datapaths == [DatapathKind::Routed] && !publishing.is_empty() {
            return Err(Error::Invalid(format!(
                "the routed baseline publishes nothing, so it has no scenario {}: add a datapath that publishes to --datapath, or leave {} out of --scenario",
                publishing.join(", "),
                if publishing.len() == 1 { "it" } else { "them" }
            )));
        }
        let runs: u32 = runs
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=MAX_ROUNDS).contains(n))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "invalid --runs {runs:?}: give a whole number of rounds from 1 to {MAX_ROUNDS}"
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
        if let (Some(j), Some(v)) = (&json, &svg)
            && crate::files::same_file(j, v)
        {
            return Err(Error::Invalid(
                "--json and --svg name the same file: give each its own".into(),
            ));
        }
        let confidence = confidence
            .trim()
            .trim_end_matches('%')
            .parse::<f64>()
            .ok()
            .filter(|c| *c > 50.0 && *c <= 99.9999)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "invalid --confidence {confidence:?}: give a percentage above 50 and at most 99.9999, e.g. 95"
                ))
            })?
            / 100.0;
        let target_width = target_width
            .map(|w| {
                w.trim()
                    .trim_end_matches('%')
                    .parse::<f64>()
                    .ok()
                    .filter(|w| w.is_finite() && *w > 0.0)
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "invalid --target-width {w:?}: give the widest interval to accept, in % of the ratio, above 0 (e.g. 5)"
                        ))
                    })
            })
            .transpose()?;
        let max_runs = match (max_runs, target_width) {
            (Some(m), Some(_)) => m
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|m| (1..=MAX_ROUNDS).contains(m))
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "invalid --max-runs {m:?}: give a whole number of rounds from 1 to {MAX_ROUNDS}"
                    ))
                })?,
            (Some(_), None) => {
                return Err(Error::Invalid(
                    "--max-runs bounds the rounds --target-width adds: give --target-width too, or only --runs".into(),
                ));
            }
            (None, Some(_)) => DEFAULT_MAX_RUNS.max(runs),
            (None, None) => runs,
        };
        if max_runs < runs {
            return Err(Error::Invalid(format!(
                "--max-runs {max_runs} is fewer than --runs {runs}: the first {runs} rounds always run"
            )));
        }
        if target_width.is_some() && drop_disturbed {
            return Err(Error::Invalid(
                "--drop-disturbed decides from all the rounds which ones count, where --target-width's intervals take their spread from the first --runs as they were: give one of the two".into(),
            ));
        }
        if !goals.is_empty() && runs < 2 {
            return Err(Error::Invalid(
                "--goal needs --runs 2 or more: one round gives no interval, so every goal would be undecided".into(),
            ));
        }
        if target_width.is_some() && runs < 2 {
            return Err(Error::Invalid(
                "--target-width needs --runs 2 or more: the spread of the first rounds decides how many more each interval gets".into(),
            ));
        }
        let mut tools = Vec::new();
        for name in list(tool) {
            let t = Tool::parse(name).ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown tool {name:?} in --tool: use sockperf (beside b) or iperf3 (beside g)"
                ))
            })?;
            if !scenarios.contains(&t.scenario()) {
                return Err(Error::Invalid(format!(
                    "--tool {name} runs beside scenario {}: add it to --scenario",
                    t.scenario().letter()
                )));
            }
            if !t.installed() {
                return Err(Error::Invalid(format!(
                    "--tool {name}: {name} is not installed (apt-get install {name}; cargo xtask setup does)"
                )));
            }
            if tools.contains(&t) {
                return Err(Error::Invalid(format!(
                    "tool {name} is given twice in --tool"
                )));
            }
            tools.push(t);
        }
        let mut opts = Options {
            datapaths,
            devices,
            families,
            reference,
            scenarios,
            runs,
            duration: Duration::from_secs(secs),
            port_counts,
            json,
            svg,
            confidence,
            target_width,
            max_runs,
            goals: Vec::new(),
            drop_disturbed,
            tools,
        };
        opts.check_families()?;
        let goals = goals
            .iter()
            .map(|g| parse_goal(g, &opts))
            .collect::<Result<Vec<_>>>()?;
        opts.goals = goals;
        Ok(opts)
    }

    /// Refuses a family over which nothing would run (IPv6 runs only a, b, c and g), and
    /// scenarios of IPv4 only (d, e, h, i) when IPv4 is not among the families: they
    /// would not run at all.
    fn check_families(&self) -> Result<()> {
        for &f in &self.families {
            let runs = self
                .contenders()
                .into_iter()
                .any(|c| !c.is_reference() && c.family() == f && !self.scenarios_for(c).is_empty());
            if runs || f == Family::V4 {
                continue;
            }
            return Err(Error::Invalid(
                "nothing to measure over IPv6: --family 6 runs a, b, c and g, and --scenario has none of them".into(),
            ));
        }
        if !self.families.contains(&Family::V4) {
            let v4_only: Vec<&str> = self
                .scenarios
                .iter()
                .filter(|s| matches!(s, Scenario::D | Scenario::E | Scenario::H | Scenario::I))
                .map(|s| s.letter())
                .collect();
            if !v4_only.is_empty() {
                return Err(Error::Invalid(format!(
                    "scenario {} runs over IPv4 only, and --family has no 4: add 4 to --family, or leave {} out of --scenario",
                    v4_only.join(", "),
                    if v4_only.len() == 1 { "it" } else { "them" }
                )));
            }
        }
        Ok(())
    }

    /// The most ports scenarios d, e and h publish: the largest of `--ports`.
    pub fn max_ports(&self) -> u32 {
        *self.port_counts.last().expect("at least one count")
    }

    /// The figures a scenario produces: its own, and those of the peer tools beside it.
    pub fn metrics(&self, s: Scenario) -> Vec<Metric> {
        let mut v = s.metrics().to_vec();
        for t in self.tools.iter().filter(|t| t.scenario() == s) {
            v.extend_from_slice(t.metrics());
        }
        v
    }

    /// Who runs, in the order of the first run (each later run starts one further
    /// along): the datapaths on each device and family, then the veth reference of
    /// each family when it has a scenario to run.
    pub fn contenders(&self) -> Vec<Contender> {
        let mut v = Vec::new();
        for &f in &self.families {
            for &d in &self.datapaths {
                v.extend(self.devices.iter().map(|v| Contender::Lab(d, *v, f)));
            }
        }
        for &f in &self.families {
            let veth = Contender::reference_of(f);
            if self.reference && !self.scenarios_for(veth).is_empty() {
                v.push(veth);
            }
        }
        v
    }

    /// The scenarios a contender runs: the routed baseline and the veth reference
    /// publish nothing, and over IPv6 the data paths' (a, b, c, g) run: the port
    /// table's scale and the CLI are the same on both families.
    pub fn scenarios_for(&self, c: Contender) -> Vec<Scenario> {
        self.scenarios
            .iter()
            .copied()
            .filter(|s| !c.direct() || !s.publishes())
            // Only the eBPF datapath's table can be filled; the kernel's is another matter.
            .filter(|s| *s != Scenario::I || matches!(c, Contender::Lab(DatapathKind::Ebpf, ..)))
            .filter(|s| c.family() == Family::V4 || FAMILY6_SCENARIOS.contains(s))
            .collect()
    }

    /// Seconds spent measuring (without lab setup and publishing).
    pub fn measuring_secs(&self) -> u64 {
        let per_scenario = |s: Scenario| match s {
            Scenario::D => self.port_counts.len() as u64,
            Scenario::E | Scenario::H => 0,
            Scenario::I => 2,
            s => 1 + self.tools.iter().filter(|t| t.scenario() == s).count() as u64,
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
    match crate::files::unwritable(path) {
        Some(why) => Err(Error::Invalid(format!("{flag} {}: {why}", path.display()))),
        None => Ok(()),
    }
}

/// Options for unit tests: `datapaths`, `scenarios`, the veth reference, one run of
/// one second, `ports`.
/// A peer tool `--tool` runs beside netlab's own client (see `super::tool`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Sockperf,
    Iperf3,
}

impl Tool {
    pub const ALL: [Tool; 2] = [Tool::Sockperf, Tool::Iperf3];

    pub fn name(self) -> &'static str {
        match self {
            Self::Sockperf => "sockperf",
            Self::Iperf3 => "iperf3",
        }
    }

    pub fn parse(s: &str) -> Option<Tool> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The scenario it cross-checks.
    pub fn scenario(self) -> Scenario {
        match self {
            Self::Sockperf => Scenario::B,
            Self::Iperf3 => Scenario::G,
        }
    }

    /// The figures it adds to its scenario.
    pub fn metrics(self) -> &'static [Metric] {
        match self {
            Self::Sockperf => &[
                Metric::SockperfRate,
                Metric::SockperfP50,
                Metric::SockperfP99,
            ],
            Self::Iperf3 => &[Metric::Iperf3PacketRate],
        }
    }

    /// Whether the program is on PATH.
    pub fn installed(self) -> bool {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path).any(|dir| dir.join(self.name()).is_file())
    }
}

/// The scenarios a lab over IPv6 runs.
pub const FAMILY6_SCENARIOS: [Scenario; 4] = [Scenario::A, Scenario::B, Scenario::C, Scenario::G];

/// A `--goal`'s datapath or base: one that runs, or the veth reference.
fn goal_contender(name: &str, opts: &Options, goal: &str) -> Result<Contender> {
    if let Some(veth) = [Contender::Veth, Contender::Veth6]
        .into_iter()
        .find(|c| c.name() == name)
    {
        if !opts.reference {
            return Err(invalid_goal(
                goal,
                &format!("{name} is the reference, and --reference none leaves it out"),
            ));
        }
        if !opts.families.contains(&veth.family()) {
            return Err(invalid_goal(
                goal,
                &format!(
                    "{name} runs on IPv{}, not in --family",
                    veth.family().name()
                ),
            ));
        }
        return Ok(veth);
    }
    let (name, device) = match name.split_once('@') {
        Some((dp, device)) => (
            dp,
            Device::parse(device).map_err(|e| invalid_goal(goal, &e.to_string()))?,
        ),
        None => (name, Device::Veth),
    };
    if !opts.devices.contains(&device) {
        return Err(invalid_goal(
            goal,
            &format!("{} is not in --device", device.name()),
        ));
    }
    // `iptables6`: iptables over IPv6.
    let (dp, family) = match (DatapathKind::from_name(name), name.strip_suffix('6')) {
        (Some(dp), _) => (Some(dp), Family::V4),
        (None, Some(v6)) => (DatapathKind::from_name(v6), Family::V6),
        (None, None) => (None, Family::V4),
    };
    let dp = dp.ok_or_else(|| {
        invalid_goal(
            goal,
            &format!(
                "unknown datapath {name:?}: use {} (with 6 for IPv6: iptables6) or veth",
                DatapathKind::names()
            ),
        )
    })?;
    if !opts.datapaths.contains(&dp) {
        return Err(invalid_goal(
            goal,
            &format!("{} is not in --datapath", dp.name()),
        ));
    }
    if !opts.families.contains(&family) {
        return Err(invalid_goal(
            goal,
            &format!("{name} runs on IPv{}, not in --family", family.name()),
        ));
    }
    let c = Contender::Lab(dp, device, family);
    if !opts.contenders().contains(&c) {
        return Err(invalid_goal(goal, &format!("{name} does not run")));
    }
    Ok(c)
}

fn invalid_goal(goal: &str, why: &str) -> Error {
    Error::Invalid(format!("invalid --goal {goal:?}: {why}"))
}

/// Whether whitespace in `text` stands between two characters of one word or number.
fn splits_a_word(text: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    let chars: Vec<char> = text.trim().chars().collect();
    chars.iter().enumerate().any(|(i, c)| {
        c.is_whitespace()
            && chars[..i]
                .iter()
                .rev()
                .find(|c| !c.is_whitespace())
                .is_some_and(|&c| word(c))
            && chars[i..]
                .iter()
                .find(|c| !c.is_whitespace())
                .is_some_and(|&c| word(c))
    })
}

/// Parses one `--goal` (see [`super::goal`] for its form) against the benchmark it is for: the scenario, the
/// datapaths and the metric must be among those measured.
pub fn parse_goal(text: &str, opts: &Options) -> Result<Goal> {
    let form = "give SCENARIO[:METRIC]:DATAPATH[/BASE] OP VALUE, e.g. c:ebpf/iptables>=1.4";
    // Spaces may go around the parts, never inside one: `>=1 2` is no 12.
    if splits_a_word(text) {
        return Err(invalid_goal(
            text,
            &format!("a space inside a name or number: {form}"),
        ));
    }
    let s: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let is_op = |c: char| matches!(c, '<' | '>' | '=' | '!');
    let at = s
        .find(is_op)
        .ok_or_else(|| invalid_goal(text, &format!("no comparison: {form}")))?;
    let len = s[at..].find(|c| !is_op(c)).unwrap_or(s.len() - at);
    let op = match &s[at..at + len] {
        ">=" => Op::AtLeast,
        ">" => Op::Above,
        "<=" => Op::AtMost,
        "<" => Op::Below,
        other => {
            return Err(invalid_goal(
                text,
                &format!("malformed comparison {other:?}: use >=, >, <= or <"),
            ));
        }
    };
    let (left, right) = (&s[..at], &s[at + len..]);
    let value: f64 = right
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .ok_or_else(|| {
            invalid_goal(text, &format!("{right:?} is not a positive number: {form}"))
        })?;
    let parts: Vec<&str> = left.split(':').collect();
    let (scenario_part, metric_part, who) = match parts[..] {
        [s, who] => (s, None, who),
        [s, m, who] => (s, Some(m), who),
        _ => return Err(invalid_goal(text, form)),
    };
    let (letter, ports) = match scenario_part.split_once('@') {
        Some((l, n)) => (l, Some(n)),
        None => (scenario_part, None),
    };
    let scenario = Scenario::parse(letter).ok_or_else(|| {
        invalid_goal(
            text,
            &format!("unknown scenario {letter:?}: use a, b, c, d, e, g, h or i"),
        )
    })?;
    if !opts.scenarios.contains(&scenario) {
        let why = if scenario == Scenario::F {
            "f is the routed baseline, not a workload: compare with it as a:ebpf/routed".into()
        } else {
            format!("scenario {letter} is not in --scenario")
        };
        return Err(invalid_goal(text, &why));
    }
    let ports = match (scenario, ports) {
        (Scenario::D, Some(n)) => {
            let n: u32 = n
                .parse()
                .ok()
                .filter(|n| opts.port_counts.contains(n))
                .ok_or_else(|| {
                    invalid_goal(
                        text,
                        &format!("{n:?} ports is not one of --ports {:?}", opts.port_counts),
                    )
                })?;
            Some(n)
        }
        (_, Some(_)) => {
            return Err(invalid_goal(text, "only scenario d takes @PORTS"));
        }
        (s, None) if s.publishes() => opts.port_counts.last().copied(),
        _ => None,
    };
    let metrics = opts.metrics(scenario);
    let metric = match metric_part {
        None => metrics[0],
        Some(m) => metrics
            .iter()
            .copied()
            .find(|x| x.name() == m)
            .ok_or_else(|| {
                let names: Vec<&str> = metrics.iter().map(|x| x.name()).collect();
                invalid_goal(
                    text,
                    &format!(
                        "scenario {letter} has no metric {m:?}: use {}",
                        names.join(", ")
                    ),
                )
            })?,
    };
    let (num, den) = match who.split_once('/') {
        Some((n, d)) => (n, Some(d)),
        None => (who, None),
    };
    let numerator = goal_contender(num, opts, text)?;
    // A base that names a figure of the scenario is the same datapath's.
    let base_metric = den.and_then(|d| metrics.iter().copied().find(|m| m.name() == d));
    let denominator = match (den, base_metric) {
        (_, Some(_)) => Some(numerator),
        (Some(d), None) => Some(goal_contender(d, opts, text)?),
        (None, None) => None,
    };
    for c in [Some(numerator), denominator].into_iter().flatten() {
        if !opts.scenarios_for(c).contains(&scenario) {
            return Err(invalid_goal(
                text,
                &format!("{} does not run scenario {letter}", c.name()),
            ));
        }
    }
    if denominator == Some(numerator) && base_metric.unwrap_or(metric) == metric {
        return Err(invalid_goal(text, "a figure against itself is always 1"));
    }
    if let Some(base) = base_metric
        && base.unit(scenario) != metric.unit(scenario)
    {
        return Err(invalid_goal(
            text,
            &format!(
                "{} is in {} and {} in {}: a ratio of two figures needs one unit",
                metric.name(),
                metric.unit_shown(scenario),
                base.name(),
                base.unit_shown(scenario)
            ),
        ));
    }
    Ok(Goal {
        text: text.trim().to_string(),
        subject: Subject {
            scenario,
            ports,
            metric,
            numerator,
            denominator,
            base_metric,
        },
        op,
        value,
    })
}

#[cfg(test)]
pub fn test_options(datapaths: &str, scenarios: &str, ports: &str) -> Options {
    Options::parse(Flags {
        datapath: datapaths,
        scenario: Some(scenarios),
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
    use crate::bench::Contender;

    fn parse(dp: &str, sc: &str, runs: &str, dur: &str, ports: &str) -> Result<Options> {
        Options::parse(Flags {
            datapath: dp,
            scenario: Some(sc),
            reference: "veth",
            runs,
            duration: dur,
            ports,
            ..Flags::default()
        })
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
        for c in [Contender::lab(DatapathKind::Routed), Contender::Veth] {
            assert_eq!(o.scenarios_for(c), [A, B, C, G]);
        }
        assert_eq!(o.scenarios_for(Contender::lab(DatapathKind::Ebpf)).len(), 7);
        // 3 NAT datapaths x (a b c g + 4 counts of d) + routed and veth x (a b c g),
        // 5 s each, 5 runs.
        assert_eq!(o.measuring_secs(), (3 * 8 + 2 * 4) * 5 * 5);
        let o = parse("iptables", "c,a", "1", "1", "5").unwrap();
        assert_eq!(o.scenarios, [A, C]);
        assert_eq!(o.datapaths, [DatapathKind::Iptables]);
        // The reference has nothing to do in scenarios that publish.
        let o = parse("iptables", "d,e,h", "1", "1", "5").unwrap();
        assert_eq!(o.contenders(), [Contender::lab(DatapathKind::Iptables)]);
        let o = Options::parse(Flags {
            datapath: "nftables-flowtable",
            scenario: Some("b"),
            reference: "none",
            runs: "1",
            duration: "1",
            ports: "5",
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(
            o.contenders(),
            [Contender::lab(DatapathKind::NftablesFlowtable)]
        );
    }

    #[test]
    fn the_full_table_scenario_is_the_ebpf_datapaths_only() {
        let o = parse("ebpf,iptables", "c,i", "1", "1", "10").unwrap();
        assert_eq!(
            o.scenarios_for(Contender::lab(DatapathKind::Ebpf)),
            [Scenario::C, Scenario::I]
        );
        assert_eq!(
            o.scenarios_for(Contender::lab(DatapathKind::Iptables)),
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
            // One the routed baseline cannot run beside one it can: once left out unsaid.
            ("routed", "b,e", "1", "1", "10"),
        ] {
            let e = parse(dp, sc, runs, dur, ports).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{e}");
            assert_eq!(e.to_string().lines().count(), 1, "{e}");
        }
        let flags = |reference, json: Option<&str>| Flags {
            datapath: "iptables",
            scenario: Some("a"),
            reference,
            runs: "1",
            duration: "1",
            ports: "10",
            json: json.map(PathBuf::from),
            ..Flags::default()
        };
        let e = Options::parse(flags("veth", Some("/nonexistent/dir/x.json"))).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = Options::parse(flags("loopback", None)).unwrap_err();
        assert!(e.to_string().contains("--reference"), "{e}");
        // A goal of one round is undecided for certain: said before the run.
        let goal: &'static [String] = Box::leak(Box::new(["a:iptables>=1".to_string()]));
        let e = Options::parse(Flags {
            goals: goal,
            ..flags("veth", None)
        })
        .unwrap_err();
        assert!(e.to_string().contains("--goal needs --runs 2"), "{e}");
    }

    /// `--runs 3` and whatever else is given.
    fn with(f: impl FnOnce(&mut Flags<'static>)) -> Result<Options> {
        let mut flags = Flags {
            datapath: "ebpf,iptables",
            scenario: Some("b,c"),
            runs: "3",
            ..Flags::default()
        };
        f(&mut flags);
        Options::parse(flags)
    }

    #[test]
    fn intervals_targets_goals_and_tools() {
        let o = with(|_| {}).unwrap();
        assert_eq!((o.confidence, o.target_width, o.max_runs), (0.95, None, 3));
        assert!(o.goals.is_empty() && o.tools.is_empty() && !o.drop_disturbed);
        let o = with(|f| {
            f.confidence = "99";
            f.target_width = Some("5");
        })
        .unwrap();
        assert_eq!((o.confidence, o.target_width), (0.99, Some(5.0)));
        assert_eq!(o.max_runs, DEFAULT_MAX_RUNS, "a target without --max-runs");
        let goals: &'static [String] = Box::leak(Box::new([
            "c:ebpf/iptables>=1.4".to_string(),
            "b:p99:ebpf/veth<=1.3".to_string(),
        ]));
        let o = with(|f| {
            f.target_width = Some("2.5%");
            f.max_runs = Some("8");
            f.goals = goals;
        })
        .unwrap();
        assert_eq!((o.target_width, o.max_runs), (Some(2.5), 8));
        assert_eq!(o.goals.len(), 2);
        assert_eq!(o.goals[1].subject.metric, Metric::P99);
        let o = with(|f| f.drop_disturbed = true).unwrap();
        assert!(o.drop_disturbed);
        // A peer tool adds its figures to its scenario, and a measurement per round.
        let o = with(|f| f.tool = "sockperf").unwrap();
        assert_eq!(o.tools, [Tool::Sockperf]);
        assert_eq!(
            o.metrics(Scenario::B),
            [
                Metric::Rate,
                Metric::P50,
                Metric::P99,
                Metric::SockperfRate,
                Metric::SockperfP50,
                Metric::SockperfP99
            ]
        );
        assert_eq!(
            o.metrics(Scenario::C),
            [Metric::Rate, Metric::P50, Metric::P99]
        );
        // b twice (netlab's client and sockperf) and c, on ebpf, iptables and veth.
        assert_eq!(o.measuring_secs(), 3 * 3 * 5 * 3);
    }

    #[test]
    fn bad_interval_target_and_tool_flags_are_one_line_errors() {
        let goal: &'static [String] = Box::leak(Box::new(["c:ebpf/nftables>=1.4".to_string()]));
        type Set = Box<dyn FnOnce(&mut Flags<'static>)>;
        let cases: Vec<(Set, &str)> = vec![
            (Box::new(|f| f.confidence = "50"), "--confidence"),
            (Box::new(|f| f.confidence = "100"), "--confidence"),
            (
                Box::new(|f| f.confidence = "99.99999999999999"),
                "--confidence",
            ),
            (Box::new(|f| f.confidence = "0.95"), "--confidence"),
            (Box::new(|f| f.confidence = "high"), "--confidence"),
            (Box::new(|f| f.target_width = Some("0")), "--target-width"),
            (Box::new(|f| f.target_width = Some("-5")), "--target-width"),
            (
                Box::new(|f| f.target_width = Some("wide")),
                "--target-width",
            ),
            (
                Box::new(|f| {
                    f.target_width = Some("5");
                    f.max_runs = Some("2");
                }),
                "fewer than --runs",
            ),
            (
                Box::new(|f| {
                    f.target_width = Some("5");
                    f.max_runs = Some("101");
                }),
                "--max-runs",
            ),
            (Box::new(|f| f.max_runs = Some("10")), "give --target-width"),
            (
                Box::new(|f| {
                    f.target_width = Some("5");
                    f.runs = "1";
                }),
                "--runs 2 or more",
            ),
            (
                Box::new(|f| {
                    f.target_width = Some("5");
                    f.drop_disturbed = true;
                }),
                "give one of the two",
            ),
            (Box::new(move |f| f.goals = goal), "not in --datapath"),
            (Box::new(|f| f.tool = "netperf"), "unknown tool"),
            (Box::new(|f| f.datapath = ""), "nothing to measure"),
            (Box::new(|f| f.scenario = Some("a,b,a")), "given twice"),
            (Box::new(|f| f.family = "4,4"), "given twice"),
            (Box::new(|f| f.device = "veth,veth"), "given twice"),
            (
                Box::new(|f| {
                    f.datapath = "iptables";
                    f.scenario = Some("i");
                }),
                "eBPF datapath only",
            ),
            (Box::new(|f| f.tool = "iperf3"), "add it to --scenario"),
        ];
        for (set, expect) in cases {
            let e = with(set).unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, Error::Invalid(_)), "{text}");
            assert!(text.contains(expect), "{expect}: {text}");
            assert_eq!(text.lines().count(), 1, "{text}");
        }
    }

    #[test]
    fn the_readme_goals_parse() {
        // The goals of the README's results command, against its datapaths.
        let goals: &'static [String] = Box::leak(
            [
                "a:ebpf/iptables>=1.25",
                "a:ebpf/routed>=1.1",
                "b:ebpf/iptables>=1.35",
                "b:p99:ebpf/iptables<=1",
                "c:ebpf/iptables>=1.4",
                "g:ebpf/iptables>=1.5",
                "a:ebpf/nftables-flowtable>=1",
                "b:ebpf/nftables-flowtable>=1",
                "c:ebpf/nftables-flowtable>=1",
                "g:ebpf/nftables-flowtable>=1",
                "i:rate_full:ebpf/rate>=0.9",
                "h:cli_publish_all:ebpf<1000",
                "h:cli_publish_one:ebpf<10",
                "h:cli_unpublish_one:ebpf<10",
                "h:cli_rm:ebpf<1000",
            ]
            .map(String::from)
            .into(),
        );
        let o = Options::parse(Flags {
            datapath: "ebpf,iptables,iptables-legacy,nftables,nftables-flowtable",
            target_width: Some("5"),
            max_runs: Some("20"),
            goals,
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(o.goals.len(), goals.len());
        assert_eq!((o.runs, o.max_runs), (5, 20));
    }

    #[test]
    fn ipv4_only_scenarios_need_ipv4_and_goals_keep_their_numbers_whole() {
        let e = Options::parse(Flags {
            datapath: "ebpf",
            family: "6",
            scenario: Some("b,h"),
            ..Flags::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("scenario h runs over IPv4 only"), "{e}");
        // `bench --family 6` without --scenario: the scenarios IPv6 runs.
        let six = Options::parse(Flags {
            family: "6",
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(six.scenarios, FAMILY6_SCENARIOS);
        let o = Options::parse(Flags {
            datapath: "ebpf,iptables",
            family: "4",
            scenario: Some("b"),
            ..Flags::default()
        })
        .unwrap();
        assert!(parse_goal(" b : ebpf / iptables >= 1.2 ", &o).is_ok());
        let e = parse_goal("b:ebpf/iptables>=1 2", &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a space inside"), "{e}");
        let e = parse_goal("b:ebp f/iptables>=1", &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a space inside"), "{e}");
        let e = parse_goal("b:ebpf/p99>=1", &o).unwrap_err().to_string();
        assert!(e.contains("needs one unit"), "{e}");
    }

    #[test]
    fn the_ipv6_reference_runs_with_ipv6_only() {
        let o = Options::parse(Flags {
            datapath: "ebpf",
            family: "4",
            scenario: Some("b"),
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(
            o.contenders(),
            [Contender::lab(DatapathKind::Ebpf), Contender::Veth]
        );
        let e = parse_goal("b:veth6/veth>=1", &o).unwrap_err().to_string();
        assert!(e.contains("veth6 runs on IPv6, not in --family"), "{e}");
    }

    #[test]
    fn families_make_contenders_and_goals_name_them() {
        use DatapathKind::{Ebpf, Iptables, Routed};
        let o = Options::parse(Flags {
            datapath: "ebpf,iptables,routed",
            family: "6,4",
            scenario: Some("a,b,c,d,f,g"),
            ports: "10",
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(o.families, [Family::V4, Family::V6]);
        let (e6, i6) = (
            Contender::Lab(Ebpf, Device::Veth, Family::V6),
            Contender::Lab(Iptables, Device::Veth, Family::V6),
        );
        let r6 = Contender::Lab(Routed, Device::Veth, Family::V6);
        assert_eq!(
            o.contenders(),
            [
                Contender::lab(Ebpf),
                Contender::lab(Iptables),
                Contender::lab(Routed),
                e6,
                i6,
                r6,
                Contender::Veth,
                Contender::Veth6
            ]
        );
        assert_eq!(e6.name(), "ebpf6");
        // The veth reference over IPv6: a lab over IPv6 is to it, and it to itself over
        // IPv4 (what the machine's own IPv6 costs).
        assert_eq!(e6.reference(), Contender::Veth6);
        assert_eq!(Contender::lab(Ebpf).reference(), Contender::Veth);
        assert_eq!(Contender::Veth6.ipv4_twin(), Some(Contender::Veth));
        assert_eq!(
            o.scenarios_for(Contender::Veth6),
            [Scenario::A, Scenario::B, Scenario::C, Scenario::G]
        );
        let g = parse_goal("b:veth6/veth>=0.95", &o).unwrap();
        assert_eq!(
            (g.subject.numerator, g.subject.denominator),
            (Contender::Veth6, Some(Contender::Veth))
        );
        assert_eq!(
            Contender::Lab(Ebpf, Device::Netkit, Family::V6).name(),
            "ebpf6@netkit"
        );
        assert_eq!(e6.iptables_base(), i6);
        assert_eq!(e6.ipv4_twin(), Some(Contender::lab(Ebpf)));
        assert_eq!(Contender::lab(Ebpf).ipv4_twin(), None);
        // Over IPv6 the data paths' scenarios run, not the port table's.
        assert_eq!(
            o.scenarios_for(i6),
            [Scenario::A, Scenario::B, Scenario::C, Scenario::G]
        );
        // The routed baseline over IPv6: what the kernel's own IPv6 forwarding costs.
        assert_eq!(
            o.scenarios_for(r6),
            [Scenario::A, Scenario::B, Scenario::C, Scenario::G]
        );
        let g = parse_goal("b:routed6/routed>=0.95", &o).unwrap();
        assert_eq!(
            (g.subject.numerator, g.subject.denominator),
            (r6, Some(Contender::lab(Routed)))
        );
        let g = parse_goal("b:ebpf6/iptables6>=1", &o).unwrap();
        assert_eq!((g.subject.numerator, g.subject.denominator), (e6, Some(i6)));
        let g = parse_goal("c:iptables6/iptables>=0.95", &o).unwrap();
        assert_eq!(
            (g.subject.numerator, g.subject.denominator),
            (i6, Some(Contender::lab(Iptables)))
        );
        for (goal, why) in [
            ("d:routed6/routed>=1", "does not run scenario d"),
            ("d:iptables6/iptables>=1", "does not run scenario d"),
            ("b:pf6/iptables>=1", "unknown datapath"),
        ] {
            let e = parse_goal(goal, &o).unwrap_err().to_string();
            assert!(e.contains(why), "{goal}: {e}");
        }
        // IPv6 with none of its scenarios.
        let e = Options::parse(Flags {
            datapath: "iptables",
            family: "6",
            scenario: Some("d"),
            ..Flags::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("--scenario has none of them"), "{e}");
        let four = test_options("ebpf,iptables", "b", "10");
        let e = parse_goal("b:ebpf6/iptables6>=1", &four)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not in --family"), "{e}");
        for (family, why) in [("5", "unknown family \"5\""), ("", "give --family")] {
            let e = Options::parse(Flags {
                family,
                ..Flags::default()
            })
            .unwrap_err()
            .to_string();
            assert!(e.contains(why) && e.contains("--family"), "{e}");
        }
    }

    #[test]
    fn devices_make_contenders_and_goals_name_them() {
        use DatapathKind::{Ebpf, Iptables};
        let mut o = test_options("ebpf,iptables", "b", "10");
        assert_eq!(o.devices, [Device::Veth]);
        o.devices = vec![Device::Veth, Device::Netkit];
        assert_eq!(
            o.contenders(),
            [
                Contender::lab(Ebpf),
                Contender::Lab(Ebpf, Device::Netkit, Family::V4),
                Contender::lab(Iptables),
                Contender::Lab(Iptables, Device::Netkit, Family::V4),
                Contender::Veth
            ]
        );
        assert_eq!(
            Contender::Lab(Ebpf, Device::Netkit, Family::V4).name(),
            "ebpf@netkit"
        );
        let g = parse_goal("b:ebpf@netkit/ebpf>=1", &o).unwrap();
        assert_eq!(
            g.subject.numerator,
            Contender::Lab(Ebpf, Device::Netkit, Family::V4)
        );
        assert_eq!(g.subject.denominator, Some(Contender::lab(Ebpf)));
        for (goal, why) in [
            ("b:ebpf@tap/veth>=1", "unknown device \"tap\""),
            ("b:ebpf@netkit/veth>=1", "netkit is not in --device"),
        ] {
            let o = test_options("ebpf", "b", "10");
            let e = parse_goal(goal, &o).unwrap_err().to_string();
            assert!(e.contains(why), "{goal}: {e}");
        }
        let e = Options::parse(Flags {
            device: "veth,tap",
            ..Flags::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown device \"tap\"") && e.contains("--device"),
            "{e}"
        );
    }

    #[test]
    fn goals_parse() {
        let o = test_options("ebpf,iptables,nftables", "a,b,c,d,f,h", "10,100");
        let g = parse_goal("c:ebpf/iptables>=1.4", &o).unwrap();
        assert_eq!(g.subject.scenario, Scenario::C);
        assert_eq!(g.subject.metric, Metric::Rate);
        assert_eq!(g.subject.numerator, Contender::lab(DatapathKind::Ebpf));
        assert_eq!(
            g.subject.denominator,
            Some(Contender::lab(DatapathKind::Iptables))
        );
        assert_eq!((g.op, g.value, g.subject.ports), (Op::AtLeast, 1.4, None));
        let g = parse_goal(" b : p99 : ebpf / veth <= 1.2 ", &o).unwrap();
        assert_eq!(
            (g.subject.metric, g.subject.denominator),
            (Metric::P99, Some(Contender::Veth))
        );
        assert_eq!(g.op, Op::AtMost);
        let g = parse_goal("a:ebpf/routed>1.1", &o).unwrap();
        assert_eq!(
            g.subject.denominator,
            Some(Contender::lab(DatapathKind::Routed))
        );
        assert_eq!(g.op, Op::Above);
        let g = parse_goal("d@10:ebpf/nftables>=1", &o).unwrap();
        assert_eq!(g.subject.ports, Some(10));
        let g = parse_goal("d:ebpf/iptables>=2", &o).unwrap();
        assert_eq!(g.subject.ports, Some(100), "the largest count");
        let g = parse_goal("h:cli_publish_one:ebpf<10", &o).unwrap();
        assert_eq!(
            (g.subject.metric, g.subject.denominator, g.subject.ports),
            (Metric::CliPublishOne, None, Some(100))
        );
        assert_eq!(g.op, Op::Below);
        let o = test_options("ebpf,iptables", "c,i", "10");
        let g = parse_goal("i:rate_full:ebpf/rate>=0.9", &o).unwrap();
        assert_eq!(g.subject.metric, Metric::RateFull);
        assert_eq!(
            g.subject.denominator,
            Some(Contender::lab(DatapathKind::Ebpf))
        );
        assert_eq!(g.subject.base_metric, Some(Metric::Rate));
        assert_eq!(
            g.subject().describe(),
            "(i) conn/s, 1M flows ebpf / ebpf conn/s, empty table"
        );
        let e = parse_goal("i:rate_full:iptables/rate>=0.9", &o).unwrap_err();
        assert!(
            e.to_string().contains("iptables does not run scenario i"),
            "{e}"
        );
    }

    #[test]
    fn bad_goals_are_one_line_errors() {
        let o = test_options("ebpf,iptables", "a,b,c,d,h", "10,100");
        for (goal, why) in [
            ("c:ebpf/iptables", "no comparison"),
            ("c:ebpf/iptables=>1.4", "malformed comparison"),
            ("c:ebpf/iptables==1.4", "malformed comparison"),
            ("c:ebpf/iptables>=1.4>=2", "not a positive number"),
            ("c:ebpf/iptables>=x", "not a positive number"),
            ("c:ebpf/iptables>=-1", "not a positive number"),
            ("c:ebpf/iptables>=0", "not a positive number"),
            ("ebpf/iptables>=1.4", "give SCENARIO"),
            ("c:rate:ebpf:iptables>=1.4", "give SCENARIO"),
            ("z:ebpf/iptables>=1", "unknown scenario"),
            ("g:ebpf/iptables>=1", "not in --scenario"),
            ("f:ebpf/iptables>=1", "routed baseline"),
            ("c:pf/iptables>=1", "unknown datapath"),
            ("c:ebpf/nftables>=1", "not in --datapath"),
            ("c:latency:ebpf/iptables>=1", "has no metric"),
            ("c:ebpf/ebpf>=1", "against itself"),
            ("c:rate:ebpf/rate>=1", "against itself"),
            ("d:ebpf/veth>=1", "veth does not run scenario d"),
            ("d@50:ebpf/iptables>=1", "not one of --ports"),
            ("c@10:ebpf/iptables>=1", "only scenario d"),
        ] {
            let e = parse_goal(goal, &o).unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, Error::Invalid(_)), "{goal}: {text}");
            assert!(
                text.contains(why) && text.contains("--goal"),
                "{goal}: {text}"
            );
            assert_eq!(text.lines().count(), 1, "{text}");
        }
    }
}
