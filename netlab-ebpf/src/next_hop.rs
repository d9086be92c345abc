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
//! packet's IP length, a GSO packet's segments, must fit. One cache per family
//! ([`NEXT_HOPS`] for IPv4, [`NEXT_HOPS6`] for IPv6), written by the same code.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use netlab_common::addr::Addr6;

/// Slots per CPU (a power of two).
const SLOTS: u32 = 256;

/// One cached lookup; `at` 0 is an empty slot (the coarse clock is never 0 seconds
/// when a packet is forwarded).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NextHop<A> {
    pub dst: A,
    pub src: A,
    pub at: u32,
    pub mtu: u32,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
}

#[map(name = "NEXT_HOPS")]
pub static NEXT_HOPS: PerCpuArray<NextHop<u32>> = PerCpuArray::with_max_entries(SLOTS, 0);

#[map(name = "NEXT_HOPS6")]
pub static NEXT_HOPS6: PerCpuArray<NextHop<Addr6>> = PerCpuArray::with_max_entries(SLOTS, 0);

/// An address the cache can slot.
pub trait Slotted: Copy + PartialEq + 'static {
    fn slot(&self) -> u32;
}

impl Slotted for u32 {
    #[inline(always)]
    fn slot(&self) -> u32 {
        (self.wrapping_mul(0x9e37_79b1) >> 24) & (SLOTS - 1)
    }
}

impl Slotted for Addr6 {
    #[inline(always)]
    fn slot(&self) -> u32 {
        // The interface identifier varies most between destinations.
        (self[3] ^ self[2]).slot()
    }
}

/// The next hop for `src -> dst` if this CPU looked it up in the second `now`.
#[inline(always)]
pub fn cached<A: Slotted>(
    cache: &'static PerCpuArray<NextHop<A>>,
    src: &A,
    dst: &A,
    now: u32,
) -> Option<&'static NextHop<A>> {
    let hop = cache.get(dst.slot())?;
    (hop.at == now && now != 0 && hop.dst == *dst && hop.src == *src).then_some(hop)
}

/// Keeps a successful lookup for the rest of the second.
#[inline(always)]
pub fn remember<A: Slotted>(
    cache: &'static PerCpuArray<NextHop<A>>,
    src: &A,
    dst: &A,
    now: u32,
    mtu: u32,
    dmac: &[u8; 6],
    smac: &[u8; 6],
) {
    if let Some(p) = cache.get_ptr_mut(dst.slot()) {
        let hop = unsafe { &mut *p };
        hop.dst = *dst;
        hop.src = *src;
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
pub fn fits<A>(hop: &NextHop<A>, size: u32) -> bool {
    size <= hop.mtu
}
