//! Every map of the datapath, and the typed accessors the handlers use.

use aya_ebpf::{
    bindings::{BPF_EXIST, BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC, BPF_NOEXIST},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, Queue},
};
use netlab_common::{
    addr::Addr6,
    config::Config,
    conntrack::{CtEntry, CtKey},
    endpoint::{Endpoint, Source, Uplink},
    frag::{FragKey, FragKey6, FragNat, FragNat6},
    maps::PROGS6_LEN,
    maps::{
        CONNTRACK_MAX_DEFAULT, ENDPOINTS_MAX, FRAGS_MAX, PUBLISH_MAX, PUBLISH_RANGES_MAX,
        PUBLISH_STATS_MAX, UPLINKS_MAX, established_entries, gc_queue_entries, pending_entries,
    },
    publish::{PubBack, PubBackKey, PubBackKey6, PubKey, PubRange, PubStats, PubTarget},
    stats::{Counters, DropReason, STATS_ENTRIES, STATS_PROGRAMS, counter},
};

/// errno: the key is there already.
const EEXIST: u32 = 17;

/// Established flows; never evicted. Sized by `netlab up --conntrack-max`.
#[map(name = "CT")]
static CT: HashMap<CtKey, CtEntry> =
    HashMap::with_max_entries(established_entries(CONNTRACK_MAX_DEFAULT), 0);

/// Flows being opened or closed, and unanswered ones: evicted least recently used first.
/// One LRU list for all CPUs: the per-CPU lists (`BPF_F_NO_COMMON_LRU`) walked a few
/// nodes of the list on every insert of a full table, and cost a short connection
/// about 10 % more in the uplink's program (`netlab bench` c, `BPF_ENABLE_STATS`).
#[map(name = "CT_PENDING")]
static CT_PENDING: LruHashMap<CtKey, CtEntry> =
    LruHashMap::with_max_entries(pending_entries(CONNTRACK_MAX_DEFAULT), 0);

/// IPv6 flows, in tables of the same kinds as IPv4's (see `netlab_common::maps::CT6`);
/// sized at load time, one entry in a lab without IPv6. Established flows are never
/// evicted: the collector removes the dead ones (`GC_QUEUE6`).
#[map(name = "CT6")]
static CT6: HashMap<CtKey<Addr6>, CtEntry<Addr6>> = HashMap::with_max_entries(1, 0);

#[map(name = "CT6_PENDING")]
static CT6_PENDING: LruHashMap<CtKey<Addr6>, CtEntry<Addr6>> = LruHashMap::with_max_entries(1, 0);

/// A new flow being inserted, in a per-CPU scratch slot rather than on the stack: the
/// verifier then walks the allocation loop once for every caller, whatever the caller
/// knew about the packet, and the 512-byte stack is spared (`crate::conntrack` fills
/// it in).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NewFlow<A = u32> {
    pub key: CtKey<A>,
    pub out: CtEntry<A>,
    pub reply_key: CtKey<A>,
    pub reply: CtEntry<A>,
    /// `conntrack::Alloc` as a number: 0 source port, 1 on clash.
    pub alloc: u32,
    pub start: u32,
    /// The first of `allocate`'s candidate ports whose reply tuple a flow that may give
    /// it up holds (`conntrack::may_give_up`); `SNAT_RETRIES` for none, `u32::MAX` once
    /// a free one is in `out`.
    pub fallback: u32,
    /// The time `allocate` works at.
    pub now: u32,
    /// The opening key of the flow holding a candidate's reply tuple, looked up here
    /// rather than on the stack (`conntrack::taken_over`).
    pub other_key: CtKey<A>,
}

/// The new flow being inserted on this CPU: in a per-CPU slot rather than on the
/// stack (see [`NewFlow`]), one per family.
#[map(name = "NEW_FLOW")]
static NEW_FLOW: PerCpuArray<NewFlow<u32>> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "NEW_FLOW6")]
static NEW_FLOW6: PerCpuArray<NewFlow<Addr6>> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "PUBLISH6")]
static PUBLISH6: HashMap<PubKey<Addr6>, PubTarget<Addr6>> =
    HashMap::with_max_entries(PUBLISH_MAX, BPF_F_NO_PREALLOC);

#[map(name = "PUBLISH_RANGES6")]
static PUBLISH_RANGES6: Array<PubRange<Addr6>> = Array::with_max_entries(PUBLISH_RANGES_MAX, 0);

#[map(name = "PUBLISH_BACK6")]
static PUBLISH_BACK6: LruHashMap<PubBackKey6, PubBack<Addr6>> =
    LruHashMap::with_max_entries(PUBLISH_MAX, 0);

