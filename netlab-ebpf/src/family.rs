//! What differs between IPv4 and IPv6 for conntrack and the NAT's decisions: the
//! address, and the maps and configuration it keys. The flow logic (`conntrack`,
//! `nat`) is written once, generic over [`Family`], which IPv4 (`u32`) and IPv6
//! ([`Addr6`]) implement; each family's programs use their own, and the verifier walks
//! each instance in its own programs only.

use aya_ebpf::{
    bindings::{
        bpf_sock_tuple, bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1 as SockTuple4,
        bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2 as SockTuple6,
    },
    programs::TcContext,
};
use aya_log_ebpf::debug;
use netlab_common::{
    addr::Addr6,
    config::Config,
    conntrack::{CtEntry, CtKey},
    proto::martian_source,
    publish::PubTarget,
};

use crate::{
    maps::{self, NewFlow, Stats, Table},
    publish,
};

pub trait Family: Copy + PartialEq + Default + 'static {
    fn ct_get(t: Table, key: &CtKey<Self>) -> Option<*mut CtEntry<Self>>;
    fn ct_insert(
        st: Stats,
        t: Table,
        key: &CtKey<Self>,
        entry: &CtEntry<Self>,
        flags: u64,
    ) -> Result<(), i32>;
    fn ct_remove(st: Stats, t: Table, key: &CtKey<Self>);
    /// Queues an established flow for the collector.
    fn gc_track(st: Stats, key: &CtKey<Self>);
    /// The next established flow for the collector to look at.
    fn gc_next() -> Option<CtKey<Self>>;
    /// This CPU's new-flow slot.
    fn new_flow() -> Option<*mut NewFlow<Self>>;
    /// The published port `port` on host address `addr`.
    fn published(addr: Self, proto: u8, port: u16) -> Option<PubTarget<Self>>;
    /// Whether `addr` is one of the lab host's addresses ports are published on.
    fn is_host(cfg: &Config, addr: &Self) -> bool;
    /// In the lab's subnet: behind the bridge, never a source from outside.
    fn in_lab(cfg: &Config, addr: &Self) -> bool;
    /// The interface of the lab host that has `addr` (`HOST_ADDRS`), if any.
    fn host_ifindex(addr: &Self) -> Option<u32>;
    /// The bridge's address: hairpin flows come from it.
    fn bridge_addr(cfg: &Config) -> Self;
    /// Whether the lab host's stack would refuse `addr` as a source from a wire.
    fn martian(addr: &Self) -> bool;
    /// The debug log of a new flow.
    fn log_new_flow(ctx: &TcContext, key: &CtKey<Self>, e: &CtEntry<Self>);
    /// Fills `t` with the replies' tuple of a flow translated to `out` (from its peer
    /// to the translated source); returns the size `bpf_sk_lookup_*` takes.
    fn reply_tuple(t: &mut bpf_sock_tuple, out: &CtEntry<Self>) -> u32;
}

impl Family for u32 {
    #[inline(always)]
    fn ct_get(t: Table, key: &CtKey) -> Option<*mut CtEntry> {
        maps::ct_get(t, key)
    }

    #[inline(always)]
    fn ct_insert(st: Stats, t: Table, key: &CtKey, e: &CtEntry, flags: u64) -> Result<(), i32> {
        maps::ct_insert(st, t, key, e, flags)
    }

    #[inline(always)]
    fn ct_remove(st: Stats, t: Table, key: &CtKey) {
        maps::ct_remove(st, t, key)
    }

    #[inline(always)]
    fn gc_track(st: Stats, key: &CtKey) {
        maps::gc_track(st, key)
    }

    #[inline(always)]
    fn gc_next() -> Option<CtKey> {
        maps::gc_next()
    }

    #[inline(always)]
    fn new_flow() -> Option<*mut NewFlow<u32>> {
        maps::new_flow()
    }

    #[inline(always)]
    fn published(addr: u32, proto: u8, port: u16) -> Option<PubTarget> {
        publish::lookup(addr, proto, port)
    }

    #[inline(always)]
    fn is_host(cfg: &Config, addr: &u32) -> bool {
        maps::is_host(cfg, *addr)
    }

    #[inline(always)]
    fn in_lab(cfg: &Config, addr: &u32) -> bool {
        cfg.in_subnet(*addr)
    }

    #[inline(always)]
    fn host_ifindex(addr: &u32) -> Option<u32> {
        maps::host_ifindex(*addr)
    }

    #[inline(always)]
    fn bridge_addr(cfg: &Config) -> u32 {
        cfg.bridge_addr
    }

    #[inline(always)]
    fn martian(addr: &u32) -> bool {
        martian_source(u32::from_be(*addr))
    }

