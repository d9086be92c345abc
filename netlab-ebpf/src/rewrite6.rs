//! Every change to an IPv6 packet's addresses and ports, with its checksum fixes. IPv6
//! has no header checksum; TCP, UDP and ICMPv6 all cover the addresses in their
//! pseudo-header, so an address change goes into the L4 checksum as one 16-byte
//! difference (computed here, as `bpf_csum_diff` would give it, without the helper's
//! call) with `BPF_F_PSEUDO_HDR`, which `bpf_l4_csum_replace` applies right
//! for CHECKSUM_PARTIAL skbs too (and the address's store keeps a CHECKSUM_COMPLETE
//! skb's sum right: see [`addr`]); a port or echo identifier as a 16-bit change.
//!
//! A TCP or UDP packet without extension headers, its headers in the linear part (every
//! real one), is written straight into the packet after the checksum helpers
//! ([`apply_direct`]): no `bpf_skb_store_bytes` call (each one a writability check and a
//! copy), and a CHECKSUM_COMPLETE skb's sum kept right with `bpf_csum_update`.

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_F_RECOMPUTE_CSUM},
    helpers::generated::bpf_csum_update,
    programs::TcContext,
};
use netlab_common::{
    addr::Addr6,
    conntrack::CtEntry,
    nat::csum_replace4,
    proto::{ETH_HLEN, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, IPV6_HLEN},
    stats::DropReason,
};

use crate::{
    parse::{Kind, Packet},
    parse6::{IP6_DADDR_OFF, IP6_SADDR_OFF},
};

/// Offset of the L4 checksum and the helper's extra flags; offset 0 for a packet
/// without one this module updates (a later fragment, another protocol). A plain pair,
/// every part always set: LLVM leaves an `Option`'s unused payload undefined, and the
/// verifier refuses a program that spills an undefined register.
#[inline(always)]
pub fn l4_csum(pkt: &Packet<Addr6>) -> (usize, u64) {
    if pkt.kind == Kind::Fragment {
        return (0, 0);
    }
    match pkt.proto {
        IPPROTO_TCP => (pkt.l4_off + 16, 0),
        IPPROTO_UDP => (pkt.l4_off + 6, BPF_F_MARK_MANGLED_0 as u64),
        IPPROTO_ICMPV6 => (pkt.l4_off + 2, 0),
        _ => (0, 0),
    }
}

/// The one's complement difference between two addresses: the 32-bit sum of the old
/// words complemented and the new ones, as `bpf_csum_diff` gives it (a sum that is the
/// same modulo 0xffff is all `bpf_l4_csum_replace` needs), in line rather than a
/// helper call.
#[inline(always)]
pub fn diff(old: &Addr6, new: &Addr6) -> u64 {
    let mut s: u64 = 0;
    for i in 0..4 {
        s += (!old[i]) as u64 + new[i] as u64;
    }
    fold(s)
}

/// A sum of a few 32-bit words folded to 32 bits, with its carries (two folds: up to
/// 2^32 words).
#[inline(always)]
pub fn fold(s: u64) -> u64 {
    let s = (s & 0xffff_ffff) + (s >> 32);
    (s & 0xffff_ffff) + (s >> 32)
}

/// Adds `diff` to a CHECKSUM_COMPLETE skb's sum after bytes were written straight into
/// the packet (nothing for other skbs).
#[inline(always)]
pub fn complete_sum_add(ctx: &TcContext, diff: u64) {
    unsafe { bpf_csum_update(ctx.as_ptr() as *mut _, diff as u32) };
}

/// Where the L4 header of a packet without extension headers starts.
const L4_AT: usize = ETH_HLEN + IPV6_HLEN;

/// Whether `pkt` is rewritten by [`apply_direct`]: TCP or UDP (not a fragment), no
/// extension header, its addresses and ports in the linear part.
#[inline(always)]
fn direct(ctx: &TcContext, pkt: &Packet<Addr6>) -> bool {
    (pkt.proto == IPPROTO_TCP || pkt.proto == IPPROTO_UDP)
        && pkt.kind != Kind::Fragment
        && pkt.l3_off == ETH_HLEN
        && pkt.l4_off == L4_AT
        && ctx.data() + L4_AT + 4 <= ctx.data_end()
}

/// Rewrites `pkt` to the translated tuple of `to` (what already matches is left alone).
#[inline(always)]
pub fn apply(ctx: &TcContext, pkt: &Packet<Addr6>, to: &CtEntry<Addr6>) -> Result<(), DropReason> {
    if crate::rewrite::faulted() {
        return Err(DropReason::RewriteFailed);
    }
    if direct(ctx, pkt) {
        return apply_direct(ctx, pkt, to);
    }
    let csum = l4_csum(pkt);
    if to.saddr != pkt.saddr {
        addr(ctx, pkt, IP6_SADDR_OFF, &pkt.saddr, &to.saddr)?;
    }
    if to.daddr != pkt.daddr {
        addr(ctx, pkt, IP6_DADDR_OFF, &pkt.daddr, &to.daddr)?;
    }
    let (off, extra) = csum;
    if off == 0 {
        return Ok(());
    }
    if pkt.proto == IPPROTO_ICMPV6 {
        // Echo: sport and dport both hold the identifier.
        if to.sport != pkt.sport {
            port(ctx, off, extra, pkt.l4_off + 4, pkt.sport, to.sport)?;
        }
        return Ok(());
    }
    if to.sport != pkt.sport {
        port(ctx, off, extra, pkt.l4_off, pkt.sport, to.sport)?;
    }
    if to.dport != pkt.dport {
        port(ctx, off, extra, pkt.l4_off + 2, pkt.dport, to.dport)?;
    }
    Ok(())
}

