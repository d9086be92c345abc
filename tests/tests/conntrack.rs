//! Connection tracking under attack and in the cases Docker and the kernel handle: floods
//! while an established connection keeps transferring, datagrams larger than the MTU,
//! two host ports on one container port, an address taken again, a stream that was
//! arriving before its port was published, and CLI commands run in parallel.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    time::Duration,
};

use netlab_tests::{
    INTERNET, Lab, UPLINK_ADDR, WAN_ADDR, is_ebpf,
    sockets::{tcp_connect, tcp_listen, udp},
    stream::Stream,
    wait_for,
};

netlab_tests::per_datapath!(
    [
        large_datagrams_and_pings_are_fragmented_and_translated,
        two_host_ports_on_one_container_port_and_one_client_port,
        an_address_taken_again_answers_at_once,
        a_stream_that_arrived_before_publish_reaches_the_container,
    ];
    ebpf = "ebpf",
    ebpf_slow = "ebpf-slow",
    iptables = "iptables",
    iptables_legacy = "iptables-legacy",
    nftables = "nftables",
    nftables_flowtable = "nftables-flowtable",
);

/// Accepts one connection within 10 s.
fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let mut got = None;
    let accepted = wait_for(Duration::from_secs(10), || {
        got = listener.accept().ok().map(|(s, _)| s);
        got.is_some()
    });
    assert!(accepted, "no connection arrived");
    let s = got.unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// `ping -s 3000` and a 4,000-byte UDP datagram each way: the container's stack
/// fragments them (the MTU is 1,500), and the NAT translates every fragment.
fn large_datagrams_and_pings_are_fragmented_and_translated(dp: &str) {
    let lab = Lab::on(dp);
    lab.ok(&["run", "a"]);
    let target = INTERNET.to_string();
    lab.exec_ok("a", &["ping", "-c", "2", "-W", "3", "-s", "3000", &target]);

    let server = udp(&lab.ns("wan"), "203.0.113.1:7003");
    let client = udp(&lab.ns("a"), "0.0.0.0:0");
    let big: Vec<u8> = (0..4000u32).map(|i| (i * 7) as u8).collect();
    client.send_to(&big, "203.0.113.1:7003").unwrap();
    let mut buf = vec![0u8; 8192];
    let (n, from) = server
        .recv_from(&mut buf)
        .expect("the datagram never arrived");
    assert_eq!(from.ip(), UPLINK_ADDR, "not masqueraded");
    assert!(
        buf[..n] == big[..],
        "the datagram arrived changed ({n} bytes)"
    );
    server.send_to(&big, from).unwrap();
    let (n, _) = client
        .recv_from(&mut buf)
        .expect("the answer never arrived");
    assert!(
        buf[..n] == big[..],
        "the answer arrived changed ({n} bytes)"
    );
    if is_ebpf(dp) {
        assert!(lab.stat("counters", "fragments_translated") >= 4);
        assert_eq!(lab.stat("drops", "fragment"), 0);
    }
}

/// A client that reuses its source port for `8080:8080` and `8084:8080`: both
/// connections land on the container's one port, so the second must leave the NAT with
/// another source port (as nf_nat does) instead of clashing with the first.
fn two_host_ports_on_one_container_port_and_one_client_port(dp: &str) {
    const CLIENT: &str = r#"
import socket
def connect(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("198.51.100.1", 45000))
    s.settimeout(5)
    s.connect(("198.51.100.2", port))
    return s
a = connect(8080)
a.sendall(b"one")
print(a.recv(3).decode(), flush=True)
b = connect(8084)
b.sendall(b"two")
print(b.recv(3).decode(), flush=True)
a.sendall(b"0ne")
print(a.recv(3).decode(), flush=True)
"#;
    let lab = Lab::on(dp);
    lab.ok(&["run", "web"]);
    lab.ok(&["publish", "web", "8080:8080", "8084:8080"]);
    let listener = tcp_listen(&lab.ns("web"), "0.0.0.0:8080");
    let client = lab.spawn("wan", &["python3", "-c", CLIENT]);
    let echo = |s: &mut TcpStream| {
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).expect("read");
        s.write_all(&buf).unwrap();
    };
    let mut a = accept(&listener);
    echo(&mut a);
    let mut b = accept(&listener);
    echo(&mut b);
    echo(&mut a);
    let (ok, out) = client.wait(Duration::from_secs(15));
    assert!(ok, "{out}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["one", "two", "0ne"]
    );
    let (pa, pb) = (a.peer_addr().unwrap(), b.peer_addr().unwrap());
    assert_eq!((pa.ip(), pb.ip()), (WAN_ADDR.into(), WAN_ADDR.into()));
    assert_ne!(pa.port(), pb.port(), "two connections with one tuple");
}

