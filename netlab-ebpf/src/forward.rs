//! The fast path: a translated packet forwarded from TC straight to where it goes,
//! skipping the bridge and the host's IP input, routing and forwarding:
//!
//! - to the uplink: `bpf_fib_lookup` in the lab host's tables gives the next hop and its
//!   MAC (kept for the rest of the second in [`next_hop`]'s per-CPU cache); the packet
//!   gets them, a decremented TTL, and `bpf_redirect` to the uplink (a next hop not
//!   resolved yet is the stack's, which resolves it, and tells the sender "host
//!   unreachable" if nobody answers: `bpf_redirect_neigh` would resolve it too, but
//!   drop the packet unanswered when that fails);
//! - into a container: its veth from the endpoint map, the container's MAC, and
//!   `bpf_redirect_peer`, which enters the container's namespace without a trip through
//!   the host's backlog queue;
//! - between two containers of the lab: `bpf_redirect_peer` as it is (a bridge would
//!   switch the frame unchanged).
//!
//! From a netkit endpoint program ([`Hook::Netkit`]), which runs in the sending
//! container's transmit path rather than at TC ingress, a container is reached with
//! `bpf_redirect` to its netkit primary instead: transmitting there delivers into the
//! container (`bpf_redirect_peer` is refused outside TC ingress).
//!
//! A hook first makes a [`Plan`] without touching the packet; whatever cannot be
//! planned (TTL about to run out, too big for the next hop, no route by the uplink, a
//! container not on the bridge) is left to the stack, which answers it properly (ICMP
//! time exceeded, fragmentation needed, ARP).

use aya_ebpf::{
    EbpfContext as _,
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        bpf_check_mtu_flags::BPF_MTU_CHK_SEGS, bpf_check_mtu_ret::BPF_MTU_CHK_RET_SUCCESS,
        bpf_fib_lookup as FibParams,
    },
    helpers::generated::{bpf_check_mtu, bpf_redirect, bpf_redirect_peer},
    macros::map,
    maps::PerCpuArray,
    programs::TcContext,
};
use netlab_common::{
    config::Config,
    endpoint::Endpoint,
    proto::IPV4_MIN_HLEN,
    stats::{DropReason, counter},
};

use crate::{
    fib::{self, AF_INET},
    into_lab,
    maps::{self, Stats},
    next_hop,
    parse::Packet,
    verdict::PASS,
};

/// `skb->pkt_type` of a frame addressed to this host.
pub const PACKET_HOST: u32 = 0;

/// Not forwarded: the stack takes it.
pub const STACK: u8 = 0;
/// Out of the uplink to a resolved next hop.
pub const UPLINK: u8 = 1;
/// Into a container, routed by the host (TTL and MACs change).
pub const CONTAINER: u8 = 3;
/// Into another container, switched (nothing changes).
pub const SWITCHED: u8 = 4;

/// Where the fast path sends a packet. A plain struct with every field set, for the
/// verifier's sake (LLVM leaves the unused parts of enum payloads undefined).
#[derive(Clone, Copy)]
pub struct Plan {
    pub kind: u8,
    pub ifindex: u32,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
}

impl Plan {
    #[inline(always)]
    pub fn stack(st: Stats, why: u32) -> Self {
        st.count(why);
        Self {
            kind: STACK,
            ifindex: 0,
            dmac: [0; 6],
            smac: [0; 6],
        }
    }

    #[inline(always)]
    pub fn into_container(kind: u8, ep: &Endpoint, smac: [u8; 6]) -> Self {
        Self {
            kind,
            ifindex: ep.ifindex,
            dmac: ep.mac,
            smac,
        }
    }

    #[inline(always)]
    pub fn forwards(&self) -> bool {
        self.kind != STACK
    }
}

/// One plan per CPU, kept across the conntrack update of the packet it is for. Kept in
/// a map rather than on the stack on purpose: the verifier then does not walk the
/// conntrack code once for every kind of plan.
#[map(name = "SCRATCH")]
static SCRATCH: PerCpuArray<Plan> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's plan slot.
#[inline(always)]
pub fn scratch() -> Option<*mut Plan> {
    SCRATCH.get_ptr_mut(0)
}

