//! Every map of the datapath, and the typed accessors the handlers use.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use netlab_common::{
    config::Config,
    conntrack::{CtEntry, CtKey},
    maps::{
        CONNTRACK_MAX, CT_PENDING_MAX, PUBLISH_MAX, PUBLISH_RANGES_MAX, PUBLISH_STATS_MAX,
        STATS_LEN,
    },
    publish::{PubBack, PubKey, PubRange, PubStats, PubTarget},
    stats::DropReason,
};

#[map(name = "CONNTRACK")]
static CONNTRACK: LruHashMap<CtKey, CtEntry> = LruHashMap::with_max_entries(CONNTRACK_MAX, 0);

#[map(name = "CT_PENDING")]
static CT_PENDING: LruHashMap<CtKey, CtEntry> = LruHashMap::with_max_entries(CT_PENDING_MAX, 0);

/// Never evicted: a published port must not disappear under load.
#[map(name = "PUBLISH")]
static PUBLISH: HashMap<PubKey, PubTarget> =
    HashMap::with_max_entries(PUBLISH_MAX, BPF_F_NO_PREALLOC);

#[map(name = "PUBLISH_RANGES")]
static PUBLISH_RANGES: Array<PubRange> = Array::with_max_entries(PUBLISH_RANGES_MAX, 0);

#[map(name = "PUBLISH_STATS")]
static PUBLISH_STATS: PerCpuArray<PubStats> = PerCpuArray::with_max_entries(PUBLISH_STATS_MAX, 0);

#[map(name = "PUBLISH_BACK")]
static PUBLISH_BACK: LruHashMap<PubBack, PubBack> = LruHashMap::with_max_entries(PUBLISH_MAX, 0);

#[map(name = "CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map(name = "STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_LEN, 0);

/// Which conntrack table an entry lives in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Both directions have seen traffic.
    Confirmed,
    /// No reply yet.
    Pending,
}

#[inline(always)]
fn table(t: Table) -> &'static LruHashMap<CtKey, CtEntry> {
    match t {
        Table::Confirmed => &CONNTRACK,
        Table::Pending => &CT_PENDING,
    }
}

#[inline(always)]
pub fn config() -> Option<&'static Config> {
    CONFIG.get(0)
}

#[inline(always)]
pub fn ct_get(t: Table, key: &CtKey) -> Option<*mut CtEntry> {
    table(t).get_ptr_mut(key)
}

#[inline(always)]
pub fn ct_insert(t: Table, key: &CtKey, entry: &CtEntry, flags: u64) -> Result<(), i32> {
    table(t).insert(key, entry, flags)
}

#[inline(always)]
pub fn ct_remove(t: Table, key: &CtKey) {
    let _ = table(t).remove(key);
}

#[inline(always)]
pub fn count(index: u32) {
    if let Some(p) = STATS.get_ptr_mut(index) {
        // Per-CPU slot: no other CPU writes it, so a plain add is race-free.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
pub fn count_drop(reason: DropReason) {
    count(reason.index());
}

#[inline(always)]
pub fn publish_get(key: &PubKey) -> Option<PubTarget> {
    PUBLISH.get_ptr(key).map(|p| unsafe { *p })
}

#[inline(always)]
pub fn publish_range(index: u32) -> Option<&'static PubRange> {
    PUBLISH_RANGES.get(index)
}

/// Counts a packet on a published mapping.
#[inline(always)]
pub fn count_publish(id: u32, len: u32) {
    if id == 0 {
        return;
    }
    if let Some(p) = PUBLISH_STATS.get_ptr_mut(id) {
        // Per-CPU slot: no other CPU writes it.
        let s = unsafe { &mut *p };
        s.packets += 1;
        s.bytes += len as u64;
    }
}

/// Counts a new connection (flow) on a published mapping.
#[inline(always)]
pub fn count_connection(id: u32) {
    if let Some(p) = PUBLISH_STATS.get_ptr_mut(id) {
        unsafe { (*p).connections += 1 };
    }
}

#[inline(always)]
pub fn back_get(key: &PubBack) -> Option<PubBack> {
    PUBLISH_BACK.get_ptr(key).map(|p| unsafe { *p })
}

#[inline(always)]
pub fn back_set(key: &PubBack, value: &PubBack) {
    let _ = PUBLISH_BACK.insert(key, value, 0);
}
