//! ICMP errors (destination unreachable, time exceeded, parameter problem) about a
//! tracked flow, both ways: an error from outside about a packet the lab sent
//! (`traceroute`, port unreachable, path-MTU discovery through the NAT), an error a
//! container sends about a packet it received (port unreachable to a client of a
//! published UDP port, or to another container through hairpin), and one
//! the lab host itself sends about a packet it was handed already translated (time
//! exceeded for a packet whose TTL ran out there), whose quote would otherwise show the
//! container's address.
//!
//! The error quotes the packet as it was on the error sender's side of the NAT; the
//! datapath rewrites the quote to what the other side sent, and the outer addresses to
//! match, with every checksum those bytes are under: the outer IPv4 header, the quoted
//! IPv4 header, the quoted L4 checksum when it was quoted, and the outer ICMP checksum,
//! which covers everything after it.

use aya_ebpf::programs::TcContext;
use netlab_common::{
    config::Config,
    conntrack::{CtKey, ZONE_FROM_CTR, ZONE_FROM_OUTSIDE, quote_fits},
    nat::{csum_replace2, csum_replace4},
    proto::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
    stats::{DropReason, counter},
};

use crate::{
    conntrack,
    maps::Stats,
    parse::{self, IP_CHECK_OFF, IP_DADDR_OFF, IP_SADDR_OFF, Packet},
    rewrite,
    verdict::{PASS, Verdict},
};

/// Who sent an ICMP error.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A container (seen leaving the lab): the outer source becomes the flow's.
    Container,
    /// Someone outside (arrived on the uplink).
    Outside,
    /// The lab host itself, leaving by the uplink: only the quote is the flow's; an
    /// error it cannot place is the host's own business, passed.
    Host,
    /// A container, to an address of the lab host (at the bridge): about a hairpin
    /// flow (the target's error to the NAT address, the client's about a reply), it is
    /// translated as a container's; about anything else it is the container's business
    /// with the host, passed.
    ContainerToHost,
}

/// Translates an ICMP error about a tracked flow, sent by `sender`.
#[inline(always)]
pub fn translate_error(
    ctx: &TcContext,
    cfg: &Config,
    st: Stats,
    outer: &Packet,
    sender: Sender,
) -> Verdict {
    // The outer source is rewritten to the flow's when a container sent the error;
    // only an error bound out of the lab must be placed or dropped.
    let from_ctr = matches!(sender, Sender::Container | Sender::ContainerToHost);
    let to_host = matches!(sender, Sender::Host | Sender::ContainerToHost);
    let inner = match parse::icmp_inner(ctx, outer) {
        Err(_) if to_host => return PASS,
        r => r?,
    };
    // An error about no flow of ours.
    let untracked = || {
        if sender == Sender::Container {
            // Never leak a container's address in an error nobody can place.
            return Err(DropReason::UnsupportedProtocol);
        }
        st.count(counter::PASS_UNTRACKED);
        PASS
    };
    // An error goes to the source of the packet it quotes: one addressed elsewhere is
    // about none of ours (nf_conntrack's check in `nf_conntrack_inet_error`).
    let Some(q) = inner.filter(|q| q.saddr == outer.daddr) else {
        return untracked();
    };
    // The quoted packet went the other way; its reverse is a packet of our side.
    let zone = if sender == Sender::Outside {
        ZONE_FROM_OUTSIDE
    } else {
        ZONE_FROM_CTR
    };
    let key = CtKey::new(q.daddr, q.saddr, q.dport, q.sport, q.proto, zone);
    let hit = conntrack::lookup(cfg, st, &key, conntrack::now());
    if !hit.found() {
        return untracked();
    }
    let e = unsafe { *hit.entry };
    if !quote_fits(q.proto, q.flags, e.flags) {
        return untracked();
    }
    // What the quote becomes, and the outer addresses.
    let (qsrc, qdst, qsport, qdport) = (e.daddr, e.saddr, e.dport, e.sport);
    if from_ctr && outer.saddr != e.saddr {
        rewrite::addr(ctx, outer, IP_SADDR_OFF, outer.saddr, e.saddr)?;
    }
    if outer.daddr != e.daddr {
        rewrite::addr(ctx, outer, IP_DADDR_OFF, outer.daddr, e.daddr)?;
    }
    let icmp_csum = outer.l4_off + 2;
    quoted_addr(ctx, icmp_csum, &q, IP_SADDR_OFF, q.saddr, qsrc)?;
    quoted_addr(ctx, icmp_csum, &q, IP_DADDR_OFF, q.daddr, qdst)?;
    if q.proto == IPPROTO_ICMP {
        // Echo: the identifier is both "ports".
        quoted_port(ctx, icmp_csum, &q, q.l4_off + 4, q.sport, qsport)?;
    } else {
        quoted_port(ctx, icmp_csum, &q, q.l4_off, q.sport, qsport)?;
        quoted_port(ctx, icmp_csum, &q, q.l4_off + 2, q.dport, qdport)?;
    }
    st.count(counter::ICMP_ERRORS_TRANSLATED);
    PASS
}

