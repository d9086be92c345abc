//! The census program (`status`' and `metrics`' count of the conntrack tables in the
//! kernel) against a count of what `netlab conntrack` lists, on tables filled with
//! random flows: TCP in every state, UDP, ICMP and another protocol; masqueraded or
//! not, NAT ports in and out of the range; mappings live and withdrawn; idle one way,
//! both ways or neither; halves in the LRU table (as its evictions leave them).

use std::collections::{BTreeSet, HashMap as StdHashMap};

use aya::{
    Ebpf, TestRun as _,
    maps::{Array, HashMap, MapData},
    programs::{SchedClassifier, TestRunOptions},
};
use netlab_common::{
    census::{Census, SLOT_ICMP, SLOT_OTHER, SLOT_UDP, TCP_SLOTS, age_bucket},
    config::Config,
    conntrack::{
        CtEntry, CtKey, FLAG_ASSURED, FLAG_ORIGIN, FLAG_SEEN_REPLY, TCP_SYN_RECV, TCP_SYN_SENT,
        ZONE_FROM_CTR, ZONE_FROM_OUTSIDE, expired,
    },
    maps::{self as names, CONNTRACK_MAX_DEFAULT},
    proto::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
};
use netlab_tests::require_root;

const PORT_MIN: u16 = 20_000;
const PORT_MAX: u16 = 29_999;
const UPLINK: u32 = 0xc633_6402; // 198.51.100.2
/// Every timeout: flows idle for 50 s are alive, for 200 s dead (a second's drift
/// between the test and the kernel's clock changes neither).
const TIMEOUT: u32 = 100;

/// A small deterministic generator (xorshift64): the same tables every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn config() -> Config {
    Config {
        uplink_addr: UPLINK.to_be(),
        nat_port_min: PORT_MIN,
        nat_port_max: PORT_MAX,
        tcp_syn_secs: TIMEOUT,
        tcp_established_secs: TIMEOUT,
        tcp_fin_secs: TIMEOUT,
        tcp_time_wait_secs: TIMEOUT,
        tcp_close_secs: TIMEOUT,
        udp_secs: TIMEOUT,
        udp_stream_secs: TIMEOUT,
        icmp_secs: TIMEOUT,
        ..Config::default()
    }
}

/// Puts `n` random flows into `table` (both halves, or in the LRU table sometimes one).
fn fill(bpf: &mut Ebpf, table: &str, n: u32, rng: &mut Rng, now: u32) {
    let mut m: HashMap<_, CtKey, CtEntry> = HashMap::try_from(bpf.map_mut(table).unwrap()).unwrap();
    let pending = table == names::CT_PENDING;
    for i in 0..n {
        let proto = [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, 47][rng.below(4) as usize];
        let state = if proto == IPPROTO_TCP {
            rng.below(9) as u8
        } else {
            0
        };
        let ctr = (0xac12_0000 + 2 + rng.below(50) as u32).to_be();
        let remote = (0xcb00_7100 + 1 + rng.below(20) as u32).to_be();
        let sport = (1024 + i as u16).to_be();
        let dport = [53u16, 80, 443][rng.below(3) as usize].to_be();
        let masquerade = rng.chance(70);
        let (src, nat_port) = if masquerade {
            // Mostly in the range, a few outside it (a flow from before a change of
            // range, or a port kept because it was free).
            (UPLINK.to_be(), (19_000 + rng.below(12_000) as u16).to_be())
        } else {
            (ctr, sport)
        };
        let (pub_id, pub_gen) = if rng.chance(30) {
            (1 + rng.below(2) as u32, 1 + rng.below(2) as u32)
        } else {
            (0, 0)
        };
        let idle = |rng: &mut Rng| [0, 50, 200][rng.below(3) as usize];
        // Ages away from the buckets' bounds (a second's drift changes none).
        let created = now - [5, 20, 100][rng.below(3) as usize];
        let flags = if pending {
            FLAG_SEEN_REPLY * rng.below(2) as u8
        } else {
            FLAG_ASSURED | FLAG_SEEN_REPLY
        };
        let key = CtKey::new(ctr, remote, sport, dport, proto, ZONE_FROM_CTR);
        let out = CtEntry {
            saddr: src,
            daddr: remote,
            sport: nat_port,
            dport,
            pair_zone: ZONE_FROM_OUTSIDE,
            state,
            flags: flags | FLAG_ORIGIN,
            pub_id,
            pub_gen,
            created,
            last_seen: now - idle(rng),
            ..CtEntry::default()
        };
        let reply_key = out.pair_key(proto);
        let reply = CtEntry {
            saddr: remote,
            daddr: ctr,
            sport: dport,
            dport: sport,
            pair_zone: ZONE_FROM_CTR,
            state,
            flags,
            pub_id,
            pub_gen,
            created,
            last_seen: now - idle(rng),
            ..CtEntry::default()
        };
        assert_eq!(reply.pair_key(proto), key);
        m.insert(key, out, 0).unwrap();
        if !(pending && rng.chance(10)) {
            m.insert(reply_key, reply, 0).unwrap();
        }
    }
}

