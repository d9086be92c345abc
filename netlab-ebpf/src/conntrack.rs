//! Conntrack: lookup with in-kernel expiry, new flows with a unique translation, and the
//! TCP state machine that moves flows between the two tables.
//!
//! An established flow is found with one lookup in `CT`, which never evicts. Flows
//! being opened, unanswered datagrams and closing flows live in the LRU `CT_PENDING`,
//! where eviction may take one half of a flow and not the other: a hit there is trusted
//! only if the other half is there too and points back ([`HALF`] otherwise), so
//! a translation whose reserving half is gone is never used, and never given out twice.
//!
//! A flow moves to `CT` when it becomes assured (the opener's ACK of an answered
//! handshake; a UDP or ICMP exchange that goes on after its first answer) and back to
//! the LRU table when it closes (TIME_WAIT, reset), both halves together.
//!
//! Expiry needs no userspace sweeper: a lookup that finds a flow idle for longer than
//! its timeout (by protocol and state), or one whose published mapping was withdrawn,
//! deletes it and reports a miss; the garbage collector reclaims the rest.
//!
//! Races we accept (documented, as Cilium's conntrack.h does): two CPUs creating the same
//! new flow at once both try a translation; the second insert of the opening direction
//! fails with EEXIST and that CPU rolls back its reply entry and uses the winner's
//! entry. Counters, `last_seen` and the mirrored state are written without locks; a
//! lost update costs accuracy, never a translation.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{
        bpf_get_prandom_u32,
        generated::{bpf_ktime_get_coarse_ns, bpf_loop},
    },
    programs::TcContext,
};
use netlab_common::{
    config::Config,
    conntrack::{
        CtEntry, CtKey, FLAG_ACKED, FLAG_ASSURED, FLAG_ORIGIN, FLAG_SEEN_REPLY, FLAG_WSCALE,
        FLAGS_PER_DIRECTION, RST_CLOSES, RST_KEPT, RST_REFUSED, TCP_CLOSE_WAIT, TCP_ESTABLISHED,
        TCP_FIN_WAIT, TCP_NONE, TCP_SYN_SENT, TCP_TIME_WAIT, WSCALE_FIN, ZONE_FROM_CTR,
        ZONE_FROM_OUTSIDE, acks_the_syn, expired, fin_in_window, next_flags, offer, opening,
        rst_verdict, seq_after, tcp_closed, tcp_flags_valid, tcp_next_state, tcp_segment_fits,
    },
    nat::{SNAT_RETRIES, candidate_port},
    proto::{IPPROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, is_icmp},
    stats::{DropReason, counter},
};

use crate::{
    family::Family,
    host_sock,
    maps::{self, NewFlow, Stats, Table},
    parse::{NO_WSCALE, Packet},
    words,
};

/// Seconds of the coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`).
#[inline(always)]
pub fn now() -> u32 {
    (unsafe { bpf_ktime_get_coarse_ns() } / 1_000_000_000) as u32
}

/// What [`lookup`] found. A plain struct with every field always set (no enum
/// payloads or `Option`s): LLVM leaves the unused parts of those undefined, and the
/// verifier rejects a program that copies an undefined register.
#[derive(Clone, Copy)]
pub struct Hit<A = u32> {
    /// [`FOUND`], [`MISSING`] or [`HALF`].
    pub status: u8,
    pub table: Table,
    pub entry: *mut CtEntry<A>,
    /// The other half, when the lookup had to find it (pending flows); null otherwise.
    pub pair: *mut CtEntry<A>,
}

/// A live flow.
pub const FOUND: u8 = 0;
/// No flow.
pub const MISSING: u8 = 1;
/// Only one half of the flow was left; it is removed now.
pub const HALF: u8 = 2;

impl<A: Family> Hit<A> {
    /// Nothing looked up yet.
    #[inline(always)]
    pub fn empty() -> Self {
        Self::none(MISSING)
    }

    #[inline(always)]
    pub fn none(status: u8) -> Self {
        Self {
            status,
            table: Table::Pending,
            entry: core::ptr::null_mut(),
            pair: core::ptr::null_mut(),
        }
    }

    #[inline(always)]
    pub fn found(&self) -> bool {
        self.status == FOUND
    }
}

