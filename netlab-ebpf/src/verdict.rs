//! Turning a handler's result into a TC verdict. Drops are always counted here.
//!
//! What a hook lets through it hands on to whatever runs after it on the same hook —
//! another lab's programs, anyone else's, then the stack — with `TC_ACT_UNSPEC` (-1),
//! which is `TCX_NEXT` under tcx and "continue with the next filter" for a classic
//! direct-action `cls_bpf`. `TC_ACT_OK` would end the chain there (`TCX_PASS`), and
//! the programs after netlab's would never see the packet.

use aya_ebpf::bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC};
use netlab_common::stats::DropReason;

use crate::maps::Stats;

/// What a handler decided for a packet it did not drop.
pub type Verdict = Result<i32, DropReason>;

/// The action that lets the packet go on: to the next program on the hook, or the stack.
pub const NEXT: i32 = TC_ACT_UNSPEC;

/// Let the packet go on.
pub const PASS: Verdict = Ok(NEXT);

/// Not a TC action: a subprogram's word that it translated the packet and that the
/// fast path may take it on from there.
pub const TRANSLATED: i32 = 1 << 16;

/// Not a TC action: a subprogram's word that a later fragment's datagram is unknown
/// (its first fragment unseen), for its hook to decide.
pub const UNSEEN: i32 = (1 << 16) + 1;

/// Not a TC action: a subprogram's word that a container's TCP segment has no flow
/// (`tcp_no_flow`, not counted yet), for its hook to answer (`reset`).
pub const NO_FLOW: i32 = (1 << 16) + 2;

#[inline(always)]
pub fn finish(result: Verdict) -> i32 {
    match result {
        Ok(action) => action,
        Err(reason) => {
            // Fetched again rather than kept from the entry point: a pointer alive
            // across the whole handler takes stack the uplink's program (logs on)
            // does not have. Drops are off the hot path.
            if let Some(st) = Stats::get() {
                st.drop(reason);
            }
            TC_ACT_SHOT as i32
        }
    }
}
