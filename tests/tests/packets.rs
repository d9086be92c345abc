//! The real TC programs on crafted frames (BPF_PROG_TEST_RUN): every rewrite is checked
//! byte for byte against a frame built from scratch with the expected tuple, so every
//! checksum is verified by an independent full computation; the maps are checked after.

use std::net::Ipv4Addr;

use aya::{
    Ebpf, TestRun as _,
    maps::{HashMap, PerCpuArray},
    programs::{SchedClassifier, TestRunOptions},
};
use netlab_common::{
    config::Config,
    conntrack::{
        CtEntry, CtKey, TCP_CLOSE, TCP_ESTABLISHED, TCP_SYN_RECV, TCP_SYN_SENT, TCP_SYN_SENT2,
        TCP_TIME_WAIT, WSCALE_FIN, ZONE_FROM_CTR, ZONE_FROM_OUTSIDE,
    },
    maps::{self as names, CONNTRACK_MAX_DEFAULT, pending_entries},
    stats::{Counters, DropReason, STATS_PROGRAMS, counter},
};
use netlab_tests::{
    INTERNET, UPLINK_ADDR, link_of,
    packet::{ICMP, Ipv4, TCP, UDP, View},
    require_root,
};

const CTR: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);
const CTR2: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 3);
const OTHER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 77);
/// What a program returns for a packet it lets go on (`TC_ACT_UNSPEC`: to the next
/// program on the hook, or the stack).
const TC_ACT_UNSPEC: u32 = u32::MAX;
const TC_ACT_SHOT: u32 = 2;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn be(a: Ipv4Addr) -> u32 {
    u32::from(a).to_be()
}

fn config() -> Config {
    Config {
        uplink_addr: be(UPLINK_ADDR),
        bridge_addr: be(Ipv4Addr::new(172, 18, 0, 1)),
        subnet: be(Ipv4Addr::new(172, 18, 0, 0)),
        subnet_mask: 0xffff_0000u32.to_be(),
        // What BPF_PROG_TEST_RUN's skb is on without a context: loopback.
        uplink_ifindex: 1,
        bridge_ifindex: 3,
        // The fast path's fib lookup would consult the test thread's routing tables;
        // the end-to-end tests cover it in sandbox labs.
        flags: 0,
        ..Config::default()
    }
}

/// The datapath object loaded with fresh (unpinned) maps and `cfg`.
struct Datapath {
    bpf: Ebpf,
    /// The interface the uplink's programs see frames on (`None`: loopback, BPF_PROG_TEST_RUN's
    /// default): a real uplink's for the fast path, which checks the route back to a
    /// source leaves by it.
    uplink_dev: Option<u32>,
    /// The interface the bridge's program sees frames on (`None`: loopback): a real
    /// bridge's where its hairpin route check is to see the lab host's routes.
    bridge_dev: Option<u32>,
}

impl Datapath {
    fn new(cfg: Config) -> Self {
        Self::sized(cfg, CONNTRACK_MAX_DEFAULT)
    }

    /// With tables for `conntrack_max` flows (`netlab up --conntrack-max`).
    fn sized(cfg: Config, conntrack_max: u32) -> Self {
        require_root();
        let mut bpf =
            netlab::datapath::ebpf::load(false, conntrack_max, &cfg).expect("load object");
        for p in [
            names::PROG_UPLINK_EGRESS,
            names::PROG_UPLINK_INGRESS,
            names::PROG_BRIDGE_INGRESS,
            names::PROG_ENDPOINT_INGRESS,
        ] {
            netlab::datapath::ebpf::load_program(&mut bpf, p)
                .expect("verifier accepts the program");
        }
        Self {
            bpf,
            uplink_dev: None,
            bridge_dev: None,
        }
    }

    /// Runs program `prog` on `frame`; returns the verdict and the output frame.
    fn run(&mut self, prog: &str, frame: &[u8]) -> (u32, Vec<u8>) {
        let dev = match prog {
            names::PROG_BRIDGE_INGRESS => self.bridge_dev,
            _ => None,
        };
        self.run_on(prog, frame, dev)
    }

    /// [`Self::run`] with the frame on interface `dev` (`None`: loopback).
    fn run_on(&mut self, prog: &str, frame: &[u8], dev: Option<u32>) -> (u32, Vec<u8>) {
        let p: &mut SchedClassifier = self.bpf.program_mut(prog).unwrap().try_into().unwrap();
        let mut out = vec![0u8; frame.len() + 256];
        let ctx = dev.map(netlab_tests::packet::skb_on);
        let r = p
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: ctx.as_ref().map(|c| &c[..]),
                ..Default::default()
            })
            .expect("test run");
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }

    fn egress(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.run(names::PROG_UPLINK_EGRESS, frame)
    }

    fn ingress(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.run_on(names::PROG_UPLINK_INGRESS, frame, self.uplink_dev)
    }

    /// The endpoint's program, on the veth of the container with the frame's source
    /// addresses.
    fn endpoint(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let mut sources: HashMap<_, u32, netlab_common::endpoint::Source> =
            HashMap::try_from(self.bpf.map_mut(names::SOURCES).unwrap()).unwrap();
        sources
            .insert(1, netlab_tests::packet::claimed_source(frame), 0)
            .unwrap();
        self.run(names::PROG_ENDPOINT_INGRESS, frame)
    }

    /// Publishes `port`/`proto` on every host address to `to:to_port` (mapping 1), as
    /// `netlab publish` would.
    fn publish(&mut self, port: u16, proto: u8, to: Ipv4Addr, to_port: u16) {
        use netlab_common::publish::{PubKey, PubTarget};
        let mut m: HashMap<_, PubKey, PubTarget> =
            HashMap::try_from(self.bpf.map_mut(names::PUBLISH).unwrap()).unwrap();
        let key = PubKey {
            addr: 0,
            port: port.to_be(),
            proto,
            _pad: 0,
        };
        let target = PubTarget {
            addr: be(to),
            port: to_port.to_be(),
            _pad: 0,
            id: 1,
        };
        m.insert(key, target, 0).unwrap();
    }

    /// Moves every flow's times `secs` seconds into the past, as if that long had gone
    /// by without a packet.
    fn age(&mut self, secs: u32) {
        for name in [names::CT, names::CT_PENDING] {
            let mut m: HashMap<_, CtKey, CtEntry> =
                HashMap::try_from(self.bpf.map_mut(name).unwrap()).unwrap();
            let all: Vec<(CtKey, CtEntry)> = m.iter().map(|r| r.unwrap()).collect();
            for (k, mut e) in all {
                e.last_seen = e.last_seen.saturating_sub(secs);
                e.created = e.created.saturating_sub(secs);
                m.insert(k, e, 0).unwrap();
            }
        }
    }

    fn table(&self, name: &str) -> Vec<(CtKey, CtEntry)> {
        let m: HashMap<_, CtKey, CtEntry> = HashMap::try_from(self.bpf.map(name).unwrap()).unwrap();
        m.iter().map(|r| r.unwrap()).collect()
    }

    fn stat(&self, index: u32) -> u64 {
        let m: PerCpuArray<_, Counters> =
            PerCpuArray::try_from(self.bpf.map(names::STATS).unwrap()).unwrap();
        let per_cpu = m.get(&STATS_PROGRAMS, 0).unwrap();
        per_cpu.iter().map(|c| c[index as usize]).sum()
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

/// Masquerades `frame` and returns the NAT port it got, checking that the result is
/// exactly `rebuild(port)` and that its checksums verify.
fn masquerade(dp: &mut Datapath, frame: &[u8], rebuild: impl Fn(u16) -> Vec<u8>) -> u16 {
    let (verdict, out) = dp.egress(frame);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    let v = View::new(&out);
    assert_eq!(v.src(), UPLINK_ADDR);
    assert!(v.ip_csum_ok() && v.l4_csum_ok(), "checksums after SNAT");
    let port = if out[ETH_PROTO] == ICMP {
        v.echo_id()
    } else {
        v.sport()
    };
    assert!(
        (20_000..=29_999).contains(&port),
        "NAT port {port} outside the range"
    );
    assert_frames_eq(&out, &rebuild(port));
    port
}

const ETH_PROTO: usize = 14 + 9;

#[test]
fn tcp_handshake_is_masqueraded_and_translated_back() {
    let mut dp = Datapath::new(config());
    let syn = Ipv4::new(CTR, INTERNET, TCP).tcp(45_000, 80, SYN, b"");
    let port = masquerade(&mut dp, &syn, |p| {
        Ipv4::new(UPLINK_ADDR, INTERNET, TCP).tcp(p, 80, SYN, b"")
    });

    let pending = dp.table(names::CT_PENDING);
    assert_eq!(pending.len(), 2, "both directions enter conntrack");
    assert!(pending.iter().all(|(_, e)| e.state == TCP_SYN_SENT));
    let out_key = CtKey::new(
        be(CTR),
        be(INTERNET),
        45_000u16.to_be(),
        80u16.to_be(),
        TCP,
        ZONE_FROM_CTR,
    );
    let in_key = CtKey::new(
        be(INTERNET),
        be(UPLINK_ADDR),
        80u16.to_be(),
        port.to_be(),
        TCP,
        ZONE_FROM_OUTSIDE,
    );
    assert!(pending.iter().any(|(k, _)| *k == out_key));
    assert!(
        pending
            .iter()
            .any(|(k, e)| *k == in_key && e.daddr == be(CTR) && e.dport == 45_000u16.to_be())
    );

    let synack = Ipv4::new(INTERNET, UPLINK_ADDR, TCP).tcp(80, port, SYN | ACK, b"");
    let (verdict, out) = dp.ingress(&synack);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_frames_eq(
        &out,
        &Ipv4::new(INTERNET, CTR, TCP).tcp(80, 45_000, SYN | ACK, b""),
    );

    // The answer makes it SYN_RECV, still pending: half-open flows are not established.
    let pending = dp.table(names::CT_PENDING);
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|(_, e)| e.state == TCP_SYN_RECV));
    assert!(dp.table(names::CT).is_empty());

    // The opener's ACK establishes it, and moves it to the table that never evicts.
    let ack = Ipv4::new(CTR, INTERNET, TCP).tcp(45_000, 80, ACK, b"");
    let (_, out) = dp.egress(&ack);
    assert_frames_eq(
        &out,
        &Ipv4::new(UPLINK_ADDR, INTERNET, TCP).tcp(port, 80, ACK, b""),
    );
    assert!(dp.table(names::CT_PENDING).is_empty());
    let established = dp.table(names::CT);
    assert_eq!(established.len(), 2);
    let (_, reply) = established.iter().find(|(k, _)| *k == in_key).unwrap();
    assert_eq!(reply.state, TCP_ESTABLISHED);
    assert_eq!(dp.stat(counter::CT_CONFIRMED), 1);

    // Data both ways keeps the same mapping.
    let data = Ipv4::new(CTR, INTERNET, TCP).tcp(45_000, 80, ACK, b"GET / HTTP/1.0\r\n\r\n");
    let (_, out) = dp.egress(&data);
    assert_frames_eq(
        &out,
        &Ipv4::new(UPLINK_ADDR, INTERNET, TCP).tcp(port, 80, ACK, b"GET / HTTP/1.0\r\n\r\n"),
    );
    assert_eq!(dp.stat(counter::SNAT_NEW_FLOWS), 1);
    assert_eq!(dp.stat(counter::SNAT_PACKETS), 3);
    assert_eq!(dp.stat(counter::SNAT_REPLY_PACKETS), 1);
}

