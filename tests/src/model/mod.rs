//! A reference model of netlab's NAT in plain Rust, for the fuzz test: given the lab's
//! configuration and the frames fed to the TC hooks one after the other, it says what
//! must become of each — passed unchanged, dropped with a given reason, or translated
//! to exactly which addresses and ports — and keeps its own flow table to say what the
//! replies must become.
//!
//! It is written from the rules (DESIGN §3, the issues, the README), not from the
//! programs: [`wire`] reads frames, [`flows`] tracks flows, and this module decides per
//! hook. Checksums are never computed incrementally here: a translated frame's
//! checksums are checked by summing the bytes they cover, before and after — a NAT
//! must keep a correct checksum correct (and equal to a from-scratch computation) and
//! must not repair a wrong one.
//!
//! Where the datapath chooses at random (a NAT source port), the model accepts any port
//! of the range that is free for that destination, and remembers the one chosen.

mod decide4;
mod decide6;
pub mod flows;
pub mod ip;
mod reset;
pub mod wire;
pub mod wire6;

use std::collections::{BTreeMap, HashMap};

use netlab_common::{
    conntrack::{
        CtEntry, CtKey, FLAG_SEEN_REPLY, RST_CLOSES, RST_KEPT, RST_REFUSED, TCP_TIME_WAIT,
        seq_after, tcp_closed, tcp_flags_valid, tcp_segment_fits, tcp_state_name,
    },
    stats::{DROP_COUNT, DROP_NAMES, DropReason},
};

use flows::{
    Dir, FROM_CTR, FROM_OUTSIDE, Flow, FlowKind, Key, Mapping, Tuple, Window, first_state, opens,
    publish_lookup, reply_key_of,
};

/// The TCP reset flag.
const RST: u8 = 0x04;

/// Who sent an ICMP error (the datapath's `icmp::Sender`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sender {
    /// A container: the outer source becomes the flow's; an error about no flow drops.
    Container,
    /// Someone outside.
    Outside,
    /// The lab host, by the uplink: only the quote is translated; anything it cannot
    /// place is passed.
    Host,
    /// A container, to a lab host address (bridge ingress): translated as a
    /// container's when it is about a hairpin flow; anything else is passed.
    ContainerToHost,
}
use ip::Ip;
use wire::{Kind, Pkt, TCP, UDP, be16};

/// What the datapath returns for a packet it lets go on (`TC_ACT_UNSPEC`, -1: the next
/// program on the hook, or the stack).
pub const TC_ACT_UNSPEC: u32 = u32::MAX;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

/// How many NAT ports the datapath tries for one flow before it gives up.
const PORT_TRIES: usize = 32;

/// The TC programs the model knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    UplinkEgress,
    UplinkIngress,
    BridgeIngress,
    /// The host end of a container's veth (the fast path only).
    Endpoint,
}

/// The fast path's world: where the lab host's routes lead (a sandbox lab's host).
#[derive(Clone, Debug)]
pub struct FastPath<A> {
    pub uplink_mac: [u8; 6],
    pub bridge_mac: [u8; 6],
    /// The uplink's gateway (wan): its MAC is known (a permanent neighbour entry).
    pub gateway: A,
    pub gateway_mac: [u8; 6],
    /// The uplink's on-link prefix: other addresses there have no neighbour entry.
    pub uplink_net: A,
    pub uplink_mask: A,
    /// Containers with an endpoint entry: address → MAC.
    pub endpoints: Vec<(A, [u8; 6])>,
    /// The MTU of the lab host's links (the bridge's, and the route's by the uplink),
    /// which a forwarded packet must fit.
    pub mtu: usize,
}

/// The lab as the datapath is configured for it, for the family of addresses `A`.
#[derive(Clone, Debug)]
pub struct NatConfig<A> {
    pub uplink: A,
    /// The uplink's MAC: a frame on it addressed to another is not the host's.
    pub uplink_mac: [u8; 6],
    pub bridge: A,
    pub subnet: A,
    pub mask: A,
    pub port_min: u16,
    pub port_max: u16,
    pub published: Vec<Mapping<A>>,
    pub fast: Option<FastPath<A>>,
    /// The containers with an endpoint entry (address, MAC), with or without the fast
    /// path: a reset for a segment without a flow goes to them, from `bridge_mac`.
    pub endpoints: Vec<(A, [u8; 6])>,
    pub bridge_mac: [u8; 6],
    /// IPv6 cases: the containers' IPv4 addresses (a dual-stack lab), which their ARP
    /// messages claim.
    pub subnet4: u32,
}

impl<A: Ip> NatConfig<A> {
    pub fn in_subnet(&self, a: A) -> bool {
        a & self.mask == self.subnet
    }

    pub fn is_host(&self, a: A) -> bool {
        a == self.uplink || a == self.bridge
    }

    /// The container whose veth a frame fed to the endpoint's hook comes from, as its
    /// address and MAC (host order): the one with the frame's source address when
    /// that is a container's address, else the subnet's first container (`.2`); its MAC
    /// is the frame's source MAC (spoofing a MAC is the end-to-end tests' matter).
    pub fn sender(&self, f: &[u8]) -> (A, [u8; 6]) {
        let mut mac = [0u8; 6];
        if f.len() >= 12 {
            mac.copy_from_slice(&f[6..12]);
        }
        let addr = match wire::saddr_of::<A>(f) {
            Some(a) if self.in_subnet(a) => a,
            _ => self.subnet | A::from(2),
        };
        (addr, mac)
    }
}

/// A checksum field and the bytes it covers.
#[derive(Clone, Copy, Debug)]
enum Csum {
    /// An IPv4 header checksum: the header at `hdr`, `len` bytes.
    Ip { hdr: usize, len: usize },
    /// A TCP, UDP or ICMP checksum at `field` over `from..to`, with the pseudo-header of
    /// the addresses at `pseudo` (TCP and UDP; ICMPv6 too): their offset, their bytes
    /// (both), the protocol.
    L4 {
        field: usize,
        from: usize,
        to: usize,
        pseudo: Option<(usize, usize, u8)>,
        udp: bool,
    },
}