#[map(name = "HOST_ADDRS6")]
static HOST_ADDRS6: HashMap<Addr6, u32> = HashMap::with_max_entries(UPLINKS_MAX, 0);

/// The IPv6 programs the IPv4 ones hand IPv6 packets to, filled by `up` in a
/// dual-stack lab.
#[map(name = "PROGS6")]
static PROGS6: ProgramArray = ProgramArray::with_max_entries(PROGS6_LEN, 0);

#[map(name = "FRAGS")]
static FRAGS: LruHashMap<FragKey, FragNat> =
    LruHashMap::with_max_entries(FRAGS_MAX, BPF_F_NO_COMMON_LRU);

/// IPv6's first fragments, as `FRAGS`; sized at load time, one entry in a lab without
/// IPv6.
#[map(name = "FRAGS6")]
static FRAGS6: LruHashMap<FragKey6, FragNat6> =
    LruHashMap::with_max_entries(FRAGS_MAX, BPF_F_NO_COMMON_LRU);

/// Never evicted: a published port must not disappear under load.
#[map(name = "PUBLISH")]
static PUBLISH: HashMap<PubKey, PubTarget> =
    HashMap::with_max_entries(PUBLISH_MAX, BPF_F_NO_PREALLOC);

#[map(name = "PUBLISH_RANGES")]
static PUBLISH_RANGES: Array<PubRange> = Array::with_max_entries(PUBLISH_RANGES_MAX, 0);

#[map(name = "PUBLISH_STATS")]
static PUBLISH_STATS: PerCpuArray<PubStats> = PerCpuArray::with_max_entries(PUBLISH_STATS_MAX, 0);

#[map(name = "MAPPINGS")]
static MAPPINGS: Array<u32> = Array::with_max_entries(PUBLISH_STATS_MAX, 0);

#[map(name = "PUBLISH_BACK")]
static PUBLISH_BACK: LruHashMap<PubBackKey, PubBack> = LruHashMap::with_max_entries(PUBLISH_MAX, 0);

#[map(name = "ENDPOINTS")]
static ENDPOINTS: HashMap<u32, Endpoint> =
    HashMap::with_max_entries(ENDPOINTS_MAX, BPF_F_NO_PREALLOC);

/// The containers by their IPv6 address, for the IPv6 fast path into them.
#[map(name = "ENDPOINTS6")]
static ENDPOINTS6: HashMap<Addr6, Endpoint> =
    HashMap::with_max_entries(ENDPOINTS_MAX, BPF_F_NO_PREALLOC);

#[map(name = "SOURCES")]
static SOURCES: HashMap<u32, Source> = HashMap::with_max_entries(ENDPOINTS_MAX, BPF_F_NO_PREALLOC);

#[map(name = "UPLINKS")]
static UPLINKS: HashMap<u32, Uplink> = HashMap::with_max_entries(UPLINKS_MAX, 0);

#[map(name = "HOST_ADDRS")]
static HOST_ADDRS: HashMap<u32, u32> = HashMap::with_max_entries(UPLINKS_MAX, 0);

/// The uplink's addresses now (`netlab_common::maps::UPLINK_NOW`): an array, whose
/// lookup the verifier inlines (no helper call).
#[map(name = "UPLINK_NOW")]
static UPLINK_NOW: Array<Uplink> = Array::with_max_entries(1, 0);

/// The smallest route MTU of the lab host's, per family (`netlab_common::maps::ROUTE_MTU`).
#[map(name = "ROUTE_MTU")]
static ROUTE_MTU: Array<u32> = Array::with_max_entries(2, 0);

/// The collector's round of the established flows: one key per flow, queued when the
/// flow enters `CT`, taken and (if the flow lives on) queued again by each run.
#[map(name = "GC_QUEUE")]
static GC_QUEUE: Queue<CtKey> = Queue::with_max_entries(gc_queue_entries(CONNTRACK_MAX_DEFAULT), 0);

/// The same round of IPv6's established flows (`CT6`); sized at load time.
#[map(name = "GC_QUEUE6")]
static GC_QUEUE6: Queue<CtKey<Addr6>> = Queue::with_max_entries(1, 0);

/// The lab's configuration as userspace reads it back (with the hooks it was attached
/// by); no program reads it.
#[map(name = "CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// The lab's configuration (`CONFIG_GLOBAL`): written by the loader before the
/// programs are verified, read-only after. No lookup per packet, and the verifier
/// knows its values, so it drops the code a lab's flags leave dead.
#[unsafe(no_mangle)]
static LAB_CONFIG: Config = Config::DEFAULT;

