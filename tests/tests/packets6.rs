//! The IPv6 programs (NAT66) on crafted frames (BPF_PROG_TEST_RUN): every rewrite is
//! checked byte for byte against a frame built from scratch with the expected tuple,
//! so every checksum (the L4 one over the IPv6 pseudo-header, and in an ICMPv6 error
//! the quoted one too) is verified by an independent full computation.

use std::net::Ipv6Addr;

use aya::{
    Ebpf, TestRun as _,
    maps::{HashMap, PerCpuArray},
    programs::{SchedClassifier, TestRunOptions},
};
use netlab::datapath::ebpf::addr6;
use netlab_common::{
    addr::Addr6,
    config::{Config, FLAG_IPV6},
    conntrack::{CtEntry, CtKey, ZONE_FROM_CTR},
    endpoint::Source,
    frag::{FRAG6_TIMEOUT_SECS, FragKey6, FragNat6},
    maps::{self as names, CONNTRACK_MAX_DEFAULT},
    stats::{Counters, DropReason, STATS_PROGRAMS, counter},
};
use netlab_tests::{
    link_of,
    packet6::{DSTOPTS, HOPOPTS, ICMPV6, Ipv6, TCP, UDP, l4_ok},
    require_root,
};

const CTR6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xac12, 0, 0, 0, 0, 0, 2);
const OTHER_CTR6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xac12, 0, 0, 0, 0, 0, 9);
const BRIDGE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xac12, 0, 0, 0, 0, 0, 1);
const UPLINK6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2);
const ROUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
const FAR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 1);
const TC_ACT_UNSPEC: u32 = u32::MAX;
const TC_ACT_SHOT: u32 = 2;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

fn config() -> Config {
    Config {
        // What BPF_PROG_TEST_RUN's skb is on without a context: loopback.
        uplink_ifindex: 1,
        bridge_ifindex: 3,
        flags: FLAG_IPV6,
        uplink_addr6: addr6(UPLINK6),
        bridge_addr6: addr6(BRIDGE6),
        subnet6: addr6(Ipv6Addr::new(0xfd00, 0xac12, 0, 0, 0, 0, 0, 0)),
        subnet6_mask: addr6(Ipv6Addr::new(0xffff, 0xffff, 0xffff, 0xffff, 0, 0, 0, 0)),
        ..Config::default()
    }
}

/// The datapath object loaded with fresh (unpinned) maps, its IPv6 programs verified.
struct Datapath {
    bpf: Ebpf,
}

impl Datapath {
    fn new() -> Self {
        Self::with(config())
    }

    fn with(cfg: Config) -> Self {
        Self::sized(cfg, CONNTRACK_MAX_DEFAULT)
    }

    /// With tables for `conntrack_max` flows (`--conntrack-max`).
    fn sized(cfg: Config, conntrack_max: u32) -> Self {
        require_root();
        let mut bpf =
            netlab::datapath::ebpf::load(false, conntrack_max, &cfg).expect("load object");
        for (p, _) in names::PROGS6_NAMES {
            netlab::datapath::ebpf::load_program(&mut bpf, p)
                .expect("verifier accepts the program");
        }
        Self { bpf }
    }

    fn run(&mut self, prog: &str, frame: &[u8]) -> (u32, Vec<u8>) {
        let p: &mut SchedClassifier = self.bpf.program_mut(prog).unwrap().try_into().unwrap();
        let mut out = vec![0u8; frame.len() + 256];
        let r = p
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .expect("test run");
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }

    fn egress(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.run("uplink_egress6", frame)
    }

    fn ingress(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.run("uplink_ingress6", frame)
    }

    /// The endpoint program on the veth of container CTR6 (ifindex 1, MAC [`MAC`]).
    fn endpoint(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let mut sources: HashMap<_, u32, Source> =
            HashMap::try_from(self.bpf.map_mut(names::SOURCES).unwrap()).unwrap();
        let src = Source {
            addr: 0,
            mac: MAC,
            _pad: [0; 2],
            addr6: addr6(CTR6),
        };
        sources.insert(1, src, 0).unwrap();
        self.run("endpoint_ingress6", frame)
    }

    /// Publishes `port`/`proto` on every host address to `to:to_port` (mapping 1), as
    /// `netlab publish` would.
    fn publish6(&mut self, port: u16, proto: u8, to: Ipv6Addr, to_port: u16) {
        use netlab_common::publish::{PubKey, PubTarget};
        let mut m: HashMap<_, PubKey<Addr6>, PubTarget<Addr6>> =
            HashMap::try_from(self.bpf.map_mut(names::PUBLISH6).unwrap()).unwrap();
        let key = PubKey {
            addr: [0; 4],
            port: port.to_be(),
            proto,
            _pad: 0,
        };
        let target = PubTarget {
            addr: addr6(to),
            port: to_port.to_be(),
            _pad: 0,
            id: 1,
        };
        m.insert(key, target, 0).unwrap();
    }

    fn stat(&self, index: u32) -> u64 {
        let m: PerCpuArray<_, Counters> =
            PerCpuArray::try_from(self.bpf.map(names::STATS).unwrap()).unwrap();
        let per_cpu = m.get(&STATS_PROGRAMS, 0).unwrap();
        per_cpu.iter().map(|c| c[index as usize]).sum()
    }

    fn drops(&self, reason: DropReason) -> u64 {
        let m: PerCpuArray<_, Counters> =
            PerCpuArray::try_from(self.bpf.map(names::STATS).unwrap()).unwrap();
        let per_cpu = m.get(&STATS_PROGRAMS, 0).unwrap();
        per_cpu.iter().map(|c| c[reason.index() as usize]).sum()
    }
}

fn assert_frames_eq(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "frame length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g, w,
            "byte {i} differs: got {g:#04x}, want {w:#04x}\ngot  {got:02x?}\nwant {want:02x?}"
        );
    }
}

/// The source port of the L4 header at `l4` in `f`.
fn sport(f: &[u8], l4: usize) -> u16 {
    u16::from_be_bytes([f[l4], f[l4 + 1]])
}

const L4: usize = 14 + 40;

