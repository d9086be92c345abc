//! `netlab bench`: the same workloads over each datapath, on fresh sandbox labs.

use std::path::PathBuf;

use crate::{
    bench::{self, Flags, Options, svg},
    error::{Error, Result},
};

#[derive(clap::Args)]
pub struct Args {
    /// Datapaths to compare, comma-separated: ebpf, iptables, iptables-legacy,
    /// nftables, nftables-flowtable, routed (the no-NAT baseline).
    #[arg(long, default_value = "ebpf,iptables,nftables,nftables-flowtable")]
    pub datapath: String,
    /// Scenarios, comma-separated: a egress throughput, b published-port
    /// request/response, c published-port connection rate, d connection rate with
    /// 10-10,000 ports published, e time to publish one more port, f the routed
    /// baseline for a-c and g, g small-packet rate, h the CLI (publish, unpublish,
    /// rm) with 10,000 ports.
    #[arg(long, default_value = "a,b,c,d,e,f,g,h,i")]
    pub scenario: String,
    /// The physical reference for a-c and g: veth (one veth pair between two
    /// namespaces, no bridge, routing or NAT), or none.
    #[arg(long, default_value = "veth")]
    pub reference: String,
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
    /// Published-port counts of scenario d, ascending (the largest is e's and h's).
    #[arg(long, hide = true, default_value = "10,100,1000,10000")]
    pub ports: String,
}

/// The lab name is ignored: the benchmark makes its own labs.
pub fn run(_lab: &str, args: Args) -> Result<()> {
    let opts = Options::parse(Flags {
        datapath: &args.datapath,
        scenario: &args.scenario,
        reference: &args.reference,
        runs: &args.runs,
        duration: &args.duration,
        ports: &args.ports,
        json: args.json,
        svg: args.svg,
    })?;
    let report = bench::run(&opts)?;
    println!("{}", report.table());
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(&report.json()).expect("json");
        std::fs::write(path, text + "\n").map_err(|e| Error::io("write", path, e))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &opts.svg {
        std::fs::write(path, svg::render(&report)?).map_err(|e| Error::io("write", path, e))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
