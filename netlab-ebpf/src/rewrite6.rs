//! Every change to an IPv6 packet's addresses and ports, with its checksum fixes. IPv6
//! has no header checksum; TCP, UDP and ICMPv6 all cover the addresses in their
//! pseudo-header, so an address change goes into the L4 checksum as one 16-byte
//! difference (computed here, as `bpf_csum_diff` would give it, without the helper's
//! call) with `BPF_F_PSEUDO_HDR`, which `bpf_l4_csum_replace` applies right
//! for CHECKSUM_PARTIAL skbs too (and the address's store keeps a CHECKSUM_COMPLETE
//! skb's sum right: see [`addr`]); a port or echo identifier as a 16-bit change.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_F_RECOMPUTE_CSUM},
    programs::TcContext,
};
use netlab_common::{
    addr::Addr6,
    conntrack::CtEntry,
    nat::csum_replace4,
    proto::{IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
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
    // Eight 32-bit words fit in 35 bits: two folds with their carries make 32.
    s = (s & 0xffff_ffff) + (s >> 32);
    (s & 0xffff_ffff) + (s >> 32)
}

/// Rewrites `pkt` to the translated tuple of `to` (what already matches is left alone).
#[inline(always)]
pub fn apply(ctx: &TcContext, pkt: &Packet<Addr6>, to: &CtEntry<Addr6>) -> Result<(), DropReason> {
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
