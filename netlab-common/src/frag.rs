//! Fragments. Only the first fragment of a datagram carries its ports, so only it can
//! be looked up in conntrack; the datapath remembers its translation under the
//! datagram's IP identifier (as Cilium does) and gives the same addresses to the
//! fragments that follow. Ports need no change after the first fragment.
//!
//! IPv6 the same way, in a table of its own (`FRAGS6`): its datagrams are identified
//! by the fragment header's 32-bit identification, and reassembled for longer.

use crate::addr::Addr6;

/// Key of `FRAGS`: the datagram as its fragments carry it (before translation).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct FragKey {
    pub saddr: u32,
    pub daddr: u32,
    /// The IPv4 identification field, network byte order.
    pub id: u16,
    pub proto: u8,
    /// [`crate::conntrack::ZONE_FROM_CTR`] or [`crate::conntrack::ZONE_FROM_OUTSIDE`].
    pub zone: u8,
}
const _: () = assert!(core::mem::size_of::<FragKey>() == 12);

/// The addresses the datagram's fragments are rewritten to, and when its first fragment
/// was seen.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct FragNat {
    pub saddr: u32,
    pub daddr: u32,
    /// Seconds of the coarse monotonic clock when the first fragment was translated.
    pub seen: u32,
}
const _: () = assert!(core::mem::size_of::<FragNat>() == 12);

/// How long after its first fragment a datagram's later fragments are translated: the
/// kernel's reassembly time (`net.ipv4.ipfrag_time`, 30 s). Past it the datagram is
/// gone from every reassembly queue, and a fragment with its identifier is another
/// datagram's.
pub const FRAG_TIMEOUT_SECS: u32 = 30;

/// Key of `FRAGS6`: an IPv6 datagram as its fragments carry it (before translation).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct FragKey6 {
    pub saddr: Addr6,
    pub daddr: Addr6,
    /// The fragment header's identification, network byte order.
    pub id: u32,
    /// The protocol the fragment header names next: the same in every fragment of a
    /// datagram (the first one's L4 header may sit behind more extension headers).
    pub proto: u8,
    /// As [`FragKey::zone`].
    pub zone: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FragKey6>() == 40);

/// [`FragNat`] for IPv6.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct FragNat6 {
    pub saddr: Addr6,
    pub daddr: Addr6,
    /// Seconds of the coarse monotonic clock when the first fragment was translated.
    pub seen: u32,
}
const _: () = assert!(core::mem::size_of::<FragNat6>() == 36);

/// [`FRAG_TIMEOUT_SECS`] for IPv6: the kernel's IPv6 reassembly time
/// (`net.ipv6.ip6frag_time`, 60 s; nf_conntrack's `nf_conntrack_frag6_timeout` is 60 s
/// too).
pub const FRAG6_TIMEOUT_SECS: u32 = 60;