impl Csum {
    fn field(&self) -> usize {
        match *self {
            Csum::Ip { hdr, .. } => hdr + 10,
            Csum::L4 { field, .. } => field,
        }
    }

    /// One's complement sum of everything the checksum covers, the field included:
    /// 0xffff (or 0) when the checksum is right.
    fn sum(&self, f: &[u8]) -> u16 {
        let (from, to, pseudo) = match *self {
            Csum::Ip { hdr, len } => (hdr, hdr + len, None),
            Csum::L4 {
                from, to, pseudo, ..
            } => (from, to, pseudo),
        };
        let mut sum: u64 = 0;
        if let Some((addrs, len, proto)) = pseudo {
            for i in (addrs..addrs + len).step_by(2) {
                sum += be16(f, i) as u64;
            }
            sum += proto as u64 + (to - from) as u64;
        }
        for chunk in f[from..to].chunks(2) {
            sum += u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]) as u64;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    /// The value a from-scratch computation writes in the field.
    fn canonical(&self, f: &[u8]) -> u16 {
        let mut g = f.to_vec();
        g[self.field()..self.field() + 2].fill(0);
        let c = !self.sum(&g);
        match *self {
            Csum::L4 { udp: true, .. } if c == 0 => 0xffff,
            _ => c,
        }
    }
}

fn same_sum(a: u16, b: u16) -> bool {
    a == b || (a | b == 0xffff && (a == 0 || b == 0))
}

/// What a new flow's translation still needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alloc {
    /// The tuple is complete.
    Fixed,
    /// The source port (echo identifier) is a NAT port the datapath picks.
    Port,
}

#[derive(Clone, Debug)]
struct NewFlow<A> {
    kind: FlowKind,
    key: Key<A>,
    to: Tuple<A>,
    reply_zone: u8,
    pub_id: u32,
    alloc: Alloc,
}

#[derive(Clone, Debug)]
enum Effect<A> {
    None,
    Touch(usize, Dir),
    Create(NewFlow<A>),
}

/// In the label of a TCP reset in a flow nothing answered yet: the flow goes
/// with it (nf_conntrack deletes a flow "whose only reply is a RST").
pub const UNANSWERED_RESET: &str = ", an unanswered flow reset";

/// A frame the model expects rewritten.
#[derive(Clone, Debug)]
struct Translation<A> {
    label: String,
    /// Bytes to write at an offset.
    edits: Vec<(usize, Vec<u8>)>,
    /// Offsets of the NAT port the datapath picks (big endian), if any.
    port_at: Vec<usize>,
    csums: Vec<Csum>,
    effect: Effect<A>,
    /// The first fragment's translation to remember: zone and (saddr, daddr) after.
    remember: Option<u8>,
    /// A port-exhaustion drop is allowed too (the datapath's probing may miss a free
    /// port in a large, crowded range).
    may_exhaust: bool,
    /// No NAT port is free: the new flow cannot be opened, the frame is dropped.
    exhausted: bool,
    /// A TCP reset its flow refuses (outside the window): the frame is dropped where
    /// the flow would be translated.
    refused_reset: bool,
    /// A TCP segment of the flow with flags no TCP sends: dropped.
    invalid_flags: bool,
    verdict: u32,
    /// The addresses after translation, where the fast path sends the frame.
    to: (A, A),
}

/// Where the fast path sends a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// Left to the lab host's stack (passed).
    Stack,
    /// Out of the uplink to a resolved next hop, or into a container: the frame gets
    /// these destination and source MACs.
    Next([u8; 6], [u8; 6]),
    /// Left to the stack: too big for the bridge or the route (the stack answers
    /// "fragmentation needed", Packet Too Big).
    TooBig,
}

impl Plan {
    fn forwards(self) -> bool {
        !matches!(self, Plan::Stack | Plan::TooBig)
    }
}

impl<A: Ip> Translation<A> {
    fn new(label: String, to: (A, A)) -> Self {
        Self {
            label,
            edits: Vec::new(),
            port_at: Vec::new(),
            csums: Vec::new(),
            effect: Effect::None,
            remember: None,
            may_exhaust: false,
            exhausted: false,
            refused_reset: false,
            invalid_flags: false,
            verdict: TC_ACT_UNSPEC,
            to,
        }
    }
}

enum Decision<A> {
    Pass,
    Drop(DropReason),
    Translate(Box<Translation<A>>),
    /// Dropped without a flow (`tcp_no_flow`) and answered with this reset, into the
    /// container.
    Reset(Vec<u8>),
}

/// A datagram whose first fragment was translated: zone, addresses, identification,
/// protocol.
pub type FragTuple<A> = (u8, A, A, u32, u8);

/// Conntrack entries in the datapath's layout.
pub type Entries<A> = Vec<(CtKey<A>, CtEntry<A>)>;

/// The reference model: configuration, flows, fragments' translations, and a tally of
/// what it saw.
pub struct Model<A> {
    pub cfg: NatConfig<A>,
    pub flows: Vec<Flow<A>>,
    frags: HashMap<FragTuple<A>, (A, A)>,
    /// Outcome name → count, over every frame checked.
    pub tally: BTreeMap<String, u64>,
}

fn drop_name(r: DropReason) -> &'static str {
    DROP_NAMES[r as usize]
}

impl<A: Ip> Model<A> {
    pub fn new(cfg: NatConfig<A>) -> Self {
        Self {
            cfg,
            flows: Vec::new(),
            frags: HashMap::new(),
            tally: BTreeMap::new(),
        }
    }

    /// Starts over with a new configuration (the tally goes on).
    pub fn reset(&mut self, cfg: NatConfig<A>) {
        self.cfg = cfg;
        self.flows.clear();
        self.frags.clear();
    }

    /// Withdraws published mapping `id` (unpublish): its flows are dead.
    pub fn withdraw(&mut self, id: u32) {
        self.cfg.published.retain(|m| m.id != id);
        for f in &mut self.flows {
            if f.pub_id == id {
                f.withdrawn = true;
            }
        }
    }

