//! Every change to a packet's addresses, ports and TTL goes through here, with its
//! checksum fixes done one way:
//!
//! - address: L4 checksum with `BPF_F_PSEUDO_HDR` (TCP and UDP carry the addresses in
//!   their pseudo-header; ICMP does not), then the IPv4 header checksum, then the store;
//! - port or ICMP echo id: L4 checksum without the pseudo flag, then the store;
//! - UDP adds `BPF_F_MARK_MANGLED_0`, so a zero ("no checksum") stays zero and a computed
//!   zero is written as 0xffff.
//!
//! The kernel helpers do the right thing for CHECKSUM_PARTIAL (GSO/TSO, veth) skbs: they
//! fold only the pseudo-header change into the partial sum and leave port changes to the
//! final checksum computation, so the same calls are correct with and without offload.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use netlab_common::{
    config::FLAG_FAULT_REWRITE,
    conntrack::CtEntry,
    nat::{csum_replace2, csum_replace4},
    proto::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HLEN},
    stats::DropReason,
};

use crate::{
    maps,
    parse::{IP_CHECK_OFF, IP_TTL_OFF, Kind, Packet},
};

/// The tests' fault point ([`FLAG_FAULT_REWRITE`]): whether every rewrite is to fail
/// before it changes anything. Always false in a lab without it, which the verifier
/// knows (the configuration is a read-only global), so it removes the branch.
#[inline(always)]
pub fn faulted() -> bool {
    maps::config().flags & FLAG_FAULT_REWRITE != 0
}

/// Offset of the L4 checksum, and the extra helper flags for that protocol.
#[inline(always)]
fn l4_csum(pkt: &Packet) -> (usize, u64) {
    match pkt.proto {
        IPPROTO_TCP => (pkt.l4_off + 16, 0),
        IPPROTO_UDP => (pkt.l4_off + 6, BPF_F_MARK_MANGLED_0 as u64),
        _ => (pkt.l4_off + 2, 0),
    }
}

/// Rewrites `pkt` to the translated tuple of `to` (fields that already match are left
/// alone) and, when the datapath routes it itself (`routed`), decrements its TTL.
///
/// Per packet this is at most two L4 checksum updates for the addresses and two for the
/// ports (the helpers, which know about CHECKSUM_PARTIAL) and one store for TTL, header
/// checksum, both addresses and both ports (two stores when IP options sit between
/// them): the IPv4 header checksum is always complete, so it is updated here rather
/// than by a helper.
#[inline(always)]
pub fn apply(ctx: &TcContext, pkt: &Packet, to: &CtEntry, routed: bool) -> Result<(), DropReason> {
    if faulted() {
        return Err(DropReason::RewriteFailed);
    }
    let l4 = (pkt.proto == IPPROTO_TCP || pkt.proto == IPPROTO_UDP) && pkt.kind != Kind::Fragment;
    let mut ports = false;
    if l4 {
        let (off, extra) = l4_csum(pkt);
        let pseudo = BPF_F_PSEUDO_HDR as u64 | extra | 4;
        if to.saddr != pkt.saddr {
            l4_replace(ctx, off, pkt.saddr, to.saddr, pseudo)?;
        }
        if to.daddr != pkt.daddr {
            l4_replace(ctx, off, pkt.daddr, to.daddr, pseudo)?;
        }
        let (sport, dport) = (to.sport != pkt.sport, to.dport != pkt.dport);
        if sport {
            l4_replace(ctx, off, pkt.sport as u32, to.sport as u32, extra | 2)?;
        }
        if dport {
            l4_replace(ctx, off, pkt.dport as u32, to.dport as u32, extra | 2)?;
        }
        ports = sport || dport;
    } else if pkt.proto == IPPROTO_ICMP && pkt.kind != Kind::Fragment && to.sport != pkt.sport {
        // Echo: sport and dport both hold the identifier.
        port(ctx, pkt, pkt.l4_off + 4, pkt.sport, to.sport)?;
    }
    if to.saddr == pkt.saddr && to.daddr == pkt.daddr && !routed {
        return if ports {
            store_ports(ctx, pkt, to)
        } else {
            Ok(())
        };
    }
    // TTL, protocol, header checksum, source, destination: bytes 8 to 20; and the
    // ports right after them when the header has no options, in the same store.
    let ttl = if routed { pkt.ttl - 1 } else { pkt.ttl };
    let mut check = csum_replace4(pkt.ip_check, pkt.saddr, to.saddr);
    check = csum_replace4(check, pkt.daddr, to.daddr);
    if routed {
        let (old, new) = ([pkt.ttl, pkt.proto], [ttl, pkt.proto]);
        check = csum_replace2(check, u16::from_ne_bytes(old), u16::from_ne_bytes(new));
    }
    let c = check.to_ne_bytes();
    let s = to.saddr.to_ne_bytes();
    let d = to.daddr.to_ne_bytes();
    if ports && pkt.l4_off == pkt.l3_off + IPV4_MIN_HLEN {
        let (sp, dp) = (to.sport.to_ne_bytes(), to.dport.to_ne_bytes());
        let tail: [u8; 16] = [
            ttl, pkt.proto, c[0], c[1], s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3], sp[0],
            sp[1], dp[0], dp[1],
        ];
        return ctx
            .store(pkt.l3_off + IP_TTL_OFF, &tail, 0)
            .map_err(|_| DropReason::RewriteFailed);
    }
    if ports {
        store_ports(ctx, pkt, to)?;
    }
    let tail: [u8; 12] = [
        ttl, pkt.proto, c[0], c[1], s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3],
    ];
    ctx.store(pkt.l3_off + IP_TTL_OFF, &tail, 0)
        .map_err(|_| DropReason::RewriteFailed)
}

