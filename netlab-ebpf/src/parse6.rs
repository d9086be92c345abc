//! IPv6 header parsing: the fixed header, the extension headers a packet may carry
//! before its L4 header (hop-by-hop, routing, destination options, fragment), and the
//! L4 header, into the same [`Packet`] summary IPv4's parse gives (with [`Addr6`]
//! addresses). The fixed header, and the L4 header right after it, are read straight
//! from the packet when its linear part holds them (every real frame's headers);
//! extension headers, headers after them and anything else with `bpf_skb_load_bytes`:
//! an extension chain puts the L4 header at an offset the verifier cannot follow for
//! direct access.
//!
//! Every length is checked against the frame and the payload length; a chain longer
//! than [`MAX_EXT`] headers, or one the datapath does not know, is [`Kind::Other`]:
//! passed or dropped by the hook, never translated.

use aya_ebpf::{macros::map, maps::PerCpuArray, programs::TcContext};
use netlab_common::{
    addr::Addr6,
    proto::{
        ETH_HLEN, ETH_P_IPV6, ICMPV6_DEST_UNREACH, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST,
        ICMPV6_PARAMPROB, ICMPV6_PKT_TOOBIG, ICMPV6_TIME_EXCEED, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT,
        IPPROTO_HOPOPTS, IPPROTO_ICMPV6, IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP, IPV6_HLEN,
        TCP_FIN, TCP_SYN,
    },
    stats::DropReason,
};

use crate::parse::{self, Kind, NO_WSCALE, Packet};

/// The IPv6 header as it is on the wire.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ipv6Hdr {
    pub vtcfl: u32,
    pub payload_len: u16,
    pub nexthdr: u8,
    pub hop_limit: u8,
    pub saddr: Addr6,
    pub daddr: Addr6,
}

pub const IP6_SADDR_OFF: usize = 8;
pub const IP6_DADDR_OFF: usize = 24;

/// Where the L4 header of a packet without extension headers starts.
const L4_AT: usize = ETH_HLEN + IPV6_HLEN;

/// A `T` of the frame at `off`: straight from the packet when `off` is `AT` (a
/// constant, which the verifier follows) and the linear part holds it, by
/// `bpf_skb_load_bytes` otherwise.
#[inline(always)]
fn read<const AT: usize, T: Copy>(ctx: &TcContext, off: usize) -> Result<T, DropReason> {
    let (data, end) = (ctx.data(), ctx.data_end());
    if off == AT && data + AT + core::mem::size_of::<T>() <= end {
        return Ok(unsafe { *((data + AT) as *const T) });
    }
    ctx.load(off).map_err(|_| DropReason::Truncated)
}

/// The TCP header as it is on the wire (without options).
#[repr(C)]
#[derive(Clone, Copy)]
struct TcpHdr {
    ports: [u16; 2],
    seq: u32,
    ack: u32,
    doff: u8,
    flags: u8,
    win: u16,
    check_urg: u32,
}

/// The first eight bytes of an ICMPv6 message (an echo's identifier among them).
#[repr(C)]
#[derive(Clone, Copy)]
struct Icmp6Hdr {
    kind: u8,
    code: u8,
    check: u16,
    id: u16,
    seq: u16,
}

/// The most extension headers walked before the L4 header.
const MAX_EXT: usize = 4;

/// Where the walk of the extension headers ended.
#[derive(Clone, Copy)]
struct Walk {
    /// The L4 protocol, and its header's offset.
    proto: u8,
    l4_off: usize,
    /// A fragment after the first (no L4 header), or the first of several.
    later_fragment: bool,
    first_fragment: bool,
    /// A fragment's identification (raw) and the protocol its fragment header names
    /// next: what its datagram is remembered by (0 without a fragment header).
    frag_id: u32,
    frag_proto: u8,
    /// Walked to an L4 header (not stopped by the limit).
    done: bool,
}

