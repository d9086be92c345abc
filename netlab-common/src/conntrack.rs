//! Connection tracking: entries, the TCP state machine, timeouts.
//!
//! A flow is tracked as two entries, one per direction, each keyed by the tuple *as a
//! packet of that direction carries it before translation*, in the zone of where it
//! comes from: [`ZONE_FROM_CTR`] for what a container sends (seen at its veth, at the
//! bridge or at the uplink's egress: every hook uses the same key), [`ZONE_FROM_OUTSIDE`]
//! for what arrives on the uplink. The entry says what to rewrite the packet to. For a
//! masqueraded flow from 172.18.0.2:45000 to 203.0.113.1:80 leaving as 198.51.100.2:P:
//!
//! ```text
//! FROM_CTR      172.18.0.2:45000 -> 203.0.113.1:80   => rewrite src to 198.51.100.2:P
//! FROM_OUTSIDE  203.0.113.1:80 -> 198.51.100.2:P     => rewrite dst to 172.18.0.2:45000
//! ```
//!
//! The reply direction's key is what makes a translation unique: it is inserted first,
//! with `BPF_NOEXIST`, and a NAT port is taken only if that insert succeeds.
//!
//! Two tables: flows that are not (yet, or any more) established live in an LRU table
//! (`CT_PENDING`: handshakes, unanswered datagrams, closing flows), established ones in
//! a hash table that never evicts (`CT`). A flood of half-open flows therefore churns
//! only the first; an established flow leaves the second only when it closes, expires
//! or is withdrawn. Both halves of a flow are always in the same table.

use crate::addr::Addr6;

/// Where a packet comes from; part of the key so that the tuples of the two sides
/// never collide.
pub const ZONE_FROM_CTR: u8 = 1;
pub const ZONE_FROM_OUTSIDE: u8 = 2;

/// Conntrack key: the 5-tuple as the packet carries it, plus the zone. Addresses and
/// ports in network byte order; for ICMP echo both ports hold the echo identifier
/// (the "port" of an ICMP flow), as Linux and Cilium do. `A` is the address: `u32`
/// for IPv4 (`CT`, `CT_PENDING`), [`Addr6`] for IPv6 (`CT6`, `CT6_PENDING`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct CtKey<A = u32> {
    pub saddr: A,
    pub daddr: A,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub zone: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<CtKey>() == 16);
const _: () = assert!(core::mem::size_of::<CtKey<Addr6>>() == 40);

impl<A: Copy> CtKey<A> {
    pub const fn new(saddr: A, daddr: A, sport: u16, dport: u16, proto: u8, zone: u8) -> Self {
        Self {
            saddr,
            daddr,
            sport,
            dport,
            proto,
            zone,
            _pad: [0; 2],
        }
    }
}

/// Conntrack entry: the translated tuple for one direction of a flow, the flow's state
/// (the same in both entries), and this direction's counters and TCP window.
///
/// The packet is rewritten to `(saddr, daddr, sport, dport)`; fields equal to the key
/// are left alone. The other direction's key is this tuple reversed, in `pair_zone`
/// ([`CtEntry::pair_key`]), so either entry finds the other.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CtEntry<A = u32> {
    /// Translated tuple, network byte order.
    pub saddr: A,
    pub daddr: A,
    pub sport: u16,
    pub dport: u16,
    /// Zone of the paired (other direction's) entry.
    pub pair_zone: u8,
    /// TCP state ([`TCP_SYN_SENT`]...), 0 for UDP and ICMP.
    pub state: u8,
    /// [`FLAG_ORIGIN`], [`FLAG_SEEN_REPLY`], [`FLAG_ASSURED`], [`FLAG_STREAM`],
    /// [`FLAG_ACKED`], [`FLAG_WSCALE`].
    pub flags: u8,
    /// TCP: the window scale this direction announced in its SYN (used once both sides
    /// announced one, as the kernel does).
    pub wscale: u8,
    /// The published mapping this flow goes through (`MAPPINGS` index), 0 if none.
    pub pub_id: u32,
    /// The mapping's generation when the flow began: a withdrawn mapping's flows are dead.
    pub pub_gen: u32,
    /// Seconds of the coarse monotonic clock when the flow began.
    pub created: u32,
    /// Seconds of the coarse monotonic clock of this direction's last packet; written
    /// only when it changes. A flow expires when both directions are idle too long.
    pub last_seen: u32,
    pub packets: u32,
    /// TCP, host byte order: the highest acknowledgment this direction has sent (what it
    /// expects next from the other side, RCV.NXT) ...
    pub ack_max: u32,
    pub bytes: u64,
    /// ... and the right edge of the window it has offered (acknowledgment plus scaled
    /// window): what the other side may send is between the two. See [`rst_verdict`].
    pub win_end: u32,
    /// TCP: one past the last sequence number this direction has sent (its SND.NXT):
    /// a reset it sends at exactly that number closes the flow (see [`rst_verdict`]).
    pub seq_end: u32,
}
const _: () = assert!(core::mem::size_of::<CtEntry>() == 56);
const _: () = assert!(core::mem::size_of::<CtEntry<Addr6>>() == 80);