/// Whether an entry's flow is still alive: not idle too long (both ways), and its
/// published mapping, if any, not withdrawn.
#[inline(always)]
fn alive<A: Family>(
    cfg: &Config,
    st: Stats,
    key: &CtKey<A>,
    e: &CtEntry<A>,
    pair: *const CtEntry<A>,
    now: u32,
) -> bool {
    if e.pub_id != 0 && maps::mapping_gen(e.pub_id) != e.pub_gen {
        st.count(counter::CT_WITHDRAWN);
        return false;
    }
    if !expired(cfg, key.proto, e.state, e.flags, e.last_seen, now) {
        return true;
    }
    // A one-way stream keeps its flow alive through the busy direction.
    let pair = if pair.is_null() {
        A::ct_get(Table::Established, &e.pair_key(key.proto)).map(|p| unsafe { *p })
    } else {
        Some(unsafe { *pair })
    };
    let alive = pair.is_some_and(|p| !expired(cfg, key.proto, p.state, p.flags, p.last_seen, now));
    if !alive {
        st.count(counter::CT_EXPIRED);
    }
    alive
}

/// Finds the flow of `key`: one lookup in `CT` for an established flow; a pending flow
/// is checked for its other half. A dead flow is deleted (both halves) and missed.
#[inline(always)]
pub fn lookup<A: Family>(cfg: &Config, st: Stats, key: &CtKey<A>, now: u32) -> Hit<A> {
    if let Some(p) = A::ct_get(Table::Established, key) {
        let e = unsafe { &*p };
        if alive(cfg, st, key, e, core::ptr::null(), now) {
            return Hit {
                status: FOUND,
                table: Table::Established,
                entry: p,
                pair: core::ptr::null_mut(),
            };
        }
        A::ct_remove(st, Table::Established, &e.pair_key(key.proto));
        A::ct_remove(st, Table::Established, key);
        return Hit::none(MISSING);
    }
    let Some(p) = A::ct_get(Table::Pending, key) else {
        return Hit::none(MISSING);
    };
    let e = unsafe { &*p };
    let pair_key = e.pair_key(key.proto);
    let pair = match A::ct_get(Table::Pending, &pair_key) {
        Some(q) if unsafe { (*q).pair_key(key.proto) } == *key => q,
        _ => {
            A::ct_remove(st, Table::Pending, key);
            return Hit::none(HALF);
        }
    };
    if !alive(cfg, st, key, e, pair, now) {
        A::ct_remove(st, Table::Pending, &pair_key);
        A::ct_remove(st, Table::Pending, key);
        return Hit::none(MISSING);
    }
    Hit {
        status: FOUND,
        table: Table::Pending,
        entry: p,
        pair,
    }
}