#[test]
fn udp_is_masqueraded_and_translated_back() {
    let mut dp = Datapath::new(config());
    let q = Ipv4::new(CTR, INTERNET, UDP).udp(5353, 53, b"query");
    let port = masquerade(&mut dp, &q, |p| {
        Ipv4::new(UPLINK_ADDR, INTERNET, UDP).udp(p, 53, b"query")
    });
    let (verdict, out) =
        dp.ingress(&Ipv4::new(INTERNET, UPLINK_ADDR, UDP).udp(53, port, b"answer"));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_frames_eq(
        &out,
        &Ipv4::new(INTERNET, CTR, UDP).udp(53, 5353, b"answer"),
    );
}

#[test]
fn udp_without_checksum_keeps_none() {
    let mut dp = Datapath::new(config());
    let mut q = Ipv4::new(CTR, INTERNET, UDP).udp(5353, 53, b"query");
    q[14 + 20 + 6] = 0;
    q[14 + 20 + 7] = 0;
    let (verdict, out) = dp.egress(&q);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_eq!(
        &out[14 + 20 + 6..14 + 20 + 8],
        &[0, 0],
        "a zero UDP checksum means none and stays so"
    );
    assert!(View::new(&out).ip_csum_ok());
    assert_eq!(View::new(&out).src(), UPLINK_ADDR);
}

#[test]
fn icmp_echo_uses_the_identifier_as_port() {
    let mut dp = Datapath::new(config());
    let req = Ipv4::new(CTR, INTERNET, ICMP).echo(8, 0x1234, b"ping payload");
    let id = masquerade(&mut dp, &req, |p| {
        Ipv4::new(UPLINK_ADDR, INTERNET, ICMP).echo(8, p, b"ping payload")
    });
    let (verdict, out) =
        dp.ingress(&Ipv4::new(INTERNET, UPLINK_ADDR, ICMP).echo(0, id, b"ping payload"));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_frames_eq(
        &out,
        &Ipv4::new(INTERNET, CTR, ICMP).echo(0, 0x1234, b"ping payload"),
    );
}

/// The IPv4 packet (no Ethernet) of a frame.
fn ip_of(frame: &[u8]) -> Vec<u8> {
    frame[14..].to_vec()
}

#[test]
fn icmp_errors_are_translated_with_the_quoted_header() {
    let mut dp = Datapath::new(config());
    // UDP to a closed port: port unreachable, quoting the whole datagram.
    let q = Ipv4::new(CTR, INTERNET, UDP).udp(5353, 9, b"hello");
    let port = masquerade(&mut dp, &q, |p| {
        Ipv4::new(UPLINK_ADDR, INTERNET, UDP).udp(p, 9, b"hello")
    });
    let port_udp = port;
    let sent = ip_of(&Ipv4::new(UPLINK_ADDR, INTERNET, UDP).udp(port, 9, b"hello"));
    let err = Ipv4::new(INTERNET, UPLINK_ADDR, ICMP).icmp_error(3, 3, &sent);
    let (verdict, out) = dp.ingress(&err);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    let original = ip_of(&Ipv4::new(CTR, INTERNET, UDP).udp(5353, 9, b"hello"));
    assert_frames_eq(
        &out,
        &Ipv4::new(INTERNET, CTR, ICMP).icmp_error(3, 3, &original),
    );
    assert!(View::new(&out).l4_csum_ok());

    // TCP SYN whose TTL ran out on the way: time exceeded from a router, quoting the
    // IP header and the first bytes of TCP (the checksum included).
    let syn = Ipv4::new(CTR, OTHER, TCP).tcp(40_000, 443, SYN, b"");
    let port = masquerade(&mut dp, &syn, |p| {
        Ipv4::new(UPLINK_ADDR, OTHER, TCP).tcp(p, 443, SYN, b"")
    });
    let sent = ip_of(&Ipv4::new(UPLINK_ADDR, OTHER, TCP).tcp(port, 443, SYN, b""));
    let router = Ipv4Addr::new(198, 51, 100, 1);
    let (verdict, out) = dp.ingress(&Ipv4::new(router, UPLINK_ADDR, ICMP).icmp_error(11, 0, &sent));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    let original = ip_of(&Ipv4::new(CTR, OTHER, TCP).tcp(40_000, 443, SYN, b""));
    assert_frames_eq(
        &out,
        &Ipv4::new(router, CTR, ICMP).icmp_error(11, 0, &original),
    );

    // Fragmentation needed about a ping (path-MTU discovery), quoting an echo request.
    let req = Ipv4::new(CTR, OTHER, ICMP).echo(8, 0x4242, b"big");
    let id = masquerade(&mut dp, &req, |p| {
        Ipv4::new(UPLINK_ADDR, OTHER, ICMP).echo(8, p, b"big")
    });
    let sent = ip_of(&Ipv4::new(UPLINK_ADDR, OTHER, ICMP).echo(8, id, b"big"));
    let (_, out) = dp.ingress(&Ipv4::new(router, UPLINK_ADDR, ICMP).icmp_error(3, 4, &sent));
    let original = ip_of(&Ipv4::new(CTR, OTHER, ICMP).echo(8, 0x4242, b"big"));
    assert_frames_eq(
        &out,
        &Ipv4::new(router, CTR, ICMP).icmp_error(3, 4, &original),
    );

    // Parameter problem about the first datagram: nf_conntrack relates it too.
    let sent = ip_of(&Ipv4::new(UPLINK_ADDR, INTERNET, UDP).udp(port_udp, 9, b"hello"));
    let (_, out) = dp.ingress(&Ipv4::new(INTERNET, UPLINK_ADDR, ICMP).icmp_error(12, 0, &sent));
    let original = ip_of(&Ipv4::new(CTR, INTERNET, UDP).udp(5353, 9, b"hello"));
    assert_frames_eq(
        &out,
        &Ipv4::new(INTERNET, CTR, ICMP).icmp_error(12, 0, &original),
    );
    assert_eq!(dp.stat(counter::ICMP_ERRORS_TRANSLATED), 4);

    // The same error addressed to another of the host's addresses than the quoted
    // packet's source is about no flow of ours, as nf_conntrack rules (an error goes
    // to the source of what it quotes): left alone, never turned to the container.
    let bridge = Ipv4Addr::new(172, 18, 0, 1);
    let elsewhere = Ipv4::new(INTERNET, bridge, ICMP).icmp_error(12, 0, &sent);
    let (verdict, out) = dp.ingress(&elsewhere);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_frames_eq(&out, &elsewhere);
    assert_eq!(dp.stat(counter::ICMP_ERRORS_TRANSLATED), 4);

    // An error about a flow nobody tracks is left alone.
    let stranger = ip_of(&Ipv4::new(UPLINK_ADDR, OTHER, UDP).udp(29_999, 7, b"x"));
    let err = Ipv4::new(router, UPLINK_ADDR, ICMP).icmp_error(3, 3, &stranger);
    let (verdict, out) = dp.ingress(&err);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_frames_eq(&out, &err);
}

/// Found by the fuzz test: an ICMP error from a container about something no flow can
/// be (an ICMP error, another protocol, a later fragment) left the lab with the
/// container's own address. It is dropped, as errors about untracked flows are.
#[test]
fn icmp_errors_from_containers_that_quote_no_flow_do_not_leave() {
    let mut dp = Datapath::new(config());
    let tcp = ip_of(&Ipv4::new(INTERNET, CTR, TCP).tcp(80, 45_000, ACK, b""));
    let nested = ip_of(&Ipv4::new(INTERNET, CTR, ICMP).icmp_error(3, 3, &tcp[..28]));
    let gre = ip_of(&Ipv4::new(INTERNET, CTR, 47).frame(&[0; 8]));
    let mut later = Ipv4::new(INTERNET, CTR, UDP);
    later.frag = 0x0010;
    let later = ip_of(&later.frame(&[0; 8]));
    for quoted in [nested, gre, later] {
        let err = Ipv4::new(CTR, INTERNET, ICMP).icmp_error(3, 3, &quoted);
        assert_eq!(dp.egress(&err).0, TC_ACT_SHOT);
    }
    assert_eq!(dp.stat(DropReason::UnsupportedProtocol.index()), 3);
}

