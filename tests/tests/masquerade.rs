//! Containers reach the outside world through masquerade (the seed's "Reaching out to
//! the outside world"), checked at the far end with real tools and small Rust peers.
//!
//! Each scenario is a function of the datapath; `per_datapath!` makes one test per
//! datapath from it (the eBPF datapath with its fast path and without).

use std::{
    io::{ErrorKind, Read, Write},
    net::SocketAddr,
    time::Duration,
};

use netlab_tests::{
    FAR_ADDR, FarHost, INTERNET, Lab, UPLINK_ADDR,
    sockets::{IcmpSniffer, tcp_connect, tcp_listen, udp},
    transfer::{Transfer, checksums_in_software},
    wait_for,
};

netlab_tests::per_datapath!(
    [
        tcp_to_wan_is_seen_from_the_uplink,
        udp_to_wan_is_seen_from_the_uplink,
        ping_to_wan_is_seen_from_the_uplink,
        same_source_port_from_two_containers,
        port_unreachable_reaches_the_container,
        traceroute_through_the_nat,
        path_mtu_discovery_through_the_nat,
        the_route_mtu_of_the_lab_host_holds_for_containers,
        an_unlocked_route_mtu_holds_too,
        one_gib_through_the_nat,
        the_masquerade_follows_the_uplinks_address,
        an_unresolved_neighbour_is_unreachable,
        a_second_address_keeps_the_flows_behind_the_first,
        a_flow_a_route_moves_leaves_behind_the_new_interfaces_address,
        a_closed_connections_nat_port_is_taken_over,
        a_syn_answered_by_a_reset_leaves_no_flow,
    ];
    ebpf = "ebpf",
    ebpf_slow = "ebpf-slow",
    iptables = "iptables",
    iptables_legacy = "iptables-legacy",
    nftables = "nftables",
    nftables_flowtable = "nftables-flowtable",
);

fn lab(dp: &str) -> Lab {
    Lab::on(dp)
}

/// The uplink's address changing under a running lab: containers' new flows, and
/// those behind the gone address, leave with the one it has now.
fn the_masquerade_follows_the_uplinks_address(dp: &str) {
    netlab_tests::uplink_moves::masquerade_follows(&lab(dp), dp, &netlab_tests::uplink_moves::IPV4);
}

/// A second address on the uplink leaves the flows behind the first alone.
fn a_second_address_keeps_the_flows_behind_the_first(dp: &str) {
    netlab_tests::uplink_moves::a_second_address_keeps_the_flows_behind_the_first(
        &lab(dp),
        &netlab_tests::uplink_moves::IPV4,
    );
}

/// A connection to an address of the uplink's LAN nobody holds fails at once.
fn an_unresolved_neighbour_is_unreachable(dp: &str) {
    netlab_tests::uplink_moves::an_unresolved_neighbour_is_unreachable(&lab(dp), "198.51.100.77");
}

/// A tracked flow that a route change sends out by another interface of the lab host
/// is masqueraded behind that interface's address from then on (iptables ends the
/// flow, `nf_nat_oif_changed`, and masquerades its next packet there): it never leaves
/// with the address of the interface it left by before.
fn a_flow_a_route_moves_leaves_behind_the_new_interfaces_address(dp: &str) {
    netlab_tests::uplink_moves::a_flow_a_route_moves(
        &lab(dp),
        dp,
        &netlab_tests::uplink_moves::IPV4,
    );
}

fn tcp_to_wan_is_seen_from_the_uplink(dp: &str) {
    let lab = lab(dp);
    lab.ok(&["run", "a"]);
    let server = lab.spawn(
        "wan",
        &[
            "python3",
            "-u",
            "-m",
            "http.server",
            "8000",
            "--bind",
            "203.0.113.1",
        ],
    );
    assert!(wait_for(Duration::from_secs(10), || {
        lab.exec_ok("wan", &["ss", "-ltn"])
            .contains("203.0.113.1:8000")
    }));
    assert_eq!(lab.curl("a", "http://203.0.113.1:8000/"), "200");
    let log = server.finish();
    let line = log
        .lines()
        .find(|l| l.contains("GET /"))
        .unwrap_or_else(|| panic!("no request logged: {log}"));
    assert!(
        line.starts_with(&UPLINK_ADDR.to_string()),
        "server saw {line}"
    );
    if netlab_tests::is_ebpf(dp) {
        // The NAT above was all eBPF: the lab host's netfilter is empty.
        for cmd in [
            &["iptables", "-S"][..],
            &["iptables", "-t", "nat", "-S"],
            &["nft", "list", "ruleset"],
        ] {
            let out = lab.exec_ok("host", cmd);
            assert!(out.lines().all(|l| l.starts_with("-P ")), "{cmd:?}: {out}");
        }
        let flows = lab.conntrack();
        assert!(
            flows
                .iter()
                .any(|f| f["proto"] == "tcp" && f["translated"]["src"] == UPLINK_ADDR.to_string()),
            "{flows:?}"
        );
        assert!(lab.stat("counters", "snat_packets") > 0);
    }
}