impl<A: Copy> CtEntry<A> {
    /// The key of the other direction of this flow.
    pub const fn pair_key(&self, proto: u8) -> CtKey<A> {
        CtKey::new(
            self.daddr,
            self.saddr,
            self.dport,
            self.sport,
            proto,
            self.pair_zone,
        )
    }
}

/// On the entry of the direction that opened the flow.
pub const FLAG_ORIGIN: u8 = 1;
/// The reply direction has carried a packet.
pub const FLAG_SEEN_REPLY: u8 = 2;
/// Established (TCP) or a two-way stream (UDP, ICMP): the flow lives in `CT`.
pub const FLAG_ASSURED: u8 = 4;
/// A packet of either direction after the first reply: what makes a UDP or ICMP flow a
/// stream (it is then assured).
pub const FLAG_STREAM: u8 = 8;
/// TCP: this direction has sent an ACK, so `ack_max` and `win_end` hold its window.
pub const FLAG_ACKED: u8 = 16;
/// TCP: this direction's SYN carried the window scale option (in `wscale`).
pub const FLAG_WSCALE: u8 = 32;
/// In [`CtEntry::wscale`] (whose scale is its low four bits): this direction has sent
/// a FIN since the flow was established. Written only by this direction's packets and
/// never mirrored, so that FINs crossing on two CPUs both leave their mark where the
/// flow's state, written by both without a lock, may keep only one; a flow closing
/// one way whose two halves both carry it has closed both ways ([`TCP_TIME_WAIT`]).
pub const WSCALE_FIN: u8 = 0x80;
/// The flags every packet of a flow may change; the TCP window flags are per direction
/// and never copied to the other half.
pub const FLAGS_PER_DIRECTION: u8 = FLAG_ORIGIN | FLAG_ACKED | FLAG_WSCALE;

/// Whether an error may quote a packet of protocol `proto` (for an ICMP echo message,
/// of type `quoted_type`) about the flow whose entry, of the direction opposite to the
/// quoted packet's, carries `entry_flags`. Echo requests go the way a ping flow was
/// opened and replies come back, and nf_conntrack's ICMP tuples carry the type: an
/// error quoting an echo reply where the flow's requests went, or a request where its
/// replies came back, is about no flow (ip6tables drops it).
pub const fn quote_fits(proto: u8, quoted_type: u8, entry_flags: u8) -> bool {
    if !crate::proto::is_icmp(proto) {
        return true;
    }
    let quoted_was_request = entry_flags & FLAG_ORIGIN == 0;
    quoted_type
        == if quoted_was_request {
            crate::proto::echo_request(proto)
        } else {
            crate::proto::echo_reply(proto)
        }
}

/// TCP states. Numbers are stable (they are in pinned maps); `netlab conntrack` shows
/// the names.
pub const TCP_NONE: u8 = 0;
pub const TCP_SYN_SENT: u8 = 1;
pub const TCP_ESTABLISHED: u8 = 2;
/// FIN from the side that opened the flow.
pub const TCP_FIN_WAIT: u8 = 3;
/// Reset.
pub const TCP_CLOSE: u8 = 4;
/// The SYN was answered with SYN-ACK; the opener's ACK is still to come.
pub const TCP_SYN_RECV: u8 = 5;
/// FIN from the side that answered.
pub const TCP_CLOSE_WAIT: u8 = 6;
/// FINs both ways.
pub const TCP_TIME_WAIT: u8 = 7;
/// Simultaneous open: the other side sent a SYN of its own to the opener's; a SYN-ACK
/// from either side makes it SYN_RECV.
pub const TCP_SYN_SENT2: u8 = 8;

/// The name `netlab conntrack` shows for a TCP state, as nf_conntrack names them.
pub const fn tcp_state_name(s: u8) -> &'static str {
    match s {
        TCP_SYN_SENT => "SYN_SENT",
        TCP_SYN_SENT2 => "SYN_SENT2",
        TCP_SYN_RECV => "SYN_RECV",
        TCP_ESTABLISHED => "ESTABLISHED",
        TCP_FIN_WAIT => "FIN_WAIT",
        TCP_CLOSE_WAIT => "CLOSE_WAIT",
        TCP_TIME_WAIT => "TIME_WAIT",
        TCP_CLOSE => "CLOSE",
        _ => "NONE",
    }
}

