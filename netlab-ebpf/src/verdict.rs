//! Turning a handler's result into a TC verdict. Drops are always counted here.

use aya_ebpf::bindings::{TC_ACT_OK, TC_ACT_SHOT};
use netlab_common::stats::DropReason;

use crate::maps;

/// What a handler decided for a packet it did not drop.
pub type Verdict = Result<i32, DropReason>;

pub const PASS: Verdict = Ok(TC_ACT_OK);

#[inline(always)]
pub fn finish(result: Verdict) -> i32 {
    match result {
        Ok(action) => action,
        Err(reason) => {
            maps::count_drop(reason);
            TC_ACT_SHOT
        }
    }
}
