//! The model's two address families. The model is written once for both: addresses
//! are host-order numbers (`u32` for IPv4, `u128` for IPv6), and what differs between
//! the families — where the addresses are in the header, ICMP's numbers, which
//! addresses a router never forwards — is here. The hooks' decisions, which differ more,
//! are in `decide4` and `decide6`.

use std::{
    fmt::Debug,
    hash::Hash,
    net::Ipv6Addr,
    ops::{BitAnd, BitOr, Not},
};

use netlab_common::{addr::Addr6, proto::martian_source, stats::DropReason};

use super::wire::{self, Pkt};

pub trait Ip:
    Copy
    + Debug
    + Default
    + Eq
    + Hash
    + Ord
    + Send
    + Sync
    + BitAnd<Output = Self>
    + BitOr<Output = Self>
    + Not<Output = Self>
    + From<u32>
    + 'static
{
    const V6: bool;
    /// The ethertype of the family's frames.
    const ETHERTYPE: u16;
    /// The fixed header's length, and where its addresses are in it.
    const HDR: usize;
    const SADDR_AT: usize;
    const DADDR_AT: usize;
    /// Where the hop limit (TTL) is in the header.
    const TTL_AT: usize;
    /// ICMP's protocol number and its echo messages.
    const ICMP: u8;
    const ECHO_REQUEST: u8;
    const ECHO_REPLY: u8;
    /// The address as the datapath's tables keep it.
    type Raw: Copy + Debug + Default + Eq + Hash + Send + Sync + aya::Pod + 'static;

    fn raw(self) -> Self::Raw;
    fn from_raw(raw: Self::Raw) -> Self;
    /// Big-endian bytes, as in a header.
    fn bytes(self) -> Vec<u8>;
    fn read(f: &[u8], at: usize) -> Self;
    /// Whether the lab host's stack refuses it as a source from a wire.
    fn martian(self) -> bool;
    /// Whether the lab host's stack never forwards a packet to it (its own kinds of
    /// address: loopback, multicast, ...).
    fn never_forwarded(self) -> bool;
    /// Whether it is a loopback address (the host's own).
    fn loopback(self) -> bool;
    /// Parses a frame of the family (`Ok(None)`: not the family's ethertype).
    fn parse(f: &[u8]) -> Result<Option<Pkt<Self>>, DropReason>;
    /// The packet an ICMP error quotes, when it is a flow NAT tracks.
    fn quoted(f: &[u8], outer: &Pkt<Self>) -> Result<Option<Pkt<Self>>, DropReason>;
}

impl Ip for u32 {
    const V6: bool = false;
    const ETHERTYPE: u16 = 0x0800;
    const HDR: usize = 20;
    const SADDR_AT: usize = 12;
    const DADDR_AT: usize = 16;
    const TTL_AT: usize = 8;
    const ICMP: u8 = 1;
    const ECHO_REQUEST: u8 = 8;
    const ECHO_REPLY: u8 = 0;
    type Raw = u32;

    fn raw(self) -> u32 {
        self.to_be()
    }

    fn from_raw(raw: u32) -> Self {
        u32::from_be(raw)
    }

    fn bytes(self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }

    fn read(f: &[u8], at: usize) -> Self {
        wire::be32(f, at)
    }

    fn martian(self) -> bool {
        martian_source(self)
    }

    /// The zero network, loopback, multicast, the limited broadcast.
    fn never_forwarded(self) -> bool {
        matches!(self >> 24, 0 | 127 | 224..=239) || self == u32::MAX
    }

    fn loopback(self) -> bool {
        self >> 24 == 127
    }

    fn parse(f: &[u8]) -> Result<Option<Pkt<Self>>, DropReason> {
        wire::parse4(f)
    }

    fn quoted(f: &[u8], outer: &Pkt<Self>) -> Result<Option<Pkt<Self>>, DropReason> {
        wire::quoted4(f, outer)
    }
}

impl Ip for u128 {
    const V6: bool = true;
    const ETHERTYPE: u16 = 0x86dd;
    const HDR: usize = 40;
    const SADDR_AT: usize = 8;
    const DADDR_AT: usize = 24;
    const TTL_AT: usize = 7;
    const ICMP: u8 = 58;
    const ECHO_REQUEST: u8 = 128;
    const ECHO_REPLY: u8 = 129;
    type Raw = Addr6;

    fn raw(self) -> Addr6 {
        netlab::datapath::ebpf::addr6(Ipv6Addr::from(self))
    }

    fn from_raw(raw: Addr6) -> Self {
        u128::from(netlab::datapath::ebpf::ipv6_of(&raw))
    }

    fn bytes(self) -> Vec<u8> {
        self.to_be_bytes().to_vec()
    }

    fn read(f: &[u8], at: usize) -> Self {
        u128::from_be_bytes(f[at..at + 16].try_into().expect("16 bytes"))
    }

    /// Unspecified, loopback, multicast, IPv4-mapped, and link-local (a router never
    /// forwards from one).
    fn martian(self) -> bool {
        self.never_forwarded()
    }

    fn never_forwarded(self) -> bool {
        let a = Ipv6Addr::from(self);
        a.is_unspecified()
            || a.is_loopback()
            || a.is_multicast()
            || a.to_ipv4_mapped().is_some()
            || link_local(self)
    }

    fn loopback(self) -> bool {
        Ipv6Addr::from(self).is_loopback()
    }

    fn parse(f: &[u8]) -> Result<Option<Pkt<Self>>, DropReason> {
        super::wire6::parse(f)
    }

    fn quoted(f: &[u8], outer: &Pkt<Self>) -> Result<Option<Pkt<Self>>, DropReason> {
        super::wire6::quoted(f, outer)
    }
}

/// Whether an IPv6 address is link-local (`fe80::/10`).
pub fn link_local(a: u128) -> bool {
    a >> 118 == 0x3fa
}