/// Walks the extension headers after the IPv6 header at `l3_off`, within `end`.
#[inline(always)]
fn walk(ctx: &TcContext, l3_off: usize, nexthdr: u8, end: usize) -> Result<Walk, DropReason> {
    let mut w = Walk {
        proto: nexthdr,
        l4_off: l3_off + IPV6_HLEN,
        later_fragment: false,
        first_fragment: false,
        frag_id: 0,
        frag_proto: 0,
        done: false,
    };
    for _ in 0..MAX_EXT {
        match w.proto {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                if w.l4_off + 4 > end {
                    return Err(DropReason::Truncated);
                }
                let h: [u8; 4] = ctx.load(w.l4_off).map_err(|_| DropReason::Truncated)?;
                // A routing header with segments left: the destination is not the
                // final one, which the L4 checksum's pseudo-header holds. Not ours.
                if w.proto == IPPROTO_ROUTING && h[3] != 0 {
                    return Ok(w);
                }
                w.proto = h[0];
                w.l4_off += (h[1] as usize + 1) * 8;
            }
            IPPROTO_FRAGMENT => {
                if w.l4_off + 8 > end {
                    return Err(DropReason::Truncated);
                }
                let h: [u8; 8] = ctx.load(w.l4_off).map_err(|_| DropReason::Truncated)?;
                let off_m = u16::from_be_bytes([h[2], h[3]]);
                w.proto = h[0];
                w.frag_proto = h[0];
                w.frag_id = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
                w.l4_off += 8;
                if off_m & !7 != 0 {
                    w.later_fragment = true;
                    w.done = true;
                    return Ok(w);
                }
                w.first_fragment = off_m & 1 != 0;
            }
            _ => {
                w.done = true;
                return Ok(w);
            }
        }
    }
    // Walked [`MAX_EXT`] headers: done if the next one is not another.
    w.done = !is_extension(w.proto);
    Ok(w)
}

/// Whether `proto` is an extension header the walk steps over.
#[inline(always)]
pub fn is_extension(proto: u8) -> bool {
    matches!(
        proto,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT
    )
}

/// Whether the frame is IPv6 (its ethertype), read directly when the Ethernet header is
/// linear.
#[inline(always)]
pub fn is_ipv6(ctx: &TcContext) -> bool {
    let (data, end) = (ctx.data(), ctx.data_end());
    let ethertype: u16 = if data + ETH_HLEN <= end {
        unsafe { *((data + 12) as *const u16) }
    } else {
        match ctx.load(12) {
            Ok(t) => t,
            Err(_) => return false,
        }
    };
    ethertype == ETH_P_IPV6.to_be()
}

/// The destination address of an IPv6 frame (`None` when it cannot be read).
#[inline(always)]
pub fn ipv6_daddr(ctx: &TcContext) -> Option<Addr6> {
    ctx.load(ETH_HLEN + IP6_DADDR_OFF).ok()
}

/// The packet being handled and the one quoted in an ICMPv6 error, one slot each per
/// CPU: an IPv6 [`Packet`] is twice IPv4's, and on the stack beside the NAT's own
/// state it would not fit the verifier's 512 bytes.
#[map(name = "PACKET6")]
static PACKET6: PerCpuArray<Packet<Addr6>> = PerCpuArray::with_max_entries(2, 0);

/// Parses an IPv6 packet (the caller knows its ethertype is IPv6's) into this CPU's
/// packet slot.
#[inline(always)]
pub fn ipv6(ctx: &TcContext) -> Result<&'static Packet<Addr6>, DropReason> {
    let slot = PACKET6.get_ptr_mut(0).ok_or(DropReason::Truncated)?;
    let pkt = unsafe { &mut *slot };
    // The parse fails only for these two reasons.
    match parse_into(ctx, pkt) {
        0 => Ok(pkt),
        r if r == DropReason::BadIpHeader as u32 => Err(DropReason::BadIpHeader),
        _ => Err(DropReason::Truncated),
    }
}

/// [`parse`] as a BPF subprogram, with a frame of its own: 0, or the drop reason's
/// number.
#[inline(never)]
fn parse_into(ctx: &TcContext, pkt: &mut Packet<Addr6>) -> u32 {
    match parse(ctx, pkt) {
        Ok(()) => 0,
        Err(r) => r as u32,
    }
}