/// Both L4 ports, in one store.
#[inline(always)]
fn store_ports(ctx: &TcContext, pkt: &Packet, to: &CtEntry) -> Result<(), DropReason> {
    ctx.store(pkt.l4_off, &[to.sport, to.dport], 0)
        .map_err(|_| DropReason::RewriteFailed)
}

#[inline(always)]
fn l4_replace(
    ctx: &TcContext,
    off: usize,
    old: u32,
    new: u32,
    flags: u64,
) -> Result<(), DropReason> {
    ctx.l4_csum_replace(off, old as u64, new as u64, flags)
        .map_err(|_| DropReason::RewriteFailed)
}

/// Replaces the IPv4 address at `field` (an offset inside the IP header). A fragment
/// after the first has no L4 header: only its IPv4 checksum changes.
#[inline(always)]
pub fn addr(
    ctx: &TcContext,
    pkt: &Packet,
    field: usize,
    old: u32,
    new: u32,
) -> Result<(), DropReason> {
    if (pkt.proto == IPPROTO_TCP || pkt.proto == IPPROTO_UDP) && pkt.kind != Kind::Fragment {
        let (off, extra) = l4_csum(pkt);
        ctx.l4_csum_replace(
            off,
            old as u64,
            new as u64,
            BPF_F_PSEUDO_HDR as u64 | extra | 4,
        )
        .map_err(|_| DropReason::RewriteFailed)?;
    }
    ctx.l3_csum_replace(pkt.l3_off + IP_CHECK_OFF, old as u64, new as u64, 4)
        .map_err(|_| DropReason::RewriteFailed)?;
    ctx.store(pkt.l3_off + field, &new, 0)
        .map_err(|_| DropReason::RewriteFailed)
}

/// Replaces the 16-bit port or echo identifier at absolute offset `at`.
#[inline(always)]
pub fn port(
    ctx: &TcContext,
    pkt: &Packet,
    at: usize,
    old: u16,
    new: u16,
) -> Result<(), DropReason> {
    let (off, extra) = l4_csum(pkt);
    ctx.l4_csum_replace(off, old as u64, new as u64, extra | 2)
        .map_err(|_| DropReason::RewriteFailed)?;
    ctx.store(at, &new, 0)
        .map_err(|_| DropReason::RewriteFailed)
}

/// Stores a 16-bit word inside an ICMP error's payload and folds the change into the
/// outer ICMP checksum at `icmp_csum` (ICMP has no pseudo-header).
#[inline(always)]
pub fn icmp_payload16(
    ctx: &TcContext,
    icmp_csum: usize,
    at: usize,
    old: u16,
    new: u16,
) -> Result<(), DropReason> {
    ctx.l4_csum_replace(icmp_csum, old as u64, new as u64, 2)
        .map_err(|_| DropReason::RewriteFailed)?;
    ctx.store(at, &new, 0)
        .map_err(|_| DropReason::RewriteFailed)
}

/// [`icmp_payload16`] for a 32-bit word (an address in the quoted header).
#[inline(always)]
pub fn icmp_payload32(
    ctx: &TcContext,
    icmp_csum: usize,
    at: usize,
    old: u32,
    new: u32,
) -> Result<(), DropReason> {
    ctx.l4_csum_replace(icmp_csum, old as u64, new as u64, 4)
        .map_err(|_| DropReason::RewriteFailed)?;
    ctx.store(at, &new, 0)
        .map_err(|_| DropReason::RewriteFailed)
}