fn udp_to_wan_is_seen_from_the_uplink(dp: &str) {
    let lab = lab(dp);
    lab.ok(&["run", "a"]);
    let server = udp(&lab.ns("wan"), "203.0.113.1:7000");
    let client = udp(&lab.ns("a"), "0.0.0.0:0");
    client.send_to(b"hello", "203.0.113.1:7000").unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = server.recv_from(&mut buf).expect("server receives");
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(from.ip(), UPLINK_ADDR, "server saw {from}");
    assert!(
        (20_000..=29_999).contains(&from.port()),
        "source port {} is outside --nat-ports",
        from.port()
    );
    server.send_to(b"world", from).unwrap();
    let (n, back) = client
        .recv_from(&mut buf)
        .expect("reply reaches the container");
    assert_eq!(&buf[..n], b"world");
    assert_eq!(back, "203.0.113.1:7000".parse::<SocketAddr>().unwrap());
}

fn ping_to_wan_is_seen_from_the_uplink(dp: &str) {
    let lab = lab(dp);
    lab.ok(&["run", "a"]);
    let sniffer = IcmpSniffer::open(&lab.ns("wan"));
    lab.exec_ok("a", &["ping", "-c", "2", "-W", "2", &INTERNET.to_string()]);
    assert_eq!(sniffer.echo_request_source(), Some(UPLINK_ADDR));
}

fn same_source_port_from_two_containers(dp: &str) {
    let lab = lab(dp);
    lab.ok(&["run", "a"]);
    lab.ok(&["run", "b"]);
    let server = udp(&lab.ns("wan"), "203.0.113.1:7000");
    let clients = [
        udp(&lab.ns("a"), "0.0.0.0:40000"),
        udp(&lab.ns("b"), "0.0.0.0:40000"),
    ];
    let mut seen = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        c.send_to(&[i as u8], "203.0.113.1:7000").unwrap();
        let mut buf = [0u8; 8];
        let (_, from) = server.recv_from(&mut buf).expect("server receives");
        assert_eq!(from.ip(), UPLINK_ADDR);
        assert_eq!(buf[0], i as u8);
        server.send_to(&[i as u8 + 10], from).unwrap();
        seen.push(from.port());
    }
    assert_ne!(seen[0], seen[1], "both flows got the same mapped port");
    for (i, c) in clients.iter().enumerate() {
        let mut buf = [0u8; 8];
        c.recv_from(&mut buf)
            .expect("each container gets its own reply");
        assert_eq!(buf[0], i as u8 + 10);
    }
}

fn port_unreachable_reaches_the_container(dp: &str) {
    let lab = lab(dp);
    lab.ok(&["run", "a"]);
    let client = udp(&lab.ns("a"), "0.0.0.0:0");
    client.connect("203.0.113.1:9").unwrap();
    // The ICMP error for the first datagram may race the recv: try a few times.
    let refused = (0..5).any(|_| {
        let _ = client.send(b"anyone?");
        matches!(client.recv(&mut [0u8; 8]), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
    });
    assert!(refused, "the container never saw ECONNREFUSED");
    if netlab_tests::is_ebpf(dp) {
        assert!(lab.stat("counters", "icmp_errors_translated") > 0);
    }
}

/// Each hop answers the probes that die there: the lab host itself (TTL 1), wan as a
/// router beyond the uplink (time exceeded, translated back through the NAT), and the
/// far host (port unreachable, translated back).
fn traceroute_through_the_nat(dp: &str) {
    let lab = lab(dp);
    lab.ok(&["run", "a"]);
    let _far = FarHost::new(&lab, 1500);
    let (hops, out) = netlab_tests::traceroute_hops(&lab, "a", &FAR_ADDR.to_string());
    assert_eq!(
        hops,
        ["172.18.0.1", "198.51.100.1", FAR_ADDR.to_string().as_str()],
        "{out}"
    );
    if netlab_tests::is_ebpf(dp) {
        assert!(lab.stat("counters", "icmp_errors_translated") >= 2);
    }
}

/// A link beyond the uplink with a smaller MTU: wan answers big packets with
/// "fragmentation needed", the NAT translates it back, the container's TCP lowers its
/// segment size, and a large transfer completes.
fn path_mtu_discovery_through_the_nat(dp: &str) {
    let lab = lab(dp);
    lab.ok(&["run", "a"]);
    let far = FarHost::new(&lab, 1280);
    let listener = tcp_listen(&far.ns(), "203.0.113.130:7100");
    let payload = vec![0x5au8; 1 << 20];
    let sender = {
        let payload = payload.clone();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(&payload).unwrap();
        })
    };
    let mut client = tcp_connect(&lab.ns("a"), "203.0.113.130:7100");
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = Vec::new();
    client
        .read_to_end(&mut got)
        .expect("the transfer completes");
    sender.join().unwrap();
    assert_eq!(got.len(), payload.len());
    // And the other way: the container sends big segments that must shrink.
    let listener = tcp_listen(&far.ns(), "203.0.113.130:7101");
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        got.len()
    });
    let mut client = tcp_connect(&lab.ns("a"), "203.0.113.130:7101");
    client.write_all(&payload).expect("send");
    drop(client);
    assert_eq!(receiver.join().unwrap(), payload.len());
    if netlab_tests::is_ebpf(dp) {
        assert!(lab.stat("counters", "icmp_errors_translated") > 0);
    }
}