/// Next TCP state of a flow after a packet with `flags` (byte 13 of the TCP header),
/// sent by the side that opened the flow (`from_origin`) or by the other one.
///
/// nf_conntrack's machine, without its sequence-window checks: only the opener's SYN
/// starts a flow (the datapath opens TCP flows on a SYN only), only the answer's
/// SYN-ACK makes it SYN_RECV, only the opener's ACK after that establishes it; a bare
/// SYN from the other side to the opener's (simultaneous open) makes it SYN_SENT2,
/// and a SYN-ACK from either side then SYN_RECV. FINs
/// close it one side at a time; RST closes it (a reset's window checks are
/// [`rst_verdict`]'s). A new SYN from the opener reopens a flow
/// that is closed or in TIME_WAIT.
pub const fn tcp_next_state(state: u8, flags: u8, from_origin: bool) -> u8 {
    use crate::proto::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
    let syn = flags & TCP_SYN != 0;
    let ack = flags & TCP_ACK != 0;
    if flags & TCP_RST != 0 {
        return TCP_CLOSE;
    }
    if syn {
        return match (state, from_origin, ack) {
            (TCP_NONE | TCP_SYN_SENT | TCP_TIME_WAIT | TCP_CLOSE, true, false) => TCP_SYN_SENT,
            (TCP_SYN_SENT, false, false) => TCP_SYN_SENT2,
            (TCP_SYN_SENT | TCP_SYN_RECV | TCP_SYN_SENT2, false, true) => TCP_SYN_RECV,
            (TCP_SYN_SENT2, true, true) => TCP_SYN_RECV,
            _ => state,
        };
    }
    if flags & TCP_FIN != 0 {
        return match (state, from_origin) {
            (TCP_ESTABLISHED | TCP_SYN_RECV, true) => TCP_FIN_WAIT,
            (TCP_ESTABLISHED, false) => TCP_CLOSE_WAIT,
            (TCP_CLOSE_WAIT, true) | (TCP_FIN_WAIT, false) => TCP_TIME_WAIT,
            _ => state,
        };
    }
    match state {
        TCP_SYN_RECV if from_origin && ack => TCP_ESTABLISHED,
        _ => state,
    }
}

/// `a` comes after `b` in TCP sequence space (the kernel's `after()`).
pub const fn seq_after(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) < 0
}

/// The window a direction offers after a segment it sent with ACK set: `(ack_max,
/// win_end)` move forward to `ack` and `ack + window` (`win` shifted by the scale in
/// force; a SYN's window is never scaled), never back. `acked`: whether the direction
/// had sent an ACK before (otherwise the segment's values are taken as they are).
pub const fn offer(acked: bool, ack_max: u32, win_end: u32, ack: u32, win: u32) -> (u32, u32) {
    let end = ack.wrapping_add(win);
    if !acked {
        return (ack, end);
    }
    (
        if seq_after(ack, ack_max) {
            ack
        } else {
            ack_max
        },
        if seq_after(end, win_end) {
            end
        } else {
            win_end
        },
    )
}

/// A reset refused: outside the window, the flow ignores it and it is dropped.
pub const RST_REFUSED: u8 = 0;
/// A reset let through that leaves the flow as it is: its receiver answers it with a
/// challenge ACK (RFC 5961), and a reset from the real peer follows at the exact number.
pub const RST_KEPT: u8 = 1;
/// A reset that ends the flow.
pub const RST_CLOSES: u8 = 2;

/// What a reset does to a flow, by nf_conntrack's rule (`nf_conntrack_tcp_packet` and
/// `tcp_in_window`). Its sequence number must fall in the window its receiver offered,
/// no earlier than the receiver's highest acknowledgment (`ack_max`, the kernel's
/// `td_maxack`) and no later than the right edge of that window (`win_end`, the
/// sender's `td_maxend`); otherwise it is refused, so that a blind attacker cannot
/// tear a connection down. In an established flow only a reset at exactly the
/// acknowledged number, or at exactly the sender's own next number (`sender_end`: the
/// kernel's "RST is part of a train" case, a sender resetting right after its data),
/// closes the flow; one elsewhere in the window is kept (passed, the state unchanged).
/// In-window resets of a flow that is not established close it too.
///
/// Before the receiver has acknowledged anything (`acked` false: the flow is being
/// opened) there is no window to hold a reset to, and it must carry the exact numbers
/// the handshake has made known, as the receiver's own stack requires (RFC 793's
/// SYN-SENT and SYN-RECEIVED checks), or it is refused: the answer to the opener's SYN
/// (from the other side, `from_origin` false, the flow in SYN_SENT or SYN_SENT2) is
/// held to its acknowledgment, exactly the SYN's end ([`acks_the_syn`], checked
/// before), whatever its sequence number (0 from Linux, as RFC 793 has it for a reset
/// to a segment without ACK; an opener in SYN-SENT reads only the acknowledgment); any
/// other comes at exactly its sender's next number. nf_conntrack takes an answer
/// without ACK, and holds any other reset only to the sender's window: eBPF is
/// stricter, as the endpoints are.
pub const fn rst_verdict(
    acked: bool,
    ack_max: u32,
    win_end: u32,
    sender_end: u32,
    seq: u32,
    state: u8,
    from_origin: bool,
) -> u8 {
    if !acked {
        let answer = !from_origin && opening(state);
        return if answer || seq == sender_end {
            RST_CLOSES
        } else {
            RST_REFUSED
        };
    }
    if seq_after(ack_max, seq) || seq_after(seq, win_end) {
        return RST_REFUSED;
    }
    if state != TCP_ESTABLISHED || seq == ack_max || seq == sender_end {
        return RST_CLOSES;
    }
    RST_KEPT
}