/// Records a packet on `hit` (`key` is its key): counters, time, TCP window, state and
/// the flow's flags, mirrored into the other half when they change; moves the flow
/// between the tables when it becomes assured or closes. Leaves the entry to translate
/// with in `out` (a copy: the table's may move); a TCP reset outside its receiver's window is refused, and one in
/// it but not at an exact number is let through, changing nothing (see [`rst_verdict`]).
#[inline(always)]
pub fn touch<A: Family>(
    st: Stats,
    key: &CtKey<A>,
    hit: &Hit<A>,
    pkt: &Packet<A>,
    now: u32,
    out: &mut CtEntry<A>,
) -> Result<(), DropReason> {
    let e = unsafe { &mut *hit.entry };
    let tcp = key.proto == IPPROTO_TCP;
    // Flags no TCP sends, or a bare SYN from the responder of an answered flow:
    // nf_conntrack lets such a segment into no flow.
    if tcp
        && (!tcp_flags_valid(pkt.flags)
            || !tcp_segment_fits(e.state, pkt.flags, e.flags & FLAG_ORIGIN != 0))
    {
        return Err(DropReason::InvalidTcpFlags);
    }
    // The answer to a SYN that does not acknowledge it: a blind spoofer's.
    if tcp && !syn_acked(key, hit, e, pkt) {
        return Err(if pkt.flags & TCP_RST != 0 {
            DropReason::InvalidRst
        } else {
            DropReason::InvalidTcpFlags
        });
    }
    let mut reset_kept = false;
    if tcp {
        if pkt.flags & TCP_RST != 0 {
            match reset_verdict(key, hit, e, pkt) {
                RST_REFUSED => return Err(DropReason::InvalidRst),
                v => reset_kept = v == RST_KEPT,
            }
        }
        track_window(e, pkt);
        // The opener's SYN sent again while its flow opens (a retransmission, one
        // without the data a lost Fast Open SYN carried, another connection's on the
        // same ports with a lower number): its end is what the answer acknowledges.
        if opening(e.state)
            && e.flags & FLAG_ORIGIN != 0
            && pkt.flags & (TCP_SYN | TCP_ACK) == TCP_SYN
            && e.seq_end != pkt.seq_end
        {
            e.seq_end = pkt.seq_end;
        }
    }
    // A FIN outside its receiver's window closes nothing (the packet goes on as any
    // other of the flow): the state machine does not see it.
    let flags =
        if tcp && pkt.flags & (TCP_FIN | TCP_RST) == TCP_FIN && !fin_counts(key, hit, e, pkt) {
            pkt.flags & !TCP_FIN
        } else {
            pkt.flags
        };
    let first_in_second = e.last_seen != now;
    if first_in_second {
        e.last_seen = now;
    }
    // Plain adds: the BPF target has no atomic fetch-add in `core`; a lost update
    // between two CPUs costs a count, never a translation.
    e.packets = e.packets.wrapping_add(1);
    e.bytes += pkt.len as u64;
    maps::count_publish(e.pub_id, pkt.len);
    // A reset before any answer (the answer itself, or the opener giving up): the flow
    // goes at once, both halves, as nf_conntrack deletes one "whose only reply is a
    // RST"; the reset itself is translated as the flow says.
    if tcp && pkt.flags & TCP_RST != 0 && !reset_kept && e.flags & FLAG_SEEN_REPLY == 0 {
        words::copy(out, e);
        A::ct_remove(st, hit.table, &e.pair_key(key.proto));
        A::ct_remove(st, hit.table, key);
        st.count(counter::CT_RESET_UNANSWERED);
        return Ok(());
    }
    let from_origin = e.flags & FLAG_ORIGIN != 0;
    let mut state = if tcp && !reset_kept {
        tcp_next_state(e.state, flags, from_origin)
    } else {
        e.state
    };
    if tcp && closing_fin(e.state, flags) && e.wscale & WSCALE_FIN == 0 {
        e.wscale |= WSCALE_FIN;
    }
    // Two FINs that crossed on two CPUs each moved the flow one way closed; one of the
    // two states was kept. Both halves' marks say the flow is closed both ways.
    if tcp
        && (state == TCP_FIN_WAIT || state == TCP_CLOSE_WAIT)
        && e.wscale & WSCALE_FIN != 0
        && other_half_sent_fin(key, hit, e)
    {
        state = TCP_TIME_WAIT;
    }
    // A SYN that moves the handshake on (the opener's, reopening a closed flow; the
    // answer's SYN-ACK) says which window scale its side uses. Any other SYN (a
    // retransmission, or one thrown into an established flow) changes nothing.
    let handshake = tcp && pkt.flags & TCP_SYN != 0 && state != e.state;
    if handshake {
        e.seq_end = pkt.seq_end;
        if pkt.flags & TCP_ACK == 0 {
            e.flags &= !(FLAG_ACKED | FLAG_WSCALE);
        }
        e.wscale = 0;
        if pkt.wscale != NO_WSCALE {
            e.wscale = pkt.wscale;
            e.flags |= FLAG_WSCALE;
        }
    }
    let flags = next_flags(e.flags, key.proto, state, from_origin);
    if state == e.state && flags == e.flags {
        words::copy(out, e);
        if first_in_second && hit.table == Table::Pending && flags & FLAG_ASSURED != 0 {
            rescue(st, key, hit, out);
        }
        return Ok(());
    }
    let was_assured = e.flags & FLAG_ASSURED != 0;
    e.state = state;
    e.flags = flags;
    let pair_key = e.pair_key(key.proto);
    let pair = if hit.pair.is_null() {
        match A::ct_get(hit.table, &pair_key) {
            Some(p) => p,
            None => {
                words::copy(out, e);
                return Ok(());
            }
        }
    } else {
        hit.pair
    };
    let p = unsafe { &mut *pair };
    p.state = state;
    // The other half keeps its own direction's flags.
    p.flags = (flags & !FLAGS_PER_DIRECTION) | (p.flags & FLAGS_PER_DIRECTION);
    if handshake {
        if pkt.flags & TCP_ACK == 0 && from_origin {
            // The flow is opened again: nothing the other side offered before holds.
            p.flags &= !(FLAG_ACKED | FLAG_WSCALE);
            p.wscale = 0;
        } else if e.flags & p.flags & FLAG_WSCALE == 0 {
            // Windows are scaled only when both SYNs announced a scale.
            e.wscale = 0;
            p.wscale = 0;
        }
    }
    words::copy(out, e);
    let assured = flags & FLAG_ASSURED != 0;
    if assured != was_assured {
        let (from, to) = if assured {
            (Table::Pending, Table::Established)
        } else {
            (Table::Established, Table::Pending)
        };
        if hit.table == from {
            // The other half is inserted from its entry as it is (no copy on a stack
            // that the uplink's program, with its logs on, has 16 bytes of to spare).
            if move_flow(st, key, out, &pair_key, p, from, to) {
                st.count(if assured {
                    counter::CT_CONFIRMED
                } else {
                    counter::CT_CLOSED
                });
                if assured {
                    A::gc_track(st, key);
                }
            } else if assured {
                st.count(counter::CT_FULL);
            }
        }
    }
    Ok(())
}

