//! IPv6's fragmented datagrams, as [`crate::frag`] handles IPv4's: the first fragment
//! is translated like any packet of its flow (its L4 checksum covers the whole
//! datagram, so the incremental update stays right) and its translation remembered
//! under the fragment header's identification, in `FRAGS6`; the fragments after it
//! get the same addresses. They carry no L4 header and IPv6 has no header checksum:
//! nothing else of them changes.

use aya_ebpf::{macros::map, maps::PerCpuArray, programs::TcContext};
use netlab_common::{
    addr::Addr6,
    conntrack::CtEntry,
    frag::{FRAG6_TIMEOUT_SECS, FragKey6, FragNat6},
    stats::counter,
};

use crate::{
    conntrack,
    maps::{self, Stats},
    parse::Packet,
    parse6::{IP6_DADDR_OFF, IP6_SADDR_OFF},
    rewrite6,
    verdict::{self, PASS, UNSEEN, Verdict},
};

/// A datagram's key and translation while they are worked on: in a per-CPU slot, not
/// on the stack (76 bytes the IPv6 programs' call chains do not have).
#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    key: FragKey6,
    nat: FragNat6,
}

#[map(name = "FRAG6_SLOT")]
static SLOT: PerCpuArray<Slot> = PerCpuArray::with_max_entries(1, 0);

/// Fills `key` with the datagram of `pkt` (untranslated), as seen in `zone`.
#[inline(always)]
fn key_into(key: &mut FragKey6, pkt: &Packet<Addr6>, zone: u8) {
    key.saddr = pkt.saddr;
    key.daddr = pkt.daddr;
    key.id = pkt.ip_id;
    key.proto = pkt.frag_proto;
    key.zone = zone;
    // Hashed with the rest: never left as the slot's last key had it.
    key._pad = [0; 2];
}

/// After a first fragment was translated with `e`: remembers it for the rest, as seen
/// when its flow last was (now). Nothing for a packet that is not one.
#[inline(always)]
pub fn remember(pkt: &Packet<Addr6>, zone: u8, e: &CtEntry<Addr6>) {
    if !pkt.first_fragment {
        return;
    }
    let Some(slot) = SLOT.get_ptr_mut(0) else {
        return;
    };
    let s = unsafe { &mut *slot };
    key_into(&mut s.key, pkt, zone);
    s.nat.saddr = e.saddr;
    s.nat.daddr = e.daddr;
    s.nat.seen = e.last_seen;
    maps::frag6_set(&s.key, &s.nat);
}

/// A fragment after the first (`pkt`, seen in `zone`): translated like its first
/// fragment (the TC action, a drop counted), or `None` when that one was not seen, or
/// longer ago than the kernel keeps a datagram being reassembled
/// ([`FRAG6_TIMEOUT_SECS`]): a fragment with the same identification then is another
/// datagram's (one for the lab host, say), never a container's. The caller decides
/// what such a fragment is, as IPv4's hooks do.
#[inline(always)]
pub fn translate_later(
    ctx: &TcContext,
    st: Stats,
    pkt: &Packet<Addr6>,
    zone: u8,
) -> Option<Verdict> {
    match later(ctx, st, pkt, zone) {
        UNSEEN => None,
        action => Some(Ok(action)),
    }
}

/// [`translate_later`] as a BPF subprogram, which returns a plain number: the TC
/// action, or [`UNSEEN`]. Its frame is then not added to the NAT's call chain.
#[inline(never)]
fn later(ctx: &TcContext, st: Stats, pkt: &Packet<Addr6>, zone: u8) -> i32 {
    let Some(slot) = SLOT.get_ptr_mut(0) else {
        return UNSEEN;
    };
    let s = unsafe { &mut *slot };
    key_into(&mut s.key, pkt, zone);
    let Some(nat) = maps::frag6_get(&s.key) else {
        return UNSEEN;
    };
    // A copy: another CPU may replace the table's entry meanwhile.
    s.nat = unsafe { *nat };
    if conntrack::now().wrapping_sub(s.nat.seen) > FRAG6_TIMEOUT_SECS {
        return UNSEEN;
    }
    verdict::finish(rewrite_addrs(ctx, st, pkt, &s.nat))
}

#[inline(always)]
fn rewrite_addrs(ctx: &TcContext, st: Stats, pkt: &Packet<Addr6>, nat: &FragNat6) -> Verdict {
    // No L4 header here: `rewrite6::addr` stores the address and touches no checksum.
    if nat.saddr != pkt.saddr {
        rewrite6::addr(ctx, pkt, IP6_SADDR_OFF, &pkt.saddr, &nat.saddr)?;
    }
    if nat.daddr != pkt.daddr {
        rewrite6::addr(ctx, pkt, IP6_DADDR_OFF, &pkt.daddr, &nat.daddr)?;
    }
    st.count(counter::FRAGMENTS_TRANSLATED);
    PASS
}
