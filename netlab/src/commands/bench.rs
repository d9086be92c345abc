//! `netlab bench`: the same workloads over each datapath, on fresh sandbox labs.

use std::path::PathBuf;

use crate::{
    bench::{self, Options, svg},
    error::{Error, Result},
};

#[derive(clap::Args)]
pub struct Args {
    /// Datapaths to compare, comma-separated: ebpf, iptables, iptables-legacy,
    /// nftables, routed (the no-NAT baseline).
    #[arg(long, default_value = "ebpf,iptables,nftables")]
    pub datapath: String,
    /// Scenarios, comma-separated: a egress throughput, b published-port
    /// request/response, c published-port connection rate, d connection rate with
    /// 10-10,000 ports published, e time to publish one more port, f the routed
    /// baseline for a-c.
    #[arg(long, default_value = "a,b,c,d,e,f")]
    pub scenario: String,
    /// Runs per datapath; each run builds a fresh lab.
    #[arg(long, default_value = "5")]
    pub runs: String,
    /// Seconds per measurement.
    #[arg(long, default_value = "5")]
    pub duration: String,
    /// Write the results as JSON (the format is stable; see the README).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a chart of the results as SVG.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Published-port counts of scenario d, ascending (the largest is e's).
    #[arg(long, hide = true, default_value = "10,100,1000,10000")]
    pub ports: String,
}

/// The lab name is ignored: the benchmark makes its own labs.
pub fn run(_lab: &str, args: Args) -> Result<()> {
    let opts = Options::parse(
        &args.datapath,
        &args.scenario,
        &args.runs,
        &args.duration,
        &args.ports,
        args.json,
        args.svg,
    )?;
    let report = bench::run(&opts)?;
    println!("{}", report.table());
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(&report.json()).expect("json");
        std::fs::write(path, text + "\n").map_err(|e| Error::io("write", path, e))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &opts.svg {
        std::fs::write(path, svg::render(&report)).map_err(|e| Error::io("write", path, e))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