#[test]
fn udp_is_masqueraded_and_its_reply_comes_back() {
    let mut dp = Datapath::new();
    let out = Ipv6::new(CTR6, FAR6, UDP).udp(5000, 53, b"query");
    let (verdict, got) = dp.egress(&out);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    let port = sport(&got, L4);
    assert!((20_000..=29_999).contains(&port), "NAT port {port}");
    assert!(l4_ok(&got, L4, UDP));
    assert_frames_eq(&got, &Ipv6::new(UPLINK6, FAR6, UDP).udp(port, 53, b"query"));

    let reply = Ipv6::new(FAR6, UPLINK6, UDP).udp(53, port, b"answer");
    let (verdict, got) = dp.ingress(&reply);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_frames_eq(&got, &Ipv6::new(FAR6, CTR6, UDP).udp(53, 5000, b"answer"));
}

#[test]
fn an_echo_gets_a_nat_identifier_and_its_reply_the_containers() {
    let mut dp = Datapath::new();
    let (verdict, got) = dp.egress(&Ipv6::new(CTR6, FAR6, ICMPV6).echo(128, 0x4242));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    let id = u16::from_be_bytes([got[L4 + 4], got[L4 + 5]]);
    assert!((20_000..=29_999).contains(&id), "NAT identifier {id}");
    assert_frames_eq(&got, &Ipv6::new(UPLINK6, FAR6, ICMPV6).echo(128, id));
    let (verdict, got) = dp.ingress(&Ipv6::new(FAR6, UPLINK6, ICMPV6).echo(129, id));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_frames_eq(&got, &Ipv6::new(FAR6, CTR6, ICMPV6).echo(129, 0x4242));
}

#[test]
fn extension_headers_are_walked_and_kept() {
    let mut dp = Datapath::new();
    let mut ip = Ipv6::new(CTR6, FAR6, UDP);
    // Hop-by-hop options with one PadN option: 8 bytes.
    ip.ext = vec![(HOPOPTS, vec![1, 4, 0, 0, 0, 0])];
    let (verdict, got) = dp.egress(&ip.frame(&ip.udp_l4(5001, 53, b"q")));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    let port = sport(&got, L4 + 8);
    let mut want = Ipv6::new(UPLINK6, FAR6, UDP);
    want.ext = ip.ext.clone();
    assert_frames_eq(&got, &want.frame(&want.udp_l4(port, 53, b"q")));
}

/// A router beyond the uplink answers a masqueraded TCP segment with packet too big:
/// the error reaches the container about the segment it sent (quoted address, port and
/// TCP checksum translated back, the outer ICMPv6 checksum with them).
#[test]
fn packet_too_big_is_translated_back_with_its_quote() {
    let mut dp = Datapath::new();
    let orig = Ipv6::new(CTR6, FAR6, TCP);
    let (_, got) = dp.egress(&orig.tcp(5002, 80, SYN, b""));
    let port = sport(&got, L4);
    let (_, got) = dp.ingress(&Ipv6::new(FAR6, UPLINK6, TCP).tcp(80, port, SYN | ACK, b""));
    assert_eq!(sport(&got, L4), 80);
    let seg = vec![0x5a; 1300];
    let translated = Ipv6::new(UPLINK6, FAR6, TCP);
    let (_, sent) = dp.egress(&orig.tcp(5002, 80, ACK, &seg));
    assert_frames_eq(&sent, &translated.tcp(port, 80, ACK, &seg));
    let quote = |ip: &Ipv6, sport: u16| {
        let mut q = ip.packet(&ip.tcp_l4(sport, 80, ACK, &seg));
        q.truncate(1280 - 40 - 8);
        q
    };
    let mtu = 1280u32.to_be_bytes();
    let router = Ipv6::new(ROUTER6, UPLINK6, ICMPV6);
    let err = router.frame(&router.icmp_l4(2, 0, mtu, &quote(&translated, port)));
    let (verdict, got) = dp.ingress(&err);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    let back = Ipv6::new(ROUTER6, CTR6, ICMPV6);
    assert_frames_eq(
        &got,
        &back.frame(&back.icmp_l4(2, 0, mtu, &quote(&orig, 5002))),
    );
}

/// A UDP datagram as `ip`'s stack sends it when it is larger than the path: cut in two
/// fragments with identification `id`, the first carrying the UDP header and 16 bytes
/// of `payload`, the second the rest.
fn fragmented_udp(ip: &Ipv6, sport: u16, dport: u16, payload: &[u8], id: u32) -> [Vec<u8>; 2] {
    ip.fragments(&ip.udp_l4(sport, dport, payload), 24, id)
}

/// Offset of the L4 header in a fragment: after the IPv6 and fragment headers.
const FRAG_L4: usize = L4 + 8;

/// A container's datagram, fragmented by its stack, leaves masqueraded: the first
/// fragment with its flow (the UDP checksum covers the whole datagram, so its
/// incremental update for the new address and port stays right), the later one with
/// the same addresses, found by the fragment header's identification. The far end's
/// fragmented answer comes back the same way. A later fragment whose first went by
/// unseen is dropped leaving (it would leave with the container's address) and passed
/// coming in (the host's own), as IPv4's are.
#[test]
fn fragments_of_a_masqueraded_datagram_follow_their_first() {
    let mut dp = Datapath::new();
    let payload: Vec<u8> = (0..40).collect();
    let [first, rest] = fragmented_udp(&Ipv6::new(CTR6, FAR6, UDP), 5003, 53, &payload, 0x1234);
    let (verdict, got_first) = dp.egress(&first);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    let port = sport(&got_first, FRAG_L4);
    assert!((20_000..=29_999).contains(&port), "NAT port {port}");
    let (verdict, got_rest) = dp.egress(&rest);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    let want = fragmented_udp(&Ipv6::new(UPLINK6, FAR6, UDP), port, 53, &payload, 0x1234);
    assert_frames_eq(&got_first, &want[0]);
    assert_frames_eq(&got_rest, &want[1]);
    assert_eq!(dp.stat(counter::FRAGMENTS_TRANSLATED), 1);
    let frags: HashMap<_, FragKey6, FragNat6> =
        HashMap::try_from(dp.bpf.map(names::FRAGS6).unwrap()).unwrap();
    let remembered: Vec<(FragKey6, FragNat6)> = frags.iter().map(|r| r.unwrap()).collect();
    assert_eq!(remembered.len(), 1);
    let (key, nat) = remembered[0];
    let want_key = FragKey6 {
        saddr: addr6(CTR6),
        daddr: addr6(FAR6),
        id: 0x1234u32.to_be(),
        proto: UDP,
        zone: ZONE_FROM_CTR,
        _pad: [0; 2],
    };
    assert_eq!(key, want_key);
    assert_eq!((nat.saddr, nat.daddr), (addr6(UPLINK6), addr6(FAR6)));

    let [first, rest] = fragmented_udp(&Ipv6::new(FAR6, UPLINK6, UDP), 53, port, &payload, 7);
    let want = fragmented_udp(&Ipv6::new(FAR6, CTR6, UDP), 53, 5003, &payload, 7);
    assert_eq!(dp.ingress(&first), (TC_ACT_UNSPEC, want[0].clone()));
    assert_eq!(dp.ingress(&rest), (TC_ACT_UNSPEC, want[1].clone()));
    assert_eq!(dp.stat(counter::FRAGMENTS_TRANSLATED), 2);

    let [_, stray] = fragmented_udp(&Ipv6::new(CTR6, FAR6, UDP), 5003, 53, &payload, 99);
    assert_eq!(dp.egress(&stray).0, TC_ACT_SHOT);
    assert_eq!(dp.drops(DropReason::Fragment), 1);
    let [_, stray] = fragmented_udp(&Ipv6::new(FAR6, UPLINK6, UDP), 53, port, &payload, 99);
    assert_eq!(dp.ingress(&stray), (TC_ACT_UNSPEC, stray.clone()));
    assert_eq!(dp.stat(counter::PASS_FRAGMENT), 1);
    assert_eq!(dp.stat(counter::FRAGMENTS_TRANSLATED), 2);
}