/// Whether a TCP segment's flags are a combination TCP sends, by nf_conntrack's table
/// (`tcp_valid_flags`, PSH, ECE and CWR aside): SYN, SYN-ACK, RST, RST-ACK, FIN-ACK,
/// ACK, each also with URG but RST. Any other (none at all, FIN without ACK, SYN with
/// FIN or RST, ...) is invalid, and nf_conntrack lets it into no flow.
pub const fn tcp_flags_valid(flags: u8) -> bool {
    use crate::proto::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
    const URG: u8 = 0x20;
    let f = flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK | URG);
    f == TCP_SYN
        || f == TCP_SYN | URG
        || f == TCP_SYN | TCP_ACK
        || f == TCP_RST
        || f == TCP_RST | TCP_ACK
        || f == TCP_FIN | TCP_ACK
        || f == TCP_FIN | TCP_ACK | URG
        || f == TCP_ACK
        || f == TCP_ACK | URG
}

/// How far before the end of the SYN the answer's acknowledgment may be: nf_conntrack's
/// `MAXACKWINCONST` (the bound when the answer's own window is smaller). A SYN that
/// carried data (TCP Fast Open) may be answered with an acknowledgment of the SYN
/// alone, before the data.
pub const SYN_ACK_WINDOW: u32 = 66_000;

/// Whether a segment with `flags` and acknowledgment number `ack` acknowledges the
/// opener's SYN (`syn_end`: one past its latest, its data included) where it must,
/// sent by the side that did not open a flow still in SYN_SENT (or SYN_SENT2: a SYN
/// of that side's own, which a spoofer can send too, does not let its answers off). A
/// SYN-ACK must acknowledge no later than that and no more than [`SYN_ACK_WINDOW`]
/// before it, nf_conntrack's bounds (`tcp_in_window`). A reset must carry ACK with exactly that number, as a
/// reset answering a segment acknowledges all of it (RFC 793), where nf_conntrack
/// takes the same bounds, an acknowledgment of 0 and no ACK at all: eBPF is stricter,
/// as the opener's stack is. Any other segment, from either side and in any other
/// state, is not held to it. One that does not is refused: a blind spoofer's SYN-ACK
/// would otherwise move the flow on and its reset end it.
pub const fn acks_the_syn(state: u8, from_origin: bool, flags: u8, ack: u32, syn_end: u32) -> bool {
    use crate::proto::{TCP_ACK, TCP_RST, TCP_SYN};
    let syn_ack = flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN | TCP_ACK;
    let rst = flags & TCP_RST != 0;
    if from_origin || !opening(state) || !(syn_ack || rst) {
        return true;
    }
    if rst {
        return flags & TCP_ACK != 0 && ack == syn_end;
    }
    let lowest = syn_end.wrapping_sub(SYN_ACK_WINDOW + 1);
    !seq_after(ack, syn_end) && !seq_after(lowest, ack)
}

/// Whether a flow in `state` waits for the answer to its opener's SYN.
pub const fn opening(state: u8) -> bool {
    state == TCP_SYN_SENT || state == TCP_SYN_SENT2
}

/// Whether a segment with valid `flags` ([`tcp_flags_valid`]) fits the state of its
/// flow, by nf_conntrack's table: a bare SYN (no ACK) from the side that did not open
/// the flow is invalid (`sIV`) once the flow is past its opening SYN (answered,
/// established, closing or reset), but for TIME_WAIT, which it reopens. A SYN-ACK
/// there is ignored, and anything from the opener goes through the state machine.
pub const fn tcp_segment_fits(state: u8, flags: u8, from_origin: bool) -> bool {
    use crate::proto::{TCP_ACK, TCP_SYN};
    let bare_syn = flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    !(bare_syn
        && !from_origin
        && matches!(
            state,
            TCP_SYN_RECV | TCP_ESTABLISHED | TCP_FIN_WAIT | TCP_CLOSE_WAIT | TCP_CLOSE
        ))
}

/// Whether a FIN (sent at `seq`, its segment ending before `seq_end`) falls in the
/// window its receiver offered, as a reset must ([`rst_verdict`]): not all of it
/// acknowledged already (`ack_max`), and not past the window's right edge
/// (`win_end`). One outside is not taken as closing its direction (nf_conntrack marks
/// it invalid and the flow stays as it was), so that a blind attacker cannot move an
/// established flow to a closing state and its short timeout. Before the receiver has
/// acknowledged anything there is no window to hold it to.
pub const fn fin_in_window(
    acked: bool,
    ack_max: u32,
    win_end: u32,
    seq: u32,
    seq_end: u32,
) -> bool {
    !acked || (seq_after(seq_end, ack_max) && !seq_after(seq, win_end))
}

/// Whether a TCP state has ended the connection: the flow leaves `CT` for the LRU table.
pub const fn tcp_closed(state: u8) -> bool {
    matches!(state, TCP_TIME_WAIT | TCP_CLOSE)
}