/// Found by the fuzz test: the quote of an ICMP error was read, and rewritten, past the
/// end of the datagram (in the frame's padding), with the outer checksum then wrong.
#[test]
fn icmp_quotes_end_with_their_datagram() {
    let mut dp = Datapath::new(config());
    let q = Ipv4::new(CTR, INTERNET, UDP).udp(5353, 9, b"hello");
    let port = masquerade(&mut dp, &q, |p| {
        Ipv4::new(UPLINK_ADDR, INTERNET, UDP).udp(p, 9, b"hello")
    });
    let sent = ip_of(&Ipv4::new(UPLINK_ADDR, INTERNET, UDP).udp(port, 9, b"hello"));
    // The error quotes the IPv4 header only; the UDP header lies past its end.
    let mut err = Ipv4::new(INTERNET, UPLINK_ADDR, ICMP).icmp_error(3, 3, &sent[..20]);
    err.extend_from_slice(&sent[20..28]);
    assert_eq!(dp.ingress(&err).0, TC_ACT_SHOT);
    assert_eq!(dp.stat(DropReason::Truncated.index()), 1);
    assert_eq!(dp.stat(counter::ICMP_ERRORS_TRANSLATED), 0);
}

/// Found by the fuzz test: a container's port unreachable about a UDP datagram whose
/// quoted checksum goes through 0 when the container's address is replaced by the
/// uplink's. The next update (the quoted port) took that 0 for "no checksum" and left
/// it: the quote went out with a wrong checksum of 0.
#[test]
fn a_quoted_udp_checksum_that_passes_through_zero_stays_right() {
    let mut dp = Datapath::new(config());
    let q = Ipv4::new(CTR, INTERNET, UDP).udp(34_025, 8084, b"q");
    let port = masquerade(&mut dp, &q, |p| {
        Ipv4::new(UPLINK_ADDR, INTERNET, UDP).udp(p, 8084, b"q")
    });
    // The frame as the fuzz test found it: the whole reply 203.0.113.1:8084 ->
    // 172.18.0.2:34025 quoted, its UDP checksum 0x7e21.
    let err: [u8; 110] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, 0x45,
        0x00, 0x00, 0x60, 0x00, 0x09, 0x00, 0x00, 0x40, 0x01, 0x92, 0x7e, 0xac, 0x12, 0x00, 0x02,
        0xcb, 0x00, 0x71, 0x01, 0x03, 0x03, 0xe5, 0x54, 0x00, 0x00, 0x00, 0x00, 0x45, 0x00, 0x00,
        0x44, 0x51, 0x51, 0x40, 0x00, 0x40, 0x11, 0x01, 0x42, 0xcb, 0x00, 0x71, 0x01, 0xac, 0x12,
        0x00, 0x02, 0x1f, 0x94, 0x84, 0xe9, 0x00, 0x30, 0x7e, 0x21, 0x00, 0x25, 0x4a, 0x6f, 0x94,
        0xb9, 0xde, 0x03, 0x28, 0x4d, 0x72, 0x97, 0xbc, 0xe1, 0x06, 0x2b, 0x50, 0x75, 0x9a, 0xbf,
        0xe4, 0x09, 0x2e, 0x53, 0x78, 0x9d, 0xc2, 0xe7, 0x0c, 0x31, 0x56, 0x7b, 0xa0, 0xc5, 0xea,
        0x0f, 0x34, 0x59, 0x7e, 0xa3,
    ];
    let (verdict, out) = dp.egress(&err);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert!(View::new(&out).ip_csum_ok() && View::new(&out).l4_csum_ok());
    // The quote is the datagram the container got, as it was sent: to the uplink's
    // address and NAT port, its checksum right (and never 0, which means none).
    let quote = View::new(&out[14 + 20 + 8 - 14..]);
    assert_eq!(
        (quote.src(), quote.dst(), quote.sport(), quote.dport()),
        (INTERNET, UPLINK_ADDR, 8084, port)
    );
    assert!(quote.ip_csum_ok() && quote.l4_csum_ok(), "{out:02x?}");
}

#[test]
fn ipv4_options_move_the_l4_header() {
    let mut dp = Datapath::new(config());
    let mut ip = Ipv4::new(CTR, INTERNET, TCP);
    ip.options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL: IHL 6
    let syn = ip.tcp(45_001, 80, SYN, b"");
    let port = masquerade(&mut dp, &syn, |p| {
        let mut out = Ipv4::new(UPLINK_ADDR, INTERNET, TCP);
        out.options = vec![1, 1, 1, 0];
        out.tcp(p, 80, SYN, b"")
    });
    let mut back = Ipv4::new(INTERNET, UPLINK_ADDR, TCP);
    back.options = vec![1, 1, 1, 0];
    let (_, out) = dp.ingress(&back.tcp(80, port, SYN | ACK, b""));
    let mut want = Ipv4::new(INTERNET, CTR, TCP);
    want.options = vec![1, 1, 1, 0];
    assert_frames_eq(&out, &want.tcp(80, 45_001, SYN | ACK, b""));
}

#[test]
fn truncated_packets_are_dropped_and_counted() {
    let mut dp = Datapath::new(config());
    let full = Ipv4::new(CTR, INTERNET, TCP).tcp(45_000, 80, SYN, b"");
    // An IPv4 header announcing TCP with no TCP header, then one cut after its ports.
    // (The kernel refuses to test-run a frame whose IPv4 header itself is cut.)
    for cut in [14 + 20, 14 + 20 + 2] {
        let (verdict, _) = dp.egress(&full[..cut]);
        assert_eq!(verdict, TC_ACT_SHOT, "cut at {cut}");
    }
    assert_eq!(dp.stat(DropReason::Truncated.index()), 2);
    assert!(
        dp.table(names::CT_PENDING).is_empty(),
        "nothing tracked for a broken packet"
    );
}

/// Found by the fuzz test: a frame too short to hold an IPv4 header that is not IPv4
/// at all is none of the datapath's business, and was dropped as truncated.
#[test]
fn short_frames_that_are_not_ipv4_pass() {
    let mut dp = Datapath::new(config());
    let frame = [0u8; 14];
    for prog in [
        names::PROG_UPLINK_EGRESS,
        names::PROG_UPLINK_INGRESS,
        names::PROG_BRIDGE_INGRESS,
    ] {
        assert_eq!(
            dp.run(prog, &frame),
            (TC_ACT_UNSPEC, frame.to_vec()),
            "{prog}"
        );
    }
    assert_eq!(dp.stat(DropReason::Truncated.index()), 0);
}

#[test]
fn fragments_and_unknown_protocols_leaving_the_lab_are_dropped_and_counted() {
    let mut dp = Datapath::new(config());
    let mut frag = Ipv4::new(CTR, INTERNET, UDP);
    frag.frag = 0x0010; // offset 128 bytes
    let (verdict, _) = dp.egress(&frag.frame(b"no header here"));
    assert_eq!(verdict, TC_ACT_SHOT);
    assert_eq!(dp.stat(DropReason::Fragment.index()), 1);
    let gre = Ipv4::new(CTR, INTERNET, 47).frame(&[0; 8]);
    assert_eq!(dp.egress(&gre).0, TC_ACT_SHOT);
    assert_eq!(dp.stat(DropReason::UnsupportedProtocol.index()), 1);
}

#[test]
fn traffic_not_from_the_lab_passes_untouched() {
    let mut dp = Datapath::new(config());
    let own = Ipv4::new(UPLINK_ADDR, INTERNET, TCP).tcp(33_000, 80, SYN, b"");
    let (verdict, out) = dp.egress(&own);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_frames_eq(&out, &own);
    let inbound = Ipv4::new(INTERNET, UPLINK_ADDR, TCP).tcp(80, 33_000, SYN | ACK, b"");
    let (verdict, out) = dp.ingress(&inbound);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_frames_eq(&out, &inbound);
    assert!(dp.table(names::CT_PENDING).is_empty());
}

#[test]
fn port_exhaustion_is_a_counted_drop_not_a_corruption() {
    let mut dp = Datapath::new(Config {
        nat_port_min: 20_000,
        nat_port_max: 20_001,
        ..config()
    });
    let mut ports = Vec::new();
    for sport in [1000, 1001] {
        let q = Ipv4::new(CTR, INTERNET, UDP).udp(sport, 53, b"q");
        ports.push(masquerade(&mut dp, &q, |p| {
            Ipv4::new(UPLINK_ADDR, INTERNET, UDP).udp(p, 53, b"q")
        }));
    }
    ports.sort();
    assert_eq!(ports, [20_000, 20_001]);
    // Both ports are taken towards this destination: the third flow is dropped.
    let third = Ipv4::new(CTR2, INTERNET, UDP).udp(1002, 53, b"q");
    assert_eq!(dp.egress(&third).0, TC_ACT_SHOT);
    assert_eq!(dp.stat(DropReason::PortsExhausted.index()), 1);
    // Ports are per destination: another server still gets one.
    let elsewhere = Ipv4::new(CTR2, OTHER, UDP).udp(1002, 53, b"q");
    masquerade(&mut dp, &elsewhere, |p| {
        Ipv4::new(UPLINK_ADDR, OTHER, UDP).udp(p, 53, b"q")
    });
    // The existing flows are untouched.
    let again = Ipv4::new(CTR, INTERNET, UDP).udp(1000, 53, b"q");
    let (_, out) = dp.egress(&again);
    assert!(ports.contains(&View::new(&out).sport()));
}