/// A client's datagram to a published UDP port, fragmented by its stack: the first
/// fragment opens the flow to the container (the client's address kept), the later one
/// follows it in; the container's fragmented answer leaves from the published address.
#[test]
fn fragments_to_a_published_port_and_back() {
    let mut dp = Datapath::new();
    dp.publish6(5353, UDP, CTR6, 53);
    let payload = [0xa5u8; 40];
    let [first, rest] = fragmented_udp(&Ipv6::new(FAR6, UPLINK6, UDP), 40_000, 5353, &payload, 3);
    let want = fragmented_udp(&Ipv6::new(FAR6, CTR6, UDP), 40_000, 53, &payload, 3);
    assert_eq!(dp.ingress(&first), (TC_ACT_UNSPEC, want[0].clone()));
    assert_eq!(dp.ingress(&rest), (TC_ACT_UNSPEC, want[1].clone()));

    let [first, rest] = fragmented_udp(&Ipv6::new(CTR6, FAR6, UDP), 53, 40_000, &payload, 4);
    let want = fragmented_udp(&Ipv6::new(UPLINK6, FAR6, UDP), 5353, 40_000, &payload, 4);
    assert_eq!(dp.egress(&first), (TC_ACT_UNSPEC, want[0].clone()));
    assert_eq!(dp.egress(&rest), (TC_ACT_UNSPEC, want[1].clone()));
    assert_eq!(dp.stat(counter::FRAGMENTS_TRANSLATED), 2);
}

/// Hairpin: a container's fragmented datagram to a port published on a host address
/// is turned around at the bridge, from the bridge's address with a NAT port, its
/// later fragment with it; a later fragment of a datagram the bridge did not turn
/// around is the lab host's.
#[test]
fn hairpin_fragments_follow_their_first() {
    let mut dp = Datapath::new();
    dp.publish6(5353, UDP, OTHER_CTR6, 53);
    let payload = [0x5au8; 40];
    let [first, rest] = fragmented_udp(&Ipv6::new(CTR6, UPLINK6, UDP), 40_000, 5353, &payload, 5);
    let (verdict, got_first) = dp.run("bridge_ingress6", &first);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    let port = sport(&got_first, FRAG_L4);
    let want = fragmented_udp(&Ipv6::new(BRIDGE6, OTHER_CTR6, UDP), port, 53, &payload, 5);
    assert_frames_eq(&got_first, &want[0]);
    assert_eq!(
        dp.run("bridge_ingress6", &rest),
        (TC_ACT_UNSPEC, want[1].clone())
    );
    let [_, stray] = fragmented_udp(&Ipv6::new(CTR6, UPLINK6, UDP), 40_000, 5353, &payload, 6);
    assert_eq!(
        dp.run("bridge_ingress6", &stray),
        (TC_ACT_UNSPEC, stray.clone())
    );
    assert_eq!(dp.stat(counter::FRAGMENTS_TRANSLATED), 1);
}

/// A first fragment whose UDP header sits behind a destination options header (which
/// a sender may put after the fragment header): its datagram is remembered by what the
/// fragment header names next, destination options, as every fragment of it carries.
#[test]
fn a_datagram_is_known_by_what_its_fragment_header_names() {
    let mut dp = Datapath::new();
    let payload = [0x11u8; 40];
    let part = |ip: &Ipv6, sport: u16| {
        let mut p = vec![UDP, 0, 1, 4, 0, 0, 0, 0];
        p.extend(Ipv6::new(ip.src, ip.dst, UDP).udp_l4(sport, 53, &payload));
        p
    };
    let out = Ipv6::new(CTR6, FAR6, DSTOPTS);
    let [first, rest] = out.fragments(&part(&out, 5006), 32, 8);
    let (verdict, got_first) = dp.egress(&first);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    let port = sport(&got_first, FRAG_L4 + 8);
    let sent = Ipv6::new(UPLINK6, FAR6, DSTOPTS);
    let want = sent.fragments(&part(&sent, port), 32, 8);
    assert_frames_eq(&got_first, &want[0]);
    assert_eq!(dp.egress(&rest), (TC_ACT_UNSPEC, want[1].clone()));
}

