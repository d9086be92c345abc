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
    let (mut pkt, frag_off) = header(ctx, ETH_HLEN)?;
    pkt.len = ctx.len();
    if u16::from_be(frag_off) & (IP_MF | IP_OFFSET) != 0 {
        pkt.kind = Kind::Fragment;
        return Ok(Some(pkt));
    }
    l4(ctx, &mut pkt)?;
    Ok(Some(pkt))
}

/// The packet quoted inside an ICMP error: its IPv4 header starts 8 bytes into the ICMP
/// message. Only flows the datapath tracks (TCP, UDP, ICMP echo) are returned.
#[inline(always)]
pub fn icmp_inner(ctx: &TcContext, outer: &Packet) -> Result<Option<Packet>, DropReason> {
    let (mut inner, _) = header(ctx, outer.l4_off + 8)?;
    l4(ctx, &mut inner)?;
    Ok((inner.kind == Kind::Flow).then_some(inner))
}

/// The IPv4 header at `l3_off` (its length from IHL), and its raw `frag_off`.
#[inline(always)]
fn header(ctx: &TcContext, l3_off: usize) -> Result<(Packet, u16), DropReason> {
    let ip: Ipv4Hdr = ctx.load(l3_off).map_err(|_| DropReason::Truncated)?;
    let ihl = ((ip.vihl & 0x0f) as usize) * 4;
    if ihl < IPV4_MIN_HLEN {
        return Err(DropReason::BadIpHeader);
    }
    let pkt = Packet {
        l3_off,
        l4_off: l3_off + ihl,
        proto: ip.proto,
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport: 0,
        dport: 0,
        flags: 0,
        kind: Kind::Other,
        len: 0,
    };
    Ok((pkt, ip.frag_off))
}

/// Fills in the ports (or echo identifier), TCP flags or ICMP type, and the kind.
#[inline(always)]
fn l4(ctx: &TcContext, pkt: &mut Packet) -> Result<(), DropReason> {
    match pkt.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let ports: [u16; 2] = ctx.load(pkt.l4_off).map_err(|_| DropReason::Truncated)?;
            pkt.sport = ports[0];
            pkt.dport = ports[1];
            if pkt.proto == IPPROTO_TCP {
                // A quoted TCP header may stop after 8 bytes: no flags then.
                pkt.flags = ctx.load(pkt.l4_off + 13).unwrap_or(0);
            }
            pkt.kind = Kind::Flow;
        }
        IPPROTO_ICMP => {
            let icmp_type: u8 = ctx.load(pkt.l4_off).map_err(|_| DropReason::Truncated)?;
            pkt.flags = icmp_type;
            match icmp_type {
                ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY => {
                    let id: u16 = ctx
                        .load(pkt.l4_off + 4)
                        .map_err(|_| DropReason::Truncated)?;
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
    Ok(())
}
