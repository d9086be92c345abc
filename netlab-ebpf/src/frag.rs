//! Fragmented datagrams: the first fragment is translated like any packet of its flow
//! and its translation remembered under the datagram's IP identifier; the fragments
//! after it get the same addresses (they carry no ports).

use aya_ebpf::programs::TcContext;
use netlab_common::{
    conntrack::CtEntry,
    frag::{FRAG_TIMEOUT_SECS, FragKey, FragNat},
    stats::counter,
};

use crate::{
    conntrack,
    maps::{self, Stats},
    parse::{IP_DADDR_OFF, IP_SADDR_OFF, Packet},
    rewrite,
    verdict::{PASS, Verdict},
};

#[inline(always)]
fn key(pkt: &Packet, zone: u8) -> FragKey {
    FragKey {
        saddr: pkt.saddr,
        daddr: pkt.daddr,
        // IPv4's identification is 16 bits: the upper half is 0.
        id: pkt.ip_id as u16,
        proto: pkt.proto,
        zone,
    }
}

/// After a first fragment was translated with `e` (at second `now`): remember it for
/// the rest.
#[inline(always)]
pub fn remember(pkt: &Packet, zone: u8, e: &CtEntry, now: u32) {
    if pkt.first_fragment {
        maps::frag_set(
            &key(pkt, zone),
            &FragNat {
                saddr: e.saddr,
                daddr: e.daddr,
                seen: now,
            },
        );
    }
}

/// A fragment after the first: translated like its first fragment, or `None` when
/// that one was not seen, or longer ago than the kernel keeps a datagram being
/// reassembled ([`FRAG_TIMEOUT_SECS`]): a fragment with the same identifier then is
/// another datagram's (one for the lab host itself, say), never a container's.
#[inline(always)]
pub fn translate_later(ctx: &TcContext, st: Stats, pkt: &Packet, zone: u8) -> Option<Verdict> {
    let nat = maps::frag_get(&key(pkt, zone))?;
    if conntrack::now().wrapping_sub(nat.seen) > FRAG_TIMEOUT_SECS {
        return None;
    }
    Some(rewrite_addrs(ctx, st, pkt, &nat))
}

#[inline(always)]
fn rewrite_addrs(ctx: &TcContext, st: Stats, pkt: &Packet, nat: &FragNat) -> Verdict {
    if nat.saddr != pkt.saddr {
        rewrite::addr(ctx, pkt, IP_SADDR_OFF, pkt.saddr, nat.saddr)?;
    }
    if nat.daddr != pkt.daddr {
        rewrite::addr(ctx, pkt, IP_DADDR_OFF, pkt.daddr, nat.daddr)?;
    }
    st.count(counter::FRAGMENTS_TRANSLATED);
    PASS
}
