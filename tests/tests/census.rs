//! The counts `status` and `metrics` show of a lab's conntrack: `metrics`' census of
//! the flows (read in one pass, not listed) against a count of what `netlab conntrack`
//! lists, on tables filled with random flows; and `status`' count of the established
//! table (kept by the programs as entries go in and out) against a walk of it.

use aya::maps::{Array, HashMap, MapData};
use netlab::datapath::{FlowCensus, ebpf::pins};
use netlab_common::{
    conntrack::{CtEntry, CtKey, FLAG_ASSURED, FLAG_ORIGIN, FLAG_SEEN_REPLY, ZONE_FROM_CTR},
    maps as names,
    proto::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
};
use netlab_tests::Lab;

/// Every timeout of the census lab: flows idle for 50 s are alive, for 200 s dead (a
/// second's drift between two reads changes neither).
const TIMEOUT: &str = "100";

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

/// Puts `n` random flows into one of the lab's tables: TCP in every state, UDP, ICMP
/// and another protocol; masqueraded or not, source ports in and out of the NAT
/// range; mappings live and withdrawn; idle one way, both ways or neither. Both
/// halves, but in the LRU table sometimes one (as its evictions leave them).
fn fill(lab: &Lab, table: &str, n: u32, rng: &mut Rng, now: u32) {
    let mut m: HashMap<MapData, CtKey, CtEntry> = pins::typed(&lab.name, table).expect("table");
    let pending = table == names::CT_PENDING;
    let uplink = u32::from(netlab_tests::UPLINK_ADDR).to_be();
    for i in 0..n {
        let proto = [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, 47][rng.below(4) as usize];
        let state = if proto == IPPROTO_TCP {
            rng.below(9) as u8
        } else {
            0
        };
        let ctr = (0xac12_0000 + 2 + rng.below(50) as u32).to_be();
        let remote = (0xcb00_7100 + 10 + rng.below(20) as u32).to_be();
        // Source ports in and around the NAT's range (20000-29999), masqueraded or not.
        let port = (19_000 + rng.below(12_000) as u16 + (i % 7) as u16).to_be();
        let sport = (1024 + i as u16).to_be();
        let dport = [53u16, 80, 443][rng.below(3) as usize].to_be();
        let (src, out_sport) = if rng.chance(70) {
            (uplink, port)
        } else {
            (ctr, if rng.chance(50) { port } else { sport })
        };
        let key = CtKey::new(ctr, remote, sport, dport, proto, ZONE_FROM_CTR);
        let (pub_id, pub_gen) = if rng.chance(30) {
            (1 + rng.below(2) as u32, 1 + rng.below(2) as u32)
        } else {
            (0, 0)
        };
        let flags = if pending {
            FLAG_SEEN_REPLY * rng.below(2) as u8
        } else {
            FLAG_ASSURED | FLAG_SEEN_REPLY
        };
        let idle = |rng: &mut Rng| [0, 50, 200][rng.below(3) as usize];
        // Ages away from the buckets' bounds (1, 10, 30 s).
        let created = now - [5, 20, 100][rng.below(3) as usize];
        let out = CtEntry {
            saddr: src,
            daddr: remote,
            sport: out_sport,
            dport,
            pair_zone: netlab_common::conntrack::ZONE_FROM_OUTSIDE,
            state,
            flags: flags | FLAG_ORIGIN,
            pub_id,
            pub_gen,
            created,
            last_seen: now - idle(rng),
            ..CtEntry::default()
        };
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
        m.insert(key, out, 0).expect("insert");
        if !(pending && rng.chance(10)) {
            m.insert(out.pair_key(proto), reply, 0).expect("insert");
        }
    }
}

/// `metrics`' census of the flows is what a count of `netlab conntrack`'s listing
/// gives, on random tables of 3,000 flows each.
#[test]
fn the_census_counts_what_conntrack_lists() {
    let lab = Lab::sandbox(&[
        "--tcp-timeout",
        TIMEOUT,
        "--tcp-syn-timeout",
        TIMEOUT,
        "--tcp-transitory-timeout",
        TIMEOUT,
        "--tcp-time-wait-timeout",
        TIMEOUT,
        "--tcp-close-timeout",
        TIMEOUT,
        "--udp-timeout",
        TIMEOUT,
        "--udp-stream-timeout",
        TIMEOUT,
        "--icmp-timeout",
        TIMEOUT,
    ]);
    // Mapping 1 at generation 1, mapping 2 withdrawn once (generation 2): the flows
    // of mapping 2 that began at generation 1 are dead.
    let mut gens: Array<MapData, u32> = pins::typed(&lab.name, names::MAPPINGS).expect("MAPPINGS");
    gens.set(1, 1, 0).unwrap();
    gens.set(2, 2, 0).unwrap();
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let now = netlab::datapath::ebpf::coarse_secs();
    fill(&lab, names::CT, 3000, &mut rng, now);
    fill(&lab, names::CT_PENDING, 3000, &mut rng, now);

    let state = lab.state();
    let dp = netlab::datapath::for_kind(state.datapath);
    let inspect = dp.inspect().expect("eBPF inspects");
    let got = inspect.census(&state).expect("census");
    let listed = inspect.flows(&state).expect("flows");
    let want = FlowCensus::of(
        Vec::new(),
        &listed,
        (state.nat.port_min, state.nat.port_max),
    );
    assert_eq!(got.flows, want.flows);
    assert_eq!(got.half_open, want.half_open);
    assert_eq!(got.nat_ports_in_use, want.nat_ports_in_use);
    // The random tables do hold every kind the census tells apart.
    assert!(want.flows.len() >= 20, "{:?}", want.flows);
    assert!(
        want.half_open[1..].iter().all(|&n| n > 0),
        "{:?}",
        want.half_open
    );
    assert!(
        want.nat_ports_in_use.iter().sum::<u64>() > 1000,
        "{:?}",
        want.nat_ports_in_use
    );
    assert!(
        listed.len() < 6000 && listed.len() > 1000,
        "{}",
        listed.len()
    );
}