/// A route MTU in the lab host smaller than its devices' (a tunnel, a cloud's 1460, a
/// PPPoE link): a container's datagram too big for it is not sent on but answered with
/// "fragmentation needed" from the lab host, as the kernel's forwarding does, and the
/// container learns the path's MTU.
fn the_route_mtu_of_the_lab_host_holds_for_containers(dp: &str) {
    let lab = lab(dp);
    lab.ok(&["run", "a"]);
    lab.lock_route_mtu(1400);
    route_mtu_is_learnt(&lab, dp);
}

/// The same with the route's MTU not locked (`ip route ... mtu 1400`), as a route MTU
/// is set most often: forwarding holds packets to it all the same, but
/// `bpf_fib_lookup` does not answer it, so the eBPF datapath reads the lab host's
/// routes at its next sync (here `run`). Before, its fast path sent 1,472-byte
/// datagrams on at 1,500 and the container never learnt the path's MTU (found by a
/// review).
fn an_unlocked_route_mtu_holds_too(dp: &str) {
    let lab = lab(dp);
    lab.ok(&["run", "a"]);
    lab.route_mtu(1400, false);
    lab.ok(&["run", "b"]);
    route_mtu_is_learnt(&lab, dp);
}

/// A container's datagram too big for the lab host's 1400-byte route is answered, and
/// the container learns the MTU.
fn route_mtu_is_learnt(lab: &Lab, dp: &str) {
    let sock = udp(&lab.ns("a"), "0.0.0.0:0");
    let to = SocketAddr::from((INTERNET, 9999));
    let learnt = || {
        lab.exec_ok("a", &["ip", "route", "get", &INTERNET.to_string()])
            .contains("mtu 1400")
    };
    // The first datagram (DF set, as Linux sends UDP) is answered; one more in case
    // the answer was rate limited.
    let _ = sock.send_to(&[0x42; 1472], to);
    if !wait_for(Duration::from_secs(2), learnt) {
        let _ = sock.send_to(&[0x42; 1472], to);
    }
    assert!(
        wait_for(Duration::from_secs(5), learnt),
        "{dp}: the container did not learn the route's MTU: {}",
        lab.exec_ok("a", &["ip", "route", "get", &INTERNET.to_string()])
    );
    if netlab_tests::is_ebpf(dp) && dp != "ebpf-slow" {
        assert!(lab.stat("counters", "slow_mtu") >= 1);
    }
}