/// A flow that became established while `CT` was full stays in the LRU table
/// (`ct_full`), where a flood of new flows could push it out. On its first packet of
/// each second it tries `CT` again (`out` is its entry, `hit` where it was found): once
/// there is room, it is as safe as the others. (Before, it stayed in the LRU table for
/// its whole life, a review.)
///
/// Racy as the move of a flow that becomes assured is: the two halves' first packets
/// of a second on two CPUs may both move it (the second insert overwrites the first's,
/// `ct_confirmed` counts it twice, the collector's queue holds its key twice, which
/// costs it one look more a round); a FIN handled on another CPU during the move may
/// be lost with the old entry, and the flow then ends by its established timeout.
#[inline(always)]
fn rescue<A: Family>(st: Stats, key: &CtKey<A>, hit: &Hit<A>, out: &CtEntry<A>) {
    // A flow found in the LRU table is found with its other half.
    if hit.pair.is_null() {
        return;
    }
    let pair_key = out.pair_key(key.proto);
    let p = unsafe { &*hit.pair };
    if move_flow(
        st,
        key,
        out,
        &pair_key,
        p,
        Table::Pending,
        Table::Established,
    ) {
        st.count(counter::CT_CONFIRMED);
        A::gc_track(st, key);
    }
}

/// Whether a segment with `flags` is a FIN that closes its direction of a flow in
/// `state` (established, or closing the other way already).
#[inline(always)]
fn closing_fin(state: u8, flags: u8) -> bool {
    flags & (TCP_FIN | TCP_RST) == TCP_FIN
        && (state == TCP_ESTABLISHED || state == TCP_FIN_WAIT || state == TCP_CLOSE_WAIT)
}

/// Whether the other half of the flow of `e` carries [`WSCALE_FIN`].
#[inline(always)]
fn other_half_sent_fin<A: Family>(key: &CtKey<A>, hit: &Hit<A>, e: &CtEntry<A>) -> bool {
    match other_half(key, hit, e) {
        Some(other) => unsafe { (*other).wscale & WSCALE_FIN != 0 },
        None => false,
    }
}

/// The other half of the flow of `e`: at hand for a flow being opened, looked up for
/// an established one; `None` when it cannot be found.
#[inline(always)]
fn other_half<A: Family>(key: &CtKey<A>, hit: &Hit<A>, e: &CtEntry<A>) -> Option<*mut CtEntry<A>> {
    if hit.pair.is_null() {
        A::ct_get(hit.table, &e.pair_key(key.proto))
    } else {
        Some(hit.pair)
    }
}

/// Whether a FIN from the side of `e` falls in the window the other side offered
/// ([`fin_in_window`]; its other half is looked up for FINs only). A flow whose other
/// half cannot be found has no window to hold the FIN to.
#[inline(always)]
fn fin_counts<A: Family>(key: &CtKey<A>, hit: &Hit<A>, e: &CtEntry<A>, pkt: &Packet<A>) -> bool {
    let Some(receiver) = other_half(key, hit, e) else {
        return true;
    };
    let r = unsafe { &*receiver };
    fin_in_window(
        r.flags & FLAG_ACKED != 0,
        r.ack_max,
        r.win_end,
        pkt.seq,
        pkt.seq_end,
    )
}

/// Whether a segment from the side of `e` acknowledges the opener's SYN where it
/// must ([`acks_the_syn`]; the other half is looked up only for the answering side of
/// a flow in SYN_SENT). A flow whose other half cannot be found has no SYN to hold it to.
#[inline(always)]
fn syn_acked<A: Family>(key: &CtKey<A>, hit: &Hit<A>, e: &CtEntry<A>, pkt: &Packet<A>) -> bool {
    let from_origin = e.flags & FLAG_ORIGIN != 0;
    if from_origin || !opening(e.state) {
        return true;
    }
    let Some(opener) = other_half(key, hit, e) else {
        return true;
    };
    acks_the_syn(e.state, from_origin, pkt.flags, pkt.ack, unsafe {
        (*opener).seq_end
    })
}

