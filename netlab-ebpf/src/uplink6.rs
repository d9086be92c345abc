//! The uplink's hooks for IPv6 (reached from the IPv4 programs by a tail call in a
//! dual-stack lab): what leaves the lab is masqueraded behind the address of the
//! interface it leaves by (NAT66, as Docker does for ULA containers), replies and flows
//! to published ports are translated back on their way in, and anything else addressed
//! to a container is direct access, and dropped. With the fast path on, a container's
//! flow leaving by the uplink is taken at its veth ([`FAST`], from
//! [`crate::endpoint6`]) and what comes back is delivered straight into its container
//! ([`crate::forward6`]).
//!
//! Fragments are translated as IPv4's ([`crate::frag6`]): the first with its flow, and
//! remembered; the later ones as their first. A later fragment leaving the lab whose
//! first was not seen is dropped and counted (`fragment`), never sent untranslated;
//! one coming in is the host's own.

use aya_ebpf::{
    EbpfContext as _, helpers::generated::bpf_skb_load_bytes, macros::map, maps::PerCpuArray,
    programs::TcContext,
};
use netlab_common::{
    addr::Addr6,
    config::{Config, FLAG_FAST_PATH},
    conntrack::{CtEntry, ZONE_FROM_CTR, ZONE_FROM_OUTSIDE},
    proto::ETH_HLEN,
    stats::{DropReason, counter},
};

use crate::{
    conntrack::{self, Hit},
    endpoint, forward, forward6, frag6,
    icmp::Sender,
    icmp6,
    maps::{self, Stats},
    nat::{self, Found},
    parse::{Kind, Packet},
    parse6::{self, IP6_SADDR_OFF},
    reset, rewrite6, uplink,
    verdict::{self, PASS, Verdict},
};

/// The IPv6 address of the interface the program runs on: the masquerade source of
/// what leaves by it (zero when it has none).
#[inline(always)]
fn own_addr(ctx: &TcContext, cfg: &Config) -> Addr6 {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    if ifindex == cfg.uplink_ifindex {
        return maps::uplink_addr6();
    }
    maps::uplink(ifindex).map(|u| u.addr6).unwrap_or([0; 4])
}

#[inline(always)]
pub fn egress(ctx: &TcContext, st: Stats) -> Verdict {
    st.count(counter::UPLINK_EGRESS_PACKETS);
    let cfg = maps::config();
    uplink::count_other(ctx, cfg, st);
    // The host's own packets go as they are, but for an ICMPv6 error of the host's
    // about a packet it was handed translated: its quote is translated back.
    let Some(container) = from_a_container(ctx, cfg) else {
        return PASS;
    };
    let host = !container;
    let pkt = match parse6::ipv6(ctx) {
        Ok(pkt) => pkt,
        Err(_) if host => return PASS,
        Err(e) => return Err(e),
    };
    if host {
        if pkt.kind == Kind::IcmpError {
            return Ok(icmp6::translate_error(ctx, st, pkt, Sender::Host));
        }
        return PASS;
    }
    match pkt.kind {
        Kind::Flow => {}
        Kind::Fragment => {
            return frag6::translate_later(ctx, st, pkt, ZONE_FROM_CTR)
                .unwrap_or(Err(DropReason::Fragment));
        }
        Kind::IcmpError => {
            return Ok(icmp6::translate_error(ctx, st, pkt, Sender::Container));
        }
        Kind::Other => return Err(DropReason::UnsupportedProtocol),
    }
    match from_container(ctx, st, pkt, MASQUERADE) {
        verdict::NO_FLOW => Ok(reset::answer6(ctx, st)),
        v => Ok(v),
    }
}