/// 1 GiB out and 256 MiB back through the NAT with every TCP checksum computed in
/// software by the sender and verified by the receiver (offload off: a wrong
/// incremental update in the NAT cannot hide behind CHECKSUM_PARTIAL), and a sha256 of
/// the payload compared at both ends.
fn one_gib_through_the_nat(dp: &str) {
    let lab = lab(dp);
    lab.ok(&["run", "a"]);
    checksums_in_software(&lab, "a", "eth0");
    checksums_in_software(&lab, "wan", "wan0");
    let t = Transfer {
        listener: "wan",
        listen_addr: "203.0.113.1",
        listen_port: 5201,
        client: "a",
        connect_addr: "203.0.113.1",
        connect_port: 5201,
    };
    let (_, got) = t.intact(&lab, 1 << 30, true);
    assert_eq!(got.peer, UPLINK_ADDR.to_string(), "not masqueraded");
    t.intact(&lab, 256 << 20, false);
    for ns in ["wan", "a"] {
        assert_eq!(lab.snmp(ns, "Tcp", "InCsumErrors"), 0, "in {ns}");
        assert_eq!(lab.snmp(ns, "Ip", "InHdrErrors"), 0, "in {ns}");
    }
    if netlab_tests::is_ebpf(dp) {
        assert_eq!(lab.stat("drops", "rewrite_failed"), 0);
        let fast = lab.stat("counters", "fast_path_redirects");
        if dp == "ebpf" {
            assert!(fast > 0, "the bulk of the flow took the fast path");
        } else {
            assert_eq!(fast, 0, "--no-fast-path forwards nothing itself");
        }
    }
}

// eBPF-only behaviour: timeouts, exhaustion and the conntrack CLI are the datapath's own.

/// The in-kernel garbage collector removes expired established flows that nothing
/// looks up again: no userspace process runs meanwhile.
#[test]
fn expired_flows_are_collected_in_the_kernel() {
    collected_in_the_kernel(&[], "-4", &INTERNET.to_string());
}

/// The same for IPv6's established flows, in a dual-stack lab: the collector walks
/// `CT6` too.
#[test]
fn expired_ipv6_flows_are_collected_in_the_kernel() {
    collected_in_the_kernel(&["--ipv6"], "-6", "2001:db8:113::1");
}

/// An echo flow to `to` (ping `family`) in a lab made with `args` and short timeouts:
/// established, then idle past the ICMP timeout (1 s, on the coarse clock) and
/// collected by a run of the collector, which runs every 100 ms.
fn collected_in_the_kernel(args: &[&str], family: &str, to: &str) {
    let lab = Lab::sandbox(&[args, &["--icmp-timeout", "1", "--gc-interval", "100"]].concat());
    lab.ok(&["run", "a"]);
    // Three echoes: a two-way stream, so the flow is established (assured).
    lab.exec_ok(
        "a",
        &["ping", family, "-c", "3", "-i", "0.2", "-W", "2", to],
    );
    let flows = lab.conntrack();
    assert_eq!(flows.len(), 1, "{flows:?}");
    assert_eq!(flows[0]["table"], "confirmed");
    assert!(
        wait_for(Duration::from_secs(10), || lab
            .stat("counters", "ct_gc_expired")
            >= 1),
        "the collector never removed the flow"
    );
    assert!(lab.conntrack().is_empty());
}

