//! The conntrack garbage collector, in the kernel: a `bpf_timer` armed once by `up`
//! removes the established flows that nobody looks up any more — both directions idle
//! past their timeout, or their published mapping withdrawn — so that no userspace
//! process is needed. The timer lives in the pinned `GC` map and goes with it when the
//! lab is taken down.
//!
//! Each run is bounded: it takes at most [`GC_BATCH`] flows from the queue of
//! established flows (`GC_QUEUE`: a flow's key is queued when the flow enters `CT`;
//! IPv6's, of `CT6`, are in `GC_QUEUE6`, and a run of a dual-stack lab takes as many
//! again from it),
//! removes the dead ones, queues the live ones again, and stops early when it meets
//! the first flow it queued again (it has then seen every flow once). The next run,
//! [`Config::gc_interval_ms`] later, goes on where this one stopped. So a run costs the
//! same at 1,000 flows as at 4 million, and a table of N flows is gone through in
//! N / [`GC_BATCH`] runs. Keys of flows that left `CT` meanwhile (closed, expired when
//! met) are dropped when they come up. Each run's time is measured; `netlab stats`
//! shows the longest.
//!
//! The LRU table of flows being opened or closed needs no collector: its least recently
//! used entries make room for new ones.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::bpf_timer,
    btf_maps::Array,
    helpers::generated::{
        bpf_ktime_get_ns, bpf_loop, bpf_timer_init, bpf_timer_set_callback, bpf_timer_start,
    },
    macros::btf_map,
};
use netlab_common::{
    addr::Addr6,
    config::{Config, FLAG_IPV6, GC_BATCH},
    conntrack::{CtEntry, CtKey, expired},
    stats::counter,
};

use crate::{
    conntrack,
    family::Family,
    maps::{self, Stats, Table},
};

/// The shortest time between two runs, whatever the configuration says.
const MIN_INTERVAL_NS: u64 = 10_000_000;
const CLOCK_MONOTONIC: u64 = 1;

/// The value of `GC`: the timer (the verifier finds it through this type's BTF) and
/// the collector's own record, read by `netlab stats`.
#[repr(C)]
pub struct GcState {
    pub timer: bpf_timer,
    /// Nanoseconds the longest run took, and the last one.
    pub longest_ns: u64,
    pub last_ns: u64,
}

// Userspace reads it as a `GcRecord`.
const _: () = assert!(
    core::mem::size_of::<GcState>() == core::mem::size_of::<netlab_common::stats::GcRecord>()
);

#[btf_map]
static GC: Array<GcState, 1, 0> = Array::new();

/// What one run of one family's queue needs and counts.
#[repr(C)]
struct Run<A> {
    cfg: *const Config,
    st: Stats,
    now: u32,
    expired: u32,
    scanned: u32,
    /// The first key this run queued again; meeting it again ends the run.
    first: CtKey<A>,
    requeued: u32,
}

/// Whether the flow of `key`, whose entry in the established table is `e`, is dead:
/// withdrawn, or idle past its timeout both ways.
#[inline(always)]
fn dead<A: Family>(cfg: &Config, key: &CtKey<A>, e: &CtEntry<A>, now: u32) -> bool {
    if e.pub_id != 0 && maps::mapping_gen(e.pub_id) != e.pub_gen {
        return true;
    }
    if !expired(cfg, key.proto, e.state, e.flags, e.last_seen, now) {
        return false;
    }
    match A::ct_get(Table::Established, &e.pair_key(key.proto)) {
        Some(p) => {
            let p = unsafe { &*p };
            expired(cfg, key.proto, p.state, p.flags, p.last_seen, now)
        }
        None => true,
    }
}

/// One flow of the queue: gone from `CT` (forgotten), dead (removed, both halves), or
/// alive (queued again). Returns 1 to end the run.
extern "C" fn step<A: Family>(_index: u64, run: *mut Run<A>) -> i64 {
    let run = unsafe { &mut *run };
    let Some(key) = A::gc_next() else {
        return 1;
    };
    run.scanned += 1;
    if run.requeued != 0 && key == run.first {
        // Round the whole queue once: the rest waits for the next run.
        A::gc_track(run.st, &key);
        return 1;
    }
    let Some(e) = A::ct_get(Table::Established, &key) else {
        return 0;
    };
    let e = unsafe { &*e };
    let pair_key = e.pair_key(key.proto);
    let cfg = unsafe { &*run.cfg };
    if dead(cfg, &key, e, run.now) {
        A::ct_remove(run.st, Table::Established, &pair_key);
        A::ct_remove(run.st, Table::Established, &key);
        run.expired += 1;
        return 0;
    }
    if run.requeued == 0 {
        run.first = key;
    }
    run.requeued += 1;
    A::gc_track(run.st, &key);
    0
}

/// One run over family `A`'s queue: at most [`GC_BATCH`] flows looked at.
#[inline(always)]
fn run<A: Family>(cfg: &Config, st: Stats) {
    let mut run = Run::<A> {
        cfg,
        st,
        now: conntrack::now(),
        expired: 0,
        scanned: 0,
        first: CtKey::default(),
        requeued: 0,
    };
    unsafe {
        bpf_loop(
            GC_BATCH,
            step::<A> as *const () as *mut c_void,
            &mut run as *mut Run<A> as *mut c_void,
            0,
        );
    }
    st.add(counter::CT_GC_EXPIRED, run.expired as u64);
    st.add(counter::CT_GC_SCANNED, run.scanned as u64);
}

/// The timer's callback: one run, measured, then the next one armed.
extern "C" fn tick(_map: *mut c_void, _key: *mut u32, gc: *mut GcState) -> i64 {
    let start = unsafe { bpf_ktime_get_ns() };
    let cfg = maps::config();
    let Some(st) = Stats::get() else {
        return 0;
    };
    run::<u32>(cfg, st);
    if cfg.flags & FLAG_IPV6 != 0 {
        run::<Addr6>(cfg, st);
    }
    st.count(counter::CT_GC_RUNS);
    let gc = unsafe { &mut *gc };
    let took = unsafe { bpf_ktime_get_ns() } - start;
    gc.last_ns = took;
    if took > gc.longest_ns {
        gc.longest_ns = took;
    }
    unsafe { bpf_timer_start(&mut gc.timer, interval_ns(cfg), 0) };
    0
}

#[inline(always)]
fn interval_ns(cfg: &Config) -> u64 {
    let ns = cfg.gc_interval_ms as u64 * 1_000_000;
    if ns < MIN_INTERVAL_NS {
        MIN_INTERVAL_NS
    } else {
        ns
    }
}

/// Arms the collector (run once by `up`); 0 on success.
#[inline(always)]
pub fn start() -> i32 {
    let Some(gc) = GC.get_ptr_mut(0) else {
        return 1;
    };
    let cfg = maps::config();
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
        bpf_timer_start(timer, interval_ns(cfg), 0) as i32
    }
}
