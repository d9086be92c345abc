//! `netlab stats [--json]`: datapath counters and drop reasons.

use netlab_common::stats::{DROP_BASE, DROP_NAMES, counter};
use serde_json::{Map, Value};

use crate::{datapath::ebpf, error::Result};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON: `{"counters": {name: n}, "drops": {reason: n}}`.
    #[arg(long)]
    pub json: bool,
}

/// Named values, in index order.
pub type Named = Vec<(&'static str, u64)>;

/// (counters, drops) by name.
pub fn read(lab: &str) -> Result<(Named, Named)> {
    let v = ebpf::stats(lab)?;
    let counters = counter::NAMES
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, v[i]))
        .collect();
    let drops = DROP_NAMES
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, n)| (*n, v[DROP_BASE as usize + i]))
        .collect();
    Ok((counters, drops))
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    super::require_ebpf(lab, "it has no eBPF counters")?;
    let (counters, drops) = read(lab)?;
    if args.json {
        let obj = |xs: &[(&str, u64)]| {
            Value::Object(
                xs.iter()
                    .map(|(k, v)| (k.to_string(), Value::from(*v)))
                    .collect::<Map<_, _>>(),
            )
        };
        let v = serde_json::json!({"counters": obj(&counters), "drops": obj(&drops)});
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(());
    }
    println!("COUNTER                        VALUE");
    for (n, v) in &counters {
        println!("{n:<30} {v}");
    }
    println!("\nDROP REASON                    PACKETS");
    for (n, v) in &drops {
        println!("{n:<30} {v}");
    }
    Ok(())
}
