//! What the fuzz test feeds the programs: a case is a lab configuration (NAT range,
//! published ports) and a sequence of steps. Steps are abstract — "the reply of the
//! third flow, with these TCP flags" — and become frames against the model's flow table
//! when they run, so that random sequences hold real flows, their replies and closes,
//! next to frames that are malformed on purpose.

use netlab_tests::model::{
    Model,
    flows::{Dir, Mapping},
    ip::Ip,
    wire::{self, TCP, UDP},
    wire6,
};
use proptest::prelude::*;

use crate::family::Family;

/// Ports that matter: published ones, the NAT range's edges, common services.
const PORTS: [u16; 12] = [
    80, 53, 443, 8080, 8084, 5000, 5353, 20000, 20001, 29999, 40000, 45000,
];

#[derive(Clone, Copy, Debug)]
pub enum Addr {
    /// The `i`-th address of the family's pool.
    Pool(usize),
    Any(u128),
}

impl Addr {
    pub fn get<A: Family>(self, fast: bool) -> A {
        match self {
            Addr::Pool(i) => A::POOL[i % A::POOL.len()],
            // The fast path asks the lab host's routes: stay inside the known world.
            Addr::Any(a) if fast => A::POOL[a as usize % A::POOL.len()],
            Addr::Any(a) => A::any(a),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Port {
    Fixed(u16),
    /// A port of the `i`-th published mapping (`k`-th of a range).
    Published(usize, u16),
}

/// How a datagram is cut into fragments, and which of them are sent.
#[derive(Clone, Copy, Debug)]
pub enum Frag {
    Whole,
    /// First fragment with `8 * (1 + n)` bytes past the L4 header... then the rest.
    InOrder(u8),
    LaterFirst(u8),
    FirstMissing(u8),
    /// Only the first fragment.
    FirstOnly(u8),
}

/// What part of the packet an ICMP error quotes, or how the quote is broken.
#[derive(Clone, Copy, Debug)]
pub enum Quote {
    Full,
    /// The IPv4 header and this many bytes of L4 header.
    L4(u8),
    /// Only this many bytes of the IPv4 header.
    Ip(u8),
    /// An ICMP error quoting the packet, quoted (errors about errors are not answered).
    Nested,
    BadVersion,
    LaterFragment,
}

/// Malformations applied to an otherwise valid frame.
#[derive(Clone, Copy, Debug)]
pub enum Mutation {
    /// Sets the IHL nibble without adding bytes.
    Ihl(u8),
    /// Inserts `4 * n` bytes of options (IHL and total length follow).
    Options(u8, u8),
    Version(u8),
    /// Adds to the total length field.
    TotLen(i16),
    /// Cuts bytes off the end of the frame.
    Cut(u8),
    /// Appends bytes past the datagram.
    Pad(u8, u8),
    /// Sets the flags and fragment offset field.
    FragOff(u16),
    /// Sets the TCP data offset nibble.
    Doff(u8),
    /// Sets the TCP flags byte.
    Flags(u8),
    /// Sets the ethertype.
    Ethertype(u16),
    /// Sets the TTL (IPv6: the hop limit).
    Ttl(u8),
    /// Overwrites one byte anywhere, no checksum fixed.
    Byte(u16, u8),
}

#[derive(Clone, Copy, Debug)]
pub enum HookSel {
    UplinkEgress,
    UplinkIngress,
    BridgeIngress,
    Endpoint,
    /// The way a packet with this source goes: a container's or the uplink's.
    Natural,
}

#[derive(Clone, Debug)]
pub enum Step {
    /// A new flow's first packet (SYN, datagram or echo request unless `flags` says
    /// otherwise), from its source's side.
    Open {
        src: Addr,
        dst: Addr,
        proto: u8,
        sport: u16,
        dport: Port,
        flags: u8,
        frag: Frag,
        len: u8,
    },
    /// A packet of a tracked flow (`flow`-th, modulo their number), either way; with
    /// `natural`, a TCP flow gets the segment its state calls for next (`flags` then
    /// picks among them) and the direction follows.
    Again {
        flow: usize,
        reply: bool,
        flags: u8,
        natural: bool,
        frag: Frag,
        len: u8,
    },
    /// An ICMP error about a packet of a tracked flow, sent by whoever received it (or
    /// a router on the way, from outside).
    Error {
        flow: usize,
        reply: bool,
        kind: (u8, u8),
        quote: Quote,
        router: bool,
    },
    /// IPv6 neighbour discovery from a container (router solicitation or
    /// advertisement, neighbour solicitation or advertisement, redirect) naming
    /// `target`.
    Ndp { kind: u8, src: Addr, target: Addr },
    /// A valid frame broken on purpose.
    Mutated {
        base: Box<Step>,
        mutations: Vec<Mutation>,
        hook: HookSel,
    },
    /// Any bytes (often an IPv4 ethertype).
    Bytes { hook: HookSel, bytes: Vec<u8> },
    /// Unpublishes the `i`-th published mapping.
    Withdraw(usize),
}

#[derive(Clone, Debug, Default)]
pub struct Case<A> {
    /// With the fast path (the endpoint hook, redirects) or without.
    pub fast: bool,
    pub nat: (u16, u16),
    pub published: Vec<Mapping<A>>,
    pub steps: Vec<Step>,
}

/// Where a frame enters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// From a container: its veth (fast path), the bridge, and the uplink's egress if it
    /// leaves the lab.
    FromCtr,
    /// From the uplink.
    FromOutside,
    Hook(netlab_tests::model::Hook),
}

// ---------------------------------------------------------------------------------
// Strategies

fn addr<A: Family>() -> impl Strategy<Value = Addr> {
    prop_oneof![
        6 => (0..A::POOL.len()).prop_map(Addr::Pool),
        1 => any::<u128>().prop_map(Addr::Any),
    ]
}

fn ctr_addr() -> impl Strategy<Value = Addr> {
    prop_oneof![4 => Just(Addr::Pool(0)), 3 => Just(Addr::Pool(1)), 1 => Just(Addr::Pool(2))]
}

fn outside_addr() -> impl Strategy<Value = Addr> {
    prop_oneof![
        2 => Just(Addr::Pool(5)),
        1 => Just(Addr::Pool(6)),
        3 => Just(Addr::Pool(7)),
        2 => Just(Addr::Pool(8)),
        1 => any::<u128>().prop_map(Addr::Any),
    ]
}

fn host_addr() -> impl Strategy<Value = Addr> {
    prop_oneof![3 => Just(Addr::Pool(4)), 2 => Just(Addr::Pool(3)), 1 => Just(Addr::Pool(9))]
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![3 => (0..PORTS.len()).prop_map(|i| PORTS[i]), 1 => any::<u16>()]
}

fn tcp_flags() -> impl Strategy<Value = u8> {
    // SYN, SYN-ACK, ACK, PSH-ACK, FIN-ACK, FIN, RST, RST-ACK, SYN+ECE+CWR, and any.
    prop_oneof![
        6 => prop::sample::select(vec![
            0x02u8, 0x12, 0x10, 0x18, 0x11, 0x01, 0x04, 0x14, 0xc2, 0x03, 0x06, 0x00,
        ]),
        1 => any::<u8>(),
    ]
}

fn frag() -> impl Strategy<Value = Frag> {
    prop_oneof![
        12 => Just(Frag::Whole),
        1 => (0..4u8).prop_map(Frag::InOrder),
        1 => (0..4u8).prop_map(Frag::LaterFirst),
        1 => (0..4u8).prop_map(Frag::FirstMissing),
        1 => (0..4u8).prop_map(Frag::FirstOnly),
    ]
}

fn proto<A: Ip>() -> impl Strategy<Value = u8> {
    prop_oneof![4 => Just(TCP), 3 => Just(UDP), 2 => Just(A::ICMP)]
}

fn open<A: Family>() -> impl Strategy<Value = Step> {
    let from_ctr = (
        ctr_addr(),
        prop_oneof![6 => outside_addr(), 3 => host_addr(), 1 => ctr_addr()],
    );
    let from_outside = (
        outside_addr(),
        prop_oneof![8 => Just(Addr::Pool(4)), 1 => host_addr(), 1 => addr::<A>()],
    );
    (
        prop_oneof![3 => from_ctr, 2 => from_outside],
        proto::<A>(),
        port(),
        prop_oneof![
            2 => port().prop_map(Port::Fixed),
            3 => (0..6usize, 0..10u16).prop_map(|(i, k)| Port::Published(i, k)),
        ],
        prop_oneof![8 => Just(None), 1 => tcp_flags().prop_map(Some)],
        frag(),
        body_len(),
    )
        .prop_map(
            |((src, dst), proto, sport, dport, flags, frag, len)| Step::Open {
                src,
                dst,
                proto,
                sport,
                dport,
                flags: flags.unwrap_or(match proto {
                    TCP => 0x02,
                    p if p == A::ICMP => A::ECHO_REQUEST,
                    _ => 0,
                }),
                frag,
                len,
            },
        )
}

/// A packet's `len` ([`payload`]): mostly short, one in ten a byte either side of the
/// links' MTU.
fn body_len() -> impl Strategy<Value = u8> {
    prop_oneof![9 => 0..253u8, 1 => 253..=255u8]
}

fn again() -> impl Strategy<Value = Step> {
    (
        any::<usize>(),
        any::<bool>(),
        tcp_flags(),
        any::<bool>(),
        frag(),
        body_len(),
    )
        .prop_map(|(flow, reply, flags, natural, frag, len)| Step::Again {
            flow,
            reply,
            flags,
            natural,
            frag,
            len,
        })
}

fn quote() -> impl Strategy<Value = Quote> {
    prop_oneof![
        4 => Just(Quote::Full),
        3 => (0..24u8).prop_map(Quote::L4),
        1 => (0..20u8).prop_map(Quote::Ip),
        1 => Just(Quote::Nested),
        1 => Just(Quote::BadVersion),
        1 => Just(Quote::LaterFragment),
    ]
}

fn error<A: Family>() -> impl Strategy<Value = Step> {
    (
        any::<usize>(),
        any::<bool>(),
        prop_oneof![
            6 => prop::sample::select(A::ERRORS.to_vec()),
            1 => (any::<u8>(), any::<u8>()),
        ],
        quote(),
        any::<bool>(),
    )
        .prop_map(|(flow, reply, kind, quote, router)| Step::Error {
            flow,
            reply,
            kind,
            quote,
            router,
        })
}

fn mutation<A: Ip>() -> impl Strategy<Value = Mutation> {
    // Never IPv4's in an IPv6 case: the model of those cases has none.
    let ethertypes = if A::V6 {
        vec![0x0806u16, 0x8100, 0x0000, 0x88cc]
    } else {
        vec![0x86ddu16, 0x0806, 0x8100, 0x0000]
    };
    prop_oneof![
        (0..16u8).prop_map(Mutation::Ihl),
        (1..11u8, any::<u8>()).prop_map(|(n, b)| Mutation::Options(n, b)),
        (0..16u8).prop_map(Mutation::Version),
        (-60..60i16).prop_map(Mutation::TotLen),
        (1..60u8).prop_map(Mutation::Cut),
        (1..40u8, any::<u8>()).prop_map(|(n, b)| Mutation::Pad(n, b)),
        prop::sample::select(vec![
            0x2000u16, 0x2001, 0x0001, 0x0010, 0x3fff, 0x8000, 0x6000
        ])
        .prop_map(Mutation::FragOff),
        (0..16u8).prop_map(Mutation::Doff),
        any::<u8>().prop_map(Mutation::Flags),
        prop::sample::select(ethertypes).prop_map(Mutation::Ethertype),
        (0..120u16, any::<u8>()).prop_map(|(at, b)| Mutation::Byte(at, b)),
        prop::sample::select(vec![0u8, 1, 2, 255]).prop_map(Mutation::Ttl),
    ]
}

fn hook_sel() -> impl Strategy<Value = HookSel> {
    prop_oneof![
        4 => Just(HookSel::Natural),
        1 => Just(HookSel::UplinkEgress),
        1 => Just(HookSel::UplinkIngress),
        1 => Just(HookSel::BridgeIngress),
        1 => Just(HookSel::Endpoint),
    ]
}

fn bytes<A: Family>() -> impl Strategy<Value = Step> {
    (
        hook_sel(),
        prop::collection::vec(any::<u8>(), 14..100),
        0..3u8,
        addr::<A>(),
        addr::<A>(),
    )
        .prop_map(|(hook, mut bytes, shape, src, dst)| {
            if A::V6 {
                if shape > 0 || bytes[12..14] == [0x08, 0x00] {
                    bytes[12..14].copy_from_slice(&A::ETHERTYPE.to_be_bytes());
                }
                if shape > 1 && bytes.len() >= 54 {
                    // An IPv6 header that holds together, between known addresses.
                    bytes[14] = 0x60;
                    let payload = (bytes.len() - 54) as u16;
                    bytes[18..20].copy_from_slice(&payload.to_be_bytes());
                    bytes[22..38].copy_from_slice(&src.get::<A>(false).bytes());
                    bytes[38..54].copy_from_slice(&dst.get::<A>(false).bytes());
                }
                return Step::Bytes { hook, bytes };
            }
            if shape > 0 {
                bytes[12] = 0x08;
                bytes[13] = 0x00;
            }
            if shape > 1 && bytes.len() >= 34 {
                // An IPv4 header that holds together, between known addresses.
                bytes[14] = 0x45;
                let tot = (bytes.len() - 14) as u16;
                bytes[16..18].copy_from_slice(&tot.to_be_bytes());
                bytes[26..30].copy_from_slice(&src.get::<A>(false).bytes());
                bytes[30..34].copy_from_slice(&dst.get::<A>(false).bytes());
                bytes[20] &= 0x20;
                bytes[21] = 0;
            }
            Step::Bytes { hook, bytes }
        })
}

/// Neighbour discovery from a container: mostly of its own addresses.
fn ndp<A: Family>() -> impl Strategy<Value = Step> {
    (
        prop::sample::select(vec![133u8, 134, 135, 136, 136, 136, 137]),
        prop_oneof![4 => ctr_addr(), 2 => Just(Addr::Pool(13)), 1 => Just(Addr::Pool(10)), 1 => addr::<A>()],
        prop_oneof![4 => ctr_addr(), 2 => Just(Addr::Pool(13)), 1 => addr::<A>()],
    )
        .prop_map(|(kind, src, target)| Step::Ndp { kind, src, target })
}

fn step<A: Family>() -> BoxedStrategy<Step> {
    // Boxed: the value trees of unboxed unions are large, and a debug build spends its
    // time moving them around.
    let flows = prop_oneof![
        4 => open::<A>().boxed(),
        7 => again().boxed(),
        2 => error::<A>().boxed(),
    ]
    .boxed();
    let valid = if A::V6 {
        prop_oneof![13 => flows, 1 => ndp::<A>().boxed()].boxed()
    } else {
        flows
    };
    prop_oneof![
        13 => valid.clone(),
        3 => (valid, prop::collection::vec(mutation::<A>(), 1..3), hook_sel()).prop_map(
            |(base, mutations, hook)| Step::Mutated {
                base: Box::new(base),
                mutations,
                hook,
            }
        ),
        1 => bytes::<A>().boxed(),
        1 => (0..6usize).prop_map(Step::Withdraw).boxed(),
    ]
    .boxed()
}

fn mapping<A: Family>() -> impl Strategy<Value = Mapping<A>> {
    (
        prop::sample::select(vec![A::default(), A::default(), A::UPLINK, A::BRIDGE, A::LOCALHOST]),
        prop_oneof![Just(TCP), Just(UDP)],
        prop::sample::select(vec![80u16, 8080, 8084, 5353, 20001, 40000]),
        prop::sample::select(vec![A::CTR, A::CTR, A::CTR2]),
        prop::sample::select(vec![80u16, 8080, 53, 5000]),
        prop_oneof![4 => Just(None), 1 => (prop::sample::select(vec![7000u16, 20000]), 0..10u16).prop_map(Some)],
    )
        .prop_map(|(addr, proto, port, ctr, ctr_port, range)| {
            let (port, end) = match range {
                Some((start, n)) => (start, start + n),
                None => (port, port),
            };
            Mapping {
                addr,
                proto,
                port,
                end,
                ctr,
                ctr_port,
                id: 0,
                range: range.is_some(),
            }
        })
}

pub fn case<A: Family>(max_steps: usize) -> impl Strategy<Value = Case<A>> {
    (
        any::<bool>(),
        // A handful of ranges: each is a configuration, and each configuration an
        // object of its own to load and verify (the programs read it as a global).
        prop_oneof![
            6 => Just((20_000u16, 29_999u16)),
            1 => prop::sample::select(vec![4u16, 9, 19, 39]).prop_map(|k| (20_000, 20_000 + k)),
            1 => (0..3u16).prop_map(|k| (20_000, 20_000 + k)),
        ],
        prop::collection::vec(mapping::<A>(), 0..5),
        prop::collection::vec(step::<A>(), 1..max_steps),
    )
        .prop_map(|(fast, nat, mappings, steps)| {
            let mut published: Vec<Mapping<A>> = Vec::new();
            for m in mappings {
                let clash = published.iter().any(|p| {
                    !p.range && !m.range && (p.addr, p.proto, p.port) == (m.addr, m.proto, m.port)
                });
                if !clash {
                    let id = published.len() as u32 + 1;
                    published.push(Mapping { id, ..m });
                }
            }
            Case {
                fast,
                nat,
                published,
                steps,
            }
        })
}

// ---------------------------------------------------------------------------------
// Frames

pub const ETH_HDR: [u8; 14] = [0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00];

/// An Ethernet frame of family `A` around `ip`.
pub fn frame<A: Ip>(ip: &[u8]) -> Vec<u8> {
    let mut f = ETH_HDR.to_vec();
    f[12..14].copy_from_slice(&A::ETHERTYPE.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

/// A datagram's body: up to 47 bytes, or, for the three largest `len`, as long as
/// makes the datagram (whose L4 header is `head` bytes) a byte short of the links' MTU,
/// as long as it, or a byte over: the fast path's size checks.
fn payload<A: Ip>(len: u8, head: usize) -> Vec<u8> {
    let n = match len {
        253..=255 => crate::LINK_MTU + len as usize - 254 - A::HDR - head,
        _ => len as usize % 48,
    };
    (0..n).map(|i| (i as u8).wrapping_mul(37)).collect()
}

/// A whole L4 message (checksum over all of it) of a flow packet. TCP segments of the
/// two directions (`reply`) carry sequence numbers that agree: each side sends from
/// where the other acknowledges (a real peer's reset counts; a mutation's may not).
#[allow(clippy::too_many_arguments)]
pub fn l4<A: Family>(
    proto: u8,
    src: A,
    dst: A,
    sport: u16,
    dport: u16,
    flags: u8,
    len: u8,
    reply: bool,
) -> Vec<u8> {
    let head = if proto == TCP { 20 } else { 8 };
    let body = payload::<A>(len, head);
    match proto {
        TCP => {
            // The opener's SYN comes just before its other segments, so that the
            // answer's acknowledgment (0x1001) is exactly the SYN's.
            let (seq, ack) = if reply {
                (0x2002u32, 0x1001u32)
            } else if flags & 0x12 == 0x02 {
                (0x1000, 0x2002)
            } else {
                (0x1001, 0x2002)
            };
            let mut t = Vec::new();
            t.extend_from_slice(&sport.to_be_bytes());
            t.extend_from_slice(&dport.to_be_bytes());
            t.extend_from_slice(&seq.to_be_bytes());
            t.extend_from_slice(&ack.to_be_bytes());
            t.extend_from_slice(&[0x50, flags, 0xff, 0xff]);
            t.extend_from_slice(&[0, 0, 0, 0]);
            t.extend_from_slice(&body);
            let c = A::l4_sum(src, dst, TCP, &t);
            t[16..18].copy_from_slice(&c.to_be_bytes());
            t
        }
        UDP => {
            let mut u = Vec::new();
            u.extend_from_slice(&sport.to_be_bytes());
            u.extend_from_slice(&dport.to_be_bytes());
            u.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
            u.extend_from_slice(&[0, 0]);
            u.extend_from_slice(&body);
            // Every eleventh datagram goes without a checksum (0: none; IPv6 forbids
            // it, and the NAT leaves it as it is all the same).
            if !len.is_multiple_of(11) {
                let c = A::l4_sum(src, dst, UDP, &u);
                u[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
            }
            u
        }
        _ => {
            // ICMP echo: `flags` is the type; the identifier is the "port".
            let mut m = vec![flags, 0, 0, 0];
            m.extend_from_slice(&sport.to_be_bytes());
            m.extend_from_slice(&7u16.to_be_bytes());
            m.extend_from_slice(&body);
            let c = A::l4_sum(src, dst, A::ICMP, &m);
            m[2..4].copy_from_slice(&c.to_be_bytes());
            m
        }
    }
}

/// An ICMP message `(type, code)` with four more header bytes `rest`, then `body`,
/// with its checksum.
fn icmp<A: Family>(src: A, dst: A, kind: (u8, u8), rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind.0, kind.1, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(body);
    let c = A::l4_sum(src, dst, A::ICMP, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// The frames of one datagram, cut as `frag` says (an identifier of its own).
pub fn datagram<A: Family>(
    src: A,
    dst: A,
    proto: u8,
    id: u32,
    l4: &[u8],
    frag: Frag,
) -> Vec<Vec<u8>> {
    let head = match proto {
        TCP => 20,
        p if p == UDP || p == A::ICMP => 8,
        _ => 0,
    };
    let cut = |n: u8| (head + 8 * (1 + n as usize)).div_ceil(8) * 8;
    let split = |n: u8| {
        let at = cut(n).min(l4.len().saturating_sub(1) / 8 * 8);
        if at < head.max(8) {
            // Too short to cut with the header whole: one fragment would not do.
            return None;
        }
        let first = frame::<A>(&A::ip(src, dst, proto, id, 0x2000, &l4[..at]));
        let rest = frame::<A>(&A::ip(src, dst, proto, id, (at / 8) as u16, &l4[at..]));
        Some((first, rest))
    };
    let whole = || vec![frame::<A>(&A::ip(src, dst, proto, id, 0x4000, l4))];
    match frag {
        Frag::Whole => whole(),
        Frag::InOrder(n) => split(n).map(|(a, b)| vec![a, b]).unwrap_or_else(whole),
        Frag::LaterFirst(n) => split(n).map(|(a, b)| vec![b, a]).unwrap_or_else(whole),
        Frag::FirstMissing(n) => split(n).map(|(_, b)| vec![b]).unwrap_or_else(whole),
        Frag::FirstOnly(n) => split(n).map(|(a, _)| vec![a]).unwrap_or_else(whole),
    }
}

/// The segment a TCP flow in `state` would see next, and whether the answering side
/// sends it: `pick` chooses among the likely ones.
fn next_segment(state: u8, pick: u8) -> (bool, u8) {
    use netlab_common::conntrack::{
        TCP_CLOSE, TCP_CLOSE_WAIT, TCP_ESTABLISHED, TCP_FIN_WAIT, TCP_SYN_RECV, TCP_SYN_SENT,
        TCP_SYN_SENT2, TCP_TIME_WAIT,
    };
    const SYN: u8 = 0x02;
    const SYN_ACK: u8 = 0x12;
    const ACK: u8 = 0x10;
    const PSH_ACK: u8 = 0x18;
    const FIN_ACK: u8 = 0x11;
    const RST: u8 = 0x04;
    let choices: &[(bool, u8)] = match state {
        TCP_SYN_SENT => &[
            (true, SYN_ACK),
            (true, SYN_ACK),
            (false, SYN),
            (true, RST | ACK),
            (true, SYN),
        ],
        // Simultaneous open.
        TCP_SYN_SENT2 => &[(false, SYN_ACK), (true, SYN_ACK), (false, ACK)],
        TCP_SYN_RECV => &[
            (false, ACK),
            (false, ACK),
            (true, SYN_ACK),
            (false, FIN_ACK),
        ],
        TCP_ESTABLISHED => &[
            (false, PSH_ACK),
            (true, PSH_ACK),
            (false, FIN_ACK),
            (true, FIN_ACK),
            (true, RST),
            (false, ACK),
        ],
        TCP_FIN_WAIT => &[(true, FIN_ACK), (true, ACK), (false, ACK)],
        TCP_CLOSE_WAIT => &[(false, FIN_ACK), (false, PSH_ACK), (true, ACK)],
        TCP_TIME_WAIT | TCP_CLOSE => &[(false, SYN), (false, ACK), (true, ACK)],
        _ => &[(false, SYN)],
    };
    choices[pick as usize % choices.len()]
}

/// What a tracked flow's packet becomes, ready to be quoted: its addresses, protocol
/// and L4 message.
fn translated<A: Family>(model: &Model<A>, flow: usize, dir: Dir, len: u8) -> (A, A, u8, Vec<u8>) {
    let f = &model.flows[flow];
    let t = f.to_of(dir);
    let proto = f.key.proto;
    let flags = match (proto, dir) {
        (TCP, _) => 0x18,
        (p, Dir::Opener) if p == A::ICMP => A::ECHO_REQUEST,
        (p, Dir::Reply) if p == A::ICMP => A::ECHO_REPLY,
        _ => 0,
    };
    let m = l4(
        proto,
        t.saddr,
        t.daddr,
        t.sport,
        t.dport,
        flags,
        len,
        dir == Dir::Reply,
    );
    (t.saddr, t.daddr, proto, m)
}

/// The frames of step `s` against the model's flows now, with where each enters. Empty
/// when the step refers to flows and there are none.
pub fn frames<A: Family>(
    s: &Step,
    model: &Model<A>,
    published: &[Mapping<A>],
    fast: bool,
) -> Vec<(Route, Vec<u8>)> {
    let route_of = |src: A| {
        if model.cfg.in_subnet(src) {
            Route::FromCtr
        } else {
            Route::FromOutside
        }
    };
    match s {
        Step::Open {
            src,
            dst,
            proto,
            sport,
            dport,
            flags,
            frag,
            len,
        } => {
            let (src, dst) = (src.get::<A>(fast), dst.get::<A>(fast));
            let dport = match *dport {
                Port::Fixed(p) => p,
                Port::Published(i, k) => match published.get(i % published.len().max(1)) {
                    Some(m) => m.port + k % (m.end - m.port + 1),
                    None => 80,
                },
            };
            let (sport, dport) = if *proto == A::ICMP {
                (*sport, *sport)
            } else {
                (*sport, dport)
            };
            let m = l4(*proto, src, dst, sport, dport, *flags, *len, false);
            let id = (sport ^ dport ^ (*len as u16)) as u32;
            datagram(src, dst, *proto, id, &m, *frag)
                .into_iter()
                .map(|f| (route_of(src), f))
                .collect()
        }
        Step::Again {
            flow,
            reply,
            flags,
            natural,
            frag,
            len,
        } => {
            if model.flows.is_empty() {
                return Vec::new();
            }
            let f = &model.flows[flow % model.flows.len()];
            let (reply, flags) = if *natural && f.key.proto == TCP {
                next_segment(f.state, *flags)
            } else {
                (*reply, *flags)
            };
            let dir = if reply { Dir::Reply } else { Dir::Opener };
            let k = f.key_of(dir);
            let flags = match (k.proto, dir) {
                (TCP, _) => flags,
                (p, Dir::Opener) if p == A::ICMP => A::ECHO_REQUEST,
                (p, Dir::Reply) if p == A::ICMP => A::ECHO_REPLY,
                _ => 0,
            };
            let m = l4(
                k.proto, k.saddr, k.daddr, k.sport, k.dport, flags, *len, reply,
            );
            let id = k.sport.wrapping_add(*len as u16) as u32;
            datagram(k.saddr, k.daddr, k.proto, id, &m, *frag)
                .into_iter()
                .map(|f| (route_of(k.saddr), f))
                .collect()
        }
        Step::Error {
            flow,
            reply,
            kind,
            quote,
            router,
        } => {
            if model.flows.is_empty() {
                return Vec::new();
            }
            let dir = if *reply { Dir::Reply } else { Dir::Opener };
            let (ts, td, proto, m) = translated(model, flow % model.flows.len(), dir, 40);
            let sent = A::ip(ts, td, proto, 0x5151, 0x4000, &m);
            let ihl = A::HDR;
            let mut q = match *quote {
                Quote::Full => sent.clone(),
                Quote::L4(n) => sent[..(ihl + n as usize).min(sent.len())].to_vec(),
                Quote::Ip(n) => sent[..(n as usize * ihl / 20).min(sent.len())].to_vec(),
                Quote::Nested => {
                    let inner = &sent[..(ihl + 8).min(sent.len())];
                    let unreach = if A::V6 { (1, 4) } else { (3, 3) };
                    let m = icmp(td, ts, unreach, [0; 4], inner);
                    A::ip(td, ts, A::ICMP, 1, 0, &m)
                }
                Quote::BadVersion => {
                    let mut q = sent.clone();
                    q[0] ^= 0x20;
                    q
                }
                // A fragment after the first: IPv4's offset field, IPv6's fragment
                // header.
                Quote::LaterFragment => A::ip(ts, td, proto, 0x5151, 0x0010, &m),
            };
            if let Quote::Nested | Quote::LaterFragment = quote {
            } else {
                q.truncate(q.len().min(sent.len()));
            }
            // From the packet's receiver, or a router on its way: wan's outside, the
            // lab host's own (uplink) address on the way into a container (its packet
            // too big, time exceeded), which it sends out by the uplink.
            let from_ctr = model.cfg.in_subnet(td);
            let src = match (*router, from_ctr) {
                (true, false) => A::WAN,
                (true, true) => A::UPLINK,
                (false, _) => td,
            };
            // Packet too big says the MTU.
            let rest = if A::V6 && kind.0 == 2 {
                1280u32.to_be_bytes()
            } else {
                [0; 4]
            };
            let m = icmp(src, ts, *kind, rest, &q);
            let route = match (*router, from_ctr) {
                (true, true) => Route::Hook(netlab_tests::model::Hook::UplinkEgress),
                (false, true) => Route::FromCtr,
                (_, false) => route_of(src),
            };
            vec![(route, frame::<A>(&A::ip(src, ts, A::ICMP, 9, 0, &m)))]
        }
        Step::Ndp { kind, src, target } => {
            if !A::V6 {
                return Vec::new();
            }
            let (src, target) = (src.get::<A>(false), target.get::<A>(false));
            // Solicitations to the target's solicited-node group, the rest to all nodes.
            let dst = if *kind == 135 {
                A::read(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 2], 0)
            } else {
                A::read(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 0)
            };
            let body = if matches!(kind, 135..=137) {
                target.bytes()
            } else {
                Vec::new()
            };
            let mut ip = A::ip(
                src,
                dst,
                A::ICMP,
                0,
                0,
                &icmp(src, dst, (*kind, 0), [0; 4], &body),
            );
            ip[7] = 255;
            vec![(Route::FromCtr, frame::<A>(&ip))]
        }
        Step::Mutated {
            base,
            mutations,
            hook,
        } => {
            let mut out = frames(base, model, published, fast);
            for (route, f) in &mut out {
                for m in mutations {
                    mutate::<A>(f, *m);
                }
                *route = match hook {
                    HookSel::Natural => *route,
                    h => Route::Hook(hook_of(*h)),
                };
            }
            out
        }
        Step::Bytes { hook, bytes } => {
            let route = match hook {
                HookSel::Natural => wire::saddr_of::<A>(bytes)
                    .map(route_of)
                    .unwrap_or(Route::FromOutside),
                h => Route::Hook(hook_of(*h)),
            };
            vec![(route, bytes.clone())]
        }
        Step::Withdraw(_) => Vec::new(),
    }
}

fn hook_of(h: HookSel) -> netlab_tests::model::Hook {
    use netlab_tests::model::Hook;
    match h {
        HookSel::UplinkEgress => Hook::UplinkEgress,
        HookSel::UplinkIngress => Hook::UplinkIngress,
        HookSel::BridgeIngress | HookSel::Natural => Hook::BridgeIngress,
        HookSel::Endpoint => Hook::Endpoint,
    }
}

/// Recomputes the IPv4 header checksum when the header fits in the frame.
fn fix_ip(f: &mut [u8]) {
    if f.len() < 34 {
        return;
    }
    let ihl = (f[14] & 0x0f) as usize * 4;
    if ihl < 20 || 14 + ihl > f.len() {
        return;
    }
    f[24] = 0;
    f[25] = 0;
    let c = netlab_tests::packet::checksum(&f[14..14 + ihl]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// Recomputes the TCP checksum of a frame that parses.
fn fix_tcp<A: Family>(f: &mut [u8]) {
    let Ok(Some(p)) = wire::parse::<A>(f) else {
        return;
    };
    if p.proto != TCP || p.kind != wire::Kind::Flow {
        return;
    }
    f[p.l4 + 16] = 0;
    f[p.l4 + 17] = 0;
    let c = A::l4_sum(p.saddr, p.daddr, TCP, &f[p.l4..p.end]);
    f[p.l4 + 16..p.l4 + 18].copy_from_slice(&c.to_be_bytes());
}

pub fn mutate<A: Family>(f: &mut Vec<u8>, m: Mutation) {
    if A::V6 {
        return mutate6::<A>(f, m);
    }
    let ip = f.len() >= 34 && f[12..14] == [0x08, 0x00];
    match m {
        Mutation::Ihl(n) if ip => {
            f[14] = (f[14] & 0xf0) | n;
            fix_ip(f);
        }
        Mutation::Options(n, b) if ip => {
            let ihl = (f[14] & 0x0f) as usize * 4;
            let words = (n as usize).min(15usize.saturating_sub(ihl / 4));
            if words == 0 || 14 + ihl > f.len() {
                return;
            }
            // NOPs, a random option kind, EOL: any content is the options' own business.
            let mut opts = vec![1u8; words * 4];
            opts[0] = b;
            *opts.last_mut().unwrap() = 0;
            let at = 14 + ihl;
            f.splice(at..at, opts);
            f[14] = (f[14] & 0xf0) | ((ihl / 4 + words) as u8 & 0x0f);
            let tot = u16::from_be_bytes([f[16], f[17]]).wrapping_add((words * 4) as u16);
            f[16..18].copy_from_slice(&tot.to_be_bytes());
            fix_ip(f);
        }
        Mutation::Version(v) if ip => {
            f[14] = (f[14] & 0x0f) | (v << 4);
            fix_ip(f);
        }
        Mutation::TotLen(d) if ip => {
            let tot = u16::from_be_bytes([f[16], f[17]]).wrapping_add(d as u16);
            f[16..18].copy_from_slice(&tot.to_be_bytes());
            fix_ip(f);
        }
        Mutation::FragOff(v) if ip => {
            f[20..22].copy_from_slice(&v.to_be_bytes());
            fix_ip(f);
        }
        Mutation::Ttl(t) if ip => {
            f[22] = t;
            fix_ip(f);
        }
        _ => mutate_any::<A>(f, m),
    }
}

/// IPv6's mutations: IPv4's, with the next-header byte for the IHL, extension headers
/// for the options and a fragment header for the fragment bits.
fn mutate6<A: Family>(f: &mut Vec<u8>, m: Mutation) {
    let ip = f.len() >= 54 && f[12..14] == [0x86, 0xdd];
    match m {
        Mutation::Ihl(n) if ip => {
            f[20] = [0u8, 43, 44, 60, 6, 17, 58, 59, 50][n as usize % 9];
        }
        Mutation::Options(n, b) if ip => {
            // Up to five headers, each of eight bytes: hop-by-hop, destination options,
            // routing (with segments left, when `b` says), as `b`'s bits pick.
            for k in 0..(n as usize % 6).max(1) {
                let kind =
                    [wire6::HOPOPTS, wire6::DSTOPTS, wire6::ROUTING][(b as usize >> (2 * k)) % 3];
                let h = if kind == wire6::ROUTING {
                    // Type 4 (segment routing), segments left 0 or 1.
                    [f[20], 0, 4, b & 1, 0, 0, 0, 0]
                } else {
                    // A PadN option of four bytes.
                    [f[20], 0, 1, 4, 0, 0, 0, 0]
                };
                insert_ext(f, h);
                f[20] = kind;
            }
        }
        Mutation::Version(v) if ip => f[14] = (f[14] & 0x0f) | (v << 4),
        Mutation::TotLen(d) if ip => {
            let len = u16::from_be_bytes([f[18], f[19]]).wrapping_add(d as u16);
            f[18..20].copy_from_slice(&len.to_be_bytes());
        }
        Mutation::Ttl(t) if ip => f[21] = t,
        Mutation::FragOff(v) if ip => {
            let off_m = ((v & 0x1fff) << 3) | u16::from(v & 0x2000 != 0);
            let [a, b] = off_m.to_be_bytes();
            insert_ext(f, [f[20], 0, a, b, 0, 0, 0x51, v as u8]);
            f[20] = wire6::FRAGMENT;
        }
        _ => mutate_any::<A>(f, m),
    }
}

/// Puts an eight-byte extension header right after the fixed IPv6 header (the caller
/// links it into the chain).
fn insert_ext(f: &mut Vec<u8>, h: [u8; 8]) {
    f.splice(54..54, h);
    let len = u16::from_be_bytes([f[18], f[19]]).wrapping_add(8);
    f[18..20].copy_from_slice(&len.to_be_bytes());
}

/// The mutations both families share.
fn mutate_any<A: Family>(f: &mut Vec<u8>, m: Mutation) {
    match m {
        Mutation::Cut(n) => {
            let keep = f.len().saturating_sub(n as usize).max(14);
            f.truncate(keep);
        }
        // Never past a full frame (Ethernet's header and the MTU): Ethernet pads only
        // short frames, and whether the fast path takes a longer one with a datagram
        // the route's MTU holds depends on its next-hop cache (the route lookup counts
        // the padding, the cache does not). A cut frame padded again is one of those.
        Mutation::Pad(n, b) if f.len() + n as usize <= 14 + crate::LINK_MTU => {
            f.extend(std::iter::repeat_n(b, n as usize))
        }
        Mutation::Doff(n) => {
            if let Ok(Some(p)) = wire::parse::<A>(f)
                && p.proto == TCP
                && p.kind == wire::Kind::Flow
            {
                f[p.l4 + 12] = (n << 4) | (f[p.l4 + 12] & 0x0f);
                fix_tcp::<A>(f);
            }
        }
        Mutation::Flags(b) => {
            if let Ok(Some(p)) = wire::parse::<A>(f)
                && p.proto == TCP
                && p.kind == wire::Kind::Flow
            {
                f[p.l4 + 13] = b;
                fix_tcp::<A>(f);
            }
        }
        Mutation::Ethertype(t) => f[12..14].copy_from_slice(&t.to_be_bytes()),
        Mutation::Byte(at, b) if (at as usize) < f.len() => f[at as usize] = b,
        _ => {}
    }
}