/// A masqueraded TCP flow from the container's port 45000 to wan's 80, established:
/// the container's SYN at 1000, wan's SYN-ACK at 5000, and the container's ACK of
/// 5001 with a 65535-byte window (unscaled). The datapath, the container's and wan's
/// packet makers, and the flow's NAT port.
fn established() -> (Datapath, Ipv4, Ipv4, u16) {
    let mut dp = Datapath::new(config());
    let ctr = Ipv4::new(CTR, INTERNET, TCP);
    let syn = ctr.tcp_at(45_000, 80, SYN, (1000, 0), b"");
    let port = masquerade(&mut dp, &syn, |p| {
        Ipv4::new(UPLINK_ADDR, INTERNET, TCP).tcp_at(p, 80, SYN, (1000, 0), b"")
    });
    let wan = Ipv4::new(INTERNET, UPLINK_ADDR, TCP);
    dp.ingress(&wan.tcp_at(80, port, SYN | ACK, (5000, 1001), b""));
    dp.egress(&ctr.tcp_at(45_000, 80, ACK, (1001, 5001), b""));
    (dp, ctr, wan, port)
}

/// The answer to a container's SYN from outside must acknowledge the SYN (no later
/// than its end, no more than 66,000 before): a SYN-ACK or reset with any other
/// acknowledgment (a blind spoofer's, who knows the NAT port but not the SYN's
/// number), and a reset without ACK or acknowledging 0, is dropped and
/// leaves the flow waiting for the real answer, which passes. Once the SYN is
/// answered, a reset from outside must come at exactly the answer's next number.
#[test]
fn the_answer_to_a_syn_must_acknowledge_it() {
    const RST: u8 = 0x04;
    let mut dp = Datapath::new(config());
    let ctr = Ipv4::new(CTR, INTERNET, TCP);
    // A masqueraded flow opened by the container's SYN from `sport` at `seq`, carrying
    // `data`; its NAT port.
    let open = |dp: &mut Datapath, sport: u16, seq: u32, data: &[u8]| {
        let syn = ctr.tcp_at(sport, 80, SYN, (seq, 0), data);
        masquerade(dp, &syn, |p| {
            Ipv4::new(UPLINK_ADDR, INTERNET, TCP).tcp_at(p, 80, SYN, (seq, 0), data)
        })
    };
    let port = open(&mut dp, 45_000, 1000, b"");
    let wan = Ipv4::new(INTERNET, UPLINK_ADDR, TCP);
    let states = |dp: &Datapath| -> Vec<u8> {
        dp.table(names::CT_PENDING)
            .iter()
            .map(|(_, e)| e.state)
            .collect()
    };
    for (flags, numbers, reason) in [
        (
            SYN | ACK,
            (5000, 2_000_000_000),
            DropReason::InvalidTcpFlags,
        ),
        (SYN | ACK, (5000, 1002), DropReason::InvalidTcpFlags),
        (RST | ACK, (0, 77_777), DropReason::InvalidRst),
        (RST | ACK, (0, 0), DropReason::InvalidRst),
        (RST, (0, 0), DropReason::InvalidRst),
    ] {
        let before = dp.stat(reason.index());
        let (verdict, _) = dp.ingress(&wan.tcp_at(80, port, flags, numbers, b""));
        assert_eq!(verdict, TC_ACT_SHOT, "{flags:#x} {numbers:?}");
        assert_eq!(
            dp.stat(reason.index()),
            before + 1,
            "{flags:#x} {numbers:?}"
        );
        assert_eq!(states(&dp), [TCP_SYN_SENT; 2], "{flags:#x} {numbers:?}");
    }
    // A SYN from the server's address (a simultaneous open, or a spoofer's) lets no
    // answer off.
    let (verdict, _) = dp.ingress(&wan.tcp_at(80, port, SYN, (7777, 0), b""));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_eq!(states(&dp), [TCP_SYN_SENT2; 2]);
    for (flags, numbers) in [
        (SYN | ACK, (7777, 77_777)),
        (RST | ACK, (0, 77_777)),
        (RST, (7778, 0)),
    ] {
        let (verdict, _) = dp.ingress(&wan.tcp_at(80, port, flags, numbers, b""));
        assert_eq!(verdict, TC_ACT_SHOT, "after a SYN: {flags:#x} {numbers:?}");
        assert_eq!(states(&dp), [TCP_SYN_SENT2; 2]);
    }
    // The real answer.
    let (verdict, out) = dp.ingress(&wan.tcp_at(80, port, SYN | ACK, (5000, 1001), b""));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_eq!(View::new(&out).dst(), CTR);
    assert_eq!(states(&dp), [TCP_SYN_RECV; 2]);
    // Answered: a reset from outside at any number but the answer's next is refused.
    for seq in [0, 5000, 5002, 9000] {
        let (verdict, _) = dp.ingress(&wan.tcp_at(80, port, RST, (seq, 0), b""));
        assert_eq!(verdict, TC_ACT_SHOT, "reset at {seq}");
    }
    assert_eq!(states(&dp), [TCP_SYN_RECV; 2]);
    let (verdict, _) = dp.ingress(&wan.tcp_at(80, port, RST, (5001, 0), b""));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_eq!(
        states(&dp),
        [TCP_CLOSE; 2],
        "at the answer's next number: closed"
    );

    // A reset answering the SYN, acknowledging exactly it, ends a flow at once.
    let port = open(&mut dp, 45_001, 3000, b"");
    // Its sequence number may be any (Linux sends 0; the opener reads the ACK only).
    let (verdict, out) = dp.ingress(&wan.tcp_at(80, port, RST | ACK, (777, 3001), b""));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_eq!(View::new(&out).dst(), CTR);
    assert_eq!(
        states(&dp),
        [TCP_CLOSE; 2],
        "only the first flow's halves are left"
    );

    // A SYN carrying data (TCP Fast Open) may be answered before its data.
    let port = open(&mut dp, 45_002, 7000, b"hello");
    let (verdict, out) = dp.ingress(&wan.tcp_at(80, port, SYN | ACK, (9000, 7001), b""));
    assert_eq!(verdict, TC_ACT_UNSPEC, "the SYN alone acknowledged");
    assert_eq!(View::new(&out).dst(), CTR);

    // The answer acknowledges the opener's latest SYN: one sent again without the data
    // a lost Fast Open SYN carried, or another connection's on the same ports with a
    // lower number (found by a review: every answer was refused).
    for (sport, (first, data), again, flags) in [
        (45_003, (11_000, &b"hello"[..]), 11_000, RST | ACK),
        (45_004, (30_000, &b""[..]), 20_000, SYN | ACK),
    ] {
        let port = open(&mut dp, sport, first, data);
        let (verdict, _) = dp.egress(&ctr.tcp_at(sport, 80, SYN, (again, 0), b""));
        assert_eq!(verdict, TC_ACT_UNSPEC);
        let (verdict, out) = dp.ingress(&wan.tcp_at(80, port, flags, (0, again + 1), b""));
        assert_eq!(verdict, TC_ACT_UNSPEC, "{flags:#x} to the SYN at {again}");
        assert_eq!(View::new(&out).dst(), CTR);
    }
}

/// nf_conntrack's reset rule on an established masqueraded flow: a reset before what
/// its receiver acknowledged (or past its window) is dropped; one in the window but
/// not at the exact number passes and leaves the flow established (the receiver
/// answers with a challenge ACK); one at exactly RCV.NXT closes it.
#[test]
fn resets_are_refused_kept_or_closing_by_their_sequence_number() {
    const RST: u8 = 0x04;
    let (mut dp, _, wan, port) = established();
    let states =
        |dp: &Datapath| -> Vec<u8> { dp.table(names::CT).iter().map(|(_, e)| e.state).collect() };
    assert_eq!(states(&dp), [TCP_ESTABLISHED; 2]);

    let (verdict, _) = dp.ingress(&wan.tcp_at(80, port, RST, (4000, 0), b""));
    assert_eq!(
        verdict, TC_ACT_SHOT,
        "before what the container acknowledged"
    );
    let (verdict, _) = dp.ingress(&wan.tcp_at(80, port, RST, (5001 + 70_000, 0), b""));
    assert_eq!(verdict, TC_ACT_SHOT, "past the container's window");
    assert_eq!(dp.stat(DropReason::InvalidRst.index()), 2);

    let (verdict, out) = dp.ingress(&wan.tcp_at(80, port, RST, (5001 + 30_000, 0), b""));
    assert_eq!(verdict, TC_ACT_UNSPEC, "in the window: passed on");
    assert_eq!(View::new(&out).dst(), CTR, "and translated");
    assert_eq!(states(&dp), [TCP_ESTABLISHED; 2], "kept: the flow goes on");

    let (verdict, _) = dp.ingress(&wan.tcp_at(80, port, RST, (5001, 0), b""));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert!(dp.table(names::CT).is_empty(), "at RCV.NXT: closed");
    assert!(
        dp.table(names::CT_PENDING)
            .iter()
            .all(|(_, e)| e.state == TCP_CLOSE)
    );
}