/// Whether the packet's IPv6 source is one of the lab's containers' (in its subnet,
/// not the bridge's address, which is the host's); `None` when it cannot be read. Read
/// straight from the packet when its linear part holds it (every packet the fast path
/// sends out by the uplink passes here), else into a per-CPU slot, not the stack: the
/// IPv6 entry programs keep their frames small, for the 512 bytes the verifier allows a
/// whole call chain (6.1's counts a `bpf_loop` callback's frame into it too).
#[inline(always)]
fn from_a_container(ctx: &TcContext, cfg: &Config) -> Option<bool> {
    const AT: usize = ETH_HLEN + IP6_SADDR_OFF;
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + AT + 16 <= end {
        let saddr = unsafe { &*((data + AT) as *const Addr6) };
        return Some(cfg.in_subnet6(saddr) && *saddr != cfg.bridge_addr6);
    }
    let slot = SADDR6.get_ptr_mut(0)?;
    let rc = unsafe {
        bpf_skb_load_bytes(
            ctx.as_ptr(),
            (ETH_HLEN + IP6_SADDR_OFF) as u32,
            slot as *mut core::ffi::c_void,
            16,
        )
    };
    if rc != 0 {
        return None;
    }
    let saddr = unsafe { &*slot };
    Some(cfg.in_subnet6(saddr) && *saddr != cfg.bridge_addr6)
}

/// The source address of the IPv6 packet at the uplink's egress, one slot per CPU.
#[map(name = "SADDR6")]
static SADDR6: PerCpuArray<Addr6> = PerCpuArray::with_max_entries(1, 0);

/// Where a container's packet is translated ([`from_container`]'s mode).
/// At an uplink's egress: masqueraded behind the address of the interface it leaves by.
pub const MASQUERADE: u8 = 0;
/// At the bridge's ingress: hairpin only (its destination is a host address).
pub const HAIRPIN: u8 = 1;
/// At the container's veth, with the fast path on and planned already
/// ([`forward6::plan`]): masqueraded behind the uplink's address and redirected to
/// where the plan says; a packet the NAT cannot decide goes on untouched to the hooks
/// after.
pub const FAST: u8 = 2;

/// A container's packet leaving the lab: its flow found or opened as `mode` says, and
/// the packet translated; the TC action (a drop counted already). A BPF subprogram,
/// which takes at most five arguments: IPv6's NAT state and the ICMPv6 error path's
/// would not share one 512-byte frame.
#[inline(never)]
pub fn from_container(ctx: &TcContext, st: Stats, pkt: &Packet<Addr6>, mode: u8) -> i32 {
    verdict::finish(nat_from_container(ctx, st, pkt, mode))
}

#[inline(always)]
fn nat_from_container(ctx: &TcContext, st: Stats, pkt: &Packet<Addr6>, mode: u8) -> Verdict {
    let cfg = maps::config();
    let now = conntrack::now();
    let mut hit = conntrack::Hit::empty();
    let source = match mode {
        MASQUERADE => own_addr(ctx, cfg),
        FAST => maps::uplink_addr6(),
        _ => [0; 4],
    };
    // At an uplink's egress, the packet leaves by it: a flow masqueraded behind another
    // interface's address ends there.
    let leaving_by = if mode == MASQUERADE {
        unsafe { (*ctx.skb.skb).ifindex }
    } else {
        0
    };
    let found = unsafe { &mut *FOUND6.get_ptr_mut(0).ok_or(DropReason::CtInsertFailed)? };
    match nat::find_from_container(cfg, st, source, leaving_by, pkt, now, &mut hit) {
        Ok(f) => *found = f,
        // What the fast path cannot decide, the hooks after it decide.
        Err(_) if mode == FAST => return PASS,
        // Answered by the hook, whose frame is small (`reset`'s is not).
        Err(DropReason::TcpNoFlow) if mode == MASQUERADE => return Ok(verdict::NO_FLOW),
        Err(e) => return Err(e),
    }
    if found.is_none() {
        return PASS;
    }
    // Planned for the uplink's address: a flow leaving as another host address (a
    // reply of a port published there, a flow masqueraded by another uplink) may
    // route otherwise (a source rule), and is the stack's.
    if mode == FAST && found.to.0 != maps::uplink_addr6() {
        st.count(counter::SLOW_OTHER);
        return PASS;
    }
    commit(ctx, st, pkt, found, &hit, ZONE_FROM_CTR, now)?;
    if mode == FAST {
        return forward6::go(ctx, st, pkt, endpoint::hook(cfg));
    }
    PASS
}