/// `rm` and then `run` at the same address: the new container announces its MAC, so its
/// published port answers at once, not after the lab host's neighbour entry for the
/// old container goes stale (40-55 s).
fn an_address_taken_again_answers_at_once(dp: &str) {
    let lab = Lab::on(dp);
    lab.ok(&["run", "web", "-p", "8080:8000"]);
    let server = lab.http_server("web", 8000);
    assert_eq!(lab.curl("wan", "http://198.51.100.2:8080/"), "200");
    // The lab host speaks to the container through the bridge: a neighbour entry.
    lab.exec_ok("host", &["ping", "-c", "1", "-W", "2", "172.18.0.2"]);
    drop(server);
    lab.ok(&["rm", "web"]);
    let out = lab.ok(&["run", "web2", "-p", "8080:8000"]);
    assert_eq!(out.trim(), "web2 172.18.0.2");
    let link = lab.exec_ok("web2", &["ip", "-br", "link", "show", "eth0"]);
    let mac = link.split_whitespace().nth(2).expect("a MAC").to_string();
    let announced = wait_for(Duration::from_secs(3), || {
        lab.exec_ok("host", &["ip", "neigh", "show", "172.18.0.2"])
            .contains(&mac)
    });
    assert!(
        announced,
        "the lab host still has the old MAC for 172.18.0.2"
    );
    let _server = lab.http_server("web2", 8000);
    assert_eq!(lab.curl("wan", "http://198.51.100.2:8080/"), "200");
    assert_eq!(lab.curl("host", "http://172.18.0.2:8000/"), "200");
}

/// Datagrams that keep arriving at a host port before it is published (netfilter
/// tracks them as a flow to the lab host): once the port is published, the same
/// client's next datagrams reach the container.
fn a_stream_that_arrived_before_publish_reaches_the_container(dp: &str) {
    let lab = Lab::on(dp);
    lab.ok(&["run", "dns"]);
    let _pong = lab.udp_server("dns", 53);
    let client = udp(&lab.ns("wan"), "198.51.100.1:0");
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 16];
    for _ in 0..3 {
        client.send_to(b"ping", "198.51.100.2:5353").unwrap();
        assert!(client.recv_from(&mut buf).is_err(), "answered unpublished");
    }
    lab.ok(&["publish", "dns", "5353:53/udp"]);
    let answered = wait_for(Duration::from_secs(5), || {
        client.send_to(b"ping", "198.51.100.2:5353").unwrap();
        matches!(client.recv_from(&mut buf), Ok((4, _))) && &buf[..4] == b"pong"
    });
    assert!(
        answered,
        "the stream never reached the container after publish"
    );
}

/// An established connection from wan through a published port, streaming.
fn published_stream(lab: &Lab) -> (Stream, TcpListener) {
    lab.ok(&["run", "web", "-p", "8080:8000"]);
    let listener = tcp_listen(&lab.ns("web"), "0.0.0.0:8000");
    let client = tcp_connect(&lab.ns("wan"), "198.51.100.2:8080");
    let server = accept(&listener);
    let stream = Stream::start(client, server);
    assert!(stream.advances(), "the stream never started");
    (stream, listener)
}

