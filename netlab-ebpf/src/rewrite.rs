//! Every change to a packet's addresses and ports goes through here, with its checksum
//! fixes done one way:
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
    conntrack::CtEntry,
    proto::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
    stats::DropReason,
};

use crate::parse::{IP_CHECK_OFF, IP_DADDR_OFF, IP_SADDR_OFF, Kind, Packet};

/// Offset of the L4 checksum, and the extra helper flags for that protocol.
#[inline(always)]
fn l4_csum(pkt: &Packet) -> (usize, u64) {
    match pkt.proto {
        IPPROTO_TCP => (pkt.l4_off + 16, 0),
        IPPROTO_UDP => (pkt.l4_off + 6, BPF_F_MARK_MANGLED_0 as u64),
        _ => (pkt.l4_off + 2, 0),
    }
}

/// Rewrites `pkt` to the translated tuple of `to`; fields that already match are left alone.
#[inline(always)]
pub fn apply(ctx: &TcContext, pkt: &Packet, to: &CtEntry) -> Result<(), DropReason> {
    if to.saddr != pkt.saddr {
        addr(ctx, pkt, IP_SADDR_OFF, pkt.saddr, to.saddr)?;
    }
    if to.daddr != pkt.daddr {
        addr(ctx, pkt, IP_DADDR_OFF, pkt.daddr, to.daddr)?;
    }
    if pkt.proto == IPPROTO_ICMP {
        // Echo: sport and dport both hold the identifier.
        if to.sport != pkt.sport {
            port(ctx, pkt, pkt.l4_off + 4, pkt.sport, to.sport)?;
        }
        return Ok(());
    }
    if to.sport != pkt.sport {
        port(ctx, pkt, pkt.l4_off, pkt.sport, to.sport)?;
    }
    if to.dport != pkt.dport {
        port(ctx, pkt, pkt.l4_off + 2, pkt.dport, to.dport)?;
    }
    Ok(())
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
