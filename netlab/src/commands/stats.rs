//! `netlab stats [--json]`: datapath counters and drop reasons.

use serde_json::{Map, Value};

use crate::{datapath, error::Result, ops::Session};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON: `{"counters": {name: n}, "drops": {reason: n}}`.
    #[arg(long)]
    pub json: bool,
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    let s = Session::open(lab)?;
    let dp = s.datapath();
    let c = datapath::inspection(&*dp, &s.state, "it has no eBPF counters")?.counters(&s.state)?;
    if args.json {
        let obj = |xs: &[(&str, u64)]| {
            Value::Object(
                xs.iter()
                    .map(|(k, v)| (k.to_string(), Value::from(*v)))
                    .collect::<Map<_, _>>(),
            )
        };
        let v = serde_json::json!({"counters": obj(&c.counters), "drops": obj(&c.drops)});
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(());
    }
    println!("COUNTER                        VALUE");
    for (n, v) in &c.counters {
        println!("{n:<30} {v}");
    }
    println!("\nDROP REASON                    PACKETS");
    for (n, v) in &c.drops {
        println!("{n:<30} {v}");
    }
    Ok(())
}
