//! The model's connection tracking: one record per flow (never two halves that could
//! part), the TCP states as DESIGN and the issue describe them, and the published
//! ports. Addresses are host-order numbers; [`Flow::entries`] gives the two map
//! entries the datapath must hold for a flow, in its layout.

use netlab_common::conntrack::{
    CtEntry, CtKey, FLAG_ACKED, FLAG_ASSURED, FLAG_ORIGIN, FLAG_SEEN_REPLY, FLAG_STREAM,
    FLAG_WSCALE, RST_KEPT, RST_REFUSED, TCP_CLOSE, TCP_CLOSE_WAIT, TCP_ESTABLISHED, TCP_FIN_WAIT,
    TCP_NONE, TCP_SYN_RECV, TCP_SYN_SENT, TCP_SYN_SENT2, TCP_TIME_WAIT, WSCALE_FIN, acks_the_syn,
    fin_in_window, offer, opening, rst_verdict, seq_after,
};

use super::{
    ip::Ip,
    wire::{Pkt, TCP},
};

/// Where a packet comes from: a container (whatever hook meets it) or the uplink.
pub const FROM_CTR: u8 = 1;
pub const FROM_OUTSIDE: u8 = 2;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// A conntrack entry and its key, in the datapath's layout.
pub type Entry<R> = (CtKey<R>, CtEntry<R>);

/// A packet's tuple in a zone: what conntrack is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key<A> {
    pub zone: u8,
    pub proto: u8,
    pub saddr: A,
    pub daddr: A,
    pub sport: u16,
    pub dport: u16,
}

impl<A: Ip> Key<A> {
    pub fn raw(&self) -> CtKey<A::Raw> {
        CtKey::new(
            self.saddr.raw(),
            self.daddr.raw(),
            self.sport.to_be(),
            self.dport.to_be(),
            self.proto,
            self.zone,
        )
    }
}

/// Addresses and ports a packet is rewritten to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuple<A> {
    pub saddr: A,
    pub daddr: A,
    pub sport: u16,
    pub dport: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowKind {
    Masquerade,
    Published,
    Hairpin,
}

impl FlowKind {
    pub fn name(self) -> &'static str {
        match self {
            FlowKind::Masquerade => "snat",
            FlowKind::Published => "dnat",
            FlowKind::Hairpin => "hairpin",
        }
    }
}

/// TCP: what one direction of a flow has told about its window, as the datapath keeps
/// it in that direction's entry (the fields of the same names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// It has sent an ACK: `ack_max` and `win_end` hold.
    pub acked: bool,
    pub ack_max: u32,
    pub win_end: u32,
    pub seq_end: u32,
    /// The scale its SYN announced (`announced`), used once both sides announced one.
    pub wscale: u8,
    pub announced: bool,
    /// It has sent a FIN closing its direction (`WSCALE_FIN` in the entry's `wscale`).
    pub fin: bool,
}

impl Window {
    /// The opener's window after its first packet.
    pub fn opening<A>(p: &Pkt<A>) -> Self {
        Window {
            seq_end: p.seq_end,
            wscale: p.wscale.unwrap_or(0),
            announced: p.wscale.is_some(),
            ..Default::default()
        }
    }
}

/// The direction of a packet in its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// The side that opened the flow.
    Opener,
    Reply,
}

#[derive(Clone, Debug)]
pub struct Flow<A> {
    pub kind: FlowKind,
    /// The opener's packets as they arrive.
    pub key: Key<A>,
    /// What the opener's packets become.
    pub to: Tuple<A>,
    pub reply_zone: u8,
    pub state: u8,
    /// SEEN_REPLY, STREAM, ASSURED (ORIGIN belongs to the opener's entry only).
    pub flags: u8,
    pub pub_id: u32,
    /// Its published mapping was withdrawn: the next lookup that meets it removes it.
    pub withdrawn: bool,
    pub packets: [u32; 2],
    pub bytes: [u64; 2],
    /// TCP: each direction's window, the opener's first.
    pub win: [Window; 2],
}