/// Entries `CT` holds, walked key by key from the lab's pin.
fn ct_holds(lab: &Lab) -> u64 {
    let ct: HashMap<MapData, CtKey, CtEntry> =
        pins::typed(&lab.name, names::CT).expect("the lab's CT");
    ct.keys().count() as u64
}

/// `CT`'s `IN USE` in `netlab status`.
fn ct_in_use(lab: &Lab) -> u64 {
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
/// datagram: each stream is assured, and its flow enters `CT`), each from a port of its
/// own (41000 + i): an ephemeral port the kernel picks twice makes two streams one
/// flow (the likeliest reading of the 38 entries of 40 seen in two CI runs).
fn udp_streams(lab: &Lab, from: &str, addr: &str, n: u32) {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let script = format!(
        "import socket\nfor i in range({n}):\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n    s.settimeout(5)\n    s.bind(('', 41000 + i))\n    s.connect(('{host}', {port}))\n    s.send(b'ping')\n    s.recv(64)\n    s.send(b'ping')\n    s.recv(64)\n"
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
    // expires as a closing flow.) A stream lives 10 s, longer than opening 20 of them
    // takes on a loaded machine.
    let lab = Lab::sandbox(&[
        "--udp-stream-timeout",
        "10",
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
    // The collector expires the streams (10 s), and any connection left closing (3 s).
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

    assert_eq!(netlab_tests::fill_conntrack(&lab, 1000), 1000);
    // The collector may take the synthetic flows (3 s) while this runs: the count
    // follows it.
    assert!(same("1000 synthetic flows") <= 2000);
    assert_eq!(lab.stat("counters", "ct_entries_filled"), 2000);
    assert_eq!(lab.stat("counters", "ct_entries_flushed"), 20);
    assert!(lab.stat("counters", "ct_entries_added") >= 60);
}

/// The established table is read by two threads, one per half of its buckets: on
/// tables from empty to full, sparse ones too (where the lower half's last call meets
/// the upper half's first bucket), every entry is read once, none twice.
#[test]
fn a_table_read_in_halves_gives_each_entry_once() {
    // 140,000 entries: 262,144 buckets, enough for two threads.
    let lab = Lab::sandbox(&["--conntrack-max", "70000"]);
    let data = || pins::map_data(&lab.name, names::CT).expect("the lab's CT");
    let mut ct: HashMap<MapData, CtKey, CtEntry> =
        pins::typed(&lab.name, names::CT).expect("the lab's CT");
    let mut rng = Rng(0x5eed_cafe_f00d_0002);
    for n in [0u32, 1, 2, 3, 7, 50, 400, 3000, 100_000, 140_000] {
        let old: Vec<CtKey> = ct.keys().map(|k| k.expect("key")).collect();
        for k in old {
            ct.remove(&k).expect("remove");
        }
        let mut want = Vec::new();
        while want.len() < n as usize {
            let key = CtKey::new(
                rng.next() as u32,
                rng.next() as u32,
                rng.next() as u16,
                rng.next() as u16,
                IPPROTO_UDP,
                ZONE_FROM_CTR,
            );
            if ct.insert(key, CtEntry::default(), 1).is_ok() {
                want.push(key);
            }
        }
        let halves = netlab::datapath::ebpf::batch::for_each_in_halves(
            &data(),
            Vec::new,
            |seen: &mut Vec<CtKey>, k: &CtKey, _: &CtEntry| seen.push(*k),
        )
        .expect("read in halves");
        // Two threads where there are two CPUs (one reads it all otherwise).
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(halves.len(), if cpus >= 2 { 2 } else { 1 });
        let tuple = |k: &CtKey| (k.saddr, k.daddr, k.sport, k.dport);
        let mut got: Vec<_> = halves.concat().iter().map(tuple).collect();
        let mut want: Vec<_> = want.iter().map(tuple).collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got.len(), want.len(), "{n} entries");
        assert!(got == want, "{n} entries: not each read once");
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        netlab_tests::skip(
            "one CPU: the table is read in one piece, the halves' boundary untested",
        );
    }
}