/// A first fragment's translation serves its datagram's later fragments for IPv6's
/// reassembly time (60 s, `net.ipv6.ip6frag_time`) and no longer: a later fragment with
/// its identification after that is another datagram's, and leaves no lab.
#[test]
fn a_first_fragment_is_forgotten_after_ipv6s_reassembly_time() {
    let mut dp = Datapath::new();
    let payload = [0x22u8; 40];
    let [first, rest] = fragmented_udp(&Ipv6::new(CTR6, FAR6, UDP), 5007, 53, &payload, 9);
    assert_eq!(dp.egress(&first).0, TC_ACT_UNSPEC);
    let age = |dp: &mut Datapath, secs: u32| {
        let mut frags: HashMap<_, FragKey6, FragNat6> =
            HashMap::try_from(dp.bpf.map_mut(names::FRAGS6).unwrap()).unwrap();
        let (key, mut nat) = frags.iter().next().unwrap().unwrap();
        nat.seen -= secs;
        frags.insert(key, nat, 0).unwrap();
    };
    age(&mut dp, FRAG6_TIMEOUT_SECS - 1);
    assert_eq!(dp.egress(&rest).0, TC_ACT_UNSPEC);
    assert_eq!(dp.stat(counter::FRAGMENTS_TRANSLATED), 1);
    age(&mut dp, 2);
    assert_eq!(dp.egress(&rest).0, TC_ACT_SHOT);
    assert_eq!(dp.drops(DropReason::Fragment), 1);
}

#[test]
fn direct_access_to_a_container_is_dropped() {
    let mut dp = Datapath::new();
    let (verdict, _) = dp.ingress(&Ipv6::new(FAR6, CTR6, TCP).tcp(4000, 80, SYN, b""));
    assert_eq!(verdict, TC_ACT_SHOT);
    assert_eq!(dp.drops(DropReason::DirectAccess), 1);
}

/// A container sends IPv6 from its own address or a link-local one, and announces only
/// those: another container's address, as source or as a neighbour advertisement's
/// target, is spoofed.
#[test]
fn a_container_sends_ipv6_only_as_itself() {
    let mut dp = Datapath::new();
    let with_mac = |mut f: Vec<u8>| {
        f[6..12].copy_from_slice(&MAC);
        f
    };
    let own = with_mac(Ipv6::new(CTR6, FAR6, UDP).udp(1, 2, b"x"));
    assert_eq!(dp.endpoint(&own).0, TC_ACT_UNSPEC);
    let ll: Ipv6Addr = "fe80::2".parse().unwrap();
    let ns = with_mac(Ipv6::new(ll, BRIDGE6, ICMPV6).echo(128, 1));
    assert_eq!(dp.endpoint(&ns).0, TC_ACT_UNSPEC);
    let spoofed = with_mac(Ipv6::new(OTHER_CTR6, FAR6, UDP).udp(1, 2, b"x"));
    assert_eq!(dp.endpoint(&spoofed).0, TC_ACT_SHOT);
    let na = |target: Ipv6Addr| {
        let ip = Ipv6::new(ll, "ff02::1".parse().unwrap(), ICMPV6);
        with_mac(ip.frame(&ip.icmp_l4(136, 0, [0x20, 0, 0, 0], &target.octets())))
    };
    assert_eq!(dp.endpoint(&na(CTR6)).0, TC_ACT_UNSPEC);
    assert_eq!(dp.endpoint(&na(OTHER_CTR6)).0, TC_ACT_SHOT);
    assert_eq!(dp.drops(DropReason::SpoofedSource), 2);
    // Nor behind more extension headers than the walk takes: a chain it does not
    // finish is dropped, not passed unchecked.
    let hidden = {
        let mut ip = Ipv6::new(ll, "ff02::1".parse().unwrap(), ICMPV6);
        ip.ext = vec![(DSTOPTS, vec![1, 4, 0, 0, 0, 0]); 5];
        with_mac(ip.frame(&ip.icmp_l4(136, 0, [0x20, 0, 0, 0], &OTHER_CTR6.octets())))
    };
    assert_eq!(dp.endpoint(&hidden).0, TC_ACT_SHOT);
    assert_eq!(dp.drops(DropReason::UnsupportedProtocol), 1);
    // Nor a router's messages: an advertisement, a redirect.
    for kind in [134, 137] {
        let ip = Ipv6::new(ll, "ff02::1".parse().unwrap(), ICMPV6);
        let f = with_mac(ip.frame(&ip.icmp_l4(kind, 0, [0; 4], &[0; 16])));
        assert_eq!(dp.endpoint(&f).0, TC_ACT_SHOT, "type {kind}");
    }
    assert_eq!(dp.drops(DropReason::SpoofedSource), 4);
}

/// An ICMPv6 error that quotes fewer than the eight bytes of the L4 header every
/// error carries is dropped, as nf_conntrack drops it, not translated.
#[test]
fn an_error_quoting_too_little_is_dropped() {
    let mut dp = Datapath::new();
    let (_, got) = dp.egress(&Ipv6::new(CTR6, FAR6, UDP).udp(5005, 7100, b"x"));
    let port = sport(&got, L4);
    let sent = Ipv6::new(UPLINK6, FAR6, UDP);
    let mut quote = sent.packet(&sent.udp_l4(port, 7100, b"x"));
    quote.truncate(40 + 4);
    let far = Ipv6::new(FAR6, UPLINK6, ICMPV6);
    let (verdict, _) = dp.ingress(&far.frame(&far.icmp_l4(1, 4, [0; 4], &quote)));
    assert_eq!(verdict, TC_ACT_SHOT);
    assert_eq!(dp.drops(DropReason::Truncated), 1);
}

/// An ICMPv6 error about a tracked flow addressed to another of the host's addresses
/// than the quoted packet's source (here the bridge's) is about no flow of ours, as
/// nf_conntrack rules (an error goes to the source of what it quotes): passed as it
/// is, never turned to the container; to the quote's source it is the flow's.
#[test]
fn an_error_not_to_its_quotes_source_is_not_translated() {
    let mut dp = Datapath::new();
    let (_, got) = dp.egress(&Ipv6::new(CTR6, FAR6, UDP).udp(5005, 7100, b"x"));
    let port = sport(&got, L4);
    let sent = Ipv6::new(UPLINK6, FAR6, UDP);
    let quote = sent.packet(&sent.udp_l4(port, 7100, b"x"));
    let far = Ipv6::new(FAR6, BRIDGE6, ICMPV6);
    let elsewhere = far.frame(&far.icmp_l4(1, 4, [0; 4], &quote));
    let (verdict, out) = dp.ingress(&elsewhere);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_eq!(out, elsewhere);
    assert_eq!(dp.stat(counter::ICMP_ERRORS_TRANSLATED), 0);
    let far = Ipv6::new(FAR6, UPLINK6, ICMPV6);
    let (verdict, out) = dp.ingress(&far.frame(&far.icmp_l4(1, 4, [0; 4], &quote)));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_eq!(out[14 + 24..14 + 40], CTR6.octets());
    assert_eq!(dp.stat(counter::ICMP_ERRORS_TRANSLATED), 1);
}