impl<A: Ip> Flow<A> {
    pub fn reply_key(&self) -> Key<A> {
        reply_key_of(&self.key, &self.to, self.reply_zone)
    }

    /// What the reply's packets become: the opener's tuple turned around.
    pub fn reply_to(&self) -> Tuple<A> {
        Tuple {
            saddr: self.key.daddr,
            daddr: self.key.saddr,
            sport: self.key.dport,
            dport: self.key.sport,
        }
    }

    pub fn key_of(&self, dir: Dir) -> Key<A> {
        match dir {
            Dir::Opener => self.key,
            Dir::Reply => self.reply_key(),
        }
    }

    pub fn to_of(&self, dir: Dir) -> Tuple<A> {
        match dir {
            Dir::Opener => self.to,
            Dir::Reply => self.reply_to(),
        }
    }

    /// Established (or a two-way stream): in `CT`, which never evicts; else `CT_PENDING`.
    pub fn assured(&self) -> bool {
        self.flags & FLAG_ASSURED != 0
    }

    /// The two entries the datapath holds for this flow.
    pub fn entries(&self) -> [Entry<A::Raw>; 2] {
        let (o, r) = (self.to, self.reply_to());
        let entry = |t: Tuple<A>, pair_zone: u8, flags: u8, i: usize| {
            let w = &self.win[i];
            CtEntry {
                saddr: t.saddr.raw(),
                daddr: t.daddr.raw(),
                sport: t.sport.to_be(),
                dport: t.dport.to_be(),
                pair_zone,
                state: self.state,
                flags: flags
                    | if w.acked { FLAG_ACKED } else { 0 }
                    | if w.announced { FLAG_WSCALE } else { 0 },
                wscale: w.wscale | if w.fin { WSCALE_FIN } else { 0 },
                pub_id: self.pub_id,
                packets: self.packets[i],
                bytes: self.bytes[i],
                ack_max: w.ack_max,
                win_end: w.win_end,
                seq_end: w.seq_end,
                ..Default::default()
            }
        };
        [
            (
                self.key.raw(),
                entry(o, self.reply_zone, self.flags | FLAG_ORIGIN, 0),
            ),
            (
                self.reply_key().raw(),
                entry(r, self.key.zone, self.flags, 1),
            ),
        ]
    }

    /// What a TCP reset of direction `dir` does to the flow: nf_conntrack's rule, as
    /// `netlab_common::conntrack::rst_verdict` states it.
    pub fn reset(&self, dir: Dir, p: &Pkt<A>) -> u8 {
        let i = (dir == Dir::Reply) as usize;
        let (sender, receiver) = (&self.win[i], &self.win[1 - i]);
        rst_verdict(
            receiver.acked,
            receiver.ack_max,
            receiver.win_end,
            sender.seq_end,
            p.seq,
            self.state,
            dir == Dir::Opener,
        )
    }

    /// Whether a TCP segment of direction `dir` acknowledges the opener's SYN where it
    /// must: `netlab_common::conntrack::acks_the_syn`.
    pub fn acks_the_syn(&self, dir: Dir, p: &Pkt<A>) -> bool {
        acks_the_syn(
            self.state,
            dir == Dir::Opener,
            p.flags,
            p.ack,
            self.win[0].seq_end,
        )
    }