/// Two FINs that cross on two CPUs: each moves the flow one way closed, and the state,
/// written without a lock, keeps only one (here the container's FIN_WAIT, wan's FIN
/// lost). Each FIN also marked its own half; the next segment finds both marks and
/// closes the flow both ways: TIME_WAIT, out of the established table.
#[test]
fn fins_that_crossed_close_the_flow_both_ways() {
    const FIN: u8 = 0x01;
    let (mut dp, ctr, wan, port) = established();
    assert_eq!(dp.table(names::CT).len(), 2, "established");

    // wan's FIN, on one CPU: CLOSE_WAIT, wan's half marked.
    dp.ingress(&wan.tcp_at(80, port, FIN | ACK, (5001, 1001), b""));
    // The container's FIN on another CPU at the same moment saw ESTABLISHED and wrote
    // FIN_WAIT last: what it left is written here by hand (its mark on its own half,
    // its state on both).
    let mut ct: HashMap<_, CtKey, CtEntry> =
        HashMap::try_from(dp.bpf.map_mut(names::CT).unwrap()).unwrap();
    let entries: Vec<(CtKey, CtEntry)> = ct.iter().map(|r| r.unwrap()).collect();
    for (k, mut e) in entries {
        assert_eq!(e.state, netlab_common::conntrack::TCP_CLOSE_WAIT);
        let wan_half = e.flags & netlab_common::conntrack::FLAG_ORIGIN == 0;
        assert_eq!(
            e.wscale & WSCALE_FIN != 0,
            wan_half,
            "only wan's half marked"
        );
        e.state = netlab_common::conntrack::TCP_FIN_WAIT;
        e.wscale |= WSCALE_FIN;
        ct.insert(k, e, 0).unwrap();
    }
    // The container acknowledges wan's FIN: closed both ways.
    let (verdict, _) = dp.egress(&ctr.tcp_at(45_000, 80, ACK, (1002, 5002), b""));
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert!(dp.table(names::CT).is_empty(), "left the established table");
    let pending = dp.table(names::CT_PENDING);
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|(_, e)| e.state == TCP_TIME_WAIT));
}

/// A new flow leaving by an interface without an IPv4 address (the program runs on
/// loopback here, which the lab's uplinks do not list) has nothing to be masqueraded
/// behind: it is dropped and counted, as iptables' MASQUERADE drops it, never sent
/// with the container's address.
#[test]
fn masquerading_behind_an_interface_without_an_address_drops() {
    let mut dp = Datapath::new(Config {
        uplink_ifindex: 99,
        ..config()
    });
    let syn = Ipv4::new(CTR, INTERNET, TCP).tcp(45_000, 80, SYN, b"");
    let (verdict, _) = dp.egress(&syn);
    assert_eq!(verdict, TC_ACT_SHOT);
    assert_eq!(dp.stat(DropReason::NoAddress.index()), 1);
    assert!(dp.table(names::CT_PENDING).is_empty());
}

#[test]
fn idle_flows_expire_in_the_kernel() {
    let mut dp = Datapath::new(Config {
        udp_secs: 1,
        ..config()
    });
    let q = Ipv4::new(CTR, INTERNET, UDP).udp(5353, 53, b"q");
    let port = masquerade(&mut dp, &q, |p| {
        Ipv4::new(UPLINK_ADDR, INTERNET, UDP).udp(p, 53, b"q")
    });
    // Two seconds pass, for the flow (its times moved back rather than a sleep).
    dp.age(2);
    // A late reply finds no flow: it is not translated, and the flow is gone.
    let late = Ipv4::new(INTERNET, UPLINK_ADDR, UDP).udp(53, port, b"a");
    let (verdict, out) = dp.ingress(&late);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_frames_eq(&out, &late);
    assert_eq!(dp.stat(counter::CT_EXPIRED), 1);
    assert!(dp.table(names::CT_PENDING).is_empty());
}

#[test]
fn a_flood_of_new_flows_does_not_evict_established_ones() {
    let mut dp = Datapath::new(config());
    let syn = Ipv4::new(CTR, INTERNET, TCP).tcp(45_000, 80, SYN, b"");
    let port = masquerade(&mut dp, &syn, |p| {
        Ipv4::new(UPLINK_ADDR, INTERNET, TCP).tcp(p, 80, SYN, b"")
    });
    dp.ingress(&Ipv4::new(INTERNET, UPLINK_ADDR, TCP).tcp(80, port, SYN | ACK, b""));
    dp.egress(&Ipv4::new(CTR, INTERNET, TCP).tcp(45_000, 80, ACK, b""));
    assert_eq!(
        dp.table(names::CT).len(),
        2,
        "the connection is established"
    );

    // More unanswered new flows than the pending table holds (a scan, a SYN flood),
    // spread over destinations so that NAT ports (per destination) do not run out.
    let pending_max = pending_entries(CONNTRACK_MAX_DEFAULT);
    let flood = pending_max + 8_000;
    for i in 0..flood {
        let q = Ipv4::new(CTR2, OTHER, UDP).udp(
            1024 + (i % 1_000) as u16,
            1 + (i / 1_000) as u16,
            b"x",
        );
        assert_eq!(dp.egress(&q).0, TC_ACT_UNSPEC, "flow {i}");
    }
    assert!(dp.table(names::CT_PENDING).len() <= pending_max as usize);
    // The established connection is untouched, both ways.
    assert_eq!(dp.table(names::CT).len(), 2);
    let (_, out) = dp.egress(&Ipv4::new(CTR, INTERNET, TCP).tcp(45_000, 80, ACK, b"still here"));
    assert_frames_eq(
        &out,
        &Ipv4::new(UPLINK_ADDR, INTERNET, TCP).tcp(port, 80, ACK, b"still here"),
    );
    let (_, out) = dp.ingress(&Ipv4::new(INTERNET, UPLINK_ADDR, TCP).tcp(80, port, ACK, b"yes"));
    assert_frames_eq(
        &out,
        &Ipv4::new(INTERNET, CTR, TCP).tcp(80, 45_000, ACK, b"yes"),
    );
}

/// Live flows from two containers, twice as many as the table of flows being opened
/// holds, each asked and answered, in two passes: whatever eviction took in between,
/// every reply to the port a flow's packet left with reaches exactly that flow's
/// container and port — never another's. (An orphaned half still translating to a
/// port handed to a new flow would send the new flow's replies to the old container.)
#[test]
fn a_table_filled_past_its_size_never_misdelivers() {
    let mut dp = Datapath::sized(config(), 1_024);
    let flows = pending_entries(1_024); // twice the flows it holds
    let (mut translated, mut dropped) = (0u32, 0u32);
    for pass in 0..2 {
        for i in 0..flows {
            let ctr = if i % 2 == 0 { CTR } else { CTR2 };
            // Both containers use the same source ports towards the same few
            // destinations, so that NAT ports are contended and handed out again.
            let (sport, dport) = (1024 + (i / 2 % 2_000) as u16, 1 + (i / 4_000) as u16);
            let (verdict, out) = dp.egress(&Ipv4::new(ctr, OTHER, UDP).udp(sport, dport, b"q"));
            if verdict != TC_ACT_UNSPEC {
                dropped += 1;
                continue;
            }
            let v = View::new(&out);
            assert_eq!((v.src(), v.dst(), v.dport()), (UPLINK_ADDR, OTHER, dport));
            let nat_port = v.sport();
            let (verdict, back) =
                dp.ingress(&Ipv4::new(OTHER, UPLINK_ADDR, UDP).udp(dport, nat_port, b"a"));
            assert_eq!(verdict, TC_ACT_UNSPEC, "pass {pass}, flow {i}");
            let b = View::new(&back);
            assert_eq!(
                (b.dst(), b.dport()),
                (ctr, sport),
                "pass {pass}, flow {i}: the reply to {nat_port} went to the wrong place"
            );
            translated += 1;
        }
    }
    assert!(
        translated >= flows,
        "{translated} translated, {dropped} dropped"
    );
    assert!(dp.table(names::CT_PENDING).len() <= pending_entries(1_024) as usize);
}

/// Half a flow, as eviction from the LRU table leaves it: container A's flow keeps its
/// outgoing half, its reply half is gone. With one NAT port, container B's new flow to
/// the same server may now take that port. A's next datagram must then not leave with
/// it (its half no longer has a reply half pointing back: the flow is gone, and the
/// range is full), so that replies to the port reach B and only B.
#[test]
fn an_orphaned_half_never_translates() {
    let mut dp = Datapath::new(Config {
        nat_port_min: 20_000,
        nat_port_max: 20_000,
        ..config()
    });
    let a = Ipv4::new(CTR, OTHER, UDP).udp(1000, 53, b"a");
    let port = masquerade(&mut dp, &a, |p| {
        Ipv4::new(UPLINK_ADDR, OTHER, UDP).udp(p, 53, b"a")
    });
    assert_eq!(port, 20_000);
    let reply_key = dp
        .table(names::CT_PENDING)
        .into_iter()
        .map(|(k, _)| k)
        .find(|k| k.saddr == be(OTHER))
        .expect("the reply half");
    {
        let mut m: HashMap<_, CtKey, CtEntry> =
            HashMap::try_from(dp.bpf.map_mut(names::CT_PENDING).unwrap()).unwrap();
        m.remove(&reply_key).unwrap();
    }
    let b = Ipv4::new(CTR2, OTHER, UDP).udp(1000, 53, b"b");
    let (verdict, out) = dp.egress(&b);
    assert_eq!(verdict, TC_ACT_UNSPEC);
    assert_eq!(View::new(&out).sport(), 20_000, "the freed port goes to B");
    let (verdict, _) = dp.egress(&a);
    assert_eq!(verdict, TC_ACT_SHOT, "A left with B's port");
    assert_eq!(dp.stat(DropReason::PortsExhausted.index()), 1);
    let (_, back) = dp.ingress(&Ipv4::new(OTHER, UPLINK_ADDR, UDP).udp(53, 20_000, b"r"));
    let v = View::new(&back);
    assert_eq!((v.dst(), v.dport()), (CTR2, 1000));
}

