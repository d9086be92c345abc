//! ICMP errors (destination unreachable, time exceeded) about a masqueraded flow.
//!
//! The error arrives addressed to the uplink and quotes the packet we sent: its inner
//! source is uplink:NAT-port. Translating it back means rewriting the outer destination
//! and the quoted source address and port, and every checksum those bytes are under:
//! the outer IPv4 header, the quoted IPv4 header, the quoted L4 checksum when it was
//! quoted, and the outer ICMP checksum, which covers everything after it. That is what
//! makes `traceroute`, port-unreachable and path-MTU discovery work through the NAT.

use aya_ebpf::programs::TcContext;
use netlab_common::{
    config::Config,
    conntrack::{CtKey, ZONE_UPLINK_IN},
    nat::{csum_replace2, csum_replace4},
    proto::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
    stats::{DropReason, counter},
};

use crate::{
    conntrack, maps,
    parse::{self, IP_CHECK_OFF, IP_DADDR_OFF, IP_SADDR_OFF, Packet},
    rewrite,
    verdict::{PASS, Verdict},
};

#[inline(always)]
pub fn translate_error(ctx: &TcContext, cfg: &Config, outer: &Packet) -> Verdict {
    let Some(inner) = parse::icmp_inner(ctx, outer)? else {
        maps::count(counter::PASS_UNTRACKED);
        return PASS;
    };
    if inner.saddr != cfg.uplink_addr {
        maps::count(counter::PASS_UNTRACKED);
        return PASS;
    }
    // The quoted packet went out; its reply direction is the tuple reversed.
    let key = CtKey::new(
        inner.daddr,
        inner.saddr,
        inner.dport,
        inner.sport,
        inner.proto,
        ZONE_UPLINK_IN,
    );
    let Some(hit) = conntrack::lookup(cfg, &key, conntrack::now()) else {
        maps::count(counter::PASS_UNTRACKED);
        return PASS;
    };
    let to = unsafe { *hit.entry };
    let (ctr_addr, ctr_port) = (to.daddr, to.dport);
    let icmp_csum = outer.l4_off + 2;

    // Outer destination: IPv4 header checksum only (ICMP has no pseudo-header).
    rewrite::addr(ctx, outer, IP_DADDR_OFF, outer.daddr, ctr_addr)?;

    // Quoted source address, and the quoted IPv4 checksum that covers it.
    let old_check: u16 = ctx
        .load(inner.l3_off + IP_CHECK_OFF)
        .map_err(|_| DropReason::Truncated)?;
    let new_check = csum_replace4(old_check, inner.saddr, ctr_addr);
    rewrite::icmp_payload32(
        ctx,
        icmp_csum,
        inner.l3_off + IP_SADDR_OFF,
        inner.saddr,
        ctr_addr,
    )?;
    rewrite::icmp_payload16(
        ctx,
        icmp_csum,
        inner.l3_off + IP_CHECK_OFF,
        old_check,
        new_check,
    )?;

    // Quoted source port (or echo id), and the quoted L4 checksum when it is there.
    let (port_at, l4_check_at, pseudo) = match inner.proto {
        IPPROTO_TCP => (inner.l4_off, inner.l4_off + 16, true),
        IPPROTO_UDP => (inner.l4_off, inner.l4_off + 6, true),
        IPPROTO_ICMP => (inner.l4_off + 4, inner.l4_off + 2, false),
        _ => return PASS,
    };
    if let Ok(old_l4) = ctx.load::<u16>(l4_check_at) {
        // A UDP checksum of 0 means "none": leave it.
        if !(inner.proto == IPPROTO_UDP && old_l4 == 0) {
            let mut new_l4 = csum_replace2(old_l4, inner.sport, ctr_port);
            if pseudo {
                new_l4 = csum_replace4(new_l4, inner.saddr, ctr_addr);
            }
            rewrite::icmp_payload16(ctx, icmp_csum, l4_check_at, old_l4, new_l4)?;
        }
    }
    rewrite::icmp_payload16(ctx, icmp_csum, port_at, inner.sport, ctr_port)?;
    maps::count(counter::ICMP_ERRORS_TRANSLATED);
    PASS
}