/// The flags of a flow after a packet of one direction: a reply marks it seen, any
/// packet after that (of either direction, as nf_conntrack's UDP counts them) makes it
/// a stream, and an established TCP flow or a two-way UDP or ICMP stream is assured (it
/// belongs in `CT`).
pub const fn next_flags(flags: u8, proto: u8, state: u8, from_origin: bool) -> u8 {
    let mut f = flags;
    if f & FLAG_SEEN_REPLY != 0 {
        f |= FLAG_STREAM;
    }
    if !from_origin {
        f |= FLAG_SEEN_REPLY;
    }
    let assured = if proto == crate::proto::IPPROTO_TCP {
        f & FLAG_SEEN_REPLY != 0 && matches!(state, TCP_ESTABLISHED | TCP_FIN_WAIT | TCP_CLOSE_WAIT)
    } else {
        f & FLAG_STREAM != 0
    };
    if assured {
        f |= FLAG_ASSURED;
    } else {
        f &= !FLAG_ASSURED;
    }
    f
}

/// Seconds a flow lives after its last packet, by protocol, state and flags.
pub const fn timeout_secs(cfg: &crate::config::Config, proto: u8, state: u8, flags: u8) -> u32 {
    match proto {
        crate::proto::IPPROTO_TCP => match state {
            TCP_ESTABLISHED => cfg.tcp_established_secs,
            TCP_SYN_SENT | TCP_SYN_RECV | TCP_SYN_SENT2 => cfg.tcp_syn_secs,
            TCP_TIME_WAIT => cfg.tcp_time_wait_secs,
            TCP_CLOSE => cfg.tcp_close_secs,
            _ => cfg.tcp_fin_secs,
        },
        crate::proto::IPPROTO_UDP => {
            if flags & FLAG_ASSURED != 0 {
                cfg.udp_stream_secs
            } else {
                cfg.udp_secs
            }
        }
        _ => cfg.icmp_secs,
    }
}

/// Whether a flow last seen at `last_seen` (seconds) has expired at `now`.
pub const fn expired(
    cfg: &crate::config::Config,
    proto: u8,
    state: u8,
    flags: u8,
    last_seen: u32,
    now: u32,
) -> bool {
    now > last_seen && now - last_seen > timeout_secs(cfg, proto, state, flags)
}

#[cfg(test)]
mod tests {

    #[test]
    fn tcp_flags_as_nf_conntrack_takes_them() {
        const URG: u8 = 0x20;
        const PSH: u8 = 0x08;
        for ok in [
            TCP_SYN,
            TCP_SYN | TCP_ACK,
            TCP_SYN | URG,
            TCP_RST,
            TCP_RST | TCP_ACK,
            TCP_RST | TCP_ACK | PSH,
            TCP_FIN | TCP_ACK,
            TCP_FIN | TCP_ACK | PSH | URG,
            TCP_ACK,
            TCP_ACK | PSH,
            TCP_ACK | URG | 0x40 | 0x80,
        ] {
            assert!(tcp_flags_valid(ok), "{ok:#04x}");
        }
        for bad in [
            0,
            TCP_FIN,
            TCP_FIN | PSH | URG,
            TCP_SYN | TCP_FIN,
            TCP_SYN | TCP_RST,
            TCP_RST | TCP_FIN | TCP_ACK,
            TCP_RST | URG,
            PSH,
        ] {
            assert!(!tcp_flags_valid(bad), "{bad:#04x}");
        }
    }

    #[test]
    fn a_bare_syn_from_the_responder_fits_only_an_opening_or_time_wait() {
        use crate::proto::{TCP_ACK, TCP_SYN};
        for state in [
            TCP_SYN_RECV,
            TCP_ESTABLISHED,
            TCP_FIN_WAIT,
            TCP_CLOSE_WAIT,
            TCP_CLOSE,
        ] {
            assert!(!tcp_segment_fits(state, TCP_SYN, false), "{state}");
            assert!(tcp_segment_fits(state, TCP_SYN, true), "{state}");
            assert!(tcp_segment_fits(state, TCP_SYN | TCP_ACK, false), "{state}");
            assert!(tcp_segment_fits(state, TCP_ACK, false), "{state}");
        }
        for state in [TCP_NONE, TCP_SYN_SENT, TCP_TIME_WAIT] {
            assert!(tcp_segment_fits(state, TCP_SYN, false), "{state}");
        }
    }

