//! `netlab logs`: the eBPF datapath's debug logs (labs brought up with `--debug`).
//! Logging costs nothing otherwise: the log level is frozen into the programs at load
//! time and the verifier prunes every disabled log statement.

use std::time::{Duration, Instant};

use super::pins;
use crate::{
    error::{Error, Result},
    lab::LabState,
};

/// Prints the datapath's log records as they come, for `seconds`, until interrupted,
/// or until the lab goes down (its pins gone: no program logs any more).
pub fn stream(state: &LabState, seconds: Option<u64>) -> Result<()> {
    let lab = &state.name;
    if !state.debug {
        return Err(Error::Invalid(format!(
            "lab {lab} was brought up without --debug: its datapath logs are compiled out; take it down (`netlab down --lab {lab}`) and bring it up again with `--lab {lab} --debug` and its other options"
        )));
    }
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Warn)
        .filter_module("netlab_tc", log::LevelFilter::Trace)
        .format_timestamp_millis()
        // The records are the command's output (`netlab logs | grep ...`).
        .target(env_logger::Target::Stdout)
        .init();
    let prog = aya::programs::SchedClassifier::from_pin(
        pins::dir(lab).join(super::uplinks::EGRESS_PROG_PIN),
    )
    .map_err(|e| Error::ebpf("open pinned program", e))?;
    let prog_id = prog
        .info()
        .map_err(|e| Error::ebpf("program info", e))?
        .id();
    // One ring buffer serves every program of the object.
    let mut logger =
        aya_log::EbpfLogger::init_from_id(prog_id).map_err(|e| Error::ebpf("open logs", e))?;
    let deadline = deadline(seconds);
    loop {
        logger.flush();
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
        if !pins::dir(lab).exists() {
            eprintln!("netlab: lab {lab} went down");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// When `--seconds` ends the stream: never without it, nor for a time past what the
/// clock can hold (no limit at all, rather than an overflow).
fn deadline(seconds: Option<u64>) -> Option<Instant> {
    seconds.and_then(|s| Instant::now().checked_add(Duration::from_secs(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_past_the_clock_is_none() {
        assert!(deadline(None).is_none());
        assert!(deadline(Some(1)).is_some());
        assert!(deadline(Some(u64::MAX)).is_none());
    }
}