    #[inline(always)]
    fn log_new_flow(ctx: &TcContext, key: &CtKey, e: &CtEntry) {
        // Two records, each naming the flow by its source: one record of all nine
        // values takes more stack than the uplink's program (logs on) has left.
        debug!(
            ctx,
            "new flow proto {} {:i}:{} -> {:i}:{}",
            key.proto,
            u32::from_be(key.saddr),
            u16::from_be(key.sport),
            u32::from_be(key.daddr),
            u16::from_be(key.dport)
        );
        debug!(
            ctx,
            "new flow from {:i}:{} as {:i}:{} -> {:i}:{}",
            u32::from_be(key.saddr),
            u16::from_be(key.sport),
            u32::from_be(e.saddr),
            u16::from_be(e.sport),
            u32::from_be(e.daddr),
            u16::from_be(e.dport)
        );
    }

    #[inline(always)]
    fn reply_tuple(t: &mut bpf_sock_tuple, out: &CtEntry) -> u32 {
        t.__bindgen_anon_1.ipv4 = SockTuple4 {
            saddr: out.daddr,
            daddr: out.saddr,
            sport: out.dport,
            dport: out.sport,
        };
        core::mem::size_of::<SockTuple4>() as u32
    }
}

impl Family for Addr6 {
    #[inline(always)]
    fn ct_get(t: Table, key: &CtKey<Addr6>) -> Option<*mut CtEntry<Addr6>> {
        maps::ct6_get(t, key)
    }

    #[inline(always)]
    fn ct_insert(
        st: Stats,
        t: Table,
        key: &CtKey<Addr6>,
        e: &CtEntry<Addr6>,
        flags: u64,
    ) -> Result<(), i32> {
        maps::ct6_insert(st, t, key, e, flags)
    }

    #[inline(always)]
    fn ct_remove(st: Stats, t: Table, key: &CtKey<Addr6>) {
        maps::ct6_remove(st, t, key)
    }

    #[inline(always)]
    fn gc_track(st: Stats, key: &CtKey<Addr6>) {
        maps::gc_track6(st, key)
    }

    #[inline(always)]
    fn gc_next() -> Option<CtKey<Addr6>> {
        maps::gc_next6()
    }

    #[inline(always)]
    fn new_flow() -> Option<*mut NewFlow<Addr6>> {
        maps::new_flow6()
    }

    #[inline(always)]
    fn published(addr: Addr6, proto: u8, port: u16) -> Option<PubTarget<Addr6>> {
        publish::lookup6(&addr, proto, port)
    }

    #[inline(always)]
    fn is_host(cfg: &Config, addr: &Addr6) -> bool {
        maps::is_host6(cfg, addr)
    }

    #[inline(always)]
    fn in_lab(cfg: &Config, addr: &Addr6) -> bool {
        cfg.in_subnet6(addr)
    }

    #[inline(always)]
    fn host_ifindex(addr: &Addr6) -> Option<u32> {
        maps::host_ifindex6(addr)
    }

    #[inline(always)]
    fn bridge_addr(cfg: &Config) -> Addr6 {
        cfg.bridge_addr6
    }

    /// A link-local source too: the stack never forwards one (`ip6_forward`).
    #[inline(always)]
    fn martian(addr: &Addr6) -> bool {
        martian6(addr) || link_local6(addr)
    }

    /// No log: its records would take stack the IPv6 programs do not have.
    #[inline(always)]
    fn log_new_flow(_ctx: &TcContext, _key: &CtKey<Addr6>, _e: &CtEntry<Addr6>) {}

    #[inline(always)]
    fn reply_tuple(t: &mut bpf_sock_tuple, out: &CtEntry<Addr6>) -> u32 {
        t.__bindgen_anon_1.ipv6 = SockTuple6 {
            saddr: out.daddr,
            daddr: out.saddr,
            sport: out.dport,
            dport: out.sport,
        };
        core::mem::size_of::<SockTuple6>() as u32
    }
}

/// Whether an IPv6 source is one the stack never takes from a wire: unspecified,
/// loopback, multicast (`ff00::/8`), or IPv4-mapped.
#[inline(always)]
pub fn martian6(a: &Addr6) -> bool {
    let first = a[0].to_ne_bytes()[0];
    let zero_hi = a[0] == 0 && a[1] == 0;
    first == 0xff
        || (zero_hi && a[2] == 0 && (a[3] == 0 || a[3] == u32::from_ne_bytes([0, 0, 0, 1])))
        || (zero_hi && a[2] == u32::from_ne_bytes([0, 0, 0xff, 0xff]))
}

/// Whether an IPv6 address is link-local (`fe80::/10`): never forwarded by a router.
#[inline(always)]
pub fn link_local6(a: &Addr6) -> bool {
    let b = a[0].to_ne_bytes();
    b[0] == 0xfe && b[1] & 0xc0 == 0x80
}