/// Fills `pkt` in place (a copy of it on the stack would cost what the slot saves).
#[inline(always)]
fn parse(ctx: &TcContext, pkt: &mut Packet<Addr6>) -> Result<(), DropReason> {
    let len = ctx.len();
    if (len as usize) < ETH_HLEN + IPV6_HLEN {
        return Err(DropReason::Truncated);
    }
    let ip: Ipv6Hdr = read::<ETH_HLEN, _>(ctx, ETH_HLEN)?;
    if u32::from_be(ip.vtcfl) >> 28 != 6 {
        return Err(DropReason::BadIpHeader);
    }
    let end = ETH_HLEN + IPV6_HLEN + u16::from_be(ip.payload_len) as usize;
    if end > len as usize {
        return Err(DropReason::Truncated);
    }
    let w = walk(ctx, ETH_HLEN, ip.nexthdr, end)?;
    fill(pkt, ETH_HLEN, &w, &ip, end);
    pkt.first_fragment = w.first_fragment;
    pkt.len = len;
    if w.later_fragment {
        pkt.kind = Kind::Fragment;
        return Ok(());
    }
    if !w.done || w.l4_off > end {
        return Ok(());
    }
    l4(ctx, pkt)
}

/// Sets every field of `pkt` from the headers, as a packet of no known kind yet.
#[inline(always)]
fn fill(pkt: &mut Packet<Addr6>, l3_off: usize, w: &Walk, ip: &Ipv6Hdr, end: usize) {
    pkt.l3_off = l3_off;
    pkt.l4_off = w.l4_off;
    pkt.proto = w.proto;
    pkt.saddr = ip.saddr;
    pkt.daddr = ip.daddr;
    pkt.sport = 0;
    pkt.dport = 0;
    pkt.flags = 0;
    pkt.ttl = ip.hop_limit;
    pkt.ip_check = 0;
    pkt.kind = Kind::Other;
    pkt.ip_id = w.frag_id;
    pkt.frag_proto = w.frag_proto;
    pkt.first_fragment = false;
    pkt.len = 0;
    pkt.end = end;
    pkt.wscale = NO_WSCALE;
    pkt.seq = 0;
    pkt.ack = 0;
    pkt.win = 0;
    pkt.seq_end = 0;
    pkt.hdr_len = 0;
}

/// Reads the L4 header of `pkt` (TCP, UDP, ICMPv6) into it.
#[inline(always)]
fn l4(ctx: &TcContext, pkt: &mut Packet<Addr6>) -> Result<(), DropReason> {
    let l4_len = pkt.end - pkt.l4_off;
    let ext = pkt.l4_off - pkt.l3_off;
    match pkt.proto {
        IPPROTO_TCP => {
            if l4_len < 20 {
                return Err(DropReason::Truncated);
            }
            let h: TcpHdr = read::<L4_AT, _>(ctx, pkt.l4_off)?;
            pkt.sport = h.ports[0];
            pkt.dport = h.ports[1];
            pkt.seq = u32::from_be(h.seq);
            pkt.ack = u32::from_be(h.ack);
            let doff = ((h.doff >> 4) as usize) * 4;
            pkt.flags = h.flags;
            pkt.win = u16::from_be(h.win);
            pkt.kind = Kind::Flow;
            let payload = if doff >= 20 && doff <= l4_len {
                l4_len - doff
            } else {
                0
            };
            let syn_fin = (pkt.flags & TCP_SYN != 0) as u32 + (pkt.flags & TCP_FIN != 0) as u32;
            pkt.seq_end = pkt.seq.wrapping_add(payload as u32 + syn_fin);
            pkt.hdr_len = (ext + if doff >= 20 { doff } else { 20 }) as u16;
            if pkt.flags & TCP_SYN != 0 && doff > 20 && doff <= l4_len {
                pkt.wscale = parse::window_scale(ctx, pkt.l4_off + 20, doff - 20);
            }
        }
        IPPROTO_UDP => {
            if l4_len < 8 {
                return Err(DropReason::Truncated);
            }
            let ports: [u16; 2] = read::<L4_AT, _>(ctx, pkt.l4_off)?;
            pkt.sport = ports[0];
            pkt.dport = ports[1];
            pkt.kind = Kind::Flow;
            pkt.hdr_len = (ext + 8) as u16;
        }
        IPPROTO_ICMPV6 => {
            if l4_len < 8 {
                return Err(DropReason::Truncated);
            }
            let h: Icmp6Hdr = read::<L4_AT, _>(ctx, pkt.l4_off)?;
            pkt.flags = h.kind;
            match h.kind {
                ICMPV6_ECHO_REQUEST | ICMPV6_ECHO_REPLY => {
                    pkt.sport = h.id;
                    pkt.dport = h.id;
                    pkt.kind = Kind::Flow;
                }
                ICMPV6_DEST_UNREACH | ICMPV6_PKT_TOOBIG | ICMPV6_TIME_EXCEED | ICMPV6_PARAMPROB
                    if !pkt.first_fragment =>
                {
                    pkt.kind = Kind::IcmpError;
                }
                // Neighbour discovery, MLD and the rest: the stack's.
                _ => {}
            }
        }
        _ => {}
    }
    Ok(())
}