#[map(name = "STATS")]
static STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(STATS_ENTRIES, 0);

/// This CPU's counters: fetched once by a program's entry point ([`Stats::get`]) and
/// handed to everything that counts, so that a packet costs one lookup of `STATS`
/// however many counters it moves.
#[derive(Clone, Copy)]
pub struct Stats(*mut Counters);

impl Stats {
    /// This CPU's entry of the programs' counters; `None` only if `STATS` had none,
    /// which a loaded object always has.
    #[inline(always)]
    pub fn get() -> Option<Self> {
        STATS.get_ptr_mut(STATS_PROGRAMS).map(Self)
    }

    #[inline(always)]
    pub fn count(self, index: u32) {
        self.add(index, 1);
    }

    #[inline(always)]
    pub fn add(self, index: u32, n: u64) {
        // Per-CPU: no other CPU writes this entry, and a TC program runs to its end
        // before another starts on this CPU, so its plain adds lose nothing. (A socket
        // program can be preempted by another, and then lose one of their own counts.)
        if let Some(c) = unsafe { (*self.0).get_mut(index as usize) } {
            *c += n;
        }
    }

    #[inline(always)]
    pub fn drop(self, reason: DropReason) {
        self.count(reason.index());
    }
}

/// Which conntrack table an entry lives in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Established flows (`CT`).
    Established,
    /// Everything else (`CT_PENDING`).
    Pending,
}

#[inline(always)]
pub fn config() -> &'static Config {
    let p: *const Config = &raw const LAB_CONFIG;
    // Through an opaque pointer: the compiler would otherwise fold in the values the
    // object file holds rather than read the lab's.
    unsafe { &*core::ptr::read_volatile(&p) }
}

#[inline(always)]
pub fn ct_get(t: Table, key: &CtKey) -> Option<*mut CtEntry> {
    match t {
        Table::Established => CT.get_ptr_mut(key),
        Table::Pending => CT_PENDING.get_ptr_mut(key),
    }
}

#[inline(always)]
pub fn ct_insert(st: Stats, t: Table, key: &CtKey, entry: &CtEntry, flags: u64) -> Result<(), i32> {
    match t {
        // An entry `CT` did not hold is counted; one it held is overwritten (unless
        // `flags` forbids it), uncounted. More than one call only when the key was
        // there; when another CPU removed it meanwhile, it goes in (counted) as new.
        Table::Established => {
            if ct_insert_new(st, key, entry).is_ok() {
                return Ok(());
            }
            if flags == BPF_NOEXIST as u64 {
                return Err(-(EEXIST as i32));
            }
            if CT.insert(key, entry, BPF_EXIST as u64).is_ok() {
                return Ok(());
            }
            ct_insert_new(st, key, entry)
        }
        Table::Pending => CT_PENDING.insert(key, entry, flags),
    }
}

/// Puts a key `CT` does not hold into it, counted.
#[inline(always)]
fn ct_insert_new(st: Stats, key: &CtKey, entry: &CtEntry) -> Result<(), i32> {
    CT.insert(key, entry, BPF_NOEXIST as u64)?;
    st.count(counter::CT_ENTRIES_ADDED);
    Ok(())
}

#[inline(always)]
pub fn ct_remove(st: Stats, t: Table, key: &CtKey) {
    match t {
        // Only the removal that found the entry counts (of two CPUs removing one entry
        // at once, one does).
        Table::Established => {
            if CT.remove(key).is_ok() {
                st.count(counter::CT_ENTRIES_REMOVED);
            }
        }
        Table::Pending => {
            let _ = CT_PENDING.remove(key);
        }
    }
}

/// Queues an established flow for the collector (one of its keys); a full queue is
/// counted, and the flow then expires only when a packet meets it.
#[inline(always)]
pub fn gc_track(st: Stats, key: &CtKey) {
    if GC_QUEUE.push(key, 0).is_err() {
        st.count(counter::CT_GC_UNQUEUED);
    }
}

/// The next flow for the collector to look at.
#[inline(always)]
pub fn gc_next() -> Option<CtKey> {
    GC_QUEUE.pop().ok().flatten()
}

#[inline(always)]
pub fn frag_get(key: &FragKey) -> Option<FragNat> {
    FRAGS.get_ptr(key).map(|p| unsafe { *p })
}

#[inline(always)]
pub fn frag_set(key: &FragKey, nat: &FragNat) {
    let _ = FRAGS.insert(key, nat, 0);
}

