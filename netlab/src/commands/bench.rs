//! `netlab bench`: the same workloads over each datapath, on fresh sandbox labs.

use std::{io::Write, path::PathBuf};

use crate::{
    bench::{self, Flags, Options, goal::Verdict, json, svg, table},
    error::{Error, Errors, Result},
};

#[derive(clap::Args)]
pub struct Args {
    /// Datapaths to compare, comma-separated: ebpf, iptables, iptables-legacy,
    /// nftables, nftables-flowtable, routed (the no-NAT baseline).
    #[arg(long, default_value = "ebpf,iptables,nftables,nftables-flowtable")]
    pub datapath: String,
    /// The containers' devices, comma-separated: veth, netkit (Linux 6.7+). With both,
    /// each datapath runs on each (`ebpf` and `ebpf@netkit`, as goals name them); the
    /// veth reference is the same either way.
    #[arg(long, default_value = "veth")]
    pub device: String,
    /// Address families, comma-separated: 4, 6 (a dual-stack lab, every workload over
    /// IPv6: a, b, c and g). With both, each datapath runs on each (`iptables` and
    /// `iptables6`, as goals name them); the veth reference runs IPv4.
    #[arg(long, default_value = "4")]
    pub family: String,
    /// Scenarios, comma-separated: a egress throughput, b published-port
    /// request/response, c published-port connection rate, d connection rate with
    /// 10-10,000 ports published, e time to publish one more port, f the routed
    /// baseline for a-c and g, g small-packet rate, h the CLI (publish, unpublish,
    /// rm) with 10,000 ports, i connection rate with a million flows tracked.
    /// Default: all of them (a, b, c, f and g with --family 6 alone: d, e, h and i run
    /// over IPv4 only).
    #[arg(long)]
    pub scenario: Option<String>,
    /// The physical reference for a-c and g: veth (one veth pair between two
    /// namespaces, no bridge, routing or NAT), or none.
    #[arg(long, default_value = "veth")]
    pub reference: String,
    /// Rounds (1-100); each runs every datapath once, on a fresh lab, in rotated order.
    #[arg(long, default_value = "5", allow_negative_numbers = true)]
    pub runs: String,
    /// Seconds per measurement (1-600).
    #[arg(long, default_value = "5", allow_negative_numbers = true)]
    pub duration: String,
    /// Confidence of every interval, in % (above 50, at most 99.9999).
    #[arg(long, default_value = "95", allow_negative_numbers = true)]
    pub confidence: String,
    /// After the first --runs rounds, add as many as their spread says every ratio's
    /// interval needs to be at most PCT % of the ratio wide (5: ±2.5 %), up to
    /// --max-runs (Stein's two stages).
    #[arg(long, value_name = "PCT", allow_negative_numbers = true)]
    pub target_width: Option<String>,
    /// The most rounds --target-width may run (default 20, at least --runs).
    #[arg(long, allow_negative_numbers = true)]
    pub max_runs: Option<String>,
    /// A goal, decided on its interval as met, missed or undecided; repeatable. The
    /// exit status is 0 only when every goal is met. SCENARIO[:METRIC]:DATAPATH[@netkit][/BASE]
    /// OP VALUE, e.g. 'c:ebpf/iptables>=1.4', 'b:p99:ebpf/iptables<=1',
    /// 'h:cli_publish_one:ebpf<10' (ms).
    #[arg(long, value_name = "GOAL")]
    pub goal: Vec<String>,
    /// Leave the rounds a busy machine disturbed out of the figures (they are always
    /// reported).
    #[arg(long)]
    pub drop_disturbed: bool,
    /// Peer tools to run beside netlab's own clients, comma-separated: sockperf
    /// (ping-pong, beside b), iperf3 (64-byte UDP, beside g).
    #[arg(long, default_value = "")]
    pub tool: String,
    /// Write the results as JSON (the format is stable; see the README).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a chart of the results as SVG.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Published-port counts of scenario d, ascending (the largest is e's and h's).
    #[arg(long, hide = true, default_value = "10,100,1000,10000")]
    pub ports: String,
}

/// The lab name is ignored: the benchmark makes its own labs. Fails (exit 1) after
/// writing everything when a goal is not met.
pub fn run(_lab: &str, args: Args) -> Result<()> {
    let opts = Options::parse(Flags {
        datapath: &args.datapath,
        device: &args.device,
        family: &args.family,
        scenario: args.scenario.as_deref(),
        reference: &args.reference,
        runs: &args.runs,
        duration: &args.duration,
        ports: &args.ports,
        json: args.json,
        svg: args.svg,
        confidence: &args.confidence,
        target_width: args.target_width.as_deref(),
        max_runs: args.max_runs.as_deref(),
        goals: &args.goal,
        drop_disturbed: args.drop_disturbed,
        tool: &args.tool,
    })?;
    let report = bench::run(&opts)?;
    // Never a panic on a closed pipe: the files below are still written (and the
    // SIGPIPE is caught, as the benchmark catches it).
    let shown = writeln!(std::io::stdout(), "{}", table::render(&report));
    // Each file whole or not at all (the old one stays), and one that fails stops no
    // other.
    let mut written = Errors::default();
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(&json::render(&report)).expect("json") + "\n";
        written.check(write(path, text.as_bytes()));
    }
    if let Some(path) = &opts.svg {
        written.check(svg::render(&report).and_then(|text| write(path, text.as_bytes())));
    }
    written.into_result()?;
    // A signal that came during the last measurement, or the table written to a closed
    // pipe (SIGPIPE, caught): the files are written, and the exit is as the signal says
    // (141 for `netlab bench | head`), not 0 with the results lost (a review).
    bench::check_interrupt()?;
    if let Err(e) = shown {
        return Err(Error::Command {
            command: "bench".into(),
            detail: format!("cannot write the table: {e} (the files asked for are written)"),
        });
    }
    if !report.measured_anything() {
        return Err(Error::Command {
            command: "bench".into(),
            detail: "nothing was measured: every figure is n/a (the reasons are above)".into(),
        });
    }
    let verdicts = report.verdicts();
    let unmet = verdicts
        .iter()
        .filter(|(_, _, v)| *v != Verdict::Met)
        .count();
    if unmet > 0 {
        return Err(Error::Command {
            command: "bench".into(),
            detail: format!(
                "{unmet} of {} goal(s) not met (see the goals above)",
                verdicts.len()
            ),
        });
    }
    Ok(())
}

/// Writes one output file whole, and says so.
fn write(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    crate::files::write_atomic(path, bytes).map_err(|e| Error::io("write", path, e))?;
    let _ = writeln!(std::io::stderr(), "wrote {}", path.display());
    Ok(())
}