/// Each run of the collector looks at a bounded slice of the established table, and
/// goes on where the last one stopped: with a million flows in the table, no run looks
/// at more than `GC_BATCH` of them, and together the runs go through all of them. The
/// longest run is printed (the README reports it).
#[test]
fn the_collector_runs_in_bounded_slices_at_a_million_flows() {
    let lab = Lab::sandbox(&["--conntrack-max", "1100000", "--gc-interval", "50"]);
    let flows = 1_000_000;
    assert_eq!(netlab_tests::fill_conntrack(&lab, flows), flows);
    let (runs0, scanned0) = (
        lab.stat("counters", "ct_gc_runs"),
        lab.stat("counters", "ct_gc_scanned"),
    );
    // Once round the whole table: about 245 runs of 4,096 flows.
    assert!(
        wait_for(Duration::from_secs(120), || lab
            .stat("counters", "ct_gc_scanned")
            >= scanned0 + u64::from(flows)),
        "the collector never went round the table"
    );
    // The flows scanned first, then the runs: a run that ends between the two reads
    // then counts among the runs only, never among the flows only.
    let scanned = lab.stat("counters", "ct_gc_scanned") - scanned0;
    let runs = lab.stat("counters", "ct_gc_runs") - runs0;
    let batch = u64::from(netlab_common::config::GC_BATCH);
    assert!(
        scanned <= runs * batch,
        "{scanned} flows in {runs} runs: more than {batch} a run"
    );
    assert_eq!(
        lab.stat("counters", "ct_gc_expired"),
        0,
        "live flows removed"
    );
    assert_eq!(lab.stat("counters", "ct_gc_unqueued"), 0);
    println!(
        "collector at {flows} flows: {runs} runs, {scanned} flows looked at, longest run {} us, last {} us",
        lab.stat("counters", "ct_gc_longest_us"),
        lab.stat("counters", "ct_gc_last_us")
    );

    // `status` and `metrics` count the million flows in the kernel (the census), and
    // find every one. Their times are printed, not asserted (the README reports them).
    let timed = |args: &[&str]| {
        let start = std::time::Instant::now();
        let out = lab.ok(args);
        (out, start.elapsed().as_millis())
    };
    let (status, status_ms) = timed(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("status --json");
    let ct = status["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["name"] == "CT")
        .expect("the CT table");
    // An entry per flow, and one per reply key: the synthetic flows' replies share
    // 60,000 (6 destinations x 10,000 NAT ports).
    assert_eq!(ct["in_use"], flows + 60_000);
    let (metrics, metrics_ms) = timed(&["metrics", "--labs", &lab.name]);
    let series = format!(
        "netlab_conntrack_flows{{lab=\"{}\",table=\"confirmed\",state=\"none\",proto=\"udp\"}} {flows}",
        lab.name
    );
    assert!(
        metrics.lines().any(|l| l == series),
        "no {series} in the scrape"
    );
    // The synthetic flows take NAT ports 20000-29999, each many times over.
    let ports = format!(
        "netlab_nat_ports_in_use{{lab=\"{}\",proto=\"udp\"}} 10000",
        lab.name
    );
    assert!(
        metrics.lines().any(|l| l == ports),
        "no {ports} in the scrape"
    );
    println!("at {flows} flows: status {status_ms} ms, metrics {metrics_ms} ms");
}

/// A full established table: new flows still open (they live in the LRU table,
/// counted as `ct_full` once established), and the table holds no more than its size.
#[test]
fn a_full_established_table_still_serves_new_flows() {
    let lab = Lab::sandbox(&["--conntrack-max", "4096"]);
    lab.ok(&["run", "a"]);
    let filled = netlab_tests::fill_conntrack(&lab, 10_000);
    assert_eq!(
        filled, 4096,
        "the table takes exactly --conntrack-max flows"
    );
    let server = tcp_listen(&lab.ns("wan"), "203.0.113.1:7002");
    let mut client = tcp_connect(&lab.ns("a"), "203.0.113.1:7002");
    let (mut conn, from) = server.accept().unwrap();
    assert_eq!(from.ip(), UPLINK_ADDR);
    client.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).unwrap();
    conn.write_all(b"pong").unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    assert!(
        lab.stat("counters", "ct_full") >= 1,
        "the new flow stayed pending"
    );
    let flows = lab.conntrack();
    assert!(flows.len() > 4096, "{} flows listed", flows.len());
}

/// An established TCP flow lives by the TCP timeout, not the UDP one: with every flow
/// of the lab made 5 seconds older (past the 1-second UDP and ICMP timeouts), a UDP
/// flow is gone and the idle TCP connection still carries data both ways.
#[test]
fn idle_tcp_connection_outlives_the_udp_timeout() {
    let lab = Lab::sandbox(&["--udp-timeout", "1", "--icmp-timeout", "1"]);
    lab.ok(&["run", "a"]);
    let listener = tcp_listen(&lab.ns("wan"), "203.0.113.1:7001");
    let mut client = tcp_connect(&lab.ns("a"), "203.0.113.1:7001");
    let (mut conn, from) = listener.accept().unwrap();
    assert_eq!(from.ip(), UPLINK_ADDR);
    let mut buf = [0u8; 4];
    client.write_all(b"ping").unwrap();
    conn.read_exact(&mut buf).unwrap();
    let server = udp(&lab.ns("wan"), "203.0.113.1:7002");
    let dgram = udp(&lab.ns("a"), "0.0.0.0:0");
    dgram.send_to(b"q", "203.0.113.1:7002").unwrap();
    let mut d = [0u8; 8];
    server.recv_from(&mut d).unwrap();
    let protos = |lab: &Lab| -> Vec<String> {
        let mut p: Vec<String> = lab
            .conntrack()
            .iter()
            .map(|f| f["proto"].as_str().unwrap().to_string())
            .collect();
        p.sort();
        p
    };
    assert_eq!(protos(&lab), ["tcp", "udp"]);
    netlab_tests::age_flows(&lab, 5);
    // Long past the UDP timeout, the idle TCP flow still carries data both ways...
    client.write_all(b"more").unwrap();
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"more");
    conn.write_all(b"back").unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"back");
    // ... and the UDP flow, met again, has expired (its next datagram opens a new one).
    dgram.send_to(b"q", "203.0.113.1:7002").unwrap();
    server.recv_from(&mut d).unwrap();
    assert!(lab.stat("counters", "ct_expired") >= 1);
}