    /// Runs one frame through the model and checks what the datapath did with it: its
    /// verdict, its output frame and the drop counters it moved (`drops[reason]`, the
    /// increase of each). On success, the model's state follows and the outcome's name
    /// is returned.
    pub fn step(
        &mut self,
        hook: Hook,
        input: &[u8],
        verdict: u32,
        output: &[u8],
        drops: &[u64; DROP_COUNT as usize],
    ) -> Result<String, String> {
        let decision = self.decide(hook, input);
        let moved: Vec<String> = drops
            .iter()
            .enumerate()
            .filter(|(_, n)| **n != 0)
            .map(|(i, n)| format!("{}+{n}", DROP_NAMES[i]))
            .collect();
        let dropped_for = |reason: DropReason| -> Result<(), String> {
            if verdict != TC_ACT_SHOT {
                return Err(format!(
                    "expected a drop ({}), got verdict {verdict}",
                    drop_name(reason)
                ));
            }
            if moved != [format!("{}+1", drop_name(reason))] {
                return Err(format!(
                    "expected the drop counted as {}, counters moved: {moved:?}",
                    drop_name(reason)
                ));
            }
            Ok(())
        };
        let label = match decision {
            Decision::Pass => {
                if verdict != TC_ACT_UNSPEC || output != input || !moved.is_empty() {
                    return Err(format!(
                        "expected the frame passed unchanged; verdict {verdict}, drops {moved:?}, {}",
                        if output == input {
                            "frame unchanged".to_string()
                        } else {
                            format!("frame became {output:02x?}")
                        }
                    ));
                }
                "passed".to_string()
            }
            Decision::Drop(reason) => {
                dropped_for(reason)?;
                format!("dropped: {}", drop_name(reason))
            }
            Decision::Reset(want) => {
                let reason = drop_name(DropReason::TcpNoFlow);
                if verdict != TC_ACT_REDIRECT || moved != [format!("{reason}+1")] {
                    return Err(format!(
                        "expected a drop counted as {reason} and a reset sent (verdict {TC_ACT_REDIRECT}); got verdict {verdict}, drops {moved:?}"
                    ));
                }
                if output != want.as_slice() {
                    return Err(format!(
                        "expected the reset\n got  {output:02x?}\n want {want:02x?}"
                    ));
                }
                format!("dropped: {reason}, answered with a reset")
            }
            Decision::Translate(t) if t.exhausted => {
                dropped_for(DropReason::PortsExhausted)?;
                "dropped: ports_exhausted".to_string()
            }
            Decision::Translate(t) if t.invalid_flags => {
                dropped_for(DropReason::InvalidTcpFlags)?;
                "dropped: invalid_tcp_flags".to_string()
            }
            Decision::Translate(t) if t.refused_reset => {
                dropped_for(DropReason::InvalidRst)?;
                "dropped: invalid_rst".to_string()
            }
            Decision::Translate(t) => {
                if t.may_exhaust && verdict == TC_ACT_SHOT {
                    dropped_for(DropReason::PortsExhausted)?;
                    "dropped: ports_exhausted".to_string()
                } else {
                    if !moved.is_empty() {
                        return Err(format!(
                            "expected {}, but drop counters moved: {moved:?} (verdict {verdict})",
                            t.label
                        ));
                    }
                    self.check_translation(&t, input, verdict, output)?;
                    t.label
                }
            }
        };
        *self.tally.entry(label.clone()).or_default() += 1;
        Ok(label)
    }

