//! ICMPv6 errors (destination unreachable, packet too big, time exceeded, parameter
//! problem) about a tracked flow, both ways, as `icmp` does for IPv4: packet too big
//! above all, since IPv6 routers never fragment and path MTU discovery through the NAT
//! works only if it is translated.
//!
//! The quote is rewritten to what the other side of the NAT sent, and the outer
//! addresses to match, with every checksum over those bytes: the outer ICMPv6 checksum
//! (which covers its pseudo-header and the whole quote) and the quoted L4 checksum
//! when it was quoted (TCP's, UDP's and ICMPv6's all cover the quoted addresses).

use aya_ebpf::programs::TcContext;
use netlab_common::{
    addr::Addr6,
    conntrack::{CtKey, ZONE_FROM_CTR, ZONE_FROM_OUTSIDE, quote_fits},
    nat::csum_replace2,
    proto::{IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
    stats::{DropReason, counter},
};

use crate::{
    conntrack,
    icmp::Sender,
    maps::{self, Stats},
    parse::Packet,
    parse6::{self, IP6_DADDR_OFF, IP6_SADDR_OFF},
    rewrite, rewrite6,
    verdict::{self, PASS, Verdict},
};

/// Translates an ICMPv6 error about a tracked flow, sent by `sender`; the TC action.
/// A BPF subprogram: see `uplink6::from_container`.
#[inline(never)]
pub fn translate_error(ctx: &TcContext, st: Stats, outer: &Packet<Addr6>, sender: Sender) -> i32 {
    verdict::finish(translate(ctx, st, outer, sender))
}

#[inline(always)]
fn translate(ctx: &TcContext, st: Stats, outer: &Packet<Addr6>, sender: Sender) -> Verdict {
    let cfg = maps::config();
    let from_ctr = matches!(sender, Sender::Container | Sender::ContainerToHost);
    let to_host = matches!(sender, Sender::Host | Sender::ContainerToHost);
    let inner = match parse6::icmp6_inner(ctx, outer) {
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
    let (qsrc, qdst, qsport, qdport) = (e.daddr, e.saddr, e.dport, e.sport);
    if from_ctr && outer.saddr != e.saddr {
        rewrite6::addr(ctx, outer, IP6_SADDR_OFF, &outer.saddr, &e.saddr)?;
    }
    if outer.daddr != e.daddr {
        rewrite6::addr(ctx, outer, IP6_DADDR_OFF, &outer.daddr, &e.daddr)?;
    }
    let icmp_csum = outer.l4_off + 2;
    quoted_addr(ctx, icmp_csum, q, IP6_SADDR_OFF, &q.saddr, &qsrc)?;
    quoted_addr(ctx, icmp_csum, q, IP6_DADDR_OFF, &q.daddr, &qdst)?;
    if q.proto == IPPROTO_ICMPV6 {
        quoted_port(ctx, icmp_csum, q, q.l4_off + 4, q.sport, qsport)?;
    } else {
        quoted_port(ctx, icmp_csum, q, q.l4_off, q.sport, qsport)?;
        quoted_port(ctx, icmp_csum, q, q.l4_off + 2, q.dport, qdport)?;
    }
    st.count(counter::ICMP_ERRORS_TRANSLATED);
    PASS
}

/// Offset of the quoted L4 checksum (each of them covers the quoted addresses).
#[inline(always)]
fn quoted_l4_check(q: &Packet<Addr6>) -> usize {
    match q.proto {
        IPPROTO_TCP => q.l4_off + 16,
        IPPROTO_UDP => q.l4_off + 6,
        _ => q.l4_off + 2,
    }
}

/// Where the quoted L4 checksum is and its value, when it was quoted (and for UDP is
/// not 0, "none"); offset 0 otherwise (a plain pair: see `rewrite6::l4_csum`).
#[inline(always)]
fn quoted_check(ctx: &TcContext, q: &Packet<Addr6>) -> (usize, u16) {
    let at = quoted_l4_check(q);
    if at + 2 > q.end {
        return (0, 0);
    }
    match ctx.load::<u16>(at) {
        Ok(check) if q.proto != IPPROTO_UDP || check != 0 => (at, check),
        _ => (0, 0),
    }
}

/// Stores a quoted L4 checksum that became `fixed` (a UDP 0 written as 0xffff).
#[inline(always)]
fn store_check(
    ctx: &TcContext,
    icmp_csum: usize,
    q: &Packet<Addr6>,
    at: usize,
    check: u16,
    mut fixed: u16,
) -> Result<(), DropReason> {
    if q.proto == IPPROTO_UDP && fixed == 0 {
        fixed = 0xffff;
    }
    rewrite::icmp_payload16(ctx, icmp_csum, at, check, fixed)
}

/// Rewrites a quoted address, with the quoted L4 checksum.
#[inline(always)]
fn quoted_addr(
    ctx: &TcContext,
    icmp_csum: usize,
    q: &Packet<Addr6>,
    field: usize,
    old: &Addr6,
    new: &Addr6,
) -> Result<(), DropReason> {
    if old == new {
        return Ok(());
    }
    rewrite6::icmp_payload_addr(ctx, icmp_csum, q.l3_off + field, old, new)?;
    let (at, check) = quoted_check(ctx, q);
    if at != 0 {
        store_check(
            ctx,
            icmp_csum,
            q,
            at,
            check,
            rewrite6::csum_replace16(check, old, new),
        )?;
    }
    Ok(())
}

/// Rewrites a quoted port (or echo identifier) at `at`, with the quoted L4 checksum.
#[inline(always)]
fn quoted_port(
    ctx: &TcContext,
    icmp_csum: usize,
    q: &Packet<Addr6>,
    at: usize,
    old: u16,
    new: u16,
) -> Result<(), DropReason> {
    if old == new {
        return Ok(());
    }
    let (c_at, check) = quoted_check(ctx, q);
    if c_at != 0 {
        store_check(
            ctx,
            icmp_csum,
            q,
            c_at,
            check,
            csum_replace2(check, old, new),
        )?;
    }
    rewrite::icmp_payload16(ctx, icmp_csum, at, old, new)
}
