//! Whether the lab host's stack would forward a translated packet into the lab, asked
//! before the fast path carries it into a container itself. The stack routes such a
//! packet from the device it came in by (the uplink, another interface netlab watches,
//! or, from a container, the bridge) and forwards it only when all of this holds, so
//! the fast path asks the same of `bpf_fib_lookup` with the packet's addresses:
//!
//! - forwarding is on for that device (`net.ipv4.ip_forward`,
//!   `net.ipv4.conf.DEV.forwarding`, `net.ipv6.conf.all.forwarding`): the lookup answers
//!   `BPF_FIB_LKUP_RET_FWD_DISABLED`;
//! - the route to the container leaves by the bridge: a blackhole, unreachable or
//!   prohibit route, or a policy rule (`ip rule ... iif eth0 prohibit`), or a route by
//!   another device, is the stack's to act on;
//! - IPv4 from outside: the route back to the source leaves by the device the packet
//!   came in by. The stack's reverse-path filter (`rp_filter`, `fib_validate_source`)
//!   drops, at 1, a packet whose source it would route out by another interface, at 2
//!   one whose source it has no route for; `bpf_fib_lookup` checks no source and a
//!   program cannot read the setting, so anything else is left to the stack, where the
//!   setting in force decides (every setting accepts what this lets through). IPv6 has
//!   no reverse-path filter.
//!
//! Anything else is left to the stack, translated. The answer is kept per CPU for the
//! rest of the coarse second, per source, destination and device, as the next hops are
//! ([`crate::next_hop`]): a setting or a route changed is seen within a second.

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS},
    macros::map,
    maps::PerCpuArray,
    programs::TcContext,
};
use netlab_common::{addr::Addr6, config::Config};

use crate::{
    fib::{self, AF_INET, AF_INET6},
    maps,
};

/// Slots per CPU (a power of two), for each family.
const SLOTS: u32 = 256;

/// One answer, with the lookups' parameters beside it (kept out of the stack, whose
/// frames the verifier adds up along a call chain).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Checked<A> {
    src: A,
    dst: A,
    /// The device the packet was seen on.
    dev: u32,
    /// The coarse second of the lookup; 0: never looked up.
    at: u32,
    /// 1: the stack forwards it.
    ok: u32,
    _pad: u32,
    words: [u64; 8],
}

#[map(name = "INTO_LAB")]
static INTO_LAB: PerCpuArray<Checked<u32>> = PerCpuArray::with_max_entries(SLOTS, 0);

#[map(name = "INTO_LAB6")]
static INTO_LAB6: PerCpuArray<Checked<Addr6>> = PerCpuArray::with_max_entries(SLOTS, 0);

/// Whether a packet that came in by `dev` came from outside (an interface netlab
/// watches), rather than from a container (by way of the bridge).
#[inline(always)]
fn from_outside(cfg: &Config, dev: u32) -> bool {
    dev == cfg.uplink_ifindex || maps::uplink(dev).is_some()
}

/// Whether a lookup's code says there is a unicast route (its device in the
/// parameters); the MTU is [`crate::forward::fits_bridge`]'s to check.
#[inline(always)]
fn found(rc: u32) -> bool {
    rc == BPF_FIB_LKUP_RET_SUCCESS
        || rc == BPF_FIB_LKUP_RET_NO_NEIGH
        || rc == BPF_FIB_LKUP_RET_FRAG_NEEDED
}

/// The device a packet is seen on (a container's host-side device, or a watched
/// interface).
#[inline(always)]
fn device(ctx: &TcContext) -> u32 {
    unsafe { (*ctx.skb.skb).ifindex }
}

/// Whether the lab host forwards an IPv4 packet, translated to `src -> dst` (a
/// container), into the lab, as seen in the second `now`. A BPF subprogram: inlined,
/// it would add to the frame of every program that plans. What it needs after a
/// helper call it reads back from the slot rather than keep in its own frame, which
/// the verifier adds to the uplink program's (Linux 6.1 allows 512 bytes for the
/// chain).
#[inline(never)]
pub fn routed(ctx: &TcContext, cfg: &Config, src: u32, dst: u32, now: u32) -> bool {
    let slot = ((src ^ dst).wrapping_mul(0x9e37_79b1) >> 24) & (SLOTS - 1);
    let Some(c) = INTO_LAB.get_ptr_mut(slot) else {
        return false;
    };
    let c = unsafe { &mut *c };
    if c.at == now && now != 0 && c.src == src && c.dst == dst && c.dev == device(ctx) {
        return c.ok != 0;
    }
    c.src = src;
    c.dst = dst;
    c.dev = device(ctx);
    c.at = now;
    // Until the answer: whether it came from outside (its route back is checked).
    c.ok = from_outside(cfg, c.dev) as u32;
    let f = fib::params(cfg, &mut c.words, AF_INET, 0, 0);
    if c.ok != 0 {
        f.ifindex = c.dev;
    }
    f.__bindgen_anon_3.ipv4_src = c.src;
    f.__bindgen_anon_4.ipv4_dst = c.dst;
    let mut ok = found(fib::run(ctx, f)) && f.ifindex == cfg.bridge_ifindex;
    if ok && c.ok != 0 {
        // The kernel's reverse lookup: from the container back to the source, as from
        // the device the packet is forwarded out by (the bridge).
        let f = fib::params(cfg, &mut c.words, AF_INET, 0, 0);
        f.__bindgen_anon_3.ipv4_src = c.dst;
        f.__bindgen_anon_4.ipv4_dst = c.src;
        ok = found(fib::run(ctx, f)) && f.ifindex == c.dev;
    }
    c.ok = ok as u32;
    ok
}

/// [`routed`] for IPv6 (no reverse-path filter). A BPF subprogram.
#[inline(never)]
pub fn routed6(ctx: &TcContext, cfg: &Config, src: &Addr6, dst: &Addr6, now: u32) -> bool {
    let mix = src[3] ^ src[2] ^ dst[3] ^ dst[2];
    let slot = (mix.wrapping_mul(0x9e37_79b1) >> 24) & (SLOTS - 1);
    let Some(c) = INTO_LAB6.get_ptr_mut(slot) else {
        return false;
    };
    let c = unsafe { &mut *c };
    if c.at == now && now != 0 && c.src == *src && c.dst == *dst && c.dev == device(ctx) {
        return c.ok != 0;
    }
    c.src = *src;
    c.dst = *dst;
    c.dev = device(ctx);
    c.at = now;
    c.ok = from_outside(cfg, c.dev) as u32;
    let f = fib::params(cfg, &mut c.words, AF_INET6, 0, 0);
    if c.ok != 0 {
        f.ifindex = c.dev;
    }
    f.__bindgen_anon_3.ipv6_src = c.src;
    f.__bindgen_anon_4.ipv6_dst = c.dst;
    let ok = found(fib::run(ctx, f)) && f.ifindex == cfg.bridge_ifindex;
    c.ok = ok as u32;
    ok
}