    /// Checks a translated frame against `t` and applies its effects.
    fn check_translation(
        &mut self,
        t: &Translation<A>,
        input: &[u8],
        verdict: u32,
        output: &[u8],
    ) -> Result<(), String> {
        if verdict != t.verdict {
            return Err(format!(
                "expected {} (verdict {}), got verdict {verdict}",
                t.label, t.verdict
            ));
        }
        if output.len() != input.len() {
            return Err(format!(
                "expected {}: output is {} bytes, input {}",
                t.label,
                output.len(),
                input.len()
            ));
        }
        let mut want = input.to_vec();
        for (at, bytes) in &t.edits {
            want[*at..*at + bytes.len()].copy_from_slice(bytes);
        }
        let mut port = None;
        if let Some(&at) = t.port_at.first() {
            let p = be16(output, at);
            let Effect::Create(nf) = &t.effect else {
                unreachable!("a NAT port is only chosen for a new flow")
            };
            if !self.port_free(nf, p) {
                // The datapath takes the tuple of a dead flow holding it (withdrawn, and
                // still pending), removing that flow, when it is the first port it
                // tries (a random start the model does not know, so it is accepted), or
                // when no candidate is free, a closed connection's.
                let seq_end = wire::parse::<A>(input).unwrap().unwrap().seq_end;
                let Some(i) = self.reclaimable(nf, p, seq_end) else {
                    return Err(format!(
                        "expected {}: NAT port {p} is not free for {:?} (range {}-{})",
                        t.label, nf.to, self.cfg.port_min, self.cfg.port_max
                    ));
                };
                let label = if self.flows[i].withdrawn {
                    "conntrack: a withdrawn flow's NAT port reclaimed"
                } else {
                    "conntrack: a closed connection's NAT port taken over"
                };
                self.flows.remove(i);
                *self.tally.entry(label.into()).or_default() += 1;
            }
            for at in &t.port_at {
                want[*at..*at + 2].copy_from_slice(&p.to_be_bytes());
            }
            port = Some(p);
        }
        let mut masked = vec![false; want.len()];
        for c in &t.csums {
            masked[c.field()] = true;
            masked[c.field() + 1] = true;
        }
        let diff: Vec<usize> = (0..want.len())
            .filter(|&i| !masked[i] && want[i] != output[i])
            .collect();
        if !diff.is_empty() {
            return Err(format!(
                "expected {}: bytes {diff:?} differ\n got  {output:02x?}\n want {want:02x?}",
                t.label
            ));
        }
        for c in &t.csums {
            let at = c.field();
            let (before, after) = (be16(input, at), be16(output, at));
            if let Csum::L4 { udp: true, .. } = c
                && before == 0
            {
                if after != 0 {
                    return Err(format!(
                        "expected {}: a UDP datagram without checksum got one ({after:#06x})",
                        t.label
                    ));
                }
                continue;
            }
            let (s_in, s_out) = (c.sum(input), c.sum(output));
            if !same_sum(s_in, s_out) {
                return Err(format!(
                    "expected {}: checksum at byte {at} is {after:#06x}; it was {} before and is {} now (sums {s_in:#06x} -> {s_out:#06x})",
                    t.label,
                    if s_in == 0xffff { "right" } else { "wrong" },
                    if s_out == 0xffff { "right" } else { "wrong" },
                ));
            }
            if s_in == 0xffff && after != c.canonical(output) {
                return Err(format!(
                    "expected {}: checksum at byte {at} is {after:#06x}, a full computation gives {:#06x}",
                    t.label,
                    c.canonical(output)
                ));
            }
        }
        if let Some(zone) = t.remember {
            let p = wire::parse::<A>(input).unwrap().unwrap();
            let q = wire::parse::<A>(output).unwrap().unwrap();
            self.frags.insert(
                (zone, p.saddr, p.daddr, p.id, p.frag_proto),
                (q.saddr, q.daddr),
            );
        }
        match &t.effect {
            Effect::None => {}
            Effect::Touch(i, dir) => {
                let p = wire::parse::<A>(input).unwrap().unwrap();
                let f = &mut self.flows[*i];
                let (state, assured) = (f.state, f.assured());
                let kept = p.proto == TCP && p.flags & RST != 0 && f.reset(*dir, &p) == RST_KEPT;
                // A reset before any answer ends the flow at once (nf_conntrack: "only
                // reply is a RST").
                if t.label.contains(UNANSWERED_RESET) {
                    self.flows.remove(*i);
                    return Ok(());
                }
                f.touch(*dir, &p, input.len());
                let mut seen = Vec::new();
                if kept {
                    seen.push("conntrack: reset in the window kept".to_string());
                }
                if f.key.proto == TCP && f.state != state {
                    seen.push(format!("conntrack: tcp -> {}", tcp_state_name(f.state)));
                }
                if f.assured() != assured {
                    seen.push(if f.assured() {
                        "conntrack: assured (into CT)".to_string()
                    } else {
                        "conntrack: closed (back to CT_PENDING)".to_string()
                    });
                }
                for label in seen {
                    *self.tally.entry(label).or_default() += 1;
                }
            }
            Effect::Create(nf) => {
                let mut to = nf.to;
                if let Some(p) = port {
                    to.sport = p;
                    if nf.key.proto == A::ICMP {
                        to.dport = p;
                    }
                }
                self.flows.push(Flow {
                    kind: nf.kind,
                    key: nf.key,
                    to,
                    reply_zone: nf.reply_zone,
                    state: first_state(nf.key.proto),
                    flags: 0,
                    pub_id: nf.pub_id,
                    withdrawn: false,
                    packets: [1, 0],
                    bytes: [input.len() as u64, 0],
                    win: [
                        Window::opening(&wire::parse::<A>(input).unwrap().unwrap()),
                        Window::default(),
                    ],
                });
            }
        }
        Ok(())
    }

    /// Whether a conntrack key is held by any flow, either way.
    pub fn holds(&self, key: &Key<A>) -> bool {
        self.flows
            .iter()
            .any(|f| f.key == *key || f.reply_key() == *key)
    }

    /// The flow and direction of a key; a withdrawn flow met here is removed (a miss).
    fn lookup(&mut self, key: &Key<A>) -> Option<(usize, Dir)> {
        let i = self
            .flows
            .iter()
            .position(|f| f.key == *key || f.reply_key() == *key)?;
        if self.flows[i].withdrawn {
            self.flows.remove(i);
            *self
                .tally
                .entry("conntrack: withdrawn flow met and removed".into())
                .or_default() += 1;
            return None;
        }
        let dir = if self.flows[i].key == *key {
            Dir::Opener
        } else {
            Dir::Reply
        };
        Some((i, dir))
    }

    /// The flow a flow packet belongs to: its key's, unless it is an ICMP echo message
    /// of the wrong kind for the direction (requests go the way the flow was opened,
    /// replies come back).
    fn flow_of(&mut self, key: &Key<A>, p: &Pkt<A>) -> Option<(usize, Dir)> {
        let (i, dir) = self.lookup(key)?;
        let echo = match dir {
            Dir::Opener => A::ECHO_REQUEST,
            Dir::Reply => A::ECHO_REPLY,
        };
        (p.proto != A::ICMP || p.flags == echo).then_some((i, dir))
    }

    /// The new flow's tuple with NAT port `p`.
    fn with_port(nf: &NewFlow<A>, p: u16) -> Tuple<A> {
        let mut to = nf.to;
        to.sport = p;
        if nf.key.proto == A::ICMP {
            to.dport = p;
        }
        to
    }

    /// Whether NAT port `p` gives new flow `nf` a reply tuple nothing else holds.
    fn port_free(&self, nf: &NewFlow<A>, p: u16) -> bool {
        if !(self.cfg.port_min..=self.cfg.port_max).contains(&p) {
            return false;
        }
        let reply = reply_key_of(&nf.key, &Self::with_port(nf, p), nf.reply_zone);
        reply != nf.key && !self.holds(&reply)
    }