/// [`apply`] for a packet [`direct`] says is written straight: the L4 checksum by the
/// helpers (which know CHECKSUM_PARTIAL), then addresses and ports stored as words.
/// With `BPF_F_PSEUDO_HDR` the helper takes an address's change out of a
/// CHECKSUM_COMPLETE skb's sum (right for IPv4, whose header checksum absorbs it; not
/// for IPv6): it goes back in once the address is written. A port's change and its
/// checksum's cancel out in the sum.
#[inline(always)]
fn apply_direct(
    ctx: &TcContext,
    pkt: &Packet<Addr6>,
    to: &CtEntry<Addr6>,
) -> Result<(), DropReason> {
    let (off, extra) = l4_csum(pkt);
    let pseudo = BPF_F_PSEUDO_HDR as u64 | extra;
    let (s, d) = (to.saddr != pkt.saddr, to.daddr != pkt.daddr);
    let mut sum = 0;
    if s {
        let x = diff(&pkt.saddr, &to.saddr);
        ctx.l4_csum_replace(off, 0, x, pseudo)
            .map_err(|_| DropReason::RewriteFailed)?;
        sum += x;
    }
    if d {
        let x = diff(&pkt.daddr, &to.daddr);
        ctx.l4_csum_replace(off, 0, x, pseudo)
            .map_err(|_| DropReason::RewriteFailed)?;
        sum += x;
    }
    if to.sport != pkt.sport {
        ctx.l4_csum_replace(off, pkt.sport as u64, to.sport as u64, extra | 2)
            .map_err(|_| DropReason::RewriteFailed)?;
    }
    if to.dport != pkt.dport {
        ctx.l4_csum_replace(off, pkt.dport as u64, to.dport as u64, extra | 2)
            .map_err(|_| DropReason::RewriteFailed)?;
    }
    // The helpers may have moved the packet: its pointers are taken again.
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + L4_AT + 4 > end {
        return Err(DropReason::RewriteFailed);
    }
    unsafe {
        if s {
            *((data + ETH_HLEN + IP6_SADDR_OFF) as *mut Addr6) = to.saddr;
        }
        if d {
            *((data + ETH_HLEN + IP6_DADDR_OFF) as *mut Addr6) = to.daddr;
        }
        *((data + L4_AT) as *mut u16) = to.sport;
        *((data + L4_AT + 2) as *mut u16) = to.dport;
    }
    if sum != 0 {
        complete_sum_add(ctx, fold(sum));
    }
    Ok(())
}

/// Replaces the address at `field` (an offset in the IPv6 header), with the L4
/// checksum over it.
#[inline(always)]
pub fn addr(
    ctx: &TcContext,
    pkt: &Packet<Addr6>,
    field: usize,
    old: &Addr6,
    new: &Addr6,
) -> Result<(), DropReason> {
    let (off, extra) = l4_csum(pkt);
    if off != 0 {
        ctx.l4_csum_replace(off, 0, diff(old, new), BPF_F_PSEUDO_HDR as u64 | extra)
            .map_err(|_| DropReason::RewriteFailed)?;
    }
    // With `BPF_F_RECOMPUTE_CSUM` the store adds the address's change to a
    // CHECKSUM_COMPLETE skb's sum: the helper above took the pseudo-header's change
    // out of it, as is right for IPv4 (whose header checksum absorbs the address) and
    // wrong for IPv6 (Linux 6.16's `BPF_F_IPV6`). Together: the sum is unchanged, as
    // the packet's one's complement sum is.
    ctx.store(pkt.l3_off + field, new, BPF_F_RECOMPUTE_CSUM as u64)
        .map_err(|_| DropReason::RewriteFailed)
}

/// Replaces the 16-bit port or echo identifier at `at`, with the L4 checksum at `off`.
#[inline(always)]
fn port(
    ctx: &TcContext,
    off: usize,
    extra: u64,
    at: usize,
    old: u16,
    new: u16,
) -> Result<(), DropReason> {
    ctx.l4_csum_replace(off, old as u64, new as u64, extra | 2)
        .map_err(|_| DropReason::RewriteFailed)?;
    ctx.store(at, &new, 0)
        .map_err(|_| DropReason::RewriteFailed)
}

/// Stores an address inside an ICMPv6 error's payload (a quoted header), folding the
/// change into the outer ICMPv6 checksum at `icmp_csum` (payload bytes: no pseudo-header).
#[inline(always)]
pub fn icmp_payload_addr(
    ctx: &TcContext,
    icmp_csum: usize,
    at: usize,
    old: &Addr6,
    new: &Addr6,
) -> Result<(), DropReason> {
    ctx.l4_csum_replace(icmp_csum, 0, diff(old, new), 0)
        .map_err(|_| DropReason::RewriteFailed)?;
    ctx.store(at, new, 0).map_err(|_| DropReason::RewriteFailed)
}

/// A 16-bit checksum `check` after an address in its pseudo-header changed.
#[inline(always)]
pub fn csum_replace16(check: u16, old: &Addr6, new: &Addr6) -> u16 {
    let mut c = check;
    for i in 0..4 {
        c = csum_replace4(c, old[i], new[i]);
    }
    c
}