/// An ICMPv6 error quoting an echo request (time exceeded on the way): the quoted
/// identifier goes back to the container's, and the quoted ICMPv6 checksum with it;
/// one quoting an echo reply that way is about no flow.
#[test]
fn an_error_quoting_an_echo_is_translated_back() {
    let mut dp = Datapath::new();
    let (_, got) = dp.egress(&Ipv6::new(CTR6, FAR6, ICMPV6).echo(128, 0x4242));
    let id = u16::from_be_bytes([got[L4 + 4], got[L4 + 5]]);
    let quoting = |ip: &Ipv6, id: u16, kind: u8| {
        let mut rest = [0u8; 4];
        rest[..2].copy_from_slice(&id.to_be_bytes());
        rest[3] = 1;
        ip.packet(&ip.icmp_l4(kind, 0, rest, b"ping"))
    };
    let echo = |ip: &Ipv6, id: u16| quoting(ip, id, 128);
    let sent = Ipv6::new(UPLINK6, FAR6, ICMPV6);
    let router = Ipv6::new(ROUTER6, UPLINK6, ICMPV6);
    // One quoting an echo reply the same way is about no flow (ip6tables' conntrack
    // tuples carry the type, and it drops it): passed untouched. Before, it was
    // translated into the container (a review).
    let wrong = router.frame(&router.icmp_l4(3, 0, [0; 4], &quoting(&sent, id, 129)));
    let (verdict, got) = dp.ingress(&wrong);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_frames_eq(&got, &wrong);
    assert_eq!(dp.stat(counter::ICMP_ERRORS_TRANSLATED), 0);
    let (verdict, got) = dp.ingress(&router.frame(&router.icmp_l4(3, 0, [0; 4], &echo(&sent, id))));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    let orig = Ipv6::new(CTR6, FAR6, ICMPV6);
    let back = Ipv6::new(ROUTER6, CTR6, ICMPV6);
    assert_frames_eq(
        &got,
        &back.frame(&back.icmp_l4(3, 0, [0; 4], &echo(&orig, 0x4242))),
    );
}

/// A container's port unreachable to the client of a port published over IPv6 leaves
/// from the published address, its quote the datagram as the client sent it; and the
/// lab host's own time exceeded about a published TCP flow quotes the segment as the
/// client sent it too.
#[test]
fn errors_about_published_flows_quote_what_the_client_sent() {
    let mut dp = Datapath::new();
    dp.publish6(5353, UDP, CTR6, 53);
    let (_, got) = dp.ingress(&Ipv6::new(FAR6, UPLINK6, UDP).udp(40_000, 5353, b"q"));
    assert_frames_eq(&got, &Ipv6::new(FAR6, CTR6, UDP).udp(40_000, 53, b"q"));
    let recvd = Ipv6::new(FAR6, CTR6, UDP);
    let ctr = Ipv6::new(CTR6, FAR6, ICMPV6);
    let quote = recvd.packet(&recvd.udp_l4(40_000, 53, b"q"));
    let (verdict, got) = dp.egress(&ctr.frame(&ctr.icmp_l4(1, 4, [0; 4], &quote)));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    let orig = Ipv6::new(FAR6, UPLINK6, UDP);
    let out = Ipv6::new(UPLINK6, FAR6, ICMPV6);
    let quote = orig.packet(&orig.udp_l4(40_000, 5353, b"q"));
    assert_frames_eq(&got, &out.frame(&out.icmp_l4(1, 4, [0; 4], &quote)));

    dp.publish6(8080, TCP, CTR6, 80);
    let (_, got) = dp.ingress(&Ipv6::new(FAR6, UPLINK6, TCP).tcp(41_000, 8080, SYN, b""));
    assert_frames_eq(&got, &Ipv6::new(FAR6, CTR6, TCP).tcp(41_000, 80, SYN, b""));
    let fwd = Ipv6::new(FAR6, CTR6, TCP);
    let host = Ipv6::new(UPLINK6, FAR6, ICMPV6);
    let quote = fwd.packet(&fwd.tcp_l4(41_000, 80, SYN, b""));
    let (verdict, got) = dp.egress(&host.frame(&host.icmp_l4(3, 0, [0; 4], &quote)));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    let orig = Ipv6::new(FAR6, UPLINK6, TCP);
    let quote = orig.packet(&orig.tcp_l4(41_000, 8080, SYN, b""));
    assert_frames_eq(&got, &host.frame(&host.icmp_l4(3, 0, [0; 4], &quote)));
}

/// A source from outside in the lab's subnet (a container's, one no container has,
/// the subnet's own anycast) opens no flow to a published port: the packet goes on
/// untranslated, as one from a martian or a host address does, and the lab host's
/// stack answers it. Before, it reached the container as if from a peer container,
/// where ip6tables' hairpin masquerade shows it the bridge's address (a review).
#[test]
fn a_source_of_the_labs_subnet_from_outside_opens_nothing() {
    let mut dp = Datapath::new();
    dp.publish6(5353, UDP, CTR6, 53);
    let unused = Ipv6Addr::new(0xfd00, 0xac12, 0, 0, 0, 0, 0, 0x99);
    let anycast = Ipv6Addr::new(0xfd00, 0xac12, 0, 0, 0, 0, 0, 0);
    for src in [OTHER_CTR6, CTR6, unused, anycast] {
        let sent = Ipv6::new(src, UPLINK6, UDP).udp(40_000, 5353, b"q");
        let (verdict, got) = dp.ingress(&sent);
        assert_eq!(verdict, TC_ACT_UNSPEC, "{src}");
        assert_frames_eq(&got, &sent);
    }
    assert_eq!(dp.stat(counter::DNAT_NEW_FLOWS), 0);
    let (_, got) = dp.ingress(&Ipv6::new(FAR6, UPLINK6, UDP).udp(40_000, 5353, b"q"));
    assert_frames_eq(&got, &Ipv6::new(FAR6, CTR6, UDP).udp(40_000, 53, b"q"));
    assert_eq!(dp.stat(counter::DNAT_NEW_FLOWS), 1);
}