/// What the census should find: a count of the flows `netlab conntrack` lists (each
/// once from its opening half, with its other half there, its mapping not withdrawn,
/// not idle past its timeout both ways), from the tables as they are.
fn expected(bpf: &Ebpf, now: u32) -> Census {
    let cfg = config();
    let generations: Array<_, u32> = Array::try_from(bpf.map(names::MAPPINGS).unwrap()).unwrap();
    let mut c = Census::default();
    let mut ports = BTreeSet::new();
    for (t, table) in [names::CT, names::CT_PENDING].into_iter().enumerate() {
        let m: HashMap<&MapData, CtKey, CtEntry> =
            HashMap::try_from(bpf.map(table).unwrap()).unwrap();
        let entries: StdHashMap<CtKey, CtEntry> = m.iter().map(|r| r.unwrap()).collect();
        c.entries[t] = entries.len() as u32;
        for (k, e) in &entries {
            if e.flags & FLAG_ORIGIN == 0 {
                continue;
            }
            let Some(reply) = entries.get(&e.pair_key(k.proto)) else {
                continue;
            };
            if e.pub_id != 0 && generations.get(&e.pub_id, 0).unwrap() != e.pub_gen {
                continue;
            }
            let dead = |x: &CtEntry| expired(&cfg, k.proto, x.state, x.flags, x.last_seen, now);
            if dead(e) && dead(reply) {
                continue;
            }
            let slot = match k.proto {
                IPPROTO_TCP => e.state as usize % TCP_SLOTS,
                IPPROTO_UDP => SLOT_UDP,
                IPPROTO_ICMP => SLOT_ICMP,
                _ => SLOT_OTHER,
            };
            c.flows[t][slot] += 1;
            if k.proto == IPPROTO_TCP && matches!(e.state, TCP_SYN_SENT | TCP_SYN_RECV) {
                c.half_open[age_bucket(now - e.created)] += 1;
            }
            let port = u16::from_be(e.sport);
            if e.saddr != k.saddr
                && (PORT_MIN..=PORT_MAX).contains(&port)
                && matches!(k.proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_ICMP)
            {
                ports.insert((k.proto, port));
            }
        }
    }
    for (i, proto) in [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP]
        .into_iter()
        .enumerate()
    {
        c.nat_ports[i] = ports.iter().filter(|(p, _)| *p == proto).count() as u32;
    }
    c.done = 1;
    c
}

/// Runs the census program as `status` does; the census it wrote.
fn census(bpf: &mut Ebpf) -> Census {
    let prog: &mut SchedClassifier =
        netlab::datapath::ebpf::load_program(bpf, names::PROG_CENSUS).expect("verified");
    let frame = [0u8; 256];
    let mut out = [0u8; 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("test run");
    assert_eq!(r.return_value, 0, "the census failed");
    bytemuck_census(&out)
}

fn bytemuck_census(out: &[u8]) -> Census {
    let mut c = Census::default();
    let n = size_of::<Census>();
    // SAFETY: Census is plain old data of `n` bytes (repr(C), u32 fields only).
    unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), &mut c as *mut Census as *mut u8, n) };
    c
}

#[test]
fn the_census_counts_what_conntrack_lists() {
    require_root();
    let mut bpf = netlab::datapath::ebpf::load(false, CONNTRACK_MAX_DEFAULT).expect("load object");
    let mut cfg: Array<_, Config> = Array::try_from(bpf.map_mut(names::CONFIG).unwrap()).unwrap();
    cfg.set(0, config(), 0).unwrap();
    // Mapping 1 at generation 1, mapping 2 withdrawn once (generation 2): flows of
    // mapping 2 that began at generation 1 are dead.
    let mut gens: Array<_, u32> = Array::try_from(bpf.map_mut(names::MAPPINGS).unwrap()).unwrap();
    gens.set(1, 1, 0).unwrap();
    gens.set(2, 2, 0).unwrap();

    assert_eq!(
        census(&mut bpf),
        expected(&bpf, netlab::datapath::ebpf::coarse_secs())
    );

    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let now = netlab::datapath::ebpf::coarse_secs();
    fill(&mut bpf, names::CT, 3000, &mut rng, now);
    fill(&mut bpf, names::CT_PENDING, 3000, &mut rng, now);
    let got = census(&mut bpf);
    let want = expected(&bpf, netlab::datapath::ebpf::coarse_secs());
    assert_eq!(got, want);
    // The random tables do hold every kind the census tells apart.
    assert!(want.flows.iter().flatten().filter(|&&n| n > 0).count() >= 20);
    assert!(
        want.half_open[1..].iter().all(|&n| n > 0),
        "{:?}",
        want.half_open
    );
    assert!(
        want.nat_ports.iter().all(|&n| n > 100),
        "{:?}",
        want.nat_ports
    );
    assert!(want.entries[1] < 6000, "no halves in the LRU table");
    // A second census finds the same: the first cleared its port bitmaps.
    assert_eq!(census(&mut bpf), got);
}

