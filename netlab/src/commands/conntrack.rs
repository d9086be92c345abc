//! `netlab conntrack [--json] [--flush]`: the eBPF datapath's flows.

use crate::{datapath, error::Result, ops::Session};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON (the format is stable; see the README).
    #[arg(long)]
    pub json: bool,
    /// Delete every entry instead of listing them.
    #[arg(long)]
    pub flush: bool,
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    let s = Session::open(lab)?;
    let dp = s.datapath();
    let dp = datapath::inspection(
        &*dp,
        &s.state,
        "its conntrack is the kernel's (`conntrack -L`, `conntrack -F` in the host namespace)",
    )?;
    if args.flush {
        let n = dp.flush(&s.state)?;
        if args.json {
            println!("{}", serde_json::json!({ "flushed": n }));
        } else {
            println!("flushed {n} flows");
        }
        return Ok(());
    }
    let flows = dp.flows(&s.state)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&flows).expect("json"));
        return Ok(());
    }
    println!(
        "{:<5} {:<11} {:<22} {:<22} {:<22} {:>6} {:>14} {:>14}",
        "PROTO",
        "STATE",
        "SOURCE",
        "DESTINATION",
        "TRANSLATED",
        "AGE",
        "PKTS OUT/IN",
        "BYTES OUT/IN"
    );
    for f in &flows {
        // What the translation changed: the source (`ADDR:PORT`), the destination
        // (`-> ADDR:PORT`), or both (hairpin).
        let (o, t) = (&f.original, &f.translated);
        let src = (t.src, t.sport) != (o.src, o.sport);
        let dst = (t.dst, t.dport) != (o.dst, o.dport);
        let t = match (src, dst) {
            (true, true) => format!("{}:{} -> {}:{}", t.src, t.sport, t.dst, t.dport),
            (true, false) => format!("{}:{}", t.src, t.sport),
            (false, true) => format!("-> {}:{}", t.dst, t.dport),
            (false, false) => "-".to_string(),
        };
        println!(
            "{:<5} {:<11} {:<22} {:<22} {:<22} {:>5}s {:>14} {:>14}",
            f.proto,
            f.state,
            format!("{}:{}", f.original.src, f.original.sport),
            format!("{}:{}", f.original.dst, f.original.dport),
            t,
            f.age_secs,
            format!("{}/{}", f.packets, f.reply_packets),
            format!("{}/{}", f.bytes, f.reply_bytes),
        );
    }
    Ok(())
}