/// A TCP SYN behind hop-by-hop and destination options, and an echo request behind
/// hop-by-hop options, are masqueraded by the helpers' path (not the direct writes,
/// which take packets without extension headers), their headers kept.
#[test]
fn flows_behind_extension_headers_are_masqueraded() {
    let mut dp = Datapath::new();
    let mut ip = Ipv6::new(CTR6, FAR6, TCP);
    ip.ext = vec![
        (HOPOPTS, vec![1, 4, 0, 0, 0, 0]),
        (DSTOPTS, vec![1, 4, 0, 0, 0, 0]),
    ];
    let (verdict, got) = dp.egress(&ip.frame(&ip.tcp_l4(5001, 80, SYN, b"")));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    let port = sport(&got, L4 + 16);
    let mut want = Ipv6::new(UPLINK6, FAR6, TCP);
    want.ext = ip.ext.clone();
    assert_frames_eq(&got, &want.frame(&want.tcp_l4(port, 80, SYN, b"")));
    let mut ip = Ipv6::new(CTR6, FAR6, ICMPV6);
    ip.ext = vec![(HOPOPTS, vec![1, 4, 0, 0, 0, 0])];
    let mut rest = [0u8; 4];
    rest[..2].copy_from_slice(&7u16.to_be_bytes());
    let (verdict, got) = dp.egress(&ip.frame(&ip.icmp_l4(128, 0, rest, b"x")));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    let id = u16::from_be_bytes([got[L4 + 8 + 4], got[L4 + 8 + 5]]);
    let mut want = Ipv6::new(UPLINK6, FAR6, ICMPV6);
    want.ext = ip.ext.clone();
    rest[..2].copy_from_slice(&id.to_be_bytes());
    assert_frames_eq(&got, &want.frame(&want.icmp_l4(128, 0, rest, b"x")));
}

/// The uplink's IPv6 programs count what they see on another interface than the
/// uplink, as IPv4's do (`other_uplink_packets`): here the uplink is not the test
/// run's interface.
#[test]
fn packets_on_another_watched_interface_are_counted() {
    let mut dp = Datapath::with(Config {
        uplink_ifindex: 2,
        ..config()
    });
    dp.egress(&Ipv6::new(CTR6, FAR6, UDP).udp(5005, 7100, b"x"));
    dp.ingress(&Ipv6::new(FAR6, UPLINK6, UDP).udp(7100, 5005, b"x"));
    assert_eq!(dp.stat(counter::OTHER_UPLINK_PACKETS), 2);
    let mut dp = Datapath::new();
    dp.egress(&Ipv6::new(CTR6, FAR6, UDP).udp(5005, 7100, b"x"));
    assert_eq!(dp.stat(counter::OTHER_UPLINK_PACKETS), 0);
}

/// IPv6's established table never evicts, as IPv4's: with it full, a flow that would
/// become established stays in the table of flows being opened (counted `ct_full`),
/// and the flows established before it keep their translation both ways. (An LRU
/// there, as before, pushed the first flows out to make room.)
#[test]
fn a_full_established_table_keeps_its_flows() {
    let max = 1_024;
    let mut dp = Datapath::sized(config(), max);
    let established = |dp: &Datapath| {
        let t: HashMap<_, CtKey<Addr6>, CtEntry<Addr6>> =
            HashMap::try_from(dp.bpf.map(names::CT6).unwrap()).unwrap();
        t.keys().count()
    };
    // A hundred connections more than the table holds, each SYN, SYN-ACK, ACK.
    let mut ports = Vec::new();
    for i in 0..max as u16 + 100 {
        let ip = Ipv6::new(CTR6, FAR6, TCP);
        let (_, got) = dp.egress(&ip.tcp(10_000 + i, 80, SYN, b""));
        let port = sport(&got, L4);
        dp.ingress(&Ipv6::new(FAR6, UPLINK6, TCP).tcp(80, port, SYN | ACK, b""));
        dp.egress(&ip.tcp(10_000 + i, 80, ACK, b""));
        ports.push(port);
    }
    assert_eq!(established(&dp), 2 * max as usize, "the table is full");
    assert!(
        dp.stat(counter::CT_FULL) >= 100,
        "{}",
        dp.stat(counter::CT_FULL)
    );
    // The first connection is still there, translated both ways.
    let (verdict, got) = dp.egress(&Ipv6::new(CTR6, FAR6, TCP).tcp(10_000, 80, ACK, b"more"));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_frames_eq(
        &got,
        &Ipv6::new(UPLINK6, FAR6, TCP).tcp(ports[0], 80, ACK, b"more"),
    );
    let (_, got) = dp.ingress(&Ipv6::new(FAR6, UPLINK6, TCP).tcp(80, ports[0], ACK, b"yes"));
    assert_frames_eq(
        &got,
        &Ipv6::new(FAR6, CTR6, TCP).tcp(80, 10_000, ACK, b"yes"),
    );
    // So is the last, in the table of flows being opened.
    let last = max as u16 + 99;
    let (verdict, got) =
        dp.egress(&Ipv6::new(CTR6, FAR6, TCP).tcp(10_000 + last, 80, ACK, b"last"));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_frames_eq(
        &got,
        &Ipv6::new(UPLINK6, FAR6, TCP).tcp(ports[last as usize], 80, ACK, b"last"),
    );
    assert_eq!(dp.drops(DropReason::HalfFlow), 0);

    // Room again (one flow's two entries gone, as its expiry takes them), and a second
    // later: the last flow's next packet takes it into the established table, out of
    // reach of the LRU's evictions. Before, it stayed in the LRU table for good.
    {
        let mut t: HashMap<_, CtKey<Addr6>, CtEntry<Addr6>> =
            HashMap::try_from(dp.bpf.map_mut(names::CT6).unwrap()).unwrap();
        let (k, e) = t.iter().next().unwrap().unwrap();
        t.remove(&k).unwrap();
        t.remove(&e.pair_key(k.proto)).unwrap();
        let mut pending: HashMap<_, CtKey<Addr6>, CtEntry<Addr6>> =
            HashMap::try_from(dp.bpf.map_mut(names::CT6_PENDING).unwrap()).unwrap();
        let all: Vec<(CtKey<Addr6>, CtEntry<Addr6>)> = pending.iter().map(|r| r.unwrap()).collect();
        for (k, mut e) in all {
            e.last_seen -= 1;
            pending.insert(k, e, 0).unwrap();
        }
    }
    let confirmed = dp.stat(counter::CT_CONFIRMED);
    let (_, got) = dp.egress(&Ipv6::new(CTR6, FAR6, TCP).tcp(10_000 + last, 80, ACK, b"again"));
    assert_frames_eq(
        &got,
        &Ipv6::new(UPLINK6, FAR6, TCP).tcp(ports[last as usize], 80, ACK, b"again"),
    );
    assert_eq!(dp.stat(counter::CT_CONFIRMED), confirmed + 1);
    let t: HashMap<_, CtKey<Addr6>, CtEntry<Addr6>> =
        HashMap::try_from(dp.bpf.map(names::CT6).unwrap()).unwrap();
    assert!(
        t.keys()
            .any(|k| k.unwrap().sport == (10_000 + last).to_be()),
        "the flow is not in the established table"
    );
    assert_eq!(established(&dp), 2 * max as usize);
}