/// Entries `CT` holds, walked key by key from the lab's pin.
fn ct_holds(lab: &netlab_tests::Lab) -> u64 {
    let ct: HashMap<MapData, CtKey, CtEntry> =
        netlab::datapath::ebpf::pins::typed(&lab.name, names::CT).expect("the lab's CT");
    ct.keys().count() as u64
}

/// `CT`'s `IN USE` in `netlab status`.
fn ct_in_use(lab: &netlab_tests::Lab) -> u64 {
    let status = lab.status();
    status["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["name"] == "CT")
        .and_then(|t| t["in_use"].as_u64())
        .expect("CT's in_use")
}

/// `n` two-way UDP streams from `from` to `addr` (a datagram, its answer, and another
/// datagram: each stream is assured, and its flow enters `CT`).
fn udp_streams(lab: &netlab_tests::Lab, from: &str, addr: &str, n: u32) {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let script = format!(
        "import socket\nfor i in range({n}):\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n    s.settimeout(5)\n    s.connect(('{host}', {port}))\n    s.send(b'ping')\n    s.recv(64)\n    s.send(b'ping')\n    s.recv(64)\n"
    );
    lab.exec_ok(from, &["python3", "-c", &script]);
}

/// `status` counts `CT` without walking it: the programs count the entries they put in
/// and take out, `conntrack --flush` and the benchmark's fill what they remove and add.
/// Through flows confirmed, closed, expired by the collector, flushed and filled, the
/// count is what a walk of the table finds.
#[test]
fn status_counts_the_established_table_as_it_is() {
    // Short timeouts: the collector empties CT within seconds. (Both FINs of a
    // connection crossing on two CPUs can leave its flow FIN_WAIT in CT; it then
    // expires as a closing flow.)
    let lab = netlab_tests::Lab::sandbox(&[
        "--udp-stream-timeout",
        "3",
        "--tcp-transitory-timeout",
        "3",
        "--gc-interval",
        "50",
    ]);
    lab.ok(&["run", "a"]);
    let _web = lab.http_server("wan", 8000);
    // Bound to the address the containers ask (wan's 0.0.0.0 would answer from its
    // uplink-side address, which no flow expects).
    let _dns = lab.spawn(
        "wan",
        &[
            "python3",
            "-c",
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('203.0.113.1', 53))\nwhile True:\n    d, a = s.recvfrom(64)\n    s.sendto(b'pong', a)\n",
        ],
    );
    assert!(
        netlab_tests::wait_for(std::time::Duration::from_secs(10), || lab
            .exec_ok("wan", &["ss", "-Huln"])
            .contains("203.0.113.1:53 ")),
        "no UDP server in wan"
    );
    // The two agree once the last packets of a step are through (a count that drifted
    // never would).
    let same = |what: &str| {
        let agree = netlab_tests::wait_for(std::time::Duration::from_secs(5), || {
            ct_in_use(&lab) == ct_holds(&lab)
        });
        let (counted, walked) = (ct_in_use(&lab), ct_holds(&lab));
        assert!(agree, "{what}: status counts {counted}, CT holds {walked}");
        walked
    };
    assert_eq!(same("a new lab"), 0);

    // UDP streams enter CT, two entries each.
    udp_streams(&lab, "a", "203.0.113.1:53", 20);
    assert_eq!(same("20 UDP streams"), 40);
    // TCP connections enter CT once established, and leave it once closed.
    for _ in 0..5 {
        assert_eq!(lab.curl("a", "http://203.0.113.1:8000/"), "200");
    }
    same("5 TCP connections opened and closed");
    // The collector expires the streams, and any connection left closing (3 s).
    assert!(
        netlab_tests::wait_for(std::time::Duration::from_secs(30), || ct_holds(&lab) == 0),
        "the collector left flows in CT: {}",
        lab.ok(&["conntrack"])
    );
    assert_eq!(same("the streams expired"), 0);

    udp_streams(&lab, "a", "203.0.113.1:53", 10);
    assert_eq!(same("10 more streams"), 20);
    lab.ok(&["conntrack", "--flush"]);
    assert_eq!(same("conntrack --flush"), 0);

    let state = lab.state();
    let dp = netlab::datapath::for_kind(state.datapath);
    let filled = dp
        .fill()
        .expect("the eBPF datapath fills")
        .fill_conntrack(&state, 1000)
        .expect("fill");
    assert_eq!(filled, 1000);
    assert_eq!(same("1000 synthetic flows"), 2000);
    // What status counted by: the counters `netlab stats` shows.
    let stat = |name: &str| lab.stat("counters", name);
    assert_eq!(stat("ct_entries_filled"), 2000);
    assert_eq!(stat("ct_entries_flushed"), 20);
    assert!(
        stat("ct_entries_added") >= 60,
        "{}",
        stat("ct_entries_added")
    );
    assert_eq!(
        stat("ct_entries_added") + stat("ct_entries_filled")
            - stat("ct_entries_removed")
            - stat("ct_entries_flushed"),
        2000
    );
}