#[test]
fn exhausted_nat_ports_drop_new_flows_and_count_them() {
    let lab = Lab::sandbox(&["--nat-ports", "20000-20001"]);
    for c in ["a", "b", "c"] {
        lab.ok(&["run", c]);
    }
    let server = udp(&lab.ns("wan"), "203.0.113.1:7000");
    server
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut ports = Vec::new();
    for c in ["a", "b", "c"] {
        let s = udp(&lab.ns(c), "0.0.0.0:0");
        s.send_to(c.as_bytes(), "203.0.113.1:7000").unwrap();
        let mut buf = [0u8; 8];
        if let Ok((_, from)) = server.recv_from(&mut buf) {
            ports.push(from.port());
        }
    }
    ports.sort();
    assert_eq!(
        ports,
        [20_000, 20_001],
        "two flows fit the range, the third must not pass"
    );
    assert_eq!(lab.stat("drops", "ports_exhausted"), 1);
    assert_eq!(lab.conntrack().len(), 2);
}

/// A sandbox lab with NAT ports `range` and a container `a`, and a UDP server in wan
/// on 203.0.113.1:7000 that waits half a second for each datagram.
fn lab_with_nat_ports(range: &str) -> (Lab, std::net::UdpSocket) {
    let lab = Lab::sandbox(&["--nat-ports", range]);
    lab.ok(&["run", "a"]);
    let server = udp(&lab.ns("wan"), "203.0.113.1:7000");
    server
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    (lab, server)
}

/// A NAT port held by a flow that has expired is free again: the next flow that needs
/// it takes it, although nothing else meets the dead flow (no packet of its own, no
/// eviction in a quiet table), as the kernel's conntrack frees an expired flow's port.
#[test]
fn nat_ports_of_expired_flows_are_taken_again() {
    let (lab, server) = lab_with_nat_ports("20000-20000");
    let mut buf = [0u8; 8];
    let first = udp(&lab.ns("a"), "0.0.0.0:0");
    first.send_to(b"1", "203.0.113.1:7000").unwrap();
    let (_, from) = server.recv_from(&mut buf).expect("the first flow passes");
    assert_eq!(from.port(), 20_000);
    let second = udp(&lab.ns("a"), "0.0.0.0:0");
    second.send_to(b"2", "203.0.113.1:7000").unwrap();
    assert!(server.recv_from(&mut buf).is_err(), "one port, two flows");
    assert_eq!(lab.stat("drops", "ports_exhausted"), 1);

    netlab_tests::age_flows(&lab, 120);
    assert!(lab.conntrack().is_empty(), "an expired flow is listed");
    second.send_to(b"2", "203.0.113.1:7000").unwrap();
    let (_, from) = server
        .recv_from(&mut buf)
        .expect("the expired flow's port was not taken again");
    assert_eq!((from.port(), &buf[..1]), (20_000, &b"2"[..]));
    assert_eq!(lab.stat("drops", "ports_exhausted"), 1);
    assert!(lab.stat("counters", "ct_expired") >= 1);
}

/// The same beside flows that are alive: with every port of the range held, by live
/// flows and dead ones, a new flow takes a dead one's port whichever port it tries
/// first. Before, only the first port tried was taken from a dead flow: a new flow
/// that started on a live one was dropped (`ports_exhausted`) while dead flows held
/// the rest of the range. Four ports, four dead flows, then four new flows: each
/// starts on a random port, so the new ones met each other's most of the time.
#[test]
fn nat_ports_of_expired_flows_are_taken_again_beside_live_ones() {
    let (lab, server) = lab_with_nat_ports("20000-20003");
    let mut buf = [0u8; 8];
    for round in 0..3 {
        let clients: Vec<_> = (0..4).map(|_| udp(&lab.ns("a"), "0.0.0.0:0")).collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(b"x", "203.0.113.1:7000").unwrap();
            server
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("round {round}: flow {i} of 4 dropped: {e}"));
        }
        netlab_tests::age_flows(&lab, 120);
    }
    assert_eq!(lab.stat("drops", "ports_exhausted"), 0);
}