/// What a reset from the side of `e` does to the flow ([`rst_verdict`]), by the
/// window the other side offered (its other half is looked up for resets only). A
/// flow whose other half cannot be found has no window to hold the reset to.
#[inline(always)]
fn reset_verdict<A: Family>(key: &CtKey<A>, hit: &Hit<A>, e: &CtEntry<A>, pkt: &Packet<A>) -> u8 {
    let Some(receiver) = other_half(key, hit, e) else {
        return RST_CLOSES;
    };
    let r = unsafe { &*receiver };
    rst_verdict(
        r.flags & FLAG_ACKED != 0,
        r.ack_max,
        r.win_end,
        e.seq_end,
        pkt.seq,
        e.state,
        e.flags & FLAG_ORIGIN != 0,
    )
}

/// What a TCP segment with ACK set tells about the window its sender offers: the
/// acknowledgment and the right edge of the window.
#[inline(always)]
fn track_window<A: Family>(e: &mut CtEntry<A>, pkt: &Packet<A>) {
    if seq_after(pkt.seq_end, e.seq_end) {
        e.seq_end = pkt.seq_end;
    }
    let syn = pkt.flags & TCP_SYN != 0;
    if pkt.flags & TCP_ACK != 0 {
        // A SYN's own window is never scaled.
        let scale = if syn { 0 } else { e.wscale & 15 };
        let (ack_max, win_end) = offer(
            e.flags & FLAG_ACKED != 0,
            e.ack_max,
            e.win_end,
            pkt.ack,
            (pkt.win as u32) << scale,
        );
        e.ack_max = ack_max;
        e.win_end = win_end;
        e.flags |= FLAG_ACKED;
    }
}

/// Moves both halves of a flow from one table to the other; on failure the flow stays
/// where it was, whole.
#[inline(always)]
fn move_flow<A: Family>(
    st: Stats,
    key: &CtKey<A>,
    entry: &CtEntry<A>,
    pair_key: &CtKey<A>,
    pair: &CtEntry<A>,
    from: Table,
    to: Table,
) -> bool {
    if A::ct_insert(st, to, pair_key, pair, BPF_ANY as u64).is_err() {
        return false;
    }
    if A::ct_insert(st, to, key, entry, BPF_ANY as u64).is_err() {
        A::ct_remove(st, to, pair_key);
        return false;
    }
    A::ct_remove(st, from, pair_key);
    A::ct_remove(st, from, key);
    true
}

/// Writes into `out` the opening direction's entry of a new flow translating to
/// `(saddr, daddr, sport, dport)`, with the first packet already counted (in place: a
/// copy of an IPv6 entry on the stack costs 80 bytes).
#[inline(always)]
pub fn entry<A: Family>(
    out: &mut CtEntry<A>,
    to: (A, A, u16, u16),
    pair_zone: u8,
    pub_id: u32,
    pkt: &Packet<A>,
    now: u32,
) {
    let state = if pkt.proto == IPPROTO_TCP {
        TCP_SYN_SENT
    } else {
        TCP_NONE
    };
    let (wscale, flags) = if pkt.wscale != NO_WSCALE {
        (pkt.wscale, FLAG_ORIGIN | FLAG_WSCALE)
    } else {
        (0, FLAG_ORIGIN)
    };
    *out = CtEntry {
        saddr: to.0,
        daddr: to.1,
        sport: to.2,
        dport: to.3,
        pair_zone,
        state,
        flags,
        wscale,
        pub_id,
        pub_gen: if pub_id != 0 {
            maps::mapping_gen(pub_id)
        } else {
            0
        },
        created: now,
        last_seen: now,
        packets: 1,
        ack_max: 0,
        bytes: pkt.len as u64,
        win_end: 0,
        seq_end: pkt.seq_end,
    };
}

