//! What Docker and the kernel handle, on every datapath: datagrams larger than the MTU,
//! two host ports on one container port, an address taken again, a stream that was
//! arriving before its port was published. Floods are in `pressure.rs`.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use netlab_tests::{
    INTERNET, Lab, UPLINK_ADDR, WAN_ADDR, datapath_args, is_ebpf,
    sockets::{accept, tcp_connect_from, tcp_listen, udp},
    wait_for,
};

netlab_tests::per_datapath!(
    [
        large_datagrams_and_pings_are_fragmented_and_translated,
        two_host_ports_on_one_container_port_and_one_client_port,
        an_address_taken_again_answers_at_once,
        a_stream_that_arrived_before_publish_reaches_the_container,
        replies_alone_make_a_udp_stream,
        a_simultaneous_open_is_established,
        a_connection_idle_past_its_timeout_is_reset,
    ];
    ebpf = "ebpf",
    ebpf_slow = "ebpf-slow",
    iptables = "iptables",
    iptables_legacy = "iptables-legacy",
    nftables = "nftables",
    nftables_flowtable = "nftables-flowtable",
);

/// A masqueraded TCP connection left idle past `--tcp-timeout` has lost its flow; its
/// next segment gets a reset at once, on every datapath: nf_conntrack picks it up
/// mid-stream behind a new NAT port, which the server answers with a reset; the eBPF
/// datapath, which opens flows on a SYN only, answers it itself (`tcp_resets_sent`).
/// Before, eBPF dropped the segment (`tcp_no_flow`) and the connection hung,
/// retransmitting, until the container's own timeout (found by a review).
fn a_connection_idle_past_its_timeout_is_reset(dp: &str) {
    let lab = Lab::sandbox(&[datapath_args(dp), vec!["--tcp-timeout", "1"]].concat());
    lab.ok(&["run", "c"]);
    netlab_tests::an_idle_connection_is_reset(&lab, dp, "203.0.113.1:7000", false);
    // Again where the container's host-side veth computes no checksum.
    lab.ok(&["rm", "c"]);
    lab.ok(&["run", "c"]);
    netlab_tests::an_idle_connection_is_reset(&lab, dp, "203.0.113.1:7001", true);
}

/// A simultaneous open through the masquerade, as TCP hole punching makes one: a
/// container connects from port 5002 to wan's 6000, whose SYN wan drops; wan, bound to
/// 6000, connects to the NAT port. Both SYNs cross, both sides answer with SYN-ACKs,
/// and the connection is made: the flow is established (nf_conntrack's SYN_SENT2 then
/// SYN_RECV), and carries data both ways past the opening timeout. On eBPF the flow
/// stayed in SYN_SENT and its connection was cut after `--tcp-syn-timeout` idle
/// (found by a review).
fn a_simultaneous_open_is_established(dp: &str) {
    let lab = Lab::on(dp);
    lab.ok(&["run", "c"]);
    let drop_syn = "nft add table inet t && nft add chain inet t pre '{ type filter hook prerouting priority -300; }' && nft add rule inet t pre tcp dport 6000 tcp flags '& (syn|ack) == syn' drop";
    lab.exec_ok("wan", &["sh", "-c", drop_syn]);
    let wan_end = std::net::SocketAddrV4::new(INTERNET, 6000);
    let ns = lab.ns("c");
    let opening = std::thread::spawn(move || {
        let local = std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 5002);
        tcp_connect_from(&ns, local, wan_end, Duration::from_secs(20))
    });
    let nat_port = netlab_tests::wait_for_opening_flow(&lab, dp, 6000);
    let to_nat = std::net::SocketAddrV4::new(UPLINK_ADDR, nat_port);
    let mut outside = tcp_connect_from(&lab.ns("wan"), wan_end, to_nat, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{dp}: wan's side: {e}"));
    let mut inside = opening
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{dp}: the container's side: {e}"));
    let both_ways = |inside: &mut TcpStream, outside: &mut TcpStream| {
        let mut buf = [0u8; 4];
        inside.write_all(b"ping").unwrap();
        outside.read_exact(&mut buf).unwrap();
        outside.write_all(b"pong").unwrap();
        inside.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong");
    };
    both_ways(&mut inside, &mut outside);
    assert!(
        netlab_tests::tcp_flow_to(&lab, dp, 6000, "ESTABLISHED").is_some(),
        "{dp}: not established"
    );
    if is_ebpf(dp) {
        // Past the opening timeout (30 s): an opening flow would be gone.
        netlab_tests::age_flows(&lab, 40);
        both_ways(&mut inside, &mut outside);
    }
}

/// One request answered by a stream of replies, the container silent after its first
/// datagram: a second reply after the first makes the flow a stream (its timeout
/// `--udp-stream-timeout`), as nf_conntrack makes it one on a packet of either
/// direction two seconds after the first. With `--udp-timeout 3`, replies at 0, 2.5
/// and 7 s all arrive; the eBPF datapath waited for the container's next datagram, and
/// dropped the third (found by a review).
fn replies_alone_make_a_udp_stream(dp: &str) {
    let lab = Lab::sandbox(
        &[
            netlab_tests::datapath_args(dp),
            vec!["--udp-timeout", "3", "--udp-stream-timeout", "10"],
        ]
        .concat(),
    );
    lab.ok(&["run", "a"]);
    let server = udp(&lab.ns("wan"), "203.0.113.1:7004");
    let client = udp(&lab.ns("a"), "0.0.0.0:0");
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    client.send_to(b"subscribe", "203.0.113.1:7004").unwrap();
    let mut buf = [0u8; 64];
    let (_, from) = server.recv_from(&mut buf).expect("the request arrives");
    let start = std::time::Instant::now();
    for (i, at) in [0.0, 2.5, 7.0].into_iter().enumerate() {
        let wait = Duration::from_secs_f64(at).saturating_sub(start.elapsed());
        std::thread::sleep(wait);
        server
            .send_to(format!("reply {i}").as_bytes(), from)
            .unwrap();
        let (n, _) = client
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("{dp}: reply {i} (at {at} s) lost: {e}"));
        assert_eq!(&buf[..n], format!("reply {i}").as_bytes());
    }
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
    // The container, then its ports as `publish` prints them.
    assert_eq!(out, "web2 172.18.0.2\n8080:8000/tcp -> 172.18.0.2:8000\n");
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
    // The same to another address of the lab host, the port published on it alone:
    // netfilter's stale flow there is forgotten too.
    lab.exec_ok(
        "host",
        &["ip", "addr", "add", "198.51.100.3/24", "dev", "eth0"],
    );
    for _ in 0..3 {
        client.send_to(b"ping", "198.51.100.3:5354").unwrap();
        assert!(client.recv_from(&mut buf).is_err(), "answered unpublished");
    }
    lab.ok(&["publish", "dns", "198.51.100.3:5354:53/udp"]);
    let answered = wait_for(Duration::from_secs(5), || {
        client.send_to(b"ping", "198.51.100.3:5354").unwrap();
        matches!(client.recv_from(&mut buf), Ok((4, _))) && &buf[..4] == b"pong"
    });
    assert!(
        answered,
        "the stream to another host address never reached the container after publish"
    );
}
