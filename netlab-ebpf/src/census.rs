//! The conntrack census (see `netlab_common::census`): run by `status` and `metrics`
//! through BPF_PROG_TEST_RUN, never attached. It walks both tables in the kernel
//! (`bpf_for_each_map_elem`; the LRU table only when the packet's first byte is
//! [`WALK_PENDING`]), counts what `netlab conntrack` would list, and writes the
//! [`Census`] at the start of the packet it was given, which userspace reads back.
//!
//! The working space is the CPU's slot of `CENSUS`: a test run keeps its CPU from
//! start to end, and nothing else on that CPU runs the census meanwhile (a BPF program
//! is not preempted by another run of itself on a kernel without full preemption;
//! under `preempt=full` two censuses at the same moment on one CPU could mix their
//! counts, never anybody's flows).

use core::ffi::c_void;

use aya_ebpf::{helpers::generated::bpf_loop, programs::TcContext};
use netlab_common::{
    census::{
        Census, NAT_PROTOS, PORT_WORDS, SLOT_ICMP, SLOT_OTHER, SLOT_UDP, TABLE_ESTABLISHED,
        TABLE_PENDING, TCP_SLOTS, WALK_BOTH, WALK_PENDING, age_bucket,
    },
    conntrack::{CtEntry, CtKey, FLAG_ORIGIN, TCP_SYN_RECV, TCP_SYN_SENT, expired},
    proto::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
};

use crate::{
    conntrack,
    maps::{self, Table},
};

/// What the walk of one table needs to know.
#[repr(C)]
struct Walk {
    /// `TABLE_ESTABLISHED` or `TABLE_PENDING`.
    table: u32,
    now: u32,
    /// The NAT port range, host byte order.
    port_min: u32,
    port_max: u32,
}

/// Counts both tables into the packet; 0 when done.
#[inline(always)]
pub fn run(ctx: &TcContext) -> i32 {
    let (Some(s), Some(cfg)) = (maps::census_scratch(), maps::config()) else {
        return 1;
    };
    let census = unsafe { &mut (*s).census };
    *census = Census::default();
    let mut walk = Walk {
        table: TABLE_ESTABLISHED as u32,
        now: conntrack::now(),
        port_min: cfg.nat_port_min as u32,
        port_max: cfg.nat_port_max as u32,
    };
    // bpf_for_each_map_elem returns how many entries it went through: the entries.
    if ctx.load::<u8>(0).unwrap_or(WALK_BOTH) != WALK_PENDING {
        let n = maps::ct_for_each(Table::Established, count_flow, &mut walk);
        census.entries[TABLE_ESTABLISHED] = n as u32;
    }
    walk.table = TABLE_PENDING as u32;
    let n = maps::ct_for_each(Table::Pending, count_flow, &mut walk);
    census.entries[TABLE_PENDING] = n as u32;
    unsafe {
        bpf_loop(
            (NAT_PROTOS * PORT_WORDS) as u32,
            clear_word as *const () as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
    }
    census.done = 1;
    match ctx.store(0, census, 0) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// One entry of a table: if it opened a live flow, the flow is counted. Entries of
/// the other direction (half of all) return at once, before any lookup.
extern "C" fn count_flow(
    _map: *mut c_void,
    key: *const CtKey,
    e: *const CtEntry,
    walk: *mut Walk,
) -> i64 {
    let (key, e, walk) = unsafe { (&*key, &*e, &*walk) };
    if e.flags & FLAG_ORIGIN == 0 {
        return 0;
    }
    let (Some(s), Some(cfg)) = (maps::census_scratch(), maps::config()) else {
        return 1;
    };
    let s = unsafe { &mut *s };
    let t = walk.table as usize;
    let (table, pending) = if t == TABLE_PENDING {
        (Table::Pending, true)
    } else {
        (Table::Established, false)
    };
    if e.pub_id != 0 && maps::mapping_gen(e.pub_id) != e.pub_gen {
        return 0;
    }
    let now = walk.now;
    let dead = expired(cfg, key.proto, e.state, e.flags, e.last_seen, now);
    // The other half: in `CT` both halves come and go together (a half is there only
    // between two calls of one program), so it is looked up there only to tell whether
    // a flow idle this way is idle both ways; in the LRU table one half may have been
    // pushed out, which ends the flow.
    if pending || dead {
        let Some(p) = maps::ct_get(table, &e.pair_key(key.proto)) else {
            return 0;
        };
        let p = unsafe { &*p };
        if dead && expired(cfg, key.proto, p.state, p.flags, p.last_seen, now) {
            return 0;
        }
    }
    let slot = match key.proto {
        IPPROTO_TCP => (e.state as usize) & (TCP_SLOTS - 1),
        IPPROTO_UDP => SLOT_UDP,
        IPPROTO_ICMP => SLOT_ICMP,
        _ => SLOT_OTHER,
    };
    if let Some(n) = s.census.flows.get_mut(t).and_then(|r| r.get_mut(slot)) {
        *n += 1;
    }
    if key.proto == IPPROTO_TCP && (e.state == TCP_SYN_SENT || e.state == TCP_SYN_RECV) {
        let age = now.saturating_sub(e.created);
        if let Some(n) = s.census.half_open.get_mut(age_bucket(age)) {
            *n += 1;
        }
    }
    // A masqueraded flow holds its translated source port.
    let nat = match key.proto {
        IPPROTO_TCP => 0,
        IPPROTO_UDP => 1,
        IPPROTO_ICMP => 2,
        _ => return 0,
    };
    let port = u16::from_be(e.sport) as u32;
    if e.saddr == key.saddr || port < walk.port_min || port > walk.port_max {
        return 0;
    }
    let bit = port - walk.port_min;
    let Some(w) = s.ports.get_mut(nat * PORT_WORDS + (bit >> 6) as usize) else {
        return 0;
    };
    let mask = 1u64 << (bit & 63);
    if *w & mask == 0 {
        *w |= mask;
        if let Some(n) = s.census.nat_ports.get_mut(nat) {
            *n += 1;
        }
    }
    0
}

/// Clears word `i` of the port bitmaps, for the next census.
extern "C" fn clear_word(i: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = maps::census_scratch() else {
        return 1;
    };
    let s = unsafe { &mut *s };
    if let Some(w) = s.ports.get_mut(i as usize) {
        *w = 0;
    }
    0
}
