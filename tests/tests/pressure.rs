//! The datapath under pressure, each test bounded in count and time and each while an
//! established connection keeps streaming (it must not stall, lose a byte or be reset):
//! a SYN flood against a published port, a flood of new UDP flows larger than the
//! table, NAT port exhaustion; and CLI commands run in parallel on one lab. On eBPF, with
//! its conntrack table shrunk to 1,024 flows, and on iptables and nftables as the
//! reference behaviour.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    time::Duration,
};

use netlab_tests::{
    INTERNET, Lab, datapath_args, is_ebpf,
    sockets::{accept, tcp_connect, tcp_listen, udp},
    stream::Stream,
    wait_for,
};

netlab_tests::per_datapath!(
    [
        a_syn_flood_against_a_published_port_keeps_established_sessions,
        a_flood_of_new_udp_flows_keeps_established_sessions,
        nat_port_exhaustion_keeps_established_sessions,
        commands_run_in_parallel_on_one_lab_stay_consistent,
    ];
    ebpf = "ebpf",
    iptables = "iptables",
    nftables = "nftables",
);

/// A lab on `dp`; on eBPF with the smallest conntrack table (1,024 established flows,
/// 4,096 being opened), so that the floods below overflow it.
fn lab(dp: &str) -> Lab {
    let mut args = datapath_args(dp);
    if is_ebpf(dp) {
        args.extend(["--conntrack-max", "1024"]);
    }
    Lab::sandbox(&args)
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

fn a_syn_flood_against_a_published_port_keeps_established_sessions(dp: &str) {
    let lab = lab(dp);
    let (stream, listener) = published_stream(&lab);
    let mut idle = tcp_connect(&lab.ns("wan"), "198.51.100.2:8080");
    let mut idle_server = accept(&listener);
    round_trip(&mut idle, &mut idle_server);

    let sent = lab.exec_ok(
        "wan",
        &["python3", "-c", SYN_FLOOD, "198.51.100.2", "8080", "12000"],
    );
    assert_eq!(sent.trim(), "12000");
    assert!(stream.advances(), "the stream stalled under the flood");
    round_trip(&mut idle, &mut idle_server);
    if !is_ebpf(dp) {
        assert!(stream.finish() > 0);
        return;
    }
    // Nearly all of them opened a flow (a busy CPU may drop a few at the veth's
    // backlog before any hook sees them).
    assert!(lab.stat("counters", "dnat_new_flows") >= 11_000);

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
    // Nothing was dropped: the pressure shows as the LRU table in use.
    let tables = lab.status()["tables"].clone();
    let pending = tables
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "CT_PENDING")
        .expect("CT_PENDING in status");
    assert!(pending["in_use"].as_u64().unwrap() >= 2_000, "{tables}");
    assert!(stream.finish() > 0);
}

/// A container sends one datagram each to 12,288 wan ports (a scan: three times the
/// table of unanswered flows) while its established connection streams.
fn a_flood_of_new_udp_flows_keeps_established_sessions(dp: &str) {
    let lab = lab(dp);
    lab.ok(&["run", "a"]);
    let listener = tcp_listen(&lab.ns("wan"), "203.0.113.1:7010");
    let client = tcp_connect(&lab.ns("a"), "203.0.113.1:7010");
    let stream = Stream::start(client, accept(&listener));
    assert!(stream.advances(), "the stream never started");

    let scan = udp(&lab.ns("a"), "0.0.0.0:0");
    for port in 10_000..10_000 + 3 * 4_096u16 {
        scan.send_to(b"x", (INTERNET, port)).unwrap();
    }
    assert!(stream.advances(), "the stream stalled under the flood");
    if !is_ebpf(dp) {
        assert!(stream.finish() > 0);
        return;
    }
    assert!(wait_for(Duration::from_secs(10), || {
        lab.stat("counters", "snat_new_flows") >= 11_000
    }));
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
fn nat_port_exhaustion_keeps_established_sessions(dp: &str) {
    let mut args = datapath_args(dp);
    args.extend(["--nat-ports", "20000-20015"]);
    let lab = Lab::sandbox(&args);
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
    if is_ebpf(dp) {
        assert_eq!(lab.stat("drops", "ports_exhausted"), 48);
    }
    assert!(
        stream.advances(),
        "the stream stalled when the ports ran out"
    );
    assert!(stream.finish() > 0);
}

/// `run`, `publish` and `rm` from eight processes at once on one lab: every command
/// succeeds, and the state says what the kernel has.
fn commands_run_in_parallel_on_one_lab_stay_consistent(dp: &str) {
    let lab = Lab::on(dp);
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