/// The translation of the IPv6 datagram of `key`'s first fragment, in the table.
#[inline(always)]
pub fn frag6_get(key: &FragKey6) -> Option<*const FragNat6> {
    FRAGS6.get_ptr(key)
}

#[inline(always)]
pub fn frag6_set(key: &FragKey6, nat: &FragNat6) {
    let _ = FRAGS6.insert(key, nat, 0);
}

#[inline(always)]
pub fn publish_get(key: &PubKey) -> Option<PubTarget> {
    PUBLISH.get_ptr(key).map(|p| unsafe { *p })
}

#[inline(always)]
pub fn publish_range(index: u32) -> Option<&'static PubRange> {
    PUBLISH_RANGES.get(index)
}

/// The current generation of mapping `id` (0 for none).
#[inline(always)]
pub fn mapping_gen(id: u32) -> u32 {
    MAPPINGS.get(id).copied().unwrap_or(0)
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
pub fn back_get(key: &PubBackKey) -> Option<PubBack> {
    PUBLISH_BACK.get_ptr(key).map(|p| unsafe { *p })
}

/// Records what a socket asked for; whether the socket had not been sent to that
/// container's port yet (a new connection, for UDP too).
#[inline(always)]
pub fn back_set(key: &PubBackKey, value: &PubBack) -> bool {
    let new = PUBLISH_BACK.get_ptr(key).is_none();
    let _ = PUBLISH_BACK.insert(key, value, 0);
    new
}

#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "keys by reference: the aya-ebpf line after 0.2 takes &K only"
)]
pub fn endpoint(addr: u32) -> Option<Endpoint> {
    ENDPOINTS.get_ptr(&addr).map(|p| unsafe { *p })
}

/// The container with IPv6 address `addr`.
#[inline(always)]
pub fn endpoint6(addr: &Addr6) -> Option<Endpoint> {
    ENDPOINTS6.get_ptr(addr).map(|p| unsafe { *p })
}

/// What the container behind the veth with this ifindex may send from.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "keys by reference: the aya-ebpf line after 0.2 takes &K only"
)]
pub fn source(ifindex: u32) -> Option<Source> {
    SOURCES.get_ptr(&ifindex).map(|p| unsafe { *p })
}

/// The uplink with this ifindex: an interface of the lab host netlab watches.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "keys by reference: the aya-ebpf line after 0.2 takes &K only"
)]
pub fn uplink(ifindex: u32) -> Option<Uplink> {
    UPLINKS.get_ptr(&ifindex).map(|p| unsafe { *p })
}

/// The uplink's IPv4 address now (0 for none): the masquerade source of what leaves
/// by it. It follows the uplink (`UPLINK_NOW`), where the configuration holds the one
/// it had at `up`.
#[inline(always)]
pub fn uplink_addr() -> u32 {
    UPLINK_NOW.get(0).map(|u| u.addr).unwrap_or(0)
}

/// The largest packet (IP length, or a GSO packet's segment) the fast path may forward
/// for family `index` (0 IPv4, 1 IPv6) before any route lookup: the smallest MTU a
/// route of the lab host's carries, which `bpf_fib_lookup` does not answer when it is
/// not locked (`ROUTE_MTU`); `u32::MAX` when no route has one.
#[inline(always)]
pub fn route_mtu_floor(index: u32) -> u32 {
    match ROUTE_MTU.get(index) {
        Some(&m) if m != 0 => m,
        _ => u32::MAX,
    }
}

/// [`uplink_addr`] for IPv6 (zero for none).
#[inline(always)]
pub fn uplink_addr6() -> Addr6 {
    UPLINK_NOW.get(0).map(|u| u.addr6).unwrap_or([0; 4])
}

/// Whether `addr` is the uplink's address or the bridge's, the host addresses known
/// without a hash lookup: the configuration's, while the uplink still has the address
/// it had at `up` (otherwise `HOST_ADDRS` knows its address now).
#[inline(always)]
pub fn is_uplink_or_bridge(cfg: &Config, addr: u32) -> bool {
    (addr == cfg.uplink_addr && uplink_addr() == cfg.uplink_addr) || addr == cfg.bridge_addr
}

/// [`is_uplink_or_bridge`] for IPv6 (never, in a lab without IPv6).
#[inline(always)]
pub fn is_uplink_or_bridge6(cfg: &Config, addr: &Addr6) -> bool {
    cfg.is_host6(addr) && (*addr != cfg.uplink_addr6 || uplink_addr6() == cfg.uplink_addr6)
}