/// A masqueraded TCP connection that is closed (TIME_WAIT) gives its NAT port up to a
/// new connection to the same server when no other port is free, as nf_nat does since
/// Linux 6.4 (`nf_nat_used_tuple_harder`), if the new SYN comes after the old
/// connection's last segment in sequence space. Two NAT ports, eight short connections
/// one after the other to one server, which closes first: more than two get through on
/// every datapath (a SYN whose sequence number is behind both closed connections' is
/// refused a port, so not all eight need to). Before, the eBPF datapath held both
/// ports for TIME_WAIT's two minutes and every connection after the second timed out.
fn a_closed_connections_nat_port_is_taken_over(dp: &str) {
    let lab = Lab::sandbox(
        &[
            netlab_tests::datapath_args(dp),
            vec!["--nat-ports", "20000-20001"],
        ]
        .concat(),
    );
    lab.ok(&["run", "a"]);
    let listener = tcp_listen(&lab.ns("wan"), "203.0.113.1:7400");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let server = std::thread::spawn(move || {
        for s in listener.incoming() {
            if stopped.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            // The server closes first: its side of the connection goes to TIME_WAIT.
            if let Ok(mut s) = s {
                let _ = s.write_all(b"hi");
            }
        }
    });
    let to: SocketAddr = "203.0.113.1:7400".parse().unwrap();
    let mut through = 0;
    for _ in 0..8 {
        let got = netlab_tests::in_ns(&lab.ns("a"), move || {
            let mut s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(1)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).ok()?;
            Some(buf)
        });
        if got.as_deref() == Some(&b"hi"[..]) {
            through += 1;
        }
    }
    // The server stops at its next connection, made from wan itself.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(tcp_connect(&lab.ns("wan"), "203.0.113.1:7400"));
    server.join().unwrap();
    assert!(through > 2, "{dp}: {through} of 8 connections got through");
    if netlab_tests::is_ebpf(dp) {
        assert!(lab.stat("counters", "ct_taken_over") >= 1);
    }
}

/// A TCP SYN answered by a reset (nobody listens) leaves no flow: nf_conntrack deletes
/// a flow "whose only reply is a RST" at once, and so does the eBPF datapath, which
/// kept it for `--tcp-close-timeout` before, holding its NAT port.
fn a_syn_answered_by_a_reset_leaves_no_flow(dp: &str) {
    let lab = lab(dp);
    lab.ok(&["run", "a"]);
    let to: SocketAddr = "203.0.113.1:7401".parse().unwrap();
    let err = netlab_tests::in_ns(&lab.ns("a"), move || {
        std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5))
            .expect_err("nobody listens")
    });
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{dp}: {err}");
    if netlab_tests::is_ebpf(dp) {
        let flows = lab.conntrack();
        assert!(flows.is_empty(), "{flows:?}");
        assert_eq!(lab.stat("counters", "ct_reset_unanswered"), 1);
    } else {
        let left = lab.exec_ok("host", &["conntrack", "-L", "-p", "tcp", "--dport", "7401"]);
        assert!(left.trim().is_empty(), "{dp}: {left}");
    }
}

#[test]
fn conntrack_lists_flows_and_flush_empties_it() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a"]);
    lab.exec_ok("a", &["ping", "-c", "1", "-W", "2", &INTERNET.to_string()]);
    let flows = lab.conntrack();
    assert_eq!(flows.len(), 1, "{flows:?}");
    let f = &flows[0];
    assert_eq!(f["proto"], "icmp");
    // One question and its answer: not yet a stream, so not assured.
    assert_eq!(f["table"], "pending");
    assert_eq!(f["original"]["src"], "172.18.0.2");
    assert_eq!(f["original"]["dst"], INTERNET.to_string());
    assert_eq!(f["translated"]["src"], UPLINK_ADDR.to_string());
    assert_eq!(f["packets"], 1);
    assert_eq!(f["reply_packets"], 1);
    // `--icmp-timeout` (30 s) less its idle time, and ten seconds less ten seconds on.
    let expires = |f: &serde_json::Value| f["expires_secs"].as_u64().unwrap();
    assert!((28..=30).contains(&expires(f)), "{f}");
    netlab_tests::age_flows(&lab, 10);
    let later = expires(&lab.conntrack()[0]);
    assert!((18..=20).contains(&later), "{later}");
    let text = lab.ok(&["conntrack"]);
    assert!(text.contains("198.51.100.2:"), "{text}");
    assert!(text.lines().next().unwrap().contains("EXPIRES"), "{text}");
    assert!(
        lab.ok(&["conntrack", "--flush"])
            .contains("flushed 1 flows")
    );
    assert!(lab.conntrack().is_empty());
    lab.exec_ok("a", &["ping", "-c", "1", "-W", "2", &INTERNET.to_string()]);
    let flushed: serde_json::Value =
        serde_json::from_str(&lab.ok(&["conntrack", "--flush", "--json"])).expect("json");
    assert_eq!(flushed, serde_json::json!({ "flushed": 1 }));
}

