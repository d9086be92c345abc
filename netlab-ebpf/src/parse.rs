//! Header parsing. The only module that reads packet bytes; everything else works on the
//! [`Packet`] summary. Reads go through `bpf_skb_load_bytes` (`ctx.load`), which works on
//! non-linear (GRO/GSO) skbs and needs no pointer-range proofs from the verifier.

use aya_ebpf::programs::TcContext;
use netlab_common::{
    proto::{
        ETH_HLEN, ETH_P_IP, ICMP_DEST_UNREACH, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST,
        ICMP_TIME_EXCEEDED, IP_MF, IP_OFFSET, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
        IPV4_MIN_HLEN,
    },
    stats::DropReason,
};

/// The IPv4 header as it is on the wire.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ipv4Hdr {
    pub vihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub check: u16,
    pub saddr: u32,
    pub daddr: u32,
}

pub const IP_CHECK_OFF: usize = 10;
pub const IP_SADDR_OFF: usize = 12;
pub const IP_DADDR_OFF: usize = 16;

/// What the datapath knows about a packet. Addresses and ports are raw (network order).
#[derive(Clone, Copy)]
pub struct Packet {
    pub l3_off: usize,
    pub l4_off: usize,
    pub proto: u8,
    pub saddr: u32,
    pub daddr: u32,
    /// Ports, or the echo identifier in both for ICMP echo.
    pub sport: u16,
    pub dport: u16,
    /// TCP flags, or the ICMP type.
    pub flags: u8,
    pub kind: Kind,
    /// Length of the whole frame, for byte counters.
    pub len: u32,
}

/// What sort of L4 payload the packet carries, as far as NAT is concerned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// TCP, UDP or ICMP echo: has a port-like tuple.
    Flow,
    /// ICMP destination unreachable or time exceeded: carries the header of another packet.
    IcmpError,
    /// A non-first fragment or a fragmented packet: no usable L4 header here.
    Fragment,
    /// Anything else (other protocols, other ICMP types).
    Other,
}

/// Parses an IPv4 packet. `Ok(None)` for anything that is not IPv4.
#[inline(always)]
pub fn ipv4(ctx: &TcContext) -> Result<Option<Packet>, DropReason> {
    let ethertype: u16 = ctx.load(12).map_err(|_| DropReason::Truncated)?;
    if ethertype != ETH_P_IP.to_be() {
        return Ok(None);
    }
    let l3_off = ETH_HLEN;
    let ip: Ipv4Hdr = ctx.load(l3_off).map_err(|_| DropReason::Truncated)?;
    let ihl = ((ip.vihl & 0x0f) as usize) * 4;
    if ihl < IPV4_MIN_HLEN {
        return Err(DropReason::BadIpHeader);
    }
    let l4_off = l3_off + ihl;
    let mut pkt = Packet {
        l3_off,
        l4_off,
        proto: ip.proto,
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport: 0,
        dport: 0,
        flags: 0,
        kind: Kind::Other,
        len: ctx.len(),
    };
    let frag = u16::from_be(ip.frag_off);
    if frag & (IP_MF | IP_OFFSET) != 0 {
        pkt.kind = Kind::Fragment;
        return Ok(Some(pkt));
    }
    match ip.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let ports: [u16; 2] = ctx.load(l4_off).map_err(|_| DropReason::Truncated)?;
            pkt.sport = ports[0];
            pkt.dport = ports[1];
            if ip.proto == IPPROTO_TCP {
                pkt.flags = ctx.load(l4_off + 13).map_err(|_| DropReason::Truncated)?;
            }
            pkt.kind = Kind::Flow;
        }
        IPPROTO_ICMP => {
            let icmp_type: u8 = ctx.load(l4_off).map_err(|_| DropReason::Truncated)?;
            pkt.flags = icmp_type;
            match icmp_type {
                ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY => {
                    let id: u16 = ctx.load(l4_off + 4).map_err(|_| DropReason::Truncated)?;
                    pkt.sport = id;
                    pkt.dport = id;
                    pkt.kind = Kind::Flow;
                }
                ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED => pkt.kind = Kind::IcmpError,
                _ => {}
            }
        }
        _ => {}
    }
    Ok(Some(pkt))
}

/// The packet quoted inside an ICMP error: its IPv4 header starts 8 bytes into the ICMP
/// message. Only flows the datapath tracks (TCP, UDP, ICMP echo) are returned.
#[inline(always)]
pub fn icmp_inner(ctx: &TcContext, outer: &Packet) -> Result<Option<Packet>, DropReason> {
    let l3_off = outer.l4_off + 8;
    let ip: Ipv4Hdr = ctx.load(l3_off).map_err(|_| DropReason::Truncated)?;
    let ihl = ((ip.vihl & 0x0f) as usize) * 4;
    if ihl < IPV4_MIN_HLEN {
        return Err(DropReason::BadIpHeader);
    }
    let l4_off = l3_off + ihl;
    let mut inner = Packet {
        l3_off,
        l4_off,
        proto: ip.proto,
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport: 0,
        dport: 0,
        flags: 0,
        kind: Kind::Flow,
        len: 0,
    };
    match ip.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let ports: [u16; 2] = ctx.load(l4_off).map_err(|_| DropReason::Truncated)?;
            inner.sport = ports[0];
            inner.dport = ports[1];
        }
        IPPROTO_ICMP => {
            let icmp_type: u8 = ctx.load(l4_off).map_err(|_| DropReason::Truncated)?;
            if icmp_type != ICMP_ECHO_REQUEST && icmp_type != ICMP_ECHO_REPLY {
                return Ok(None);
            }
            let id: u16 = ctx.load(l4_off + 4).map_err(|_| DropReason::Truncated)?;
            inner.sport = id;
            inner.dport = id;
            inner.flags = icmp_type;
        }
        _ => return Ok(None),
    }
    Ok(Some(inner))
}
