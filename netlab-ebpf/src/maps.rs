//! Every map of the datapath, and the typed accessors the handlers use.

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
};
use netlab_common::{
    config::Config,
    conntrack::{CtEntry, CtKey},
    maps::{CONNTRACK_MAX, CT_PENDING_MAX, STATS_LEN},
    stats::DropReason,
};

#[map(name = "CONNTRACK")]
static CONNTRACK: LruHashMap<CtKey, CtEntry> = LruHashMap::with_max_entries(CONNTRACK_MAX, 0);

#[map(name = "CT_PENDING")]
static CT_PENDING: LruHashMap<CtKey, CtEntry> = LruHashMap::with_max_entries(CT_PENDING_MAX, 0);

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