#[test]
fn debug_logs_show_new_flows_only_when_asked_for() {
    let lab = Lab::sandbox(&["--debug"]);
    lab.ok(&["run", "a"]);
    // The records wait in the datapath's ring buffer until a reader comes.
    lab.exec_ok("a", &["ping", "-c", "1", "-W", "2", &INTERNET.to_string()]);
    let out = lab.run(&["logs", "--seconds", "1"]);
    assert!(out.status.success(), "{out:?}");
    // On stdout, the command's output (`netlab logs | grep ...`).
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("new flow proto 1 172.18.0.2:"), "{text}");
    assert!(text.contains("as 198.51.100.2:"), "{text}");

    let quiet = Lab::sandbox(&[]);
    assert!(quiet.fails(&["logs"]).contains("--debug"));

    // `NETLAB_DEBUG=1`, as the README gives it (clap's own flags take only true/false).
    let by_env = Lab::named(&netlab_tests::unique_lab());
    let up = std::process::Command::new(netlab_tests::netlab_bin())
        .args(["--lab", &by_env.name, "up", "--sandbox"])
        .env("NETLAB_DEBUG", "1")
        .output()
        .expect("run netlab");
    assert!(up.status.success(), "{up:?}");
    assert!(by_env.run(&["logs", "--seconds", "1"]).status.success());
}

#[test]
fn fast_path_routes_like_a_router_and_can_be_turned_off() {
    for (args, fast) in [(vec![], true), (vec!["--no-fast-path"], false)] {
        let lab = Lab::sandbox(&args);
        lab.ok(&["run", "a"]);
        // Every reply crossed one router (the lab host): TTL 64 - 1, fast path or not.
        let out = lab.exec_ok(
            "a",
            &[
                "ping",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "2",
                &INTERNET.to_string(),
            ],
        );
        assert_eq!(out.matches("ttl=63").count(), 3, "{out}");
        let redirected = lab.stat("counters", "fast_path_redirects");
        assert_eq!(
            redirected > 0,
            fast,
            "fast path {fast}: {redirected} redirects"
        );
    }
}

/// A container's new flow does not take the NAT port of a socket of the lab host that
/// is there already: with the one port of the range held, the container's datagrams
/// are dropped (`ports_exhausted`), and the host socket keeps every reply, over IPv4
/// and IPv6, with the fast path and without. Before, the container's flow took the
/// port and the host socket's replies with it (a review), where iptables' NAT avoids
/// the host's connections' ports. (A socket bound after the flow opened is not seen:
/// the README says so.)
#[test]
fn a_host_sockets_port_is_never_a_containers() {
    for fast in [true, false] {
        let mut args = vec!["--ipv6", "--nat-ports", "20000-20000"];
        if !fast {
            args.push("--no-fast-path");
        }
        let lab = Lab::sandbox(&args);
        lab.ok(&["run", "a"]);
        for (server_addr, host_addr, ctr_addr) in [
            ("203.0.113.1:9999", "0.0.0.0:20000", "0.0.0.0:5000"),
            (
                "[2001:db8:113::1]:9999",
                "[2001:db8:100::2]:20000",
                "[::]:5000",
            ),
        ] {
            let server = udp(&lab.ns("wan"), server_addr);
            let host = udp(&lab.ns("host"), host_addr);
            let ctr = udp(&lab.ns("a"), ctr_addr);
            let to: SocketAddr = server_addr.parse().unwrap();
            let exchange = |what: &[u8]| {
                let mut buf = [0u8; 64];
                host.send_to(what, to).unwrap();
                let (n, from) = server.recv_from(&mut buf).expect("the host's datagram");
                assert_eq!(&buf[..n], what);
                assert_eq!(from.port(), 20000, "{from}");
                server.send_to(b"reply", from).unwrap();
                let mut got = [0u8; 16];
                let n = host.recv(&mut got).expect("the host's reply");
                assert_eq!(&got[..n], b"reply", "fast path {fast}, {server_addr}");
            };
            exchange(b"h1");
            let drops = lab.stat("drops", "ports_exhausted");
            ctr.send_to(b"c1", to).unwrap();
            server
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let got = server.recv_from(&mut [0u8; 64]);
            assert!(
                got.is_err(),
                "fast path {fast}, {server_addr}: the container's datagram left as {:?}",
                got.map(|(_, a)| a)
            );
            server
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            assert_eq!(lab.stat("drops", "ports_exhausted"), drops + 1);
            exchange(b"h2");
        }
    }
}
