//! The fast path's next-hop cache: what `bpf_fib_lookup` said about a destination by
//! the uplink (the next hop's MAC, the uplink's MAC, the route's MTU), kept per CPU for the rest
//! of the coarse second it was looked up in. A route lookup is the most expensive helper
//! call of a packet leaving by the fast path; with the cache a flow pays it once a second
//! per CPU instead of once a packet.
//!
//! The cache is direct-mapped (a slot per hash of the destination; a colliding
//! destination replaces the slot) and holds only successful lookups by the uplink:
//! a missing neighbour, a route elsewhere or a packet too big always go to the lookup
//! and to the stack. A change of route or of the next hop's MAC is seen within a
//! second. The MTU kept is the route's (a locked route MTU, a path MTU learnt for the
//! destination, or the device's), checked on every packet as forwarding checks it: a
//! packet's IP length, a GSO packet's segments, must fit.

use aya_ebpf::{macros::map, maps::PerCpuArray};

/// Slots per CPU (a power of two).
const SLOTS: u32 = 256;

/// One cached lookup; `at` 0 is an empty slot (the coarse clock is never 0 seconds
/// when a packet is forwarded).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NextHop {
    pub dst: u32,
    pub src: u32,
    pub at: u32,
    pub mtu: u32,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
}

#[map(name = "NEXT_HOPS")]
static NEXT_HOPS: PerCpuArray<NextHop> = PerCpuArray::with_max_entries(SLOTS, 0);

#[inline(always)]
fn slot(dst: u32) -> u32 {
    (dst.wrapping_mul(0x9e37_79b1) >> 24) & (SLOTS - 1)
}

/// The next hop for `src -> dst` if this CPU looked it up in the second `now`.
#[inline(always)]
pub fn cached(src: u32, dst: u32, now: u32) -> Option<&'static NextHop> {
    let hop = NEXT_HOPS.get(slot(dst))?;
    (hop.at == now && now != 0 && hop.dst == dst && hop.src == src).then_some(hop)
}

/// Keeps a successful lookup for the rest of the second.
#[inline(always)]
pub fn remember(src: u32, dst: u32, now: u32, mtu: u32, dmac: &[u8; 6], smac: &[u8; 6]) {
    if let Some(p) = NEXT_HOPS.get_ptr_mut(slot(dst)) {
        let hop = unsafe { &mut *p };
        hop.dst = dst;
        hop.src = src;
        hop.at = now;
        hop.mtu = mtu;
        hop.dmac = *dmac;
        hop.smac = *smac;
    }
}

/// Whether a packet of `size` (its IP length, or a GSO packet's segment length) fits
/// the cached MTU (the route's, or the device's where that is smaller), as forwarding
/// checks it.
#[inline(always)]
pub fn fits(hop: &NextHop, size: u32) -> bool {
    size <= hop.mtu
}