const TC_ACT_REDIRECT: u32 = 7;

/// IPv6's fast path on real links: a dual-stack sandbox lab with containers `a` and
/// `b`, and the programs run inside its host namespace, where `bpf_fib_lookup` sees its
/// routes and neighbours. Every forwarded frame is checked byte for byte: translated,
/// hop limit one less (the lab host routes it), the next hop's MACs, the redirect.
#[test]
fn the_fast_path_forwards_ipv6_to_its_next_hop_and_into_containers() {
    use netlab_common::{config::FLAG_FAST_PATH, endpoint::Endpoint};
    use netlab_tests::{in_ns, packet::with_macs};
    let lab = netlab_tests::Lab::sandbox(&["--ipv6"]);
    assert!(lab.ok(&["run", "a"]).contains("fd00:ac12::2"));
    assert!(lab.ok(&["run", "b"]).contains("fd00:ac12::3"));
    // The next hop's MAC is in the lab host's neighbour table after one ping.
    lab.exec_ok(
        "host",
        &["ping", "-6", "-c", "1", "-W", "2", &ROUTER6.to_string()],
    );
    let state = lab.state();
    let host = lab.ns("host");
    let (uplink, uplink_mac) = link_of(&host, "eth0");
    let (bridge, bridge_mac) = link_of(&host, &state.bridge);
    let (_, wan_mac) = link_of(&lab.ns("wan"), "wan0");
    let ctr = |name: &str| {
        let c = state.container(name).unwrap();
        let (veth, _) = link_of(&host, c.veth.as_ref().unwrap());
        let mac = netlab::datapath::ebpf::parse_mac(c.mac.as_ref().unwrap()).unwrap();
        (veth, mac)
    };
    let ((veth_a, mac_a), (veth_b, mac_b)) = (ctr("a"), ctr("b"));
    let ctr_b = Ipv6Addr::new(0xfd00, 0xac12, 0, 0, 0, 0, 0, 3);
    let mut dp = Datapath::with(Config {
        uplink_ifindex: uplink,
        bridge_ifindex: bridge,
        bridge_mac,
        flags: FLAG_IPV6 | FLAG_FAST_PATH,
        ..config()
    });
    {
        let mut eps: HashMap<_, Addr6, Endpoint> =
            HashMap::try_from(dp.bpf.map_mut(names::ENDPOINTS6).unwrap()).unwrap();
        for (ip, ifindex, mac) in [(CTR6, veth_a, mac_a), (ctr_b, veth_b, mac_b)] {
            let ep = Endpoint {
                ifindex,
                mac,
                _pad: [0; 2],
            };
            eps.insert(addr6(ip), ep, 0).unwrap();
        }
    }
    // What container `a` sends to be routed: to the bridge's MAC.
    let routed = |f: Vec<u8>| with_macs(f, bridge_mac, MAC);
    in_ns(&host, || {
        // Not addressed to the bridge: not the lab host's to route.
        let frame = Ipv6::new(CTR6, FAR6, TCP).tcp(45_000, 80, SYN, b"");
        assert_eq!(dp.endpoint(&frame), (TC_ACT_UNSPEC, frame.clone()));

        // A new flow out: masqueraded at the container's veth, sent to wan's MAC.
        let (verdict, out) = dp.endpoint(&routed(
            Ipv6::new(CTR6, FAR6, TCP).tcp(45_000, 80, SYN, b""),
        ));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        let port = sport(&out, L4);
        let mut want = Ipv6::new(UPLINK6, FAR6, TCP);
        want.hop_limit = 63;
        assert_frames_eq(
            &out,
            &with_macs(want.tcp(port, 80, SYN, b""), wan_mac, uplink_mac),
        );
        // Again, from the next-hop cache: the same frame.
        let (verdict, again) = dp.endpoint(&routed(
            Ipv6::new(CTR6, FAR6, TCP).tcp(45_000, 80, ACK, b""),
        ));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        assert_frames_eq(
            &again,
            &with_macs(want.tcp(port, 80, ACK, b""), wan_mac, uplink_mac),
        );

        // Its answer: into the container, from the bridge's MAC.
        let mut synack = Ipv6::new(FAR6, UPLINK6, TCP);
        synack.hop_limit = 50;
        let (verdict, out) = dp.ingress(&synack.tcp(80, port, SYN | ACK, b""));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        let mut want = Ipv6::new(FAR6, CTR6, TCP);
        want.hop_limit = 49;
        assert_frames_eq(
            &out,
            &with_macs(want.tcp(80, 45_000, SYN | ACK, b""), mac_a, bridge_mac),
        );

        // Hop limit 1 is the lab host's to answer (time exceeded): untouched.
        let mut dying = Ipv6::new(CTR6, FAR6, TCP);
        dying.hop_limit = 1;
        let frame = routed(dying.tcp(45_000, 80, ACK, b""));
        assert_eq!(dp.endpoint(&frame), (TC_ACT_UNSPEC, frame.clone()));
        assert_eq!(dp.stat(counter::SLOW_TTL), 1);

        // A frame for another container: switched straight in, unchanged...
        let to_b = with_macs(
            Ipv6::new(CTR6, ctr_b, UDP).udp(5000, 6000, b"hi"),
            mac_b,
            MAC,
        );
        assert_eq!(dp.endpoint(&to_b), (TC_ACT_REDIRECT, to_b.clone()));
        // ...but not one addressed to another MAC: the bridge decides.
        let odd = with_macs(to_b.clone(), [2, 9, 9, 9, 9, 9], MAC);
        assert_eq!(dp.endpoint(&odd), (TC_ACT_UNSPEC, odd.clone()));

        // The stack's: what it never forwards (multicast, link-local, loopback), a
        // link-local source, and a hop-by-hop header (every router's to read).
        for dst in [
            Ipv6Addr::new(0xff0e, 0, 0, 0, 0, 0, 0, 1),
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
            Ipv6Addr::LOCALHOST,
        ] {
            let syn = routed(Ipv6::new(CTR6, dst, TCP).tcp(45_002, 80, SYN, b""));
            assert_eq!(dp.endpoint(&syn), (TC_ACT_UNSPEC, syn.clone()), "{dst}");
        }
        let link_local = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
        let syn = routed(Ipv6::new(link_local, FAR6, TCP).tcp(45_003, 80, SYN, b""));
        assert_eq!(dp.endpoint(&syn), (TC_ACT_UNSPEC, syn.clone()));
        let mut hbh = Ipv6::new(CTR6, FAR6, UDP);
        hbh.ext.push((HOPOPTS, vec![1, 4, 0, 0, 0, 0]));
        let frame = routed(hbh.udp(5001, 53, b"q"));
        assert_eq!(dp.endpoint(&frame), (TC_ACT_UNSPEC, frame.clone()));

        // A port published on every host address: a client's SYN goes straight into
        // the container, its address kept; one from a link-local address opens
        // nothing (the stack never forwards it), and goes on untranslated.
        dp.publish6(8080, TCP, CTR6, 80);
        let mut syn = Ipv6::new(FAR6, UPLINK6, TCP);
        syn.hop_limit = 50;
        let (verdict, out) = dp.ingress(&syn.tcp(41_000, 8080, SYN, b""));
        assert_eq!(verdict, TC_ACT_REDIRECT);
        let mut want = Ipv6::new(FAR6, CTR6, TCP);
        want.hop_limit = 49;
        assert_frames_eq(
            &out,
            &with_macs(want.tcp(41_000, 80, SYN, b""), mac_a, bridge_mac),
        );
        let syn = Ipv6::new(link_local, UPLINK6, TCP).tcp(41_001, 8080, SYN, b"");
        assert_eq!(dp.ingress(&syn), (TC_ACT_UNSPEC, syn.clone()));

        // A fragmented datagram is the stack's: a container's first fragment goes on
        // to the bridge untouched, and the first fragment of a flow coming in is
        // translated and goes on to the stack, where the rest of its datagram goes.
        let udp = Ipv6::new(CTR6, FAR6, UDP);
        let [first, _] = udp.fragments(&udp.udp_l4(5009, 53, &[1; 40]), 24, 11);
        let first = routed(first);
        assert_eq!(dp.endpoint(&first), (TC_ACT_UNSPEC, first.clone()));
        assert_eq!(dp.stat(counter::SLOW_FRAGMENT), 1);
        let mut syn = Ipv6::new(FAR6, UPLINK6, TCP);
        syn.hop_limit = 50;
        let [first, _] = syn.fragments(&syn.tcp_l4(41_002, 8080, SYN, &[2; 40]), 32, 12);
        let (verdict, out) = dp.ingress(&first);
        assert_eq!(verdict, TC_ACT_UNSPEC);
        let mut want = Ipv6::new(FAR6, CTR6, TCP);
        want.hop_limit = 50;
        let want = want.fragments(&want.tcp_l4(41_002, 80, SYN, &[2; 40]), 32, 12);
        assert_frames_eq(&out, &want[0]);

        // Too big for the lab's MTU (the uplink's is larger): the stack answers it
        // (Packet Too Big), where bpf_redirect_peer would drop it unsaid.
        lab.exec_ok("host", &["ip", "link", "set", &state.bridge, "mtu", "1280"]);
        let big = Ipv6::new(FAR6, UPLINK6, TCP).tcp(80, port, ACK, &[7u8; 1300]);
        assert_eq!(dp.ingress(&big).0, TC_ACT_UNSPEC);
        assert_eq!(dp.stat(counter::SLOW_MTU), 1);

        assert_eq!(dp.stat(counter::FAST_TO_UPLINK), 2);
        assert_eq!(dp.stat(counter::FAST_TO_CONTAINER), 2);
        assert_eq!(dp.stat(counter::FAST_BETWEEN_CONTAINERS), 1);
        assert_eq!(dp.stat(counter::NEXT_HOP_CACHED), 1);
    });
}