/// The fast path's plan for a packet that will leave as `src -> dst` (to port
/// `dport`) after translation; [`STACK`] (counted by why) to leave it to the stack.
/// `now` is the coarse second, which bounds how long a cached next hop is used.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn plan(
    ctx: &TcContext,
    cfg: &Config,
    st: Stats,
    pkt: &Packet,
    src: u32,
    dst: u32,
    dport: u16,
    now: u32,
) -> Plan {
    if pkt.ttl <= 1 {
        return Plan::stack(st, counter::SLOW_TTL);
    }
    // IP options are the stack's to act on as a router does: a source route refused
    // (`accept_source_route` is off), record-route and timestamp filled in.
    if pkt.l4_off - pkt.l3_off > IPV4_MIN_HLEN {
        return Plan::stack(st, counter::SLOW_OTHER);
    }
    if cfg.in_subnet(dst) {
        if !fits_bridge(ctx, cfg) || wire_len(ctx, pkt) > maps::route_mtu_floor(0) {
            return Plan::stack(st, counter::SLOW_MTU);
        }
        let sel = into_lab::selectors(ctx, pkt, dport);
        if !into_lab::routed(ctx, pkt.saddr, dst, sel, now) {
            return Plan::stack(st, counter::SLOW_OTHER);
        }
        return match maps::endpoint(dst) {
            Some(ep) => Plan::into_container(CONTAINER, &ep, cfg.bridge_mac),
            None => Plan::stack(st, counter::SLOW_OTHER),
        };
    }
    if never_forwarded(dst) {
        return Plan::stack(st, counter::SLOW_OTHER);
    }
    let size = wire_len(ctx, pkt);
    if let Some(hop) = next_hop::cached(&next_hop::NEXT_HOPS, &src, &dst, now) {
        if !next_hop::fits(hop, size) {
            return Plan::stack(st, counter::SLOW_MTU);
        }
        st.count(counter::NEXT_HOP_CACHED);
        return Plan {
            kind: UPLINK,
            ifindex: cfg.uplink_ifindex,
            dmac: hop.dmac,
            smac: hop.smac,
        };
    }
    // Two lookups in one set of words (the stack is short): the route's MTU, which
    // the lookup with `tot_len` 0 does not check, then the next hop and the device's.
    let mut words = [0u64; 8];
    let route_mtu = route_mtu(ctx, cfg, pkt.proto, src, dst, &mut words);
    let rc = fib_lookup(ctx, cfg, pkt.proto, src, dst, 0, &mut words);
    let f = unsafe { &*(words.as_ptr() as *const FibParams) };
    if rc == BPF_FIB_LKUP_RET_FRAG_NEEDED {
        return Plan::stack(st, counter::SLOW_MTU);
    }
    if f.ifindex != cfg.uplink_ifindex {
        return Plan::stack(st, counter::SLOW_OTHER);
    }
    if rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH {
        return Plan::stack(st, counter::SLOW_OTHER);
    }
    // The lookup checked the device's MTU; forwarding holds the packet to the route's,
    // which may be smaller (a route MTU, a path MTU learnt from an ICMP).
    let Some(route_mtu) = route_mtu else {
        return Plan::stack(st, counter::SLOW_OTHER);
    };
    // And to a route's own MTU, which the lookup does not answer unless it is locked:
    // no larger than the smallest a route of the lab host's carries.
    let mtu = forwarding_mtu(rc, f, route_mtu).min(maps::route_mtu_floor(0));
    if size > mtu {
        return Plan::stack(st, counter::SLOW_MTU);
    }
    // A next hop not resolved yet is the stack's too: if it never answers, the stack
    // tells the container "host unreachable".
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH {
        return Plan::stack(st, counter::SLOW_OTHER);
    }
    next_hop::remember(&next_hop::NEXT_HOPS, &src, &dst, now, mtu, &f.dmac, &f.smac);
    Plan {
        kind: UPLINK,
        ifindex: f.ifindex,
        dmac: f.dmac,
        smac: f.smac,
    }
}