/// Runs `body` with the datapath of `cfg` on a sandbox lab's bridge, in its lab host:
/// hairpin at the bridge asks the lab host's routes (the route into the container,
/// with the container's own address), which a made-up bridge does not have.
fn in_a_lab_host(cfg: Config, body: impl FnOnce(&mut Datapath) + Send) {
    let lab = netlab_tests::Lab::sandbox(&[]);
    let host = lab.ns("host");
    let (bridge, _) = link_of(&host, &lab.state().bridge);
    let mut dp = Datapath::new(Config {
        bridge_ifindex: bridge,
        ..cfg
    });
    dp.bridge_dev = Some(bridge);
    netlab_tests::in_ns(&host, || body(&mut dp));
}

#[test]
fn replies_to_host_connections_on_a_published_port_are_left_alone() {
    in_a_lab_host(config(), |dp| {
        let bridge = Ipv4Addr::new(172, 18, 0, 1);
        dp.publish(40_000, TCP, CTR2, 80);
        // A host-local client on 172.18.0.1:40000 talks to CTR:80; CTR's SYN-ACK is a reply.
        let synack = Ipv4::new(CTR, bridge, TCP).tcp(80, 40_000, SYN | ACK, b"");
        let (verdict, out) = dp.run(names::PROG_BRIDGE_INGRESS, &synack);
        assert_eq!(verdict, TC_ACT_UNSPEC);
        assert_frames_eq(&out, &synack);
        // A SYN to the same published port from a container is hairpin.
        let syn = Ipv4::new(CTR, bridge, TCP).tcp(33_000, 40_000, SYN, b"");
        let (_, out) = dp.run(names::PROG_BRIDGE_INGRESS, &syn);
        let v = View::new(&out);
        assert_eq!((v.src(), v.dst(), v.dport()), (bridge, CTR2, 80));
        assert!(v.ip_csum_ok() && v.l4_csum_ok());

        // The same at the uplink: wan's SYN-ACK to the host's own connection from port
        // 40000 is a reply; a SYN from wan to 40000 is a published connection.
        let synack = Ipv4::new(INTERNET, UPLINK_ADDR, TCP).tcp(443, 40_000, SYN | ACK, b"");
        let (verdict, out) = dp.ingress(&synack);
        assert_eq!(verdict, TC_ACT_UNSPEC);
        assert_frames_eq(&out, &synack);
        let syn = Ipv4::new(INTERNET, UPLINK_ADDR, TCP).tcp(50_000, 40_000, SYN, b"");
        let (_, out) = dp.ingress(&syn);
        assert_frames_eq(
            &out,
            &Ipv4::new(INTERNET, CTR2, TCP).tcp(50_000, 80, SYN, b""),
        );
    });
}

/// A packet whose IPv4 header checksum does not hold, to a published port from outside
/// and hairpin from a container, is left to the stack as it came (whose `ip_rcv` drops
/// it) and counted: not translated, and no flow opened that nf_conntrack would never
/// have had. (A container's veth does the same: the fuzz test's model.)
#[test]
fn a_bad_header_checksum_is_left_to_the_stack() {
    in_a_lab_host(config(), |dp| {
        let bridge = Ipv4Addr::new(172, 18, 0, 1);
        dp.publish(40_000, TCP, CTR2, 80);
        let corrupt = |mut f: Vec<u8>| {
            f[14 + 10] ^= 0x5a;
            f
        };
        let syn = corrupt(Ipv4::new(INTERNET, UPLINK_ADDR, TCP).tcp(50_000, 40_000, SYN, b""));
        assert!(!View::new(&syn).ip_csum_ok());
        assert_eq!(dp.ingress(&syn), (TC_ACT_UNSPEC, syn.clone()));
        let hairpin = corrupt(Ipv4::new(CTR, bridge, TCP).tcp(33_000, 40_000, SYN, b""));
        assert_eq!(
            dp.run(names::PROG_BRIDGE_INGRESS, &hairpin),
            (TC_ACT_UNSPEC, hairpin.clone())
        );
        assert_eq!(dp.stat(counter::PASS_BAD_CHECKSUM), 2);
        assert!(dp.table(names::CT_PENDING).is_empty(), "a flow was opened");
        // The same SYN with its checksum right is published.
        let syn = Ipv4::new(INTERNET, UPLINK_ADDR, TCP).tcp(50_000, 40_000, SYN, b"");
        let (_, out) = dp.ingress(&syn);
        assert_frames_eq(
            &out,
            &Ipv4::new(INTERNET, CTR2, TCP).tcp(50_000, 80, SYN, b""),
        );
    });
}

/// Found by the fuzz test: the first fragment of a hairpin datagram was translated at
/// bridge ingress, the rest went to the lab host untranslated.
#[test]
fn hairpin_fragments_follow_their_first() {
    in_a_lab_host(config(), |dp| {
        let bridge = Ipv4Addr::new(172, 18, 0, 1);
        dp.publish(5353, UDP, CTR2, 53);
        let whole = ip_of(&Ipv4::new(CTR, UPLINK_ADDR, UDP).udp(40_000, 5353, &[7; 24]));
        let udp = &whole[20..];
        let mut first = Ipv4::new(CTR, UPLINK_ADDR, UDP);
        first.frag = 0x2000;
        let (verdict, out) = dp.run(names::PROG_BRIDGE_INGRESS, &first.frame(&udp[..16]));
        assert_eq!(verdict, TC_ACT_UNSPEC);
        let v = View::new(&out);
        assert_eq!((v.src(), v.dst(), v.dport()), (bridge, CTR2, 53));
        let mut rest = Ipv4::new(CTR, UPLINK_ADDR, UDP);
        rest.frag = 2;
        let (verdict, out) = dp.run(names::PROG_BRIDGE_INGRESS, &rest.frame(&udp[16..]));
        assert_eq!(verdict, TC_ACT_UNSPEC);
        let mut want = Ipv4::new(bridge, CTR2, UDP);
        want.frag = 2;
        assert_frames_eq(&out, &want.frame(&udp[16..]));
        assert_eq!(dp.stat(counter::FRAGMENTS_TRANSLATED), 1);
    });
}

/// Found by the fuzz test: hairpin from a container to a port published to itself, from
/// that same port, when the NAT range holds the published port: a NAT port equal to it
/// makes the reply tuple the flow's own opening tuple. The insert of the second half
/// then failed and its rollback removed the first (`ct_insert_failed`); such a port is
/// not free.
#[test]
fn a_nat_port_that_would_make_a_flow_its_own_reply_is_not_free() {
    in_a_lab_host(
        Config {
            nat_port_min: 20_001,
            nat_port_max: 20_001,
            ..config()
        },
        |dp| {
            dp.publish(20_001, TCP, CTR, 53);
            let bridge = Ipv4Addr::new(172, 18, 0, 1);
            let syn = Ipv4::new(CTR, bridge, TCP).tcp(53, 20_001, SYN, b"");
            assert_eq!(dp.run(names::PROG_BRIDGE_INGRESS, &syn).0, TC_ACT_SHOT);
            assert_eq!(dp.stat(DropReason::PortsExhausted.index()), 1);
            assert_eq!(dp.stat(DropReason::CtInsertFailed.index()), 0);
            assert!(dp.table(names::CT_PENDING).is_empty());
        },
    );
}

/// Every program verifies with room to spare, debug logs included: the verifier's
/// limit is a million instructions, and a program near it breaks on the next change.
#[test]
fn programs_verify_with_room_to_spare() {
    require_root();
    use netlab_common::config::{FLAG_FAST_PATH, FLAG_IPV6, FLAG_NETKIT};
    // The verifier drops the code a configuration leaves dead: every one that matters
    // (a dual-stack lab's IPv4 programs hand IPv6 on to the IPv6 ones).
    for (debug, flags) in [
        (false, FLAG_FAST_PATH),
        (true, FLAG_FAST_PATH),
        (true, FLAG_FAST_PATH | FLAG_NETKIT),
        (true, 0),
        (false, FLAG_FAST_PATH | FLAG_IPV6),
        (true, FLAG_FAST_PATH | FLAG_IPV6),
    ] {
        let cfg = Config { flags, ..config() };
        let mut bpf =
            netlab::datapath::ebpf::load(debug, CONNTRACK_MAX_DEFAULT, &cfg).expect("load object");
        let ipv6 = names::PROGS6_NAMES.map(|(p, _)| p);
        for p in [
            names::PROG_UPLINK_EGRESS,
            names::PROG_UPLINK_INGRESS,
            names::PROG_BRIDGE_INGRESS,
            names::PROG_ENDPOINT_INGRESS,
            names::PROG_GC_START,
        ]
        .into_iter()
        .chain(ipv6)
        {
            let prog = netlab::datapath::ebpf::load_program(&mut bpf, p)
                .unwrap_or_else(|e| panic!("{p} (debug {debug}, flags {flags}): {e}"));
            // A kernel that does not report the count (before 5.16) cannot tell the
            // room left: the test is reported skipped there, not passed on a 0.
            let Some(n) = prog.info().unwrap().verified_instruction_count() else {
                return netlab_tests::skip("the kernel reports no verified instruction count");
            };
            eprintln!("{p} (debug {debug}, flags {flags}): {n} instructions verified");
            assert!(
                n < 500_000,
                "{p} (debug {debug}, flags {flags}): {n} instructions verified"
            );
        }
    }
}