    /// A packet `p` of direction `dir`, `len` bytes long (a reset the flow refuses
    /// never gets here).
    pub fn touch(&mut self, dir: Dir, p: &Pkt<A>, len: usize) {
        let i = (dir == Dir::Reply) as usize;
        self.packets[i] += 1;
        self.bytes[i] += len as u64;
        let opener = dir == Dir::Opener;
        if self.key.proto == TCP {
            let kept = p.flags & RST != 0 && self.reset(dir, p) == RST_KEPT;
            debug_assert!(p.flags & RST == 0 || self.reset(dir, p) != RST_REFUSED);
            self.track_window(i, p);
            // The opener's SYN again while the flow opens: its end is what the answer
            // acknowledges.
            if opener && opening(self.state) && p.flags & (SYN | ACK) == SYN {
                self.win[0].seq_end = p.seq_end;
            }
            // A FIN outside its receiver's window is not seen by the state machine.
            let receiver = &self.win[1 - i];
            let flags = if p.flags & (FIN | RST) == FIN
                && !fin_in_window(
                    receiver.acked,
                    receiver.ack_max,
                    receiver.win_end,
                    p.seq,
                    p.seq_end,
                ) {
                p.flags & !FIN
            } else {
                p.flags
            };
            let before = self.state;
            if !kept {
                self.state = tcp_next(self.state, flags, opener);
            }
            // A FIN closing its direction marks it; both directions marked while the
            // flow is closing one way is a flow closed both ways.
            if flags & (FIN | RST) == FIN
                && matches!(before, TCP_ESTABLISHED | TCP_FIN_WAIT | TCP_CLOSE_WAIT)
            {
                self.win[i].fin = true;
            }
            if matches!(self.state, TCP_FIN_WAIT | TCP_CLOSE_WAIT)
                && self.win[0].fin
                && self.win[1].fin
            {
                self.state = TCP_TIME_WAIT;
            }
            if p.flags & SYN != 0 && self.state != before {
                self.handshake(i, p);
            }
        }
        // Any packet after the first reply makes a stream.
        if self.flags & FLAG_SEEN_REPLY != 0 {
            self.flags |= FLAG_STREAM;
        }
        if !opener {
            self.flags |= FLAG_SEEN_REPLY;
        }
        let assured = if self.key.proto == TCP {
            self.flags & FLAG_SEEN_REPLY != 0
                && matches!(self.state, TCP_ESTABLISHED | TCP_FIN_WAIT | TCP_CLOSE_WAIT)
        } else {
            self.flags & FLAG_STREAM != 0
        };
        if assured {
            self.flags |= FLAG_ASSURED;
        } else {
            self.flags &= !FLAG_ASSURED;
        }
    }
}

impl<A: Ip> Flow<A> {
    /// What a segment with ACK set tells about the window its sender offers.
    fn track_window(&mut self, i: usize, p: &Pkt<A>) {
        let w = &mut self.win[i];
        if seq_after(p.seq_end, w.seq_end) {
            w.seq_end = p.seq_end;
        }
        if p.flags & ACK != 0 {
            // A SYN's own window is never scaled.
            let scale = if p.flags & SYN != 0 { 0 } else { w.wscale & 15 };
            (w.ack_max, w.win_end) = offer(
                w.acked,
                w.ack_max,
                w.win_end,
                p.ack,
                (p.win as u32) << scale,
            );
            w.acked = true;
        }
    }

    /// A SYN that moved the handshake on: its side's window scale, and a flow opened
    /// again forgets what both sides offered; windows are scaled only when both SYNs
    /// announced a scale.
    fn handshake(&mut self, i: usize, p: &Pkt<A>) {
        // The opener's SYN alone reopens; the other side's is a simultaneous open.
        let reopened = p.flags & ACK == 0 && i == 0;
        let bare = p.flags & ACK == 0;
        let w = &mut self.win[i];
        w.seq_end = p.seq_end;
        if bare {
            w.acked = false;
            w.announced = false;
        }
        // The entry's whole `wscale` byte is written: its FIN mark goes too.
        w.wscale = p.wscale.unwrap_or(0);
        w.fin = false;
        w.announced |= p.wscale.is_some();
        let [a, b] = &mut self.win;
        let (w, other) = if i == 0 { (a, b) } else { (b, a) };
        if reopened {
            other.acked = false;
            other.announced = false;
            other.wscale = 0;
            other.fin = false;
        } else if !(w.announced && other.announced) {
            w.wscale = 0;
            other.wscale = 0;
            other.fin = false;
        }
    }
}