/// The packet quoted inside an ICMPv6 error: its IPv6 header starts 8 bytes into the
/// message, then its extension headers and at least the ports of its L4 header. Only
/// flows the datapath tracks (TCP, UDP, ICMPv6 echo), quoted whole enough to translate,
/// are returned.
#[inline(always)]
pub fn icmp6_inner(
    ctx: &TcContext,
    outer: &Packet<Addr6>,
) -> Result<Option<&'static Packet<Addr6>>, DropReason> {
    let slot = PACKET6.get_ptr_mut(1).ok_or(DropReason::Truncated)?;
    let q = unsafe { &mut *slot };
    Ok(inner(ctx, outer, q)?.then_some(q))
}

/// Fills `inner` with the quoted packet; whether it is a flow the datapath tracks.
#[inline(always)]
fn inner(
    ctx: &TcContext,
    outer: &Packet<Addr6>,
    inner: &mut Packet<Addr6>,
) -> Result<bool, DropReason> {
    let l3_off = outer.l4_off + 8;
    if l3_off + IPV6_HLEN > outer.end {
        return Err(DropReason::Truncated);
    }
    let ip: Ipv6Hdr = ctx.load(l3_off).map_err(|_| DropReason::Truncated)?;
    if u32::from_be(ip.vtcfl) >> 28 != 6 {
        return Err(DropReason::BadIpHeader);
    }
    let w = walk(ctx, l3_off, ip.nexthdr, outer.end)?;
    if w.later_fragment || !w.done {
        return Ok(false);
    }
    fill(inner, l3_off, &w, &ip, outer.end);
    match inner.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            // The eight bytes every ICMPv6 error quotes at least: ip6tables' NAT
            // delivers none with less.
            if inner.l4_off + 8 > inner.end {
                return Err(DropReason::Truncated);
            }
            let ports: [u16; 2] = ctx.load(inner.l4_off).map_err(|_| DropReason::Truncated)?;
            inner.sport = ports[0];
            inner.dport = ports[1];
            inner.kind = Kind::Flow;
        }
        IPPROTO_ICMPV6 => {
            if inner.l4_off + 8 > inner.end {
                return Err(DropReason::Truncated);
            }
            let h: [u8; 8] = ctx.load(inner.l4_off).map_err(|_| DropReason::Truncated)?;
            if h[0] == ICMPV6_ECHO_REQUEST || h[0] == ICMPV6_ECHO_REPLY {
                let id = u16::from_ne_bytes([h[4], h[5]]);
                inner.sport = id;
                inner.dport = id;
                inner.flags = h[0];
                inner.kind = Kind::Flow;
            }
        }
        _ => {}
    }
    Ok(inner.kind == Kind::Flow)
}