/// Inserts the new flow in `nf` into the pending table: `key -> out`, and its reply
/// direction. The reply entry goes in first, with `BPF_NOEXIST` (and only if `CT` does
/// not hold the same tuple): that insert is what reserves the translation. Leaves the
/// entry the packet is translated with in `nf.out`; returns whether the flow is this
/// packet's own (`false`: another CPU's, made first for the same packet's flow).
#[inline(always)]
pub fn create<A: Family>(
    ctx: &TcContext,
    cfg: &Config,
    st: Stats,
    nf: &mut NewFlow<A>,
    now: u32,
) -> Result<bool, DropReason> {
    if !(nf.alloc == 1 && reply_free(cfg, st, nf, now, false)) && !allocate(cfg, st, nf, now) {
        return Err(DropReason::PortsExhausted);
    }
    // A masqueraded flow's replies come from outside to the uplink's address: not on a
    // port a socket of the lab host holds.
    if nf.out.pair_zone == ZONE_FROM_OUTSIDE && host_sock::holds(ctx, nf.key.proto, &nf.out) {
        return Err(DropReason::PortsExhausted);
    }
    pair_into(nf);
    let reserved = A::ct_insert(
        st,
        Table::Pending,
        &nf.reply_key,
        &nf.reply,
        BPF_NOEXIST as u64,
    )
    .is_ok();
    if reserved && A::ct_insert(st, Table::Pending, &nf.key, &nf.out, BPF_NOEXIST as u64).is_ok() {
        return Ok(true);
    }
    // Another CPU made this flow at the same moment: resolved as the kernel's conntrack
    // resolves such a clash, by taking its flow.
    if reserved {
        // Its half went in first, with another translation: ours is undone.
        A::ct_remove(st, Table::Pending, &nf.reply_key);
    }
    if let Some(theirs) = A::ct_get(Table::Pending, &nf.key) {
        words::copy(&mut nf.out, unsafe { &*theirs });
    } else if !reserved && points_back::<A>(&nf.reply_key, &nf.key) {
        // It reserved this very translation for this very flow, and its half is not in
        // yet: the translation is the one in `nf.out`.
    } else {
        // Another flow took the translation between our lookup and insert.
        return Err(DropReason::CtInsertFailed);
    }
    st.count(counter::CT_CLASH_RESOLVED);
    Ok(false)
}

/// Whether the pending entry under `reply_key` is the reply half of the flow `key`
/// (it translates back to `key`'s tuple).
#[inline(always)]
fn points_back<A: Family>(reply_key: &CtKey<A>, key: &CtKey<A>) -> bool {
    A::ct_get(Table::Pending, reply_key).is_some_and(|r| unsafe { &*r }.pair_key(key.proto) == *key)
}

/// Whether the reply tuple of `nf.out` is free in both tables and is not the flow's
/// own opening tuple (hairpin from a container to itself, from its published port,
/// with a NAT port equal to that port); leaves it in `nf.reply_key`. With `reclaim`, a
/// whole flow of the LRU table found dead there (idle past its timeout both ways, or
/// its mapping withdrawn) is removed and its tuple taken: nothing else removes it but a
/// packet of its own or an eviction (the collector walks `CT`, which it keeps clean),
/// and until then its NAT port would stay taken, long after `conntrack` stopped listing
/// it. A lone half still holds its tuple: it may be a flow another CPU is inserting.
#[inline(always)]
fn reply_free<A: Family>(
    cfg: &Config,
    st: Stats,
    nf: &mut NewFlow<A>,
    now: u32,
    reclaim: bool,
) -> bool {
    nf.reply_key = nf.out.pair_key(nf.key.proto);
    if nf.reply_key == nf.key || A::ct_get(Table::Established, &nf.reply_key).is_some() {
        return false;
    }
    match A::ct_get(Table::Pending, &nf.reply_key) {
        None => true,
        Some(p) => reclaim && dead_removed(cfg, st, &nf.reply_key, p, now),
    }
}

/// [`reply_free`] without taking anything back: a pending flow holding the tuple that
/// may give it up is noted in `nf.fallback` as candidate `attempt`, if none is yet.
#[inline(always)]
fn reply_free_noting<A: Family>(cfg: &Config, nf: &mut NewFlow<A>, attempt: u32) -> bool {
    // The reply key written in place and compared field by field: this runs in a
    // `bpf_loop` callback below the NAT's frame, whose own frame must stay small (6.1
    // counts the whole chain into its 512 bytes).
    let (k, o) = (&mut nf.reply_key, &nf.out);
    words::addr(&mut k.saddr, &o.daddr);
    words::addr(&mut k.daddr, &o.saddr);
    (k.sport, k.dport) = (o.dport, o.sport);
    (k.proto, k.zone) = (nf.key.proto, o.pair_zone);
    let (k, n) = (&nf.reply_key, &nf.key);
    let own = k.saddr == n.saddr
        && k.daddr == n.daddr
        && k.sport == n.sport
        && k.dport == n.dport
        && k.zone == n.zone;
    if own || A::ct_get(Table::Established, &nf.reply_key).is_some() {
        return false;
    }
    match A::ct_get(Table::Pending, &nf.reply_key) {
        None => true,
        Some(p) => {
            if nf.fallback >= SNAT_RETRIES && may_give_up(cfg, nf, unsafe { &*p }) {
                nf.fallback = attempt;
            }
            false
        }
    }
}