/// The MTU forwarding holds a packet to after a lookup with code `rc` and results `f`
/// (the device's MTU on success) by a route of MTU `route_mtu`: the smaller of the two,
/// for a locked route MTU may exceed the device's.
#[inline(always)]
pub fn forwarding_mtu(rc: u32, f: &FibParams, route_mtu: u32) -> u32 {
    let dev_mtu = unsafe { f.__bindgen_anon_1.mtu_result } as u32;
    if rc == BPF_FIB_LKUP_RET_SUCCESS && dev_mtu < route_mtu {
        dev_mtu
    } else {
        route_mtu
    }
}

/// What the route's MTU must hold for `pkt`, as the kernel's forwarding checks it
/// (`ip_exceeds_mtu`): its IP length, or, for a GSO packet, one segment's.
#[inline(always)]
pub fn wire_len<A>(ctx: &TcContext, pkt: &Packet<A>) -> u32 {
    let gso_size = unsafe { (*ctx.skb.skb).gso_size };
    if gso_size != 0 {
        pkt.hdr_len as u32 + gso_size
    } else {
        (pkt.end - pkt.l3_off) as u32
    }
}

/// Whether the packet fits the bridge's MTU, which the lab host's forwarding holds a
/// packet routed into the lab to (a GSO packet: each segment): one that does not is the
/// stack's to answer (fragmentation needed, Packet Too Big). `bpf_redirect_peer` would
/// drop it without a word where the uplink's MTU is larger than the lab's.
#[inline(always)]
pub fn fits_bridge(ctx: &TcContext, cfg: &Config) -> bool {
    let mut len = 0u32;
    let rc = unsafe {
        bpf_check_mtu(
            ctx.as_ptr(),
            cfg.bridge_ifindex,
            &mut len,
            0,
            BPF_MTU_CHK_SEGS as u64,
        )
    };
    rc == BPF_MTU_CHK_RET_SUCCESS as i64
}

/// The MTU of the lab host's route from `src` to `dst`, as `bpf_fib_lookup` works it
/// out (`ip_mtu_from_fib_result`: a locked route MTU, a path MTU learnt for `dst`, or
/// the device's): a lookup with a length no route carries, which answers only that.
#[inline(always)]
fn route_mtu(
    ctx: &TcContext,
    cfg: &Config,
    proto: u8,
    src: u32,
    dst: u32,
    words: &mut [u64; 8],
) -> Option<u32> {
    let rc = fib_lookup(ctx, cfg, proto, src, dst, u16::MAX, words);
    let f = unsafe { &*(words.as_ptr() as *const FibParams) };
    (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED).then(|| unsafe { f.__bindgen_anon_1.mtu_result } as u32)
}

/// The lab host's route lookup from the bridge for `proto` from `src` to `dst`, in
/// `words` (the `bpf_fib_lookup` parameters, 64 bytes on the stack); returns its code.
/// With `tot_len` 0 the kernel checks the skb itself against the device's MTU
/// (GSO-aware) and returns that MTU in `mtu_result`; with a length, it checks that
/// against the route's MTU and returns it only when the length does not fit.
#[inline(always)]
fn fib_lookup(
    ctx: &TcContext,
    cfg: &Config,
    proto: u8,
    src: u32,
    dst: u32,
    tot_len: u16,
    words: &mut [u64; 8],
) -> u32 {
    let f = fib::params(cfg, words, AF_INET, proto, tot_len);
    f.__bindgen_anon_3.ipv4_src = src;
    f.__bindgen_anon_4.ipv4_dst = dst;
    fib::run(ctx, f)
}

/// The interface the lab host routes `pkt` out by (a route lookup from the bridge), or
/// `None` when it has no route for it (the stack will answer that itself).
#[inline(always)]
pub fn out_ifindex(ctx: &TcContext, cfg: &Config, pkt: &Packet) -> Option<u32> {
    let mut words = [0u64; 8];
    let rc = fib_lookup(ctx, cfg, pkt.proto, pkt.saddr, pkt.daddr, 0, &mut words);
    let f = unsafe { &*(words.as_ptr() as *const FibParams) };
    match rc {
        BPF_FIB_LKUP_RET_SUCCESS | BPF_FIB_LKUP_RET_NO_NEIGH | BPF_FIB_LKUP_RET_FRAG_NEEDED => {
            Some(f.ifindex)
        }
        _ => None,
    }
}