const TC_ACT_REDIRECT: u32 = 7;

/// The fast path on real links: a sandbox lab with containers `a` and `b`, and a
/// datapath whose programs run inside its host namespace, where `bpf_fib_lookup` sees
/// its routes and neighbours.
struct FastLab {
    lab: netlab_tests::Lab,
    dp: Datapath,
    host: std::path::PathBuf,
    uplink_mac: [u8; 6],
    bridge_mac: [u8; 6],
    wan_mac: [u8; 6],
    mac_a: [u8; 6],
    mac_b: [u8; 6],
}

impl FastLab {
    fn new() -> Self {
        Self::with_flags(netlab_common::config::FLAG_FAST_PATH)
    }

    /// With `CONFIG` flags `flags` (`FLAG_NETKIT`: the endpoint program as a netkit
    /// pair's peer program).
    fn with_flags(flags: u32) -> Self {
        use netlab_common::endpoint::Endpoint;
        let lab = netlab_tests::Lab::sandbox(&[]);
        lab.ok(&["run", "a"]);
        lab.ok(&["run", "b"]);
        // The next hop's MAC is in the lab host's neighbour table after one ping.
        lab.exec_ok("host", &["ping", "-c", "1", "-W", "2", "198.51.100.1"]);
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
        let mut dp = Datapath::new(Config {
            uplink_ifindex: uplink,
            bridge_ifindex: bridge,
            bridge_mac,
            flags,
            ..config()
        });
        dp.uplink_dev = Some(uplink);
        {
            let mut eps: HashMap<_, u32, Endpoint> =
                HashMap::try_from(dp.bpf.map_mut(names::ENDPOINTS).unwrap()).unwrap();
            for (ip, ifindex, mac) in [(CTR, veth_a, mac_a), (CTR2, veth_b, mac_b)] {
                let ep = Endpoint {
                    ifindex,
                    mac,
                    _pad: [0; 2],
                };
                eps.insert(be(ip), ep, 0).unwrap();
            }
        }
        Self {
            lab,
            dp,
            host,
            uplink_mac,
            bridge_mac,
            wan_mac,
            mac_a,
            mac_b,
        }
    }
}

/// `frame` as a container sends it to be routed: to the bridge's MAC (the fast path
/// routes nothing else).
fn to_bridge(mut frame: Vec<u8>, bridge_mac: [u8; 6]) -> Vec<u8> {
    frame[..6].copy_from_slice(&bridge_mac);
    frame
}

/// Sends container `a`'s SYN from `sport` to the internet through the endpoint program
/// and checks it left redirected, masqueraded, TTL one less, to wan's MAC. Returns the
/// frame it left as and its NAT port.
fn masqueraded_syn(
    dp: &mut Datapath,
    sport: u16,
    wan_mac: [u8; 6],
    uplink_mac: [u8; 6],
    bridge_mac: [u8; 6],
) -> (Vec<u8>, u16) {
    let syn = to_bridge(
        Ipv4::new(CTR, INTERNET, TCP).tcp(sport, 80, SYN, b""),
        bridge_mac,
    );
    let (verdict, out) = dp.endpoint(&syn);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let port = View::new(&out).sport();
    let mut want = Ipv4::new(UPLINK_ADDR, INTERNET, TCP);
    want.ttl = 63;
    let want = netlab_tests::packet::with_macs(want.tcp(port, 80, SYN, b""), wan_mac, uplink_mac);
    assert_frames_eq(&out, &want);
    (out, port)
}

/// Every forwarded frame is checked byte for byte: translated, TTL one less (the lab
/// host routes it), MACs of the next hop, and the redirect verdict.
#[test]
fn the_fast_path_forwards_translated_frames_to_their_next_hop() {
    fast_path_forwards(FastLab::new());
}

/// The same frames and verdicts from the endpoint program run as a netkit peer program
/// (`FLAG_NETKIT`), which enters another container by `bpf_redirect` to its primary
/// rather than `bpf_redirect_peer` (BPF_PROG_TEST_RUN runs either; where the redirect
/// lands is the guest suite's to show, `tests/vm/e2e.sh`).
#[test]
fn the_netkit_endpoint_forwards_the_same_frames() {
    use netlab_common::config::{FLAG_FAST_PATH, FLAG_NETKIT};
    fast_path_forwards(FastLab::with_flags(FLAG_FAST_PATH | FLAG_NETKIT));
}

fn fast_path_forwards(lab: FastLab) {
    use netlab_tests::{in_ns, packet::with_macs};
    let FastLab {
        lab: sandbox,
        mut dp,
        host,
        uplink_mac,
        bridge_mac,
        wan_mac,
        mac_a,
        mac_b,
    } = lab;
    in_ns(&host, || {
        // A new flow out: masqueraded at the container's veth, sent to wan's MAC.
        let (_, port) = masqueraded_syn(&mut dp, 45_000, wan_mac, uplink_mac, bridge_mac);

        // Its answer: into the container, from the bridge's MAC.
        let mut synack = Ipv4::new(INTERNET, UPLINK_ADDR, TCP);
        synack.ttl = 50;
        let synack = with_macs(synack.tcp(80, port, SYN | ACK, b""), uplink_mac, wan_mac);
        let (verdict, out) = dp.ingress(&synack);
        assert_eq!(verdict, TC_ACT_REDIRECT);
        let mut want = Ipv4::new(INTERNET, CTR, TCP);
        want.ttl = 49;
        assert_frames_eq(
            &out,
            &with_macs(want.tcp(80, 45_000, SYN | ACK, b""), mac_a, bridge_mac),
        );

        // TTL 1 is the lab host's to answer (time exceeded): untouched, to the stack.
        let mut dying = Ipv4::new(CTR, INTERNET, TCP);
        dying.ttl = 1;
        let frame = to_bridge(dying.tcp(45_000, 80, ACK, b""), bridge_mac);
        assert_eq!(dp.endpoint(&frame), (TC_ACT_UNSPEC, frame.clone()));
        assert_eq!(dp.stat(counter::SLOW_TTL), 1);

        // A frame for another container: switched straight in, unchanged.
        let to_b = with_macs(
            Ipv4::new(CTR, CTR2, UDP).udp(5000, 6000, b"hi"),
            mac_b,
            mac_a,
        );
        assert_eq!(dp.endpoint(&to_b), (TC_ACT_REDIRECT, to_b.clone()));
        // ...but not one addressed to another MAC: the bridge decides.
        let odd = with_macs(to_b.clone(), [2, 9, 9, 9, 9, 9], mac_a);
        assert_eq!(dp.endpoint(&odd), (TC_ACT_UNSPEC, odd.clone()));
        // Found by the fuzz test: what the lab host never forwards (the zero network,
        // multicast, the limited broadcast) left the lab by the default route. It is
        // the stack's.
        for dst in [
            Ipv4Addr::new(0, 0, 0, 0),
            Ipv4Addr::new(224, 0, 0, 251),
            Ipv4Addr::BROADCAST,
        ] {
            let syn = to_bridge(
                Ipv4::new(CTR, dst, TCP).tcp(45_002, 80, SYN, b""),
                bridge_mac,
            );
            assert_eq!(dp.endpoint(&syn), (TC_ACT_UNSPEC, syn.clone()), "{dst}");
        }
        // A frame to leave the lab but not addressed to the bridge: not the lab host's
        // to route (the bridge would switch it to that MAC, or flood it).
        let syn = Ipv4::new(CTR, INTERNET, TCP).tcp(45_003, 80, SYN, b"");
        let off = with_macs(syn, mac_b, mac_a);
        assert_eq!(dp.endpoint(&off), (TC_ACT_UNSPEC, off.clone()));
        assert_eq!(dp.stat(counter::FAST_BETWEEN_CONTAINERS), 1);
        assert_eq!(dp.stat(counter::FAST_TO_UPLINK), 1);
        assert_eq!(dp.stat(counter::FAST_TO_CONTAINER), 1);

        // Too big for the lab's MTU (the uplink's is larger): the stack answers it
        // (fragmentation needed), where bpf_redirect_peer would drop it unsaid.
        let bridge = sandbox.state().bridge;
        sandbox.exec_ok("host", &["ip", "link", "set", &bridge, "mtu", "1280"]);
        let big = Ipv4::new(INTERNET, UPLINK_ADDR, TCP).tcp(80, port, ACK, &[7u8; 1360]);
        let big = with_macs(big, uplink_mac, wan_mac);
        assert_eq!(dp.ingress(&big).0, TC_ACT_UNSPEC);
        assert_eq!(dp.stat(counter::SLOW_MTU), 1);
        assert_eq!(dp.stat(counter::FAST_TO_CONTAINER), 1);
    });
}