/// The reply direction's key of a flow opened by `key` and translated to `to`.
pub fn reply_key_of<A: Ip>(key: &Key<A>, to: &Tuple<A>, reply_zone: u8) -> Key<A> {
    Key {
        zone: reply_zone,
        proto: key.proto,
        saddr: to.daddr,
        daddr: to.saddr,
        sport: to.dport,
        dport: to.sport,
    }
}

/// The TCP state after a segment (nf_conntrack's machine; a reset's window checks are
/// [`Flow::reset`]'s): the opener's SYN opens (SYN_SENT), the answer's SYN-ACK makes it
/// SYN_RECV, the opener's ACK then establishes it. A FIN closes one side (FIN_WAIT for
/// the opener's, CLOSE_WAIT for the answer's), the other side's FIN then makes it
/// TIME_WAIT; a RST closes it; the opener's SYN reopens a closed flow.
pub fn tcp_next(state: u8, flags: u8, opener: bool) -> u8 {
    let (syn, ack, fin) = (flags & SYN != 0, flags & ACK != 0, flags & FIN != 0);
    if flags & RST != 0 {
        return TCP_CLOSE;
    }
    if syn {
        return if opener && !ack {
            match state {
                TCP_NONE | TCP_SYN_SENT | TCP_TIME_WAIT | TCP_CLOSE => TCP_SYN_SENT,
                s => s,
            }
        } else if !opener && !ack && state == TCP_SYN_SENT {
            // Simultaneous open: the other side's own SYN.
            TCP_SYN_SENT2
        } else if ack
            && (state == TCP_SYN_SENT2 || (!opener && matches!(state, TCP_SYN_SENT | TCP_SYN_RECV)))
        {
            TCP_SYN_RECV
        } else {
            state
        };
    }
    if fin {
        return match (state, opener) {
            (TCP_ESTABLISHED | TCP_SYN_RECV, true) => TCP_FIN_WAIT,
            (TCP_ESTABLISHED, false) => TCP_CLOSE_WAIT,
            (TCP_CLOSE_WAIT, true) | (TCP_FIN_WAIT, false) => TCP_TIME_WAIT,
            (s, _) => s,
        };
    }
    if state == TCP_SYN_RECV && opener && ack {
        return TCP_ESTABLISHED;
    }
    state
}

/// Whether a packet may open a flow: a TCP SYN alone (ECN bits allowed), any UDP
/// datagram, an ICMP echo request.
pub fn opens<A: Ip>(proto: u8, flags: u8) -> bool {
    match proto {
        TCP => flags & (SYN | ACK | RST | FIN) == SYN,
        p if p == A::ICMP => flags == A::ECHO_REQUEST,
        _ => true,
    }
}

/// The first state of a flow its first packet opens.
pub fn first_state(proto: u8) -> u8 {
    if proto == TCP { TCP_SYN_SENT } else { TCP_NONE }
}

/// A published port (or range of ports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping<A> {
    /// Host address, 0 for every host address.
    pub addr: A,
    pub proto: u8,
    pub port: u16,
    /// Last host port; `port` for a single port.
    pub end: u16,
    pub ctr: A,
    pub ctr_port: u16,
    pub id: u32,
    /// A range (one `PUBLISH_RANGES` slot) rather than a single port.
    pub range: bool,
}

/// The port table: an exact address first, then every address, then the ranges in
/// slot order. `daddr` is one of the host's addresses.
pub fn publish_lookup<A: Ip>(
    table: &[Mapping<A>],
    daddr: A,
    proto: u8,
    dport: u16,
) -> Option<Mapping<A>> {
    let single = |addr: A| {
        table
            .iter()
            .find(|m| !m.range && m.addr == addr && m.proto == proto && m.port == dport)
    };
    if let Some(m) = single(daddr).or_else(|| single(A::default())) {
        return Some(*m);
    }
    table
        .iter()
        .find(|m| {
            m.range
                && m.proto == proto
                && (m.addr == A::default() || m.addr == daddr)
                && (m.port..=m.end).contains(&dport)
        })
        .map(|m| Mapping {
            ctr_port: m.ctr_port.wrapping_add(dport - m.port),
            ..*m
        })
}
