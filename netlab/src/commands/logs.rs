//! `netlab logs`: stream the eBPF datapath's debug logs (labs brought up with --debug).

use crate::{datapath, error::Result, ops::Session};

#[derive(clap::Args)]
pub struct Args {
    /// Stop after this many seconds (default: run until interrupted).
    #[arg(long)]
    pub seconds: Option<u64>,
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    // The lock is not held while streaming: other commands go on meanwhile.
    let (dp, state) = {
        let s = Session::open(lab)?;
        (s.datapath(), s.state)
    };
    datapath::inspection(&*dp, &state, "it has no eBPF logs")?.logs(&state, args.seconds)
}