/// A reply from a source the lab host routes back by another interface than the uplink
/// it came in by (asymmetric routing) is translated but left to the stack, whose
/// reverse-path filter (`rp_filter`) decides; `bpf_fib_lookup` checks no source.
#[test]
fn a_source_routed_back_elsewhere_is_the_stacks() {
    use netlab_tests::{in_ns, packet::with_macs};
    let FastLab {
        lab: sandbox,
        mut dp,
        host,
        uplink_mac,
        bridge_mac,
        wan_mac,
        ..
    } = FastLab::new();
    let bridge = sandbox.state().bridge;
    in_ns(&host, || {
        let (_, port) = masqueraded_syn(&mut dp, 45_000, wan_mac, uplink_mac, bridge_mac);
        sandbox.exec_ok(
            "host",
            &[
                "ip",
                "route",
                "add",
                &format!("{INTERNET}/32"),
                "dev",
                &bridge,
            ],
        );
        let synack = Ipv4::new(INTERNET, UPLINK_ADDR, TCP).tcp(80, port, SYN | ACK, b"");
        let (verdict, out) = dp.ingress(&with_macs(synack, uplink_mac, wan_mac));
        assert_eq!(verdict, TC_ACT_UNSPEC);
        let want = Ipv4::new(INTERNET, CTR, TCP).tcp(80, 45_000, SYN | ACK, b"");
        assert_frames_eq(&out, &with_macs(want, uplink_mac, wan_mac));
        assert_eq!(dp.stat(counter::SLOW_OTHER), 1);
        assert_eq!(dp.stat(counter::FAST_TO_CONTAINER), 0);
    });
}

/// A route MTU in the lab host below the uplink's (locked, so that the kernel's lookup
/// uses it): a packet that fits the device but not the route goes to the stack
/// (fragmentation needed), on the lookup and from the next-hop cache alike; one that
/// fits the route leaves by the fast path.
#[test]
fn the_fast_path_holds_packets_to_the_routes_mtu() {
    use netlab_tests::in_ns;
    let FastLab {
        lab,
        mut dp,
        host,
        bridge_mac,
        ..
    } = FastLab::new();
    lab.lock_route_mtu(1400);
    in_ns(&host, || {
        netlab::bench::rr::pin_to(0).expect("pin to CPU 0");
        // 1,380 bytes of payload and 40 of headers do not fit 1,400; 1,360 do. A SYN
        // carrying data opens its flow on the lookup, not from the cache.
        let big_syn = to_bridge(
            Ipv4::new(CTR, INTERNET, TCP).tcp(45_020, 80, SYN, &[7u8; 1380]),
            bridge_mac,
        );
        assert_eq!(dp.endpoint(&big_syn).0, TC_ACT_UNSPEC, "on the lookup");
        assert_eq!(dp.stat(counter::SLOW_MTU), 1);
        let syn = to_bridge(
            Ipv4::new(CTR, INTERNET, TCP).tcp(45_020, 80, SYN, b""),
            bridge_mac,
        );
        let big = to_bridge(
            Ipv4::new(CTR, INTERNET, TCP).tcp(45_020, 80, ACK, &[7u8; 1380]),
            bridge_mac,
        );
        let fits = to_bridge(
            Ipv4::new(CTR, INTERNET, TCP).tcp(45_020, 80, ACK, &[7u8; 1360]),
            bridge_mac,
        );
        assert_eq!(dp.endpoint(&syn).0, TC_ACT_REDIRECT);
        let cached = dp.stat(counter::NEXT_HOP_CACHED);
        assert_eq!(
            dp.endpoint(&big),
            (TC_ACT_UNSPEC, big.clone()),
            "from the cache"
        );
        assert_eq!(dp.stat(counter::SLOW_MTU), 2);
        assert_eq!(dp.endpoint(&fits).0, TC_ACT_REDIRECT);
        assert!(dp.stat(counter::NEXT_HOP_CACHED) > cached);
    });
}

/// The next-hop cache: a flow's packets after the first take the next hop from the
/// per-CPU cache and leave byte for byte as the first did; a packet too big for the
/// uplink still goes to the stack (fragmentation needed), cache or not.
#[test]
fn a_cached_next_hop_forwards_the_same_frame_and_keeps_the_mtu_check() {
    use netlab_tests::in_ns;
    let FastLab {
        lab: _lab,
        mut dp,
        host,
        uplink_mac,
        wan_mac,
        bridge_mac,
        ..
    } = FastLab::new();
    in_ns(&host, || {
        // One CPU, so that the per-CPU cache filled by one run serves the next.
        netlab::bench::rr::pin_to(0).expect("pin to CPU 0");
        let (want, _) = masqueraded_syn(&mut dp, 45_010, wan_mac, uplink_mac, bridge_mac);
        let syn = to_bridge(
            Ipv4::new(CTR, INTERNET, TCP).tcp(45_010, 80, SYN, b""),
            bridge_mac,
        );
        // Retransmissions of the SYN: the same flow, the same frame, from the cache
        // (all but one of them even if the coarse clock ticks in between).
        for _ in 0..4 {
            assert_eq!(dp.endpoint(&syn), (TC_ACT_REDIRECT, want.clone()));
        }
        assert!(dp.stat(counter::NEXT_HOP_CACHED) >= 3);
        assert_eq!(dp.stat(counter::FAST_TO_UPLINK), 5);

        // 1,600 bytes of payload without GSO do not fit the uplink's 1,500: the stack
        // takes the packet, untouched, and answers fragmentation needed.
        let cached = dp.stat(counter::NEXT_HOP_CACHED);
        let big = to_bridge(
            Ipv4::new(CTR, INTERNET, TCP).tcp(45_010, 80, ACK, &[7u8; 1600]),
            bridge_mac,
        );
        assert_eq!(dp.endpoint(&big), (TC_ACT_UNSPEC, big.clone()));
        assert_eq!(dp.stat(counter::SLOW_MTU), 1);
        assert_eq!(dp.stat(counter::NEXT_HOP_CACHED), cached);
        // ...and the flow's next small packet leaves by the cache again.
        let (verdict, _) = dp.endpoint(&syn);
        assert_eq!(verdict, TC_ACT_REDIRECT);
    });
}

/// Two CPUs racing on the first packet of one flow to a published port (which keeps
/// the client's port, so both want the same translation), 3,000 flows each of TCP and
/// UDP: the CPU that comes second always takes the flow the first made, whether or not
/// the first has finished it (`ct_clash_resolved`), and drops nothing; each flow is
/// made, counted and logged once, and its next packet is translated.
#[test]
fn two_cpus_racing_on_one_flow_resolve_the_clash() {
    if let Some(why) = netlab_tests::race::unavailable() {
        return netlab_tests::skip(&why);
    }
    const RACES: usize = 3_000;
    for proto in [TCP, UDP] {
        let mut dp = Datapath::new(config());
        dp.publish(8080, proto, CTR, 80);
        let first = move |i: usize, _cpu: usize| {
            let ip = Ipv4::new(OTHER, UPLINK_ADDR, proto);
            match proto {
                TCP => ip.tcp(1024 + i as u16, 8080, SYN, b""),
                _ => ip.udp(1024 + i as u16, 8080, b"q"),
            }
        };
        let dropped =
            netlab_tests::race::drops_of(&dp.bpf, names::PROG_UPLINK_INGRESS, RACES, first);
        let resolved = dp.stat(counter::CT_CLASH_RESOLVED);
        eprintln!("proto {proto}: of {RACES} races {resolved} resolved, {dropped} dropped");
        assert_eq!(dropped, 0);
        assert_eq!(dp.stat(DropReason::CtInsertFailed.index()), 0);
        assert!(resolved >= 1, "no clash in {RACES} races");
        assert_eq!(dp.stat(counter::DNAT_NEW_FLOWS), RACES as u64);
        assert_eq!(dp.table(names::CT_PENDING).len(), 2 * RACES);
        // Every flow stands, made once: its next packet is translated.
        for i in [0, RACES / 2, RACES - 1] {
            let (_, out) = dp.ingress(&first(i, 0));
            let v = View::new(&out);
            assert_eq!((v.src(), v.dst(), v.dport()), (OTHER, CTR, 80));
        }
    }
}

/// Two CPUs racing with two flows for one translation: masquerade with one NAT port,
/// CPU 0's flow and CPU 1's (another source port) to the same place, a new place each
/// time. Each race has one loser, which leaves nothing behind: the CPU whose reply half
/// goes in second drops its packet (`ct_insert_failed`), or, coming later, finds the
/// port taken (`ports_exhausted`); the winner's flow stands.
#[test]
fn two_flows_racing_for_one_translation_drop_the_loser() {
    if let Some(why) = netlab_tests::race::unavailable() {
        return netlab_tests::skip(&why);
    }
    const RACES: usize = 2_000;
    let dp = Datapath::new(Config {
        nat_port_min: 20_000,
        nat_port_max: 20_000,
        ..config()
    });
    let syn = |i: usize, cpu: usize| {
        Ipv4::new(CTR, INTERNET, TCP).tcp(1024 + cpu as u16, 1000 + i as u16, SYN, b"")
    };
    let dropped = netlab_tests::race::drops_of(&dp.bpf, names::PROG_UPLINK_EGRESS, RACES, syn);
    let lost = dp.stat(DropReason::CtInsertFailed.index());
    eprintln!("of {RACES} races for one NAT port {lost} lost at the insert");
    // One loser a race: at the insert, or, coming later, finding the port taken.
    assert_eq!(dropped, RACES);
    assert!(lost >= 1, "no race lost at the insert in {RACES}");
    assert_eq!(
        lost + dp.stat(DropReason::PortsExhausted.index()),
        RACES as u64
    );
    assert_eq!(dp.stat(counter::CT_CLASH_RESOLVED), 0);
    // One flow per place, each with the one port: the losers left nothing.
    let flows = dp.table(names::CT_PENDING);
    assert_eq!(flows.len() as u64, 2 * dp.stat(counter::SNAT_NEW_FLOWS));
    assert!(
        flows
            .iter()
            .all(|(k, e)| e.sport == 20_000u16.to_be() || k.dport == 20_000u16.to_be())
    );
}