/// Whether the pending flow whose half `e` holds `nf.reply_key` may give it up to new
/// flow `nf`: this half idle past its timeout (the other half is looked at later), or
/// a closed masqueraded connection that `nf`'s SYN may take over ([`taken_over`]).
#[inline(always)]
fn may_give_up<A: Family>(cfg: &Config, nf: &mut NewFlow<A>, e: &CtEntry<A>) -> bool {
    let proto = nf.key.proto;
    expired(cfg, proto, e.state, e.flags, e.last_seen, nf.now) || taken_over(nf, e)
}

/// Whether new TCP connection `nf` may take over `nf.reply_key` from the flow whose
/// reply half `e` holds it (its opening key left in `nf.other_key`), as nf_nat does when it finds no port free
/// (`nf_nat_used_tuple_harder`): `e` is the reply half of a masqueraded (not
/// published) connection that is closed (TIME_WAIT, or reset: `nf_nat_may_kill`), and
/// `nf`'s SYN comes after that connection's last segment in sequence space
/// (`nf_seq_has_advanced`: an old segment still in flight cannot be taken for the new
/// connection's).
#[inline(always)]
fn taken_over<A: Family>(nf: &mut NewFlow<A>, e: &CtEntry<A>) -> bool {
    let proto = nf.key.proto;
    if proto != IPPROTO_TCP
        || !tcp_closed(e.state)
        || e.flags & FLAG_ORIGIN != 0
        || e.pair_zone != ZONE_FROM_CTR
        || e.pub_id != 0
    {
        return false;
    }
    // Word by word: an address assigned whole is a call of bpf-linker's `memmove`, a
    // subprogram whose frame would count into this callback's chain.
    let k = &mut nf.other_key;
    words::addr(&mut k.saddr, &e.daddr);
    words::addr(&mut k.daddr, &e.saddr);
    (k.sport, k.dport) = (e.dport, e.sport);
    (k.proto, k.zone) = (proto, e.pair_zone);
    let Some(opener) = A::ct_get(Table::Pending, &nf.other_key) else {
        return false;
    };
    // It translates back to the reply tuple (compared field by field: a key made to
    // compare with would take 40 bytes of this callback's stack).
    let (o, r) = (unsafe { &*opener }, &nf.reply_key);
    o.daddr == r.saddr
        && o.saddr == r.daddr
        && o.dport == r.sport
        && o.sport == r.dport
        && o.pair_zone == r.zone
        && seq_after(nf.out.seq_end, o.seq_end)
        && (e.state != TCP_TIME_WAIT || fins_acked(o, e))
}

/// Whether each side of a flow in TIME_WAIT (`o` the opener's half, `e` the reply's)
/// has acknowledged everything the other sent, its FIN included: nf_conntrack's
/// TIME_WAIT, which the two FINs alone do not make (`LAST_ACK` until the last is
/// acknowledged). Until then the last FIN's sender is still sending it again, and a
/// connection that took the tuple over would receive it.
#[inline(always)]
fn fins_acked<A: Family>(o: &CtEntry<A>, e: &CtEntry<A>) -> bool {
    o.flags & e.flags & FLAG_ACKED != 0
        && !seq_after(e.seq_end, o.ack_max)
        && !seq_after(o.seq_end, e.ack_max)
}

/// After [`allocate`]'s candidates were all taken: the one noted in `nf.fallback`, if
/// its flow still gives it up — dead (removed as [`reply_free`] removes the first
/// candidate's), or a closed connection [`taken_over`], its two halves removed.
#[inline(always)]
fn take_over<A: Family>(cfg: &Config, st: Stats, nf: &mut NewFlow<A>, now: u32) -> bool {
    let attempt = nf.fallback;
    if attempt >= SNAT_RETRIES {
        return false;
    }
    try_port(cfg, nf, attempt);
    if reply_free(cfg, st, nf, now, true) {
        return true;
    }
    let Some(p) = A::ct_get(Table::Pending, &nf.reply_key) else {
        return false;
    };
    if !taken_over(nf, unsafe { &*p }) {
        return false;
    }
    A::ct_remove(st, Table::Pending, &nf.other_key);
    A::ct_remove(st, Table::Pending, &nf.reply_key);
    st.count(counter::CT_TAKEN_OVER);
    true
}