    /// The flow that alone holds the reply tuple NAT port `p` would give new flow `nf`,
    /// if the datapath may take that tuple from it: a withdrawn flow still in the
    /// pending table (not assured), or, for a new TCP connection whose opening segment
    /// ends at `seq_end`, a closed masqueraded connection (TIME_WAIT or reset) holding
    /// it by its reply half whose own segments ended before that (nf_nat's takeover);
    /// its two halves go with it.
    fn reclaimable(&self, nf: &NewFlow<A>, p: u16, seq_end: u32) -> Option<usize> {
        if !(self.cfg.port_min..=self.cfg.port_max).contains(&p) {
            return None;
        }
        let reply = reply_key_of(&nf.key, &Self::with_port(nf, p), nf.reply_zone);
        if reply == nf.key {
            return None;
        }
        let holders: Vec<usize> = (0..self.flows.len())
            .filter(|&i| self.flows[i].key == reply || self.flows[i].reply_key() == reply)
            .collect();
        let taken_over = |f: &Flow<A>| {
            nf.key.proto == TCP
                && f.key.proto == TCP
                && tcp_closed(f.state)
                && f.kind == FlowKind::Masquerade
                && f.reply_key() == reply
                && seq_after(seq_end, f.win[0].seq_end)
                // TIME_WAIT as nf_conntrack's: both FINs acknowledged (not LAST_ACK).
                && (f.state != TCP_TIME_WAIT
                    || (f.win[0].acked
                        && f.win[1].acked
                        && !seq_after(f.win[1].seq_end, f.win[0].ack_max)
                        && !seq_after(f.win[0].seq_end, f.win[1].ack_max)))
        };
        match holders[..] {
            [i] if self.flows[i].withdrawn && !self.flows[i].assured() => Some(i),
            [i] if taken_over(&self.flows[i]) => Some(i),
            _ => None,
        }
    }

    /// The NAT ports of the range that new flow `nf` cannot have: those whose reply
    /// tuple some flow holds, or that would make its reply its own opener.
    fn taken_ports(&self, nf: &NewFlow<A>) -> Vec<u16> {
        let port_of = |k: &Key<A>| {
            let p = k.dport;
            (reply_key_of(&nf.key, &Self::with_port(nf, p), nf.reply_zone) == *k).then_some(p)
        };
        let mut taken: Vec<u16> = self
            .flows
            .iter()
            .flat_map(|f| [f.key, f.reply_key()])
            .chain([nf.key])
            .filter_map(|k| port_of(&k))
            .filter(|p| (self.cfg.port_min..=self.cfg.port_max).contains(p))
            .collect();
        taken.sort_unstable();
        taken.dedup();
        taken
    }