/// A round trip on an idle connection.
fn round_trip(client: &mut TcpStream, server: &mut TcpStream) {
    let mut buf = [0u8; 4];
    client
        .write_all(b"ping")
        .expect("the idle connection was reset");
    server
        .read_exact(&mut buf)
        .expect("the idle connection lost a segment");
    server.write_all(b"pong").unwrap();
    client
        .read_exact(&mut buf)
        .expect("the idle connection lost its answer");
    assert_eq!(&buf, b"pong");
}

/// SYNs from 12,000 spoofed wan addresses and ports against a published port, three
/// times the table of flows being opened; the container answers each. A streaming and
/// an idle session through the same port live on; the flood's flows are half-open
/// (never ESTABLISHED) and stay in the LRU table.
const SYN_FLOOD: &str = r#"
import socket, struct, sys
dst, dport, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
d = socket.inet_aton(dst)
for i in range(n):
    src = socket.inet_aton("198.51.100.%d" % (100 + i % 120))
    sport = 1024 + i // 120
    tcp = struct.pack("!HHIIBBHHH", sport, dport, i, 0, 5 << 4, 0x02, 64240, 0, 0)
    c = csum(src + d + struct.pack("!BBH", 0, 6, 20) + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xffff, 0, 64, 6, 0, src, d)
    s.sendto(ip + tcp, (dst, 0))
print(n)
"#;

#[test]
fn a_syn_flood_against_a_published_port_keeps_established_sessions() {
    let lab = Lab::sandbox(&["--conntrack-max", "1024"]);
    let (stream, listener) = published_stream(&lab);
    let mut idle = tcp_connect(&lab.ns("wan"), "198.51.100.2:8080");
    let mut idle_server = accept(&listener);
    round_trip(&mut idle, &mut idle_server);

    let sent = lab.exec_ok(
        "wan",
        &["python3", "-c", SYN_FLOOD, "198.51.100.2", "8080", "12000"],
    );
    assert_eq!(sent.trim(), "12000");
    assert!(lab.stat("counters", "dnat_new_flows") >= 12_000);
    assert!(stream.advances(), "the stream stalled under the flood");
    round_trip(&mut idle, &mut idle_server);

    let flows = lab.conntrack();
    let established: Vec<_> = flows
        .iter()
        .filter(|f| f["state"] == "ESTABLISHED")
        .collect();
    assert_eq!(established.len(), 2, "{established:?}");
    assert!(established.iter().all(|f| f["table"] == "confirmed"));
    let half_open = flows
        .iter()
        .filter(|f| f["state"] == "SYN_SENT" || f["state"] == "SYN_RECV")
        .inspect(|f| assert_eq!(f["table"], "pending", "{f}"))
        .count();
    assert!(half_open >= 1_000, "{half_open} half-open flows listed");
    assert!(stream.finish() > 0);
}

/// A container sends one datagram each to 12,288 wan ports (a scan: three times the
/// table of unanswered flows) while its established connection streams.
#[test]
fn a_flood_of_new_udp_flows_keeps_established_sessions() {
    let lab = Lab::sandbox(&["--conntrack-max", "1024"]);
    lab.ok(&["run", "a"]);
    let listener = tcp_listen(&lab.ns("wan"), "203.0.113.1:7010");
    let client = tcp_connect(&lab.ns("a"), "203.0.113.1:7010");
    let stream = Stream::start(client, accept(&listener));
    assert!(stream.advances(), "the stream never started");

    let scan = udp(&lab.ns("a"), "0.0.0.0:0");
    for port in 10_000..10_000 + 3 * 4_096u16 {
        scan.send_to(b"x", (INTERNET, port)).unwrap();
    }
    assert!(wait_for(Duration::from_secs(10), || {
        lab.stat("counters", "snat_new_flows") >= 12_288
    }));
    assert!(stream.advances(), "the stream stalled under the flood");
    let flows = lab.conntrack();
    let tcp: Vec<_> = flows.iter().filter(|f| f["proto"] == "tcp").collect();
    assert_eq!(tcp.len(), 1, "{tcp:?}");
    assert_eq!(tcp[0]["table"], "confirmed");
    let udp_flows = flows.iter().filter(|f| f["proto"] == "udp").count();
    assert!(
        udp_flows <= 4_096 + 64,
        "{udp_flows} flows in the LRU table"
    );
    assert!(stream.finish() > 0);
}