/// Destinations the lab host's stack never forwards (martians, multicast, the limited
/// broadcast), which a route lookup alone, without the input path's checks, would send
/// out by the default route: the zero network, 224.0.0.0/4, 255.255.255.255.
#[inline(always)]
fn never_forwarded(dst: u32) -> bool {
    let first = (u32::from_be(dst) >> 24) as u8;
    first == 0 || (224..=239).contains(&first) || dst == u32::MAX
}

/// The plan for a frame between two containers: switched straight into the container
/// whose address and MAC it carries.
#[inline(always)]
pub fn plan_switched(ctx: &TcContext, st: Stats, pkt: &Packet) -> Plan {
    let Some(ep) = maps::endpoint(pkt.daddr) else {
        return Plan::stack(st, counter::SLOW_OTHER);
    };
    match ctx.load::<[u8; 6]>(0) {
        Ok(dmac) if dmac == ep.mac => Plan::into_container(SWITCHED, &ep, [0; 6]),
        _ => Plan::stack(st, counter::SLOW_OTHER),
    }
}

/// Both MACs in one store.
#[inline(always)]
fn macs(ctx: &TcContext, dmac: &[u8; 6], smac: &[u8; 6]) -> Result<(), DropReason> {
    // Element by element: zeroing then copying compiles to a byte-by-byte memset call.
    let (d, s) = (dmac, smac);
    let both: [u8; 12] = [
        d[0], d[1], d[2], d[3], d[4], d[5], s[0], s[1], s[2], s[3], s[4], s[5],
    ];
    ctx.store(0, &both, 0)
        .map_err(|_| DropReason::RewriteFailed)
}

#[inline(always)]
fn host_type(ctx: &TcContext) -> Result<(), DropReason> {
    // Received by the container as addressed to it, whatever the frame was on its way
    // (a frame to the uplink's own MAC already is).
    if unsafe { (*ctx.skb.skb).pkt_type } == PACKET_HOST {
        return Ok(());
    }
    ctx.change_type(PACKET_HOST)
        .map_err(|_| DropReason::RewriteFailed)
}

/// Where a hook runs, which decides how it enters a container.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// TC ingress (tcx or cls_bpf): `bpf_redirect_peer`.
    TcIngress,
    /// A netkit peer program, in a container's transmit path: `bpf_redirect` to the
    /// target's primary.
    Netkit,
}

/// Into a container by its host-side device `ifindex`, as `hook` can.
#[inline(always)]
fn into_container(hook: Hook, ifindex: u32) -> i64 {
    match hook {
        Hook::TcIngress => unsafe { bpf_redirect_peer(ifindex, 0) },
        Hook::Netkit => unsafe { bpf_redirect(ifindex, 0) },
    }
}

/// Carries out a plan on a packet already translated (with its TTL decremented unless
/// the plan switches it).
#[inline(always)]
pub fn go(
    ctx: &TcContext,
    cfg: &Config,
    st: Stats,
    plan: &Plan,
    hook: Hook,
) -> Result<i32, DropReason> {
    let (verdict, kind) = match plan.kind {
        UPLINK => {
            macs(ctx, &plan.dmac, &plan.smac)?;
            (
                unsafe { bpf_redirect(plan.ifindex, 0) },
                counter::FAST_TO_UPLINK,
            )
        }
        CONTAINER => {
            macs(ctx, &plan.dmac, &cfg.bridge_mac)?;
            host_type(ctx)?;
            (
                into_container(hook, plan.ifindex),
                counter::FAST_TO_CONTAINER,
            )
        }
        SWITCHED => {
            host_type(ctx)?;
            (
                into_container(hook, plan.ifindex),
                counter::FAST_BETWEEN_CONTAINERS,
            )
        }
        _ => return PASS,
    };
    st.count(kind);
    st.count(counter::FAST_PATH_REDIRECTS);
    Ok(verdict as i32)
}