/// Whether the pending flow whose half `p` is `key` is whole and dead; it is then
/// removed, both halves. A flow whose half here is neither idle too long nor withdrawn
/// is alive, and its other half is not looked up: a lookup marks an LRU entry as used,
/// and would keep old flows from eviction at the expense of new ones.
#[inline(always)]
fn dead_removed<A: Family>(
    cfg: &Config,
    st: Stats,
    key: &CtKey<A>,
    p: *mut CtEntry<A>,
    now: u32,
) -> bool {
    let e = unsafe { &*p };
    let withdrawn = e.pub_id != 0 && maps::mapping_gen(e.pub_id) != e.pub_gen;
    if !withdrawn && !expired(cfg, key.proto, e.state, e.flags, e.last_seen, now) {
        return false;
    }
    let pair_key = e.pair_key(key.proto);
    let pair = match A::ct_get(Table::Pending, &pair_key) {
        Some(q) if unsafe { (*q).pair_key(key.proto) } == *key => q,
        _ => return false,
    };
    if alive(cfg, st, key, e, pair, now) {
        return false;
    }
    A::ct_remove(st, Table::Pending, &pair_key);
    A::ct_remove(st, Table::Pending, key);
    true
}

/// Picks a source port (the echo identifier for ICMP) from the NAT range whose reply
/// tuple is free: linear probing from a random start, [`SNAT_RETRIES`] tries. The
/// first port tried is taken from a dead flow holding it (see [`reply_free`]); when
/// every candidate is taken, the first one whose flow may give it up is
/// ([`take_over`]): a dead one, or a closed masqueraded TCP connection's.
///
/// The other candidates are tried in a `bpf_loop` callback, which the verifier checks
/// once, where a loop here would be walked again for every path into it.
#[inline(always)]
fn allocate<A: Family>(cfg: &Config, st: Stats, nf: &mut NewFlow<A>, now: u32) -> bool {
    nf.start = unsafe { bpf_get_prandom_u32() };
    nf.fallback = SNAT_RETRIES;
    try_port(cfg, nf, 0);
    if reply_free(cfg, st, nf, now, true) {
        return true;
    }
    // The callback finds the slot and the configuration itself: a context on this
    // stack would count into 6.1's 512 bytes of the whole call chain.
    nf.now = now;
    unsafe {
        bpf_loop(
            SNAT_RETRIES - 1,
            probe_step::<A> as *const () as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
    }
    if nf.fallback == PORT_FOUND {
        return true;
    }
    take_over(cfg, st, nf, now)
}

/// In `NewFlow::fallback`: a free port is in `out`.
const PORT_FOUND: u32 = u32::MAX;

/// Candidate `index + 1` of [`allocate`]'s, in the family's `NewFlow` slot: free (stop,
/// `PORT_FOUND`), or noted if its flow may give it up.
extern "C" fn probe_step<A: Family>(index: u64, _ctx: *mut c_void) -> i64 {
    let Some(nf) = A::new_flow() else {
        return 1;
    };
    let nf = unsafe { &mut *nf };
    let cfg = maps::config();
    let attempt = index as u32 + 1;
    try_port(cfg, nf, attempt);
    if reply_free_noting(cfg, nf, attempt) {
        nf.fallback = PORT_FOUND;
        return 1;
    }
    0
}

/// Puts the `attempt`th candidate port of [`allocate`] in `nf.out`.
#[inline(always)]
fn try_port<A: Family>(cfg: &Config, nf: &mut NewFlow<A>, attempt: u32) {
    let port = candidate_port(cfg.nat_port_min, cfg.nat_port_max, nf.start, attempt).to_be();
    nf.out.sport = port;
    if is_icmp(nf.key.proto) {
        nf.out.dport = port;
    }
}

/// Fills `nf.reply_key` and `nf.reply`: the other direction of `nf.key -> nf.out`,
/// keyed by the translated tuple reversed, translating back to the key reversed.
#[inline(always)]
fn pair_into<A: Family>(nf: &mut NewFlow<A>) {
    let (k, e) = (&nf.key, &nf.out);
    nf.reply_key = e.pair_key(k.proto);
    nf.reply.saddr = k.daddr;
    nf.reply.daddr = k.saddr;
    nf.reply.sport = k.dport;
    nf.reply.dport = k.sport;
    nf.reply.pair_zone = k.zone;
    nf.reply.state = e.state;
    nf.reply.flags = e.flags & !FLAGS_PER_DIRECTION;
    nf.reply.wscale = 0;
    nf.reply.pub_id = e.pub_id;
    nf.reply.pub_gen = e.pub_gen;
    nf.reply.created = e.created;
    nf.reply.last_seen = e.last_seen;
    // Volatile: zero stores in a row become a call to a byte-by-byte memset.
    unsafe {
        core::ptr::write_volatile(&mut nf.reply.packets, 0);
        core::ptr::write_volatile(&mut nf.reply.ack_max, 0);
        core::ptr::write_volatile(&mut nf.reply.bytes, 0);
        core::ptr::write_volatile(&mut nf.reply.win_end, 0);
        core::ptr::write_volatile(&mut nf.reply.seq_end, 0);
    }
}