/// Sixteen NAT ports, one taken by a streaming connection, and 64 new flows to one wan
/// address and port: sixteen get a port, the rest are dropped and counted, and the
/// stream goes on.
#[test]
fn nat_port_exhaustion_keeps_established_sessions() {
    let lab = Lab::sandbox(&["--nat-ports", "20000-20015"]);
    lab.ok(&["run", "a"]);
    let listener = tcp_listen(&lab.ns("wan"), "203.0.113.1:7011");
    let client = tcp_connect(&lab.ns("a"), "203.0.113.1:7011");
    let stream = Stream::start(client, accept(&listener));
    assert!(stream.advances(), "the stream never started");

    let server = udp(&lab.ns("wan"), "203.0.113.1:7012");
    server
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let flows: Vec<_> = (0..64).map(|_| udp(&lab.ns("a"), "0.0.0.0:0")).collect();
    for s in &flows {
        s.send_to(b"x", "203.0.113.1:7012").unwrap();
    }
    let mut arrived = 0;
    let mut buf = [0u8; 4];
    while server.recv_from(&mut buf).is_ok() {
        arrived += 1;
    }
    assert_eq!(
        arrived, 16,
        "the range holds sixteen flows to one destination"
    );
    assert_eq!(lab.stat("drops", "ports_exhausted"), 48);
    assert!(
        stream.advances(),
        "the stream stalled when the ports ran out"
    );
    assert!(stream.finish() > 0);
}

/// `run`, `publish` and `rm` from eight processes at once on one lab: every command
/// succeeds, and the state says what the kernel has.
#[test]
fn commands_run_in_parallel_on_one_lab_stay_consistent() {
    let lab = Lab::sandbox(&[]);
    let names: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    std::thread::scope(|s| {
        for (i, n) in names.iter().enumerate() {
            let lab = &lab;
            s.spawn(move || lab.ok(&["run", n, "-p", &format!("{}:80", 9000 + i)]));
        }
    });
    let status = lab.status();
    let containers = status["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 8, "{status:#}");
    let mut ips: Vec<_> = containers.iter().map(|c| c["ip"].to_string()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 8, "two containers share an address: {status:#}");
    for n in &names {
        assert!(lab.ns(n).exists(), "no namespace for {n}");
    }
    std::thread::scope(|s| {
        for i in 0..8 {
            let lab = &lab;
            s.spawn(move || lab.ok(&["publish", "p0", &format!("{}:81", 9100 + i)]));
        }
    });
    assert_eq!(lab.ports().len(), 16);
    let links = lab.exec_ok("host", &["ip", "-o", "link", "show"]);
    for c in containers {
        assert!(links.contains(c["veth"].as_str().unwrap()), "{links}");
    }
    std::thread::scope(|s| {
        for n in &names {
            let lab = &lab;
            s.spawn(move || lab.ok(&["rm", n]));
        }
    });
    assert!(lab.status()["containers"].as_array().unwrap().is_empty());
    assert!(lab.ports().is_empty());
    let links = lab.exec_ok("host", &["ip", "-o", "link", "show"]);
    for c in containers {
        assert!(!links.contains(c["veth"].as_str().unwrap()), "{links}");
    }
    for n in &names {
        assert!(!lab.ns(n).exists(), "{n} left its namespace");
    }
}
