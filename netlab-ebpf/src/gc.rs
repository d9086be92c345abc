//! The conntrack garbage collector, in the kernel: a `bpf_timer` armed once by `up`
//! walks the established-flow table (`CT`, which never evicts) every
//! [`GC_INTERVAL_NS`] with `bpf_for_each_map_elem` and deletes the flows that expired
//! (both directions idle past their timeout) or whose published mapping was withdrawn,
//! both halves together. No userspace process is needed: the timer lives in the pinned
//! `GC` map and goes with it when the lab is taken down.
//!
//! The LRU table of flows being opened or closed needs no collector: its least recently
//! used entries make room for new ones.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::bpf_timer,
    btf_maps::Array,
    helpers::generated::{
        bpf_for_each_map_elem, bpf_map_delete_elem, bpf_map_lookup_elem, bpf_timer_init,
        bpf_timer_set_callback, bpf_timer_start,
    },
    macros::btf_map,
};
use netlab_common::{
    conntrack::{CtEntry, CtKey, expired},
    stats::counter,
};

use crate::{conntrack, maps};

/// Nanoseconds between two walks of the table.
pub const GC_INTERVAL_NS: u64 = 10_000_000_000;
const CLOCK_MONOTONIC: u64 = 1;

/// The value of `GC`: the verifier finds the timer through this type's BTF.
#[repr(C)]
pub struct GcTimer {
    pub timer: bpf_timer,
}

#[btf_map]
static GC: Array<GcTimer, 1, 0> = Array::new();

/// What a walk needs and counts.
#[repr(C)]
struct Walk {
    now: u32,
    expired: u32,
}

/// One element of `CT`: deleted, with its other half, when the flow is dead.
extern "C" fn collect(
    map: *mut c_void,
    key: *mut CtKey,
    entry: *mut CtEntry,
    walk: *mut Walk,
) -> i64 {
    let Some(cfg) = maps::config() else { return 1 };
    let (k, e, w) = unsafe { (&*key, &*entry, &mut *walk) };
    let withdrawn = e.pub_id != 0 && maps::mapping_gen(e.pub_id) != e.pub_gen;
    let pair_key = e.pair_key(k.proto);
    if !withdrawn {
        if !expired(cfg, k.proto, e.state, e.flags, e.last_seen, w.now) {
            return 0;
        }
        let pair = unsafe { bpf_map_lookup_elem(map, &pair_key as *const CtKey as *const c_void) };
        if !pair.is_null() {
            let p = unsafe { &*(pair as *const CtEntry) };
            if !expired(cfg, k.proto, p.state, p.flags, p.last_seen, w.now) {
                return 0;
            }
        }
    }
    unsafe {
        bpf_map_delete_elem(map, &pair_key as *const CtKey as *const c_void);
        bpf_map_delete_elem(map, key as *const c_void);
    }
    w.expired += 1;
    0
}

/// The timer's callback: one walk, then the next one armed.
extern "C" fn tick(_map: *mut c_void, _key: *mut u32, gc: *mut GcTimer) -> i64 {
    let mut walk = Walk {
        now: conntrack::now(),
        expired: 0,
    };
    unsafe {
        bpf_for_each_map_elem(
            maps::ct_map(),
            collect as *const () as *mut c_void,
            &mut walk as *mut Walk as *mut c_void,
            0,
        );
    }
    maps::count(counter::CT_GC_RUNS);
    maps::count_n(counter::CT_GC_EXPIRED, walk.expired as u64);
    unsafe { bpf_timer_start(&mut (*gc).timer, GC_INTERVAL_NS, 0) };
    0
}

/// Arms the collector (run once by `up`); 0 on success.
#[inline(always)]
pub fn start() -> i32 {
    let Some(gc) = GC.get_ptr_mut(0) else {
        return 1;
    };
    let timer = unsafe { &mut (*gc).timer as *mut bpf_timer };
    unsafe {
        // -EBUSY when it was armed already: the walk goes on as it is.
        let rc = bpf_timer_init(timer, &GC as *const _ as *mut c_void, CLOCK_MONOTONIC);
        if rc != 0 {
            return rc as i32;
        }
        let rc = bpf_timer_set_callback(timer, tick as *const () as *mut c_void);
        if rc != 0 {
            return rc as i32;
        }
        bpf_timer_start(timer, GC_INTERVAL_NS, 0) as i32
    }
}