/// Records the packet on its flow (found in `zone`) and translates it; a first
/// fragment's translation is remembered for the rest of its datagram. The entry it is
/// translated with goes in this CPU's slot rather than on the stack. `now` is the
/// time the flow was looked up at (one clock read a packet).
#[inline(always)]
fn commit(
    ctx: &TcContext,
    st: Stats,
    pkt: &Packet<Addr6>,
    found: &Found<Addr6>,
    hit: &Hit<Addr6>,
    zone: u8,
    now: u32,
) -> Verdict {
    let e = ENTRY6.get_ptr_mut(0).ok_or(DropReason::CtInsertFailed)?;
    let e = unsafe { &mut *e };
    if found.kind == nat::KNOWN {
        nat::commit_known(st, &found.key, hit, pkt, now, e)?;
    } else {
        nat::commit_new(ctx, maps::config(), st, found, pkt, now, e)?;
    }
    rewrite6::apply(ctx, pkt, e)?;
    // By the addresses it came with (`pkt` keeps them): the key its later fragments
    // are looked up by on the same side. The zone a constant of each caller's: one
    // register less in the NAT's frame, which has no byte to spare.
    frag6::remember(pkt, zone, e);
    PASS
}

/// What the NAT found for an IPv6 packet, one slot per CPU.
#[map(name = "FOUND6")]
static FOUND6: PerCpuArray<Found<Addr6>> = PerCpuArray::with_max_entries(1, 0);

/// The entry an IPv6 packet is translated with, one slot per CPU.
#[map(name = "ENTRY6")]
static ENTRY6: PerCpuArray<CtEntry<Addr6>> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn ingress(ctx: &TcContext, st: Stats) -> Verdict {
    st.count(counter::UPLINK_INGRESS_PACKETS);
    let cfg = maps::config();
    uplink::count_other(ctx, cfg, st);
    if unsafe { (*ctx.skb.skb).pkt_type } != forward::PACKET_HOST {
        return PASS;
    }
    let pkt = parse6::ipv6(ctx)?;
    // Direct access, but for the bridge's own address: the host's, as the IPv4 side.
    if cfg.in_subnet6(&pkt.daddr) && pkt.daddr != cfg.bridge_addr6 {
        return Err(DropReason::DirectAccess);
    }
    if !maps::is_host6(cfg, &pkt.daddr) {
        return PASS;
    }
    match pkt.kind {
        Kind::Flow => {}
        Kind::Fragment => {
            return frag6::translate_later(ctx, st, pkt, ZONE_FROM_OUTSIDE).unwrap_or_else(|| {
                // The host's own datagram, or one whose first fragment went by unseen.
                st.count(counter::PASS_FRAGMENT);
                PASS
            });
        }
        Kind::IcmpError => {
            return Ok(icmp6::translate_error(ctx, st, pkt, Sender::Outside));
        }
        Kind::Other => {
            st.count(counter::PASS_UNTRACKED);
            return PASS;
        }
    }
    match from_outside(ctx, st, pkt) {
        // Into its container by the fast path, if it can take it: planned and sent in
        // a subprogram of its own, off the NAT's call chain.
        verdict::TRANSLATED => {
            let e = ENTRY6.get_ptr(0).ok_or(DropReason::CtInsertFailed)?;
            let e = unsafe { &*e };
            Ok(forward6::fast(ctx, st, pkt, &e.saddr, &e.daddr))
        }
        v => Ok(v),
    }
}

/// A packet to a host address from outside: a reply, or a flow to a published port,
/// translated; anything else is the host's. A BPF subprogram, as [`from_container`].
#[inline(never)]
fn from_outside(ctx: &TcContext, st: Stats, pkt: &Packet<Addr6>) -> i32 {
    verdict::finish(nat_from_outside(ctx, st, pkt))
}

#[inline(always)]
fn nat_from_outside(ctx: &TcContext, st: Stats, pkt: &Packet<Addr6>) -> Verdict {
    let cfg = maps::config();
    let now = conntrack::now();
    let mut hit = conntrack::Hit::empty();
    let found = unsafe { &mut *FOUND6.get_ptr_mut(0).ok_or(DropReason::CtInsertFailed)? };
    *found = nat::find_from_outside(cfg, st, pkt, now, &mut hit)?;
    if found.is_none() {
        st.count(counter::PASS_UNTRACKED);
        return PASS;
    }
    commit(ctx, st, pkt, found, &hit, ZONE_FROM_OUTSIDE, now)?;
    // A first fragment goes on to the stack, as the rest of its datagram does (the
    // fast path takes no extension header).
    if cfg.flags & FLAG_FAST_PATH == 0 || pkt.first_fragment {
        return PASS;
    }
    Ok(verdict::TRANSLATED)
}