/// Offset of the quoted L4 checksum, and whether it covers the addresses.
#[inline(always)]
fn quoted_l4_check(q: &Packet) -> (usize, bool) {
    match q.proto {
        IPPROTO_TCP => (q.l4_off + 16, true),
        IPPROTO_UDP => (q.l4_off + 6, true),
        _ => (q.l4_off + 2, false),
    }
}

/// Updates the quoted L4 checksum (when it was quoted, and for UDP when it is not 0,
/// "none") for a change of `old` to `new` (`wide`: a 32-bit address in its
/// pseudo-header; otherwise a 16-bit port).
#[inline(always)]
fn quoted_l4(
    ctx: &TcContext,
    icmp_csum: usize,
    q: &Packet,
    old: u32,
    new: u32,
    wide: bool,
) -> Result<(), DropReason> {
    let (at, pseudo) = quoted_l4_check(q);
    if (wide && !pseudo) || at + 2 > q.end {
        // Not covered, or not quoted this far.
        return Ok(());
    }
    let Ok(check) = ctx.load::<u16>(at) else {
        return Ok(());
    };
    if q.proto == IPPROTO_UDP && check == 0 {
        return Ok(());
    }
    let mut fixed = if wide {
        csum_replace4(check, old, new)
    } else {
        csum_replace2(check, old as u16, new as u16)
    };
    if q.proto == IPPROTO_UDP && fixed == 0 {
        // 0 is "no checksum" in UDP: a computed 0 is sent as 0xffff (the same in one's
        // complement), and the next update must not take it for "none".
        fixed = 0xffff;
    }
    rewrite::icmp_payload16(ctx, icmp_csum, at, check, fixed)
}

/// Rewrites a quoted address, with the quoted IPv4 and L4 checksums.
#[inline(always)]
fn quoted_addr(
    ctx: &TcContext,
    icmp_csum: usize,
    q: &Packet,
    field: usize,
    old: u32,
    new: u32,
) -> Result<(), DropReason> {
    if old == new {
        return Ok(());
    }
    let ip_check: u16 = ctx
        .load(q.l3_off + IP_CHECK_OFF)
        .map_err(|_| DropReason::Truncated)?;
    rewrite::icmp_payload32(ctx, icmp_csum, q.l3_off + field, old, new)?;
    rewrite::icmp_payload16(
        ctx,
        icmp_csum,
        q.l3_off + IP_CHECK_OFF,
        ip_check,
        csum_replace4(ip_check, old, new),
    )?;
    quoted_l4(ctx, icmp_csum, q, old, new, true)
}

/// Rewrites a quoted port (or echo identifier) at `at`, with the quoted L4 checksum.
#[inline(always)]
fn quoted_port(
    ctx: &TcContext,
    icmp_csum: usize,
    q: &Packet,
    at: usize,
    old: u16,
    new: u16,
) -> Result<(), DropReason> {
    if old == new {
        return Ok(());
    }
    quoted_l4(ctx, icmp_csum, q, old as u32, new as u32, false)?;
    rewrite::icmp_payload16(ctx, icmp_csum, at, old, new)
}