/// Whether `addr` is an address of the lab host's watched interfaces (the uplink's and
/// the bridge's are checked first, by [`is_uplink_or_bridge`]).
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "keys by reference: the aya-ebpf line after 0.2 takes &K only"
)]
pub fn other_host_addr(addr: u32) -> bool {
    HOST_ADDRS.get_ptr(&addr).is_some()
}

/// The interface of the lab host that has `addr` (as of the last sync).
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "keys by reference: the aya-ebpf line after 0.2 takes &K only"
)]
pub fn host_ifindex(addr: u32) -> Option<u32> {
    HOST_ADDRS.get_ptr(&addr).map(|p| unsafe { *p })
}

/// [`host_ifindex`] for IPv6.
#[inline(always)]
pub fn host_ifindex6(addr: &Addr6) -> Option<u32> {
    HOST_ADDRS6.get_ptr(addr).map(|p| unsafe { *p })
}

/// Whether `addr` is one of the lab host's own addresses on which ports are published
/// without an address: the uplink's, the bridge's, any other watched interface's.
#[inline(always)]
pub fn is_host(cfg: &Config, addr: u32) -> bool {
    is_uplink_or_bridge(cfg, addr) || other_host_addr(addr)
}

#[inline(always)]
pub fn new_flow() -> Option<*mut NewFlow<u32>> {
    NEW_FLOW.get_ptr_mut(0)
}

#[inline(always)]
pub fn new_flow6() -> Option<*mut NewFlow<Addr6>> {
    NEW_FLOW6.get_ptr_mut(0)
}

#[inline(always)]
pub fn ct6_get(t: Table, key: &CtKey<Addr6>) -> Option<*mut CtEntry<Addr6>> {
    match t {
        Table::Established => CT6.get_ptr_mut(key),
        Table::Pending => CT6_PENDING.get_ptr_mut(key),
    }
}

/// Inserts into an IPv6 table. Not counted: `CT`'s counters are what `status` knows
/// `CT` holds by; the IPv6 tables are counted by a walk.
#[inline(always)]
pub fn ct6_insert(
    _st: Stats,
    t: Table,
    key: &CtKey<Addr6>,
    entry: &CtEntry<Addr6>,
    flags: u64,
) -> Result<(), i32> {
    match t {
        Table::Established => CT6.insert(key, entry, flags),
        Table::Pending => CT6_PENDING.insert(key, entry, flags),
    }
}

#[inline(always)]
pub fn ct6_remove(_st: Stats, t: Table, key: &CtKey<Addr6>) {
    let _ = match t {
        Table::Established => CT6.remove(key),
        Table::Pending => CT6_PENDING.remove(key),
    };
}

/// [`gc_track`] for IPv6's established flows.
#[inline(always)]
pub fn gc_track6(st: Stats, key: &CtKey<Addr6>) {
    if GC_QUEUE6.push(key, 0).is_err() {
        st.count(counter::CT_GC_UNQUEUED);
    }
}

/// [`gc_next`] for IPv6's established flows.
#[inline(always)]
pub fn gc_next6() -> Option<CtKey<Addr6>> {
    GC_QUEUE6.pop().ok().flatten()
}

#[inline(always)]
pub fn publish6_get(key: &PubKey<Addr6>) -> Option<PubTarget<Addr6>> {
    PUBLISH6.get_ptr(key).map(|p| unsafe { *p })
}

#[inline(always)]
pub fn publish_range6(index: u32) -> Option<&'static PubRange<Addr6>> {
    PUBLISH_RANGES6.get(index)
}

#[inline(always)]
pub fn back6_get(key: &PubBackKey6) -> Option<PubBack<Addr6>> {
    PUBLISH_BACK6.get_ptr(key).map(|p| unsafe { *p })
}

/// [`back_set`] for IPv6 sockets.
#[inline(always)]
pub fn back6_set(key: &PubBackKey6, value: &PubBack<Addr6>) -> bool {
    let new = PUBLISH_BACK6.get_ptr(key).is_none();
    let _ = PUBLISH_BACK6.insert(key, value, 0);
    new
}

/// [`is_host`] for IPv6.
#[inline(always)]
pub fn is_host6(cfg: &Config, addr: &Addr6) -> bool {
    is_uplink_or_bridge6(cfg, addr)
        || (cfg.flags & netlab_common::config::FLAG_IPV6 != 0
            && HOST_ADDRS6.get_ptr(addr).is_some())
}

/// Hands the packet to IPv6 program `index` of `PROGS6`; returns only when there is
/// none (a lab without IPv6).
#[inline(always)]
pub fn to_ipv6(ctx: &aya_ebpf::programs::TcContext, index: u32) {
    unsafe { PROGS6.tail_call(ctx, index) };
}
