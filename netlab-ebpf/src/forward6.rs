//! The fast path for IPv6, as [`crate::forward`] is IPv4's: a translated packet goes
//! from TC straight to where it goes — out of the uplink to the next hop
//! `bpf_fib_lookup` (`AF_INET6`) names, cached per CPU in [`next_hop::NEXT_HOPS6`];
//! into a container by `bpf_redirect_peer`; to another container switched as it is —
//! with one hop less when the lab host routes it (IPv6 has no header checksum to fix).
//!
//! What a router must answer or act on is left to the stack: a hop limit about to run
//! out (time exceeded), a packet too big for the route (Packet Too Big: IPv6 routers
//! never fragment), extension headers (hop-by-hop options are every router's to read),
//! destinations the stack never forwards, a missing route.

use aya_ebpf::{
    bindings::{
        BPF_F_RECOMPUTE_CSUM, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams,
    },
    macros::map,
    maps::PerCpuArray,
    programs::TcContext,
};
use netlab_common::{
    addr::Addr6,
    config::Config,
    proto::{ETH_HLEN, IPV6_HLEN},
    stats::{DropReason, counter},
};

use crate::{
    conntrack, endpoint, family,
    fib::{self, AF_INET6},
    forward::{self, CONTAINER, Hook, Plan, STACK, SWITCHED, UPLINK},
    into_lab,
    maps::{self, Stats},
    next_hop::{self, NEXT_HOPS6},
    parse::Packet,
    rewrite6, verdict, words,
};

/// Offset of the hop limit in the IPv6 header.
const HOP_LIMIT_OFF: usize = 7;

/// Plans the fast path of an IPv6 packet that will leave as `src -> dst` after
/// translation, into this CPU's plan slot ([`forward::scratch`]); returns the plan's
/// kind ([`STACK`], counted by why, to leave it to the stack). A BPF subprogram with a
/// small frame (the route lookup's parameters are in a per-CPU slot too): it is called
/// at the end of the NAT's call chain, whose frames the verifier adds up.
#[inline(never)]
pub fn plan(ctx: &TcContext, st: Stats, pkt: &Packet<Addr6>, src: &Addr6, dst: &Addr6) -> i32 {
    let Some(slot) = forward::scratch() else {
        return STACK as i32;
    };
    let p = unsafe { &mut *slot };
    p.kind = make(ctx, maps::config(), st, pkt, src, dst, p);
    p.kind as i32
}