/// IPv6's instance of the conntrack's clash resolution: two CPUs racing on the first
/// packet of one flow to a published port (`packets::two_cpus_racing_on_one_flow_*`
/// for IPv4), 2,000 flows of TCP: the CPU that comes second takes the flow the first
/// made and drops nothing; each flow is made once and translated.
#[test]
fn two_cpus_racing_on_one_flow_resolve_the_clash() {
    if let Some(why) = netlab_tests::race::unavailable() {
        return netlab_tests::skip(&why);
    }
    const RACES: usize = 2_000;
    let mut dp = Datapath::new();
    dp.publish6(8080, TCP, CTR6, 80);
    let syn =
        |i: usize, _cpu: usize| Ipv6::new(FAR6, UPLINK6, TCP).tcp(1024 + i as u16, 8080, SYN, b"");
    let dropped = netlab_tests::race::drops_of(&dp.bpf, "uplink_ingress6", RACES, syn);
    let resolved = dp.stat(counter::CT_CLASH_RESOLVED);
    eprintln!("of {RACES} races {resolved} resolved, {dropped} dropped");
    assert_eq!(dropped, 0);
    assert!(resolved >= 1, "no clash in {RACES} races");
    assert_eq!(dp.stat(counter::DNAT_NEW_FLOWS), RACES as u64);
    for i in [0, RACES - 1] {
        let (_, got) = dp.ingress(&syn(i, 0));
        assert_frames_eq(
            &got,
            &Ipv6::new(FAR6, CTR6, TCP).tcp(1024 + i as u16, 80, SYN, b""),
        );
    }
}