    #[test]
    fn a_fin_counts_only_inside_its_receivers_window() {
        // The receiver acknowledged up to 1000 and offered a window up to 5000.
        let fin = |seq: u32, len: u32| fin_in_window(true, 1000, 5000, seq, seq + len + 1);
        assert!(fin(1000, 0), "at the acknowledged number");
        assert!(fin(900, 200), "data partly acknowledged, the FIN new");
        assert!(fin(5000, 0), "at the window's edge");
        assert!(!fin(998, 0), "all of it acknowledged already");
        assert!(!fin(3_000_000_000, 0), "far outside");
        assert!(!fin(5001, 0), "past the edge");
        assert!(
            fin_in_window(false, 0, 0, 3_000_000_000, 3_000_000_001),
            "no window yet"
        );
    }
    use super::*;
    use crate::proto::{IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

    const O: bool = true;
    const R: bool = false;

    #[test]
    fn only_the_openers_ack_establishes() {
        let s = tcp_next_state(TCP_NONE, TCP_SYN, O);
        assert_eq!(s, TCP_SYN_SENT);
        // An answer that is not a SYN-ACK does not move it; the SYN-ACK does.
        assert_eq!(tcp_next_state(s, TCP_ACK, R), TCP_SYN_SENT);
        let s = tcp_next_state(s, TCP_SYN | TCP_ACK, R);
        assert_eq!(s, TCP_SYN_RECV);
        // A second SYN-ACK, or the opener's SYN again, is not the ACK.
        assert_eq!(tcp_next_state(s, TCP_SYN | TCP_ACK, R), TCP_SYN_RECV);
        assert_eq!(tcp_next_state(s, TCP_ACK, R), TCP_SYN_RECV);
        assert_eq!(tcp_next_state(s, TCP_ACK, O), TCP_ESTABLISHED);
    }

    #[test]
    fn a_syn_from_the_other_side_opens_nothing() {
        assert_eq!(tcp_next_state(TCP_NONE, TCP_ACK, O), TCP_NONE);
        assert_eq!(tcp_next_state(TCP_ESTABLISHED, TCP_SYN, O), TCP_ESTABLISHED);
    }

    #[test]
    fn a_simultaneous_open_is_established() {
        // Both SYNs cross (nf_conntrack's SYN_SENT2), then a SYN-ACK from either side.
        let s = tcp_next_state(TCP_SYN_SENT, TCP_SYN, R);
        assert_eq!(s, TCP_SYN_SENT2);
        assert_eq!(tcp_next_state(s, TCP_SYN, O), TCP_SYN_SENT2);
        assert_eq!(tcp_next_state(s, TCP_SYN, R), TCP_SYN_SENT2);
        assert_eq!(tcp_next_state(s, TCP_ACK, R), TCP_SYN_SENT2);
        for side in [O, R] {
            let s = tcp_next_state(s, TCP_SYN | TCP_ACK, side);
            assert_eq!(s, TCP_SYN_RECV);
            assert_eq!(tcp_next_state(s, TCP_ACK, O), TCP_ESTABLISHED);
        }
        assert_eq!(tcp_state_name(TCP_SYN_SENT2), "SYN_SENT2");
    }

    #[test]
    fn fins_close_one_side_at_a_time() {
        let s = tcp_next_state(TCP_ESTABLISHED, TCP_FIN | TCP_ACK, R);
        assert_eq!(s, TCP_CLOSE_WAIT);
        assert_eq!(tcp_next_state(s, TCP_ACK, O), TCP_CLOSE_WAIT);
        assert_eq!(tcp_next_state(s, TCP_FIN | TCP_ACK, O), TCP_TIME_WAIT);
        let s = tcp_next_state(TCP_ESTABLISHED, TCP_FIN | TCP_ACK, O);
        assert_eq!(s, TCP_FIN_WAIT);
        assert_eq!(tcp_next_state(s, TCP_FIN, O), TCP_FIN_WAIT);
        assert_eq!(tcp_next_state(s, TCP_FIN | TCP_ACK, R), TCP_TIME_WAIT);
    }

    #[test]
    fn rst_closes_and_a_new_syn_reopens() {
        assert_eq!(tcp_next_state(TCP_ESTABLISHED, TCP_RST, R), TCP_CLOSE);
        assert_eq!(
            tcp_next_state(TCP_SYN_SENT, TCP_RST | TCP_ACK, R),
            TCP_CLOSE
        );
        assert_eq!(tcp_next_state(TCP_CLOSE, TCP_SYN, O), TCP_SYN_SENT);
        assert_eq!(tcp_next_state(TCP_TIME_WAIT, TCP_SYN, O), TCP_SYN_SENT);
        assert_eq!(tcp_next_state(TCP_CLOSE, TCP_ACK, O), TCP_CLOSE);
        assert!(tcp_closed(TCP_CLOSE) && tcp_closed(TCP_TIME_WAIT));
        assert!(!tcp_closed(TCP_FIN_WAIT));
    }

    #[test]
    fn sequence_space_wraps() {
        assert!(seq_after(5, 3));
        assert!(!seq_after(3, 5));
        assert!(!seq_after(7, 7));
        assert!(seq_after(2, u32::MAX - 2), "2 comes after 2^32-3");
        assert!(!seq_after(u32::MAX - 2, 2));
    }

    #[test]
    fn the_offered_window_only_moves_forward() {
        assert_eq!(offer(false, 0, 0, 1000, 500), (1000, 1500));
        // A later, larger ack moves both edges; an older one moves neither.
        assert_eq!(offer(true, 1000, 1500, 1200, 500), (1200, 1700));
        assert_eq!(offer(true, 1200, 1700, 1100, 100), (1200, 1700));
        // A shrinking window keeps the right edge it had offered.
        assert_eq!(offer(true, 1200, 1700, 1300, 100), (1300, 1700));
        // Across the wrap of the sequence space.
        assert_eq!(offer(true, u32::MAX - 10, 20, 5, 100), (5, 105));
    }

    #[test]
    fn a_reset_counts_only_inside_the_receivers_window() {
        let est = TCP_ESTABLISHED;
        // The receiver acknowledged up to 1000 and offers 64 KiB; the sender has sent
        // up to 5000 (not yet acknowledged).
        let (ack, end, sent) = (1000, 1000 + 65_536, 5000);
        let v = |seq, state| rst_verdict(true, ack, end, sent, seq, state, false);
        assert_eq!(v(1000, est), RST_CLOSES, "exactly RCV.NXT");
        assert_eq!(v(5000, est), RST_CLOSES, "exactly the sender's SND.NXT");
        assert_eq!(v(30_000, est), RST_KEPT, "inside, not exact: challenge ACK");
        assert_eq!(v(end, est), RST_KEPT, "the right edge");
        assert_eq!(v(999, est), RST_REFUSED, "before what was acknowledged");
        assert_eq!(v(end + 1, est), RST_REFUSED, "past the window");
        assert_eq!(v(3_000_000_000, est), RST_REFUSED, "blind, far away");
        // A flow not established yet closes on any in-window reset.
        assert_eq!(v(30_000, TCP_FIN_WAIT), RST_CLOSES);
        assert_eq!(v(0, est), RST_REFUSED);
    }

    #[test]
    fn a_reset_while_the_flow_opens_carries_exact_numbers() {
        // Nothing acknowledged yet: no window, only the exact numbers. The answer to
        // the SYN is held to its acknowledgment (`acks_the_syn`'s), whatever its
        // sequence number, as the opener holds it.
        let opening =
            |seq, state, from_origin| rst_verdict(false, 0, 0, 7001, seq, state, from_origin);
        assert_eq!(
            opening(0, TCP_SYN_SENT, R),
            RST_CLOSES,
            "the answer to the SYN"
        );
        assert_eq!(opening(3_000_000_000, TCP_SYN_SENT, R), RST_CLOSES);
        assert_eq!(opening(777, TCP_SYN_SENT2, R), RST_CLOSES);
        assert_eq!(
            opening(7001, TCP_SYN_SENT, O),
            RST_CLOSES,
            "the opener's SND.NXT"
        );
        assert_eq!(opening(0, TCP_SYN_SENT, O), RST_REFUSED, "not the opener's");
        assert_eq!(opening(7000, TCP_SYN_SENT, O), RST_REFUSED);
        // The answer's reset after its SYN-ACK: at its own next number only.
        assert_eq!(opening(7001, TCP_SYN_RECV, R), RST_CLOSES);
        assert_eq!(opening(0, TCP_SYN_RECV, R), RST_REFUSED);
        assert_eq!(opening(9000, TCP_SYN_RECV, R), RST_REFUSED);
    }

    #[test]
    fn the_answer_to_a_syn_acknowledges_it() {
        let (syn, syn_ack, rst, rst_ack, ack) = (
            TCP_SYN,
            TCP_SYN | TCP_ACK,
            TCP_RST,
            TCP_RST | TCP_ACK,
            TCP_ACK,
        );
        let end = 3_000_000_001;
        assert!(acks_the_syn(TCP_SYN_SENT, R, syn_ack, end, end));
        assert!(acks_the_syn(TCP_SYN_SENT, R, rst_ack, end, end));
        assert!(
            !acks_the_syn(TCP_SYN_SENT, R, syn_ack, end + 1, end),
            "not sent yet"
        );
        // A SYN's data (TCP Fast Open) not acknowledged: up to nf_conntrack's bound.
        assert!(acks_the_syn(TCP_SYN_SENT, R, syn_ack, end - 1000, end));
        let lowest = end - SYN_ACK_WINDOW - 1;
        assert!(acks_the_syn(TCP_SYN_SENT, R, syn_ack, lowest, end));
        assert!(!acks_the_syn(TCP_SYN_SENT, R, syn_ack, lowest - 1, end));
        assert!(
            !acks_the_syn(TCP_SYN_SENT, R, rst_ack, 12_345, end),
            "blind"
        );
        assert!(
            !acks_the_syn(TCP_SYN_SENT, R, rst_ack, end - 1, end),
            "a reset acknowledges exactly"
        );
        assert!(
            !acks_the_syn(TCP_SYN_SENT, R, rst_ack, 0, end),
            "a zero ack"
        );
        assert!(
            !acks_the_syn(TCP_SYN_SENT, R, rst, end, end),
            "a reset without ACK"
        );
        // Across the wrap of the sequence space.
        assert!(acks_the_syn(TCP_SYN_SENT, R, syn_ack, u32::MAX - 5, 10));
        assert!(!acks_the_syn(TCP_SYN_SENT, R, syn_ack, 11, 10));
        // Not held to it: the opener's segments, a bare SYN (simultaneous open), an
        // ACK alone, and any segment once the SYN was answered.
        assert!(acks_the_syn(TCP_SYN_SENT, O, rst_ack, 5, end));
        assert!(acks_the_syn(TCP_SYN_SENT, R, syn, 0, end));
        assert!(acks_the_syn(TCP_SYN_SENT, R, ack, 5, end));
        assert!(acks_the_syn(TCP_SYN_RECV, R, syn_ack, 5, end));
        // A SYN of the other side's own (which a spoofer can send) changes nothing.
        assert!(!acks_the_syn(TCP_SYN_SENT2, R, syn_ack, 12_345, end));
        assert!(!acks_the_syn(TCP_SYN_SENT2, R, rst_ack, 12_345, end));
        assert!(acks_the_syn(TCP_SYN_SENT2, R, syn_ack, end, end));
        assert!(
            acks_the_syn(TCP_SYN_SENT2, O, syn_ack, 12_345, end),
            "the opener's"
        );
        assert!(acks_the_syn(TCP_ESTABLISHED, R, rst_ack, 5, end));
    }

    #[test]
    fn assured_needs_both_ways() {
        // TCP: established after a reply.
        let f = next_flags(FLAG_ORIGIN, IPPROTO_TCP, TCP_SYN_SENT, O);
        assert_eq!(f & FLAG_ASSURED, 0);
        let f = next_flags(f, IPPROTO_TCP, TCP_SYN_RECV, R);
        assert_eq!(f & FLAG_ASSURED, 0, "a SYN-ACK does not assure");
        let f = next_flags(f, IPPROTO_TCP, TCP_ESTABLISHED, O);
        assert_ne!(f & FLAG_ASSURED, 0);
        let f = next_flags(f, IPPROTO_TCP, TCP_TIME_WAIT, R);
        assert_eq!(f & FLAG_ASSURED, 0, "a closed flow is no longer assured");
        // UDP: question, answer, and a second question.
        let f = next_flags(FLAG_ORIGIN, IPPROTO_UDP, 0, O);
        let f = next_flags(f, IPPROTO_UDP, 0, R);
        assert_eq!(f & FLAG_ASSURED, 0);
        let f = next_flags(f, IPPROTO_UDP, 0, O);
        assert_ne!(f & FLAG_ASSURED, 0);
        // Or a second answer: one question answered by a stream of replies.
        let f = next_flags(FLAG_ORIGIN, IPPROTO_UDP, 0, O);
        let f = next_flags(f, IPPROTO_UDP, 0, R);
        let f = next_flags(f, IPPROTO_UDP, 0, R);
        assert_ne!(f & FLAG_ASSURED, 0);
    }

    #[test]
    fn timeouts_follow_state() {
        let cfg = crate::config::Config::default();
        assert_eq!(
            timeout_secs(&cfg, IPPROTO_TCP, TCP_ESTABLISHED, 0),
            cfg.tcp_established_secs
        );
        assert_eq!(
            timeout_secs(&cfg, IPPROTO_TCP, TCP_SYN_RECV, 0),
            cfg.tcp_syn_secs
        );
        assert_eq!(
            timeout_secs(&cfg, IPPROTO_TCP, TCP_TIME_WAIT, 0),
            cfg.tcp_time_wait_secs
        );
        assert_eq!(timeout_secs(&cfg, IPPROTO_UDP, 0, 0), cfg.udp_secs);
        assert_eq!(
            timeout_secs(&cfg, IPPROTO_UDP, 0, FLAG_ASSURED),
            cfg.udp_stream_secs
        );
        assert!(!expired(&cfg, IPPROTO_UDP, 0, 0, 100, 100 + cfg.udp_secs));
        assert!(expired(&cfg, IPPROTO_UDP, 0, 0, 100, 101 + cfg.udp_secs));
        assert!(!expired(
            &cfg,
            IPPROTO_TCP,
            TCP_ESTABLISHED,
            FLAG_ASSURED,
            100,
            101 + cfg.udp_secs
        ));
    }

    /// An error quotes an echo request where the ping flow's requests went (against an
    /// entry of the other direction, FLAG_ORIGIN clear), a reply where its replies
    /// came; any other echo type, either way round, is about no flow. Other protocols
    /// always fit.
    #[test]
    fn an_error_fits_only_the_echo_type_of_its_direction() {
        use crate::proto::{
            ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST,
            IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
        };
        for (proto, request, reply) in [
            (IPPROTO_ICMP, ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY),
            (IPPROTO_ICMPV6, ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY),
        ] {
            assert!(quote_fits(proto, request, 0));
            assert!(!quote_fits(proto, reply, 0));
            assert!(quote_fits(proto, reply, FLAG_ORIGIN));
            assert!(!quote_fits(proto, request, FLAG_ORIGIN));
            // The other family's echo type, or no echo at all.
            assert!(!quote_fits(proto, 3, 0) && !quote_fits(proto, 3, FLAG_ORIGIN));
        }
        assert!(!quote_fits(IPPROTO_ICMP, ICMPV6_ECHO_REQUEST, 0));
        for proto in [IPPROTO_TCP, IPPROTO_UDP] {
            assert!(quote_fits(proto, 0, 0) && quote_fits(proto, 0, FLAG_ORIGIN));
        }
    }
}