/// Fills in what `p`'s kind needs (the slot's other fields are left as they were: a
/// whole struct stored at once compiles to a `memset` subprogram call); returns the
/// kind.
#[inline(always)]
fn make(
    ctx: &TcContext,
    cfg: &Config,
    st: Stats,
    pkt: &Packet<Addr6>,
    src: &Addr6,
    dst: &Addr6,
    p: &mut Plan,
) -> u8 {
    if pkt.ttl <= 1 {
        return stack(st, counter::SLOW_TTL);
    }
    // Nor from such a source (`ip6_forward` drops a link-local one).
    if never_forwarded(src) {
        return stack(st, counter::SLOW_OTHER);
    }
    if pkt.l4_off - pkt.l3_off > IPV6_HLEN {
        return stack(st, counter::SLOW_OTHER);
    }
    let now = conntrack::now();
    if cfg.in_subnet6(dst) {
        if !forward::fits_bridge(ctx, cfg) || forward::wire_len(ctx, pkt) > maps::route_mtu_floor(1)
        {
            return stack(st, counter::SLOW_MTU);
        }
        if !into_lab::routed6(ctx, pkt, dst, now) {
            return stack(st, counter::SLOW_OTHER);
        }
        let Some(ep) = maps::endpoint6(dst) else {
            return stack(st, counter::SLOW_OTHER);
        };
        p.ifindex = ep.ifindex;
        words::mac(&mut p.dmac, &ep.mac);
        words::mac(&mut p.smac, &cfg.bridge_mac);
        return CONTAINER;
    }
    if never_forwarded(dst) {
        return stack(st, counter::SLOW_OTHER);
    }
    let size = forward::wire_len(ctx, pkt);
    if let Some(hop) = next_hop::cached(&NEXT_HOPS6, src, dst, now) {
        if !next_hop::fits(hop, size) {
            return stack(st, counter::SLOW_MTU);
        }
        st.count(counter::NEXT_HOP_CACHED);
        p.ifindex = cfg.uplink_ifindex;
        words::mac(&mut p.dmac, &hop.dmac);
        words::mac(&mut p.smac, &hop.smac);
        return UPLINK;
    }
    let Some(words) = FIB6.get_ptr_mut(0) else {
        return stack(st, counter::SLOW_OTHER);
    };
    let words = unsafe { &mut *words };
    // As IPv4's: the route's MTU first (a lookup with a length no route carries),
    // then the next hop and the device's MTU.
    let rc = fib_lookup(ctx, cfg, pkt.proto, src, dst, u16::MAX, words);
    let f = unsafe { &*(words.as_ptr() as *const FibParams) };
    if rc != BPF_FIB_LKUP_RET_FRAG_NEEDED {
        return stack(st, counter::SLOW_OTHER);
    }
    let route_mtu = unsafe { f.__bindgen_anon_1.mtu_result } as u32;
    let rc = fib_lookup(ctx, cfg, pkt.proto, src, dst, 0, words);
    let f = unsafe { &*(words.as_ptr() as *const FibParams) };
    if rc == BPF_FIB_LKUP_RET_FRAG_NEEDED {
        return stack(st, counter::SLOW_MTU);
    }
    if f.ifindex != cfg.uplink_ifindex
        || (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
    {
        return stack(st, counter::SLOW_OTHER);
    }
    // As IPv4's: no larger than the smallest route MTU of the lab host's.
    let mtu = forward::forwarding_mtu(rc, f, route_mtu).min(maps::route_mtu_floor(1));
    if size > mtu {
        return stack(st, counter::SLOW_MTU);
    }
    // A next hop not resolved yet is the stack's, as IPv4's.
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH {
        return stack(st, counter::SLOW_OTHER);
    }
    p.ifindex = f.ifindex;
    next_hop::remember(&NEXT_HOPS6, src, dst, now, mtu, &f.dmac, &f.smac);
    words::mac(&mut p.dmac, &f.dmac);
    words::mac(&mut p.smac, &f.smac);
    UPLINK
}

/// Left to the stack, counted by why.
#[inline(always)]
fn stack(st: Stats, why: u32) -> u8 {
    st.count(why);
    STACK
}

/// The route lookup's parameters, one slot per CPU.
#[map(name = "FIB6")]
static FIB6: PerCpuArray<[u64; 8]> = PerCpuArray::with_max_entries(1, 0);

/// The lab host's route lookup from the bridge (`words`: the parameters), as
/// [`crate::forward`]'s for IPv4; returns its code.
#[inline(always)]
fn fib_lookup(
    ctx: &TcContext,
    cfg: &Config,
    proto: u8,
    src: &Addr6,
    dst: &Addr6,
    tot_len: u16,
    words: &mut [u64; 8],
) -> u32 {
    let f = fib::params(cfg, words, AF_INET6, proto, tot_len);
    f.__bindgen_anon_3.ipv6_src = *src;
    f.__bindgen_anon_4.ipv6_dst = *dst;
    fib::run(ctx, f)
}

/// Addresses the stack never forwards to (or from), which a route lookup alone would
/// send out by the default route: unspecified, loopback, IPv4-mapped, multicast,
/// link-local.
#[inline(always)]
fn never_forwarded(dst: &Addr6) -> bool {
    family::martian6(dst) || family::link_local6(dst)
}

/// A packet translated already (`src -> dst` now) into its container, or to the
/// stack; the TC action. A BPF subprogram, called from a program's entry, so that the
/// plan's frame adds to a short call chain.
#[inline(never)]
pub fn fast(ctx: &TcContext, st: Stats, pkt: &Packet<Addr6>, src: &Addr6, dst: &Addr6) -> i32 {
    if plan(ctx, st, pkt, src, dst) == STACK as i32 {
        return verdict::NEXT;
    }
    verdict::finish(go(ctx, st, pkt, Hook::TcIngress))
}

/// A frame from a container to another: switched straight into the container whose
/// address and MAC it carries, or left to the bridge; the TC action. A BPF subprogram,
/// which keeps the endpoint program's own frame small.
#[inline(never)]
pub fn switch(ctx: &TcContext, st: Stats, pkt: &Packet<Addr6>) -> i32 {
    let Some(slot) = forward::scratch() else {
        return verdict::NEXT;
    };
    let p = unsafe { &mut *slot };
    match maps::endpoint6(&pkt.daddr) {
        Some(ep) if ctx.load::<[u8; 6]>(0).is_ok_and(|dmac| dmac == ep.mac) => {
            p.kind = SWITCHED;
            p.ifindex = ep.ifindex;
        }
        _ => {
            st.count(counter::SLOW_OTHER);
            return verdict::NEXT;
        }
    }
    verdict::finish(go(ctx, st, pkt, endpoint::hook(maps::config())))
}

/// Carries out this CPU's plan on a packet translated already: one hop less unless it
/// is switched, then redirected as `hook` can.
#[inline(always)]
pub fn go(ctx: &TcContext, st: Stats, pkt: &Packet<Addr6>, hook: Hook) -> Result<i32, DropReason> {
    let slot = forward::scratch().ok_or(DropReason::RewriteFailed)?;
    let plan = unsafe { *slot };
    if plan.kind != SWITCHED {
        hop_limit(ctx, pkt)?;
    }
    forward::go(ctx, maps::config(), st, &plan, hook)
}

/// One hop less: written straight into the packet when its header is in the linear
/// part, by the store helper otherwise; a CHECKSUM_COMPLETE skb's sum follows the byte
/// either way.
#[inline(always)]
fn hop_limit(ctx: &TcContext, pkt: &Packet<Addr6>) -> Result<(), DropReason> {
    // The word of payload length, next header and hop limit (4 to 8 of the header).
    const WORD: usize = ETH_HLEN + 4;
    let (data, end) = (ctx.data(), ctx.data_end());
    if pkt.l3_off == ETH_HLEN && data + WORD + 4 <= end {
        let old = unsafe { *((data + WORD) as *const u32) };
        unsafe { *((data + ETH_HLEN + HOP_LIMIT_OFF) as *mut u8) = pkt.ttl - 1 };
        let new = unsafe { *((data + WORD) as *const u32) };
        rewrite6::complete_sum_add(ctx, rewrite6::fold((!old) as u64 + new as u64));
        return Ok(());
    }
    // With `BPF_F_RECOMPUTE_CSUM` a CHECKSUM_COMPLETE skb's sum follows the byte.
    ctx.store(
        pkt.l3_off + HOP_LIMIT_OFF,
        &(pkt.ttl - 1),
        BPF_F_RECOMPUTE_CSUM as u64,
    )
    .map_err(|_| DropReason::RewriteFailed)
}