    /// For a new flow that needs a NAT port: no port free (`Err`), or whether the
    /// datapath's bounded probing may still miss the free ones.
    fn port_outlook(&self, nf: &NewFlow<A>, seq_end: u32) -> Result<bool, DropReason> {
        let (min, max) = (self.cfg.port_min as usize, self.cfg.port_max as usize);
        let span = if max < min { 1 } else { max - min + 1 };
        let taken = self.taken_ports(nf);
        if taken.len() >= span {
            // A port held only by a dead flow is taken back when it is the first one
            // the datapath tries ([`Self::reclaimable`]).
            if taken
                .iter()
                .any(|&p| self.reclaimable(nf, p, seq_end).is_some())
            {
                return Ok(true);
            }
            return Err(DropReason::PortsExhausted);
        }
        if span <= PORT_TRIES || taken.len() < PORT_TRIES {
            return Ok(false);
        }
        // Some start whose PORT_TRIES candidates (cyclically) are all taken?
        let is_taken = |i: usize| taken.binary_search(&((min + i % span) as u16)).is_ok();
        let mut run = 0;
        for i in 0..span + PORT_TRIES {
            run = if is_taken(i) { run + 1 } else { 0 };
            if run >= PORT_TRIES {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether the lab host routes `src` back out by the uplink, as the fast path checks
    /// an IPv4 packet from outside before it takes it (the stack's reverse-path
    /// filter decides the rest): not to the lab's subnet (the bridge), nor to the host's
    /// own addresses and loopback (local); anything else by the uplink's link or its
    /// default route. IPv6 has no reverse-path filter.
    fn routed_back_by_uplink(&self, src: A) -> bool {
        A::V6 || !(self.cfg.in_subnet(src) || self.cfg.is_host(src) || src.loopback())
    }

    /// Where the fast path sends a packet leaving as `src -> dst` after translation, as
    /// the lab host's tables say.
    fn plan(&self, p: &Pkt<A>, src: A, dst: A) -> Plan {
        let Some(fast) = &self.cfg.fast else {
            return Plan::Stack;
        };
        if p.ttl <= 1 {
            // The lab host answers with time exceeded.
            return Plan::Stack;
        }
        if A::V6 && src.never_forwarded() {
            // `ip6_forward` drops a link-local source.
            return Plan::Stack;
        }
        if p.ihl > A::HDR {
            // IP options, extension headers: the stack acts on them as a router does.
            return Plan::Stack;
        }
        if self.cfg.in_subnet(dst) {
            // The bridge's MTU is checked on the whole frame, past the Ethernet header
            // (`bpf_check_mtu`): bytes after the datagram count.
            if p.len - p.l3 > fast.mtu {
                return Plan::TooBig;
            }
            return match fast.endpoints.iter().find(|e| e.0 == dst) {
                Some(&(_, mac)) => Plan::Next(mac, fast.bridge_mac),
                None => Plan::Stack,
            };
        }
        // What the lab host's stack never forwards is the stack's: its own addresses,
        // loopback, the zero network, multicast, the limited broadcast.
        if dst.never_forwarded() || self.cfg.is_host(dst) {
            return Plan::Stack;
        }
        // The route's MTU holds the datagram (forwarding answers "fragmentation
        // needed", Packet Too Big).
        if p.end - p.l3 > fast.mtu {
            return Plan::TooBig;
        }
        if dst & fast.uplink_mask == fast.uplink_net {
            if dst == fast.gateway {
                return Plan::Next(fast.gateway_mac, fast.uplink_mac);
            }
            // The link's broadcast, or on the link and never resolved: the stack's, which
            // resolves it (and answers "host unreachable" when nobody does).
            return Plan::Stack;
        }
        Plan::Next(fast.gateway_mac, fast.uplink_mac)
    }

    fn decide(&mut self, hook: Hook, f: &[u8]) -> Decision<A> {
        let d = if A::V6 {
            self.decide6(hook, f)
        } else {
            self.decide4(hook, f)
        };
        match d {
            Ok(d) => d,
            Err(reason) => Decision::Drop(reason),
        }
    }

    /// A container's packet leaving the lab by the uplink (both families, once the hook
    /// knows it is a container's): its flow, a later fragment as its first, an ICMP
    /// error about a tracked flow; anything else is dropped.
    fn leaving(&mut self, f: &[u8], p: &Pkt<A>) -> Result<Decision<A>, DropReason> {
        match p.kind {
            Kind::Fragment => match self.frag(FROM_CTR, p) {
                Some(t) => Ok(Decision::Translate(Box::new(t))),
                None => Err(DropReason::Fragment),
            },
            Kind::IcmpError => self.icmp_error(f, p, Sender::Container),
            Kind::Other => Err(DropReason::UnsupportedProtocol),
            Kind::Flow => match self.container_flow(Hook::UplinkEgress, p) {
                Err(DropReason::TcpNoFlow) => {
                    let to = self.cfg.endpoints.iter().find(|e| e.0 == p.saddr);
                    match to.and_then(|e| reset::frame(f, p, e.1, self.cfg.bridge_mac)) {
                        Some(f) => Ok(Decision::Reset(f)),
                        None => Err(DropReason::TcpNoFlow),
                    }
                }
                r => r,
            },
        }
    }

    /// A packet from the uplink to a host address: a reply or a published port's flow
    /// (into its container by the fast path, where the plan says, but a first fragment,
    /// which goes to the stack as the rest of its datagram), a later fragment as its
    /// first, an ICMP error; anything else is the host's.
    fn arriving(&mut self, f: &[u8], p: &Pkt<A>) -> Result<Decision<A>, DropReason> {
        match p.kind {
            Kind::Fragment => Ok(match self.frag(FROM_OUTSIDE, p) {
                Some(t) => Decision::Translate(Box::new(t)),
                None => Decision::Pass,
            }),
            Kind::IcmpError => self.icmp_error(f, p, Sender::Outside),
            Kind::Other => Ok(Decision::Pass),
            Kind::Flow => Ok(match self.outside_flow(p)? {
                Decision::Translate(t)
                    if self.cfg.fast.is_some() && !p.first_fragment && !t.exhausted =>
                {
                    let plan = if self.routed_back_by_uplink(p.saddr) {
                        self.plan(p, t.to.0, t.to.1)
                    } else {
                        Plan::Stack
                    };
                    Decision::Translate(Box::new(forward(*t, p, plan)))
                }
                d => d,
            }),
        }
    }

    /// A container's packet to a host address at the bridge: hairpin, the rest of a
    /// hairpin datagram where its first fragment went, an ICMP error about a hairpin
    /// flow; anything else is the host's.
    fn hairpin(&mut self, f: &[u8], p: &Pkt<A>) -> Result<Decision<A>, DropReason> {
        match p.kind {
            Kind::Fragment => Ok(match self.frag(FROM_CTR, p) {
                Some(t) => Decision::Translate(Box::new(t)),
                None => Decision::Pass,
            }),
            Kind::Flow => self.container_flow(Hook::BridgeIngress, p),
            Kind::IcmpError => Ok(self
                .icmp_error(f, p, Sender::ContainerToHost)
                .unwrap_or(Decision::Pass)),
            Kind::Other => Ok(Decision::Pass),
        }
    }

    /// A container's frame to another container at the endpoint: switched straight in,
    /// if addressed to its MAC.
    fn switch(&self, f: &[u8], p: &Pkt<A>) -> Decision<A> {
        let fast = self
            .cfg
            .fast
            .as_ref()
            .expect("the endpoint hook is the fast path's");
        match fast.endpoints.iter().find(|e| e.0 == p.daddr) {
            Some(&(_, mac)) if f[..6] == mac => Decision::Translate(Box::new(Translation {
                label: "switched [fast]".into(),
                verdict: TC_ACT_REDIRECT,
                ..Translation::new(String::new(), (p.saddr, p.daddr))
            })),
            _ => Decision::Pass,
        }
    }

    /// A later fragment: translated as its first fragment was, if that was seen.
    fn frag(&self, zone: u8, p: &Pkt<A>) -> Option<Translation<A>> {
        let (s, d) = *self
            .frags
            .get(&(zone, p.saddr, p.daddr, p.id, p.frag_proto))?;
        let mut t = Translation::new("fragment".into(), (s, d));
        outer_addrs(&mut t, p, s, d);
        Some(t)
    }

    /// A flow packet from a container: its flow, a new masqueraded flow, or hairpin.
    fn container_flow(&mut self, hook: Hook, p: &Pkt<A>) -> Result<Decision<A>, DropReason> {
        let key = key_of(p, FROM_CTR);
        if let Some((i, dir)) = self.flow_of(&key, p) {
            return Ok(self.known(hook, p, i, dir));
        }
        let cfg = &self.cfg;
        if cfg.is_host(p.daddr) {
            if opens::<A>(p.proto, p.flags)
                && let Some(m) = publish_lookup(&cfg.published, p.daddr, p.proto, p.dport)
            {
                let nf = NewFlow {
                    kind: FlowKind::Hairpin,
                    key,
                    to: Tuple {
                        saddr: cfg.bridge,
                        daddr: m.ctr,
                        sport: 0,
                        dport: m.ctr_port,
                    },
                    reply_zone: FROM_CTR,
                    pub_id: m.id,
                    alloc: Alloc::Port,
                };
                return self.new_flow(hook, p, nf);
            }
            return Ok(Decision::Pass);
        }
        if !opens::<A>(p.proto, p.flags) {
            return Err(if p.proto == TCP {
                DropReason::TcpNoFlow
            } else {
                // An ICMP echo reply nobody asked for, with a container's address.
                DropReason::UnsupportedProtocol
            });
        }
        let nf = NewFlow {
            kind: FlowKind::Masquerade,
            key,
            to: Tuple {
                saddr: cfg.uplink,
                daddr: p.daddr,
                sport: 0,
                dport: p.dport,
            },
            reply_zone: FROM_OUTSIDE,
            pub_id: 0,
            alloc: Alloc::Port,
        };
        self.new_flow(hook, p, nf)
    }

    /// A flow packet from the uplink to the uplink address: its flow, or a new flow to
    /// a published port (TCP and UDP; pings to the host are the host's).
    fn outside_flow(&mut self, p: &Pkt<A>) -> Result<Decision<A>, DropReason> {
        let key = key_of(p, FROM_OUTSIDE);
        if let Some((i, dir)) = self.flow_of(&key, p) {
            return Ok(self.known(Hook::UplinkIngress, p, i, dir));
        }
        // A martian source, the host's own address, or one of the lab's subnet (behind
        // the bridge, spoofed from outside), opens nothing (the host's stack refuses it).
        if opens::<A>(p.proto, p.flags)
            && p.proto != A::ICMP
            && !p.saddr.martian()
            && !self.cfg.is_host(p.saddr)
            && !self.cfg.in_subnet(p.saddr)
            && let Some(m) = publish_lookup(&self.cfg.published, p.daddr, p.proto, p.dport)
        {
            // The client's address is kept; its port too, unless that clashes.
            let mut nf = NewFlow {
                kind: FlowKind::Published,
                key,
                to: Tuple {
                    saddr: p.saddr,
                    daddr: m.ctr,
                    sport: p.sport,
                    dport: m.ctr_port,
                },
                reply_zone: FROM_CTR,
                pub_id: m.id,
                alloc: Alloc::Fixed,
            };
            if self.holds(&reply_key_of(&nf.key, &nf.to, nf.reply_zone)) {
                nf.alloc = Alloc::Port;
            }
            return self.new_flow(Hook::UplinkIngress, p, nf);
        }
        Ok(Decision::Pass)
    }

    /// A packet of a tracked flow: translated as its direction says.
    fn known(&mut self, hook: Hook, p: &Pkt<A>, i: usize, dir: Dir) -> Decision<A> {
        let flow = &self.flows[i];
        let to = flow.to_of(dir);
        let mut label = match dir {
            Dir::Opener => flow.kind.name().to_string(),
            Dir::Reply => format!("{} reply", flow.kind.name()),
        };
        if p.proto == TCP
            && p.flags & RST != 0
            && flow.flags & FLAG_SEEN_REPLY == 0
            && flow.reset(dir, p) == RST_CLOSES
        {
            label += UNANSWERED_RESET;
        }
        let mut t = translation(label, p, to);
        // Flags no TCP sends, or a bare SYN from the responder of an answered flow:
        // nf_conntrack lets such a segment into no flow.
        // And a SYN-ACK or reset answering the SYN without acknowledging it.
        let unacked = p.proto == TCP && !flow.acks_the_syn(dir, p);
        t.invalid_flags = p.proto == TCP
            && (!tcp_flags_valid(p.flags)
                || !tcp_segment_fits(flow.state, p.flags, dir == Dir::Opener)
                || (unacked && p.flags & RST == 0));
        t.refused_reset =
            p.proto == TCP && p.flags & RST != 0 && (unacked || flow.reset(dir, p) == RST_REFUSED);
        t.effect = Effect::Touch(i, dir);
        t.remember = remember(hook, p);
        Decision::Translate(Box::new(t))
    }

    fn new_flow(
        &mut self,
        hook: Hook,
        p: &Pkt<A>,
        nf: NewFlow<A>,
    ) -> Result<Decision<A>, DropReason> {
        let label = format!("{}: new flow", nf.kind.name());
        let mut t = translation(label, p, nf.to);
        if nf.alloc == Alloc::Port {
            match self.port_outlook(&nf, p.seq_end) {
                Ok(may) => t.may_exhaust = may,
                Err(_) => t.exhausted = true,
            }
            t.port_at = if p.proto == A::ICMP {
                vec![p.l4 + 4]
            } else {
                vec![p.l4]
            };
            t.edits.retain(|(at, _)| !t.port_at.contains(at));
        }
        t.remember = remember(hook, p);
        t.effect = Effect::Create(nf);
        Ok(Decision::Translate(Box::new(t)))
    }

    /// An ICMP error about a tracked flow: the quote becomes what the other side sent,
    /// the outer addresses follow. One nobody can place is left to the host when it
    /// arrives, and never leaves the lab with a container's address.
    fn icmp_error(
        &mut self,
        f: &[u8],
        p: &Pkt<A>,
        sender: Sender,
    ) -> Result<Decision<A>, DropReason> {
        let from_ctr = matches!(sender, Sender::Container | Sender::ContainerToHost);
        let untracked = || {
            if sender == Sender::Container {
                Err(DropReason::UnsupportedProtocol)
            } else {
                Ok(Decision::Pass)
            }
        };
        // An error goes to the source of the packet it quotes (nf_conntrack's rule).
        let Some(q) = wire::quoted(f, p)?.filter(|q| q.saddr == p.daddr) else {
            return untracked();
        };
        let zone = if sender == Sender::Outside {
            FROM_OUTSIDE
        } else {
            FROM_CTR
        };
        let key = Key {
            zone,
            proto: q.proto,
            saddr: q.daddr,
            daddr: q.saddr,
            sport: q.dport,
            dport: q.sport,
        };
        let Some((i, dir)) = self.lookup(&key) else {
            return untracked();
        };
        // An echo quote of the other direction's kind is about no flow (the quote went
        // against `dir`: a request only where the flow's replies come from).
        let echo = match dir {
            Dir::Opener => A::ECHO_REPLY,
            Dir::Reply => A::ECHO_REQUEST,
        };
        if q.proto == A::ICMP && q.flags != echo {
            return untracked();
        }
        let e = self.flows[i].to_of(dir);
        let mut t = Translation::new("icmp error".into(), (A::default(), A::default()));
        outer_addrs(&mut t, p, if from_ctr { e.saddr } else { p.saddr }, e.daddr);
        t.edits.push((q.l3 + A::SADDR_AT, e.daddr.bytes()));
        t.edits.push((q.l3 + A::DADDR_AT, e.saddr.bytes()));
        if !A::V6 {
            t.csums.push(Csum::Ip {
                hdr: q.l3,
                len: q.ihl,
            });
        }
        if q.proto == A::ICMP {
            t.edits.push((q.l4 + 4, e.dport.to_be_bytes().to_vec()));
            // ICMPv6's checksum covers the quoted addresses too.
            t.csums.push(Csum::L4 {
                field: q.l4 + 2,
                from: q.l4,
                to: q.end,
                pseudo: A::V6.then(|| pseudo::<A>(&q)).flatten(),
                udp: false,
            });
        } else {
            t.edits.push((q.l4, e.dport.to_be_bytes().to_vec()));
            t.edits.push((q.l4 + 2, e.sport.to_be_bytes().to_vec()));
            // The quoted checksum, when the quote reaches it.
            let field = q.l4 + if q.proto == TCP { 16 } else { 6 };
            if field + 2 <= q.end {
                t.csums.push(Csum::L4 {
                    field,
                    from: q.l4,
                    to: q.end,
                    pseudo: pseudo::<A>(&q),
                    udp: q.proto == UDP,
                });
            }
        }
        t.csums.push(Csum::L4 {
            field: p.l4 + 2,
            from: p.l4,
            to: p.end,
            pseudo: A::V6.then(|| pseudo::<A>(p)).flatten(),
            udp: false,
        });
        Ok(Decision::Translate(Box::new(t)))
    }

    /// The entries the datapath's two tables must hold: `(CT, CT_PENDING)`.
    pub fn tables(&self) -> (Entries<A::Raw>, Entries<A::Raw>) {
        let (mut ct, mut pending) = (Vec::new(), Vec::new());
        for f in &self.flows {
            let t = if f.assured() { &mut ct } else { &mut pending };
            t.extend(f.entries());
        }
        (ct, pending)
    }

    /// The fragments' translations the datapath must hold: datagram → addresses.
    pub fn frag_table(&self) -> Vec<(FragTuple<A>, (A, A))> {
        self.frags.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// The lab's addresses, copied out of the configuration for one decision.
struct Where<A> {
    uplink: A,
    bridge: A,
    subnet: A,
    mask: A,
}

impl<A: Ip> Where<A> {
    fn of(cfg: &NatConfig<A>) -> Self {
        Where {
            uplink: cfg.uplink,
            bridge: cfg.bridge,
            subnet: cfg.subnet,
            mask: cfg.mask,
        }
    }

    fn in_subnet(&self, a: A) -> bool {
        a & self.mask == self.subnet
    }

    fn is_host(&self, a: A) -> bool {
        a == self.uplink || a == self.bridge
    }
}

/// The pseudo-header of packet `p`'s L4 checksum.
fn pseudo<A: Ip>(p: &Pkt<A>) -> Option<(usize, usize, u8)> {
    let len = if A::V6 { 32 } else { 8 };
    Some((p.l3 + A::SADDR_AT, len, p.proto))
}

fn key_of<A: Ip>(p: &Pkt<A>, zone: u8) -> Key<A> {
    Key {
        zone,
        proto: p.proto,
        saddr: p.saddr,
        daddr: p.daddr,
        sport: p.sport,
        dport: p.dport,
    }
}

/// The zone a first fragment's translation is remembered in, at the hooks that see
/// the rest of its datagram.
fn remember<A>(hook: Hook, p: &Pkt<A>) -> Option<u8> {
    if !p.first_fragment {
        return None;
    }
    match hook {
        Hook::UplinkEgress | Hook::BridgeIngress => Some(FROM_CTR),
        Hook::UplinkIngress => Some(FROM_OUTSIDE),
        Hook::Endpoint => None,
    }
}

/// A translated frame the fast path forwards as `plan` says: the TTL one less (the lab
/// host routes it), the next hop's MACs, redirected. [`Plan::Stack`] leaves it as is.
fn forward<A: Ip>(mut t: Translation<A>, p: &Pkt<A>, plan: Plan) -> Translation<A> {
    match plan {
        Plan::Stack => return t,
        Plan::TooBig => {
            t.label.push_str(" [too big: stack]");
            return t;
        }
        Plan::Next(dmac, smac) => {
            t.edits.push((0, dmac.to_vec()));
            t.edits.push((6, smac.to_vec()));
        }
    }
    t.edits.push((p.l3 + A::TTL_AT, vec![p.ttl - 1]));
    t.verdict = TC_ACT_REDIRECT;
    t.label.push_str(" [fast]");
    t
}

/// Rewrites the outer addresses to `s`, `d` (with the IPv4 checksum).
fn outer_addrs<A: Ip>(t: &mut Translation<A>, p: &Pkt<A>, s: A, d: A) {
    if s != p.saddr {
        t.edits.push((p.l3 + A::SADDR_AT, s.bytes()));
    }
    if d != p.daddr {
        t.edits.push((p.l3 + A::DADDR_AT, d.bytes()));
    }
    if !A::V6 {
        t.csums.push(Csum::Ip {
            hdr: p.l3,
            len: p.ihl,
        });
    }
}

/// A flow packet rewritten to `to`: addresses, ports (the echo identifier), and the
/// checksums over them.
fn translation<A: Ip>(label: String, p: &Pkt<A>, to: Tuple<A>) -> Translation<A> {
    let mut t = Translation::new(label, (to.saddr, to.daddr));
    outer_addrs(&mut t, p, to.saddr, to.daddr);
    match p.proto {
        TCP | UDP => {
            t.edits.push((p.l4, to.sport.to_be_bytes().to_vec()));
            t.edits.push((p.l4 + 2, to.dport.to_be_bytes().to_vec()));
            let udp = p.proto == UDP;
            let field = p.l4 + if udp { 6 } else { 16 };
            t.csums.push(Csum::L4 {
                field,
                from: p.l4,
                to: p.end,
                pseudo: pseudo::<A>(p),
                udp,
            });
        }
        _ => {
            t.edits.push((p.l4 + 4, to.sport.to_be_bytes().to_vec()));
            t.csums.push(Csum::L4 {
                field: p.l4 + 2,
                from: p.l4,
                to: p.end,
                pseudo: A::V6.then(|| pseudo::<A>(p)).flatten(),
                udp: false,
            });
        }
    }
    t
}
