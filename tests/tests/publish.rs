//! Port publishing (the seed's "Letting the outside world reach out to containers"),
//! on every access path, edited while the containers run. Each scenario is a function
//! of the datapath; `on_datapaths!` makes one test per datapath from it.

use std::{
    io::{Read, Write},
    time::Duration,
};

use netlab_tests::{
    Lab, WAN_ADDR,
    sockets::{tcp_connect, tcp_listen, udp},
    transfer::{Transfer, checksums_in_software},
};

netlab_tests::per_datapath!(
    [
        tcp_from_outside_keeps_the_client_address,
        tcp_from_the_host_and_localhost,
        host_sockets_see_the_address_each_used,
        tcp_hairpin_from_another_container_and_itself,
        udp_on_every_path,
        a_closed_port_refuses_hairpin_clients,
        localhost_only_port_is_not_reachable_from_outside,
        port_range_is_one_mapping,
        publish_and_unpublish_on_a_running_container,
        unpublish_leaves_no_flow_behind,
        a_thousand_ports,
        conflicts_and_bad_specs_change_nothing,
        checksummed_transfers_both_ways,
        an_address_on_lo_is_the_hosts_too,
        udp_ports_in_the_ephemeral_range_are_warned_of_on_ebpf,
        host_ports_are_picked_as_docker_picks_them,
    ];
    ebpf = "ebpf",
    ebpf_slow = "ebpf-slow",
    iptables = "iptables",
    iptables_legacy = "iptables-legacy",
    nftables = "nftables",
    nftables_flowtable = "nftables-flowtable",
);

fn web(dp: &str) -> Lab {
    let lab = Lab::on(dp);
    lab.ok(&["run", "web"]);
    lab
}

/// A UDP host port in the lab host's ephemeral range (32768-60999) is published, with
/// a warning on stderr on eBPF, where a reply to one of the host's own UDP sockets on
/// such a port is taken for a published flow (UDP has no SYN); none for a port outside
/// it, nor for TCP, nor on the classic datapaths, where conntrack knows the host's
/// own flows.
fn udp_ports_in_the_ephemeral_range_are_warned_of_on_ebpf(dp: &str) {
    let lab = web(dp);
    let stderr = |args: &[&str]| {
        let out = lab.run(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let warned = stderr(&[
        "publish",
        "web",
        "5300:53/udp",
        "50000-50010:50000-50010/udp",
    ]);
    assert_eq!(
        warned.contains("50000-50010:50000-50010/udp publishes UDP ports in the lab host's ephemeral range 32768-60999"),
        netlab_tests::is_ebpf(dp),
        "{dp}: {warned}"
    );
    assert!(!warned.contains("5300:53"), "{warned}");
    assert_eq!(stderr(&["publish", "web", "40000:80"]), "", "TCP");
    assert_eq!(lab.ports().len(), 3);
}

/// Docker's `-p` without a host port (`8000`, `127.0.0.1::8000`, `0:8000`, `::8000`)
/// gets a free one of the lab host's ephemeral ports (32768-60999; a UDP one on eBPF
/// outside them, where one inside would take the host's own replies), and a host range
/// for one container port (`9000-9002:8000`) its first free port, past a listener's and
/// a connected UDP socket's; `ports NAME` lists them, a range with none left is
/// refused, changing nothing, and so is a pick with nothing to pick from. A batch's
/// given ports are claimed before its picks, whatever their order.
fn host_ports_are_picked_as_docker_picks_them(dp: &str) {
    let lab = web(dp);
    let _server = lab.http_server("web", 8000);
    // `publish` prints what it published: `HOST_PORT:8000/tcp -> 172.18.0.2:8000`.
    let picked = |out: &str| -> u16 {
        let spec = out.split_whitespace().next().expect("a line");
        let host = spec.rsplit(':').nth(1).expect("HOST:CTR/PROTO");
        host.parse().unwrap_or_else(|_| panic!("{out}"))
    };
    let any = picked(&lab.ok(&["publish", "web", "8000"]));
    assert!((32768..=60999).contains(&any), "{any}");
    assert_eq!(
        lab.curl("wan", &format!("http://198.51.100.2:{any}/")),
        "200"
    );
    let local = lab.ok(&["publish", "web", "127.0.0.1::8000"]);
    assert!(local.starts_with("127.0.0.1:"), "{local}");
    let local = picked(&local);
    assert_ne!(local, any);
    assert_eq!(
        lab.curl("host", &format!("http://127.0.0.1:{local}/")),
        "200"
    );
    let out = lab.run(&["publish", "web", "0:53/udp"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no warning");
    let udp = picked(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        (32768..=60999).contains(&udp),
        !netlab_tests::is_ebpf(dp),
        "{udp}"
    );

    // A host range for one container port: its free ports in order, past a socket's.
    let _busy = lab.http_server("host", 9001);
    assert_eq!(picked(&lab.ok(&["publish", "web", "9000-9002:8000"])), 9000);
    assert_eq!(picked(&lab.ok(&["publish", "web", "9000-9002:8000"])), 9002);
    let before = lab.ports();
    let err = lab.fails(&["publish", "web", "9000-9002:8000"]);
    assert!(
        err.contains(
            "no free host port for 9000-9002:8000/tcp: every port of 9000-9002 is published or in use"
        ),
        "{err}"
    );
    assert_eq!(lab.ports(), before, "a refused pick changed nothing");
    assert_eq!(lab.curl("wan", "http://198.51.100.2:9002/"), "200");

    // `run -p` picks too, and `ports NAME` shows one container's ports.
    lab.ok(&["run", "other", "-p", "8000", "-p", "90-91/udp"]);
    let theirs: Vec<serde_json::Value> =
        serde_json::from_str(&lab.ok(&["ports", "other", "--json"])).expect("json");
    assert_eq!(theirs.len(), 3, "{theirs:?}");
    assert!(
        theirs.iter().all(|p| p["container"] == "other"),
        "{theirs:?}"
    );
    assert_eq!(lab.ports().len(), 8);
    assert!(
        lab.fails(&["ports", "nosuch"])
            .contains("no container nosuch")
    );
    // `status` lists each container's ports, as `docker ps` does: four, then a count.
    let status = lab.status();
    let other = status["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "other")
        .expect("other");
    assert_eq!(other["ports"][0], theirs[0]["spec"], "{other}");
    let text = lab.ok(&["status"]);
    let web = text.lines().find(|l| l.starts_with("web ")).expect("web");
    // The command it names is this lab's, not the default one's.
    let more = format!("and 1 more (netlab ports --lab {} web)", lab.name);
    assert!(web.ends_with(&more), "{web}");
    assert!(web.contains("9000:8000/tcp"), "{web}");

    // A connected UDP socket holds its port as a bound one does (Docker's bind there
    // would fail): refused when given, passed over when picked. Clear of the one UDP
    // port picked above.
    let held = if udp.abs_diff(61100) <= 1 {
        61200
    } else {
        61100
    };
    let script = format!(
        "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('0.0.0.0', {held}))\ns.connect(('198.51.100.1', 9))\ntime.sleep(600)\n"
    );
    let _connected = lab.spawn("host", &["python3", "-c", &script]);
    let connected = netlab_tests::wait_for(Duration::from_secs(10), || {
        lab.exec_ok("host", &["ss", "-Hun", "state", "established"])
            .contains(&format!(":{held} "))
    });
    assert!(connected, "the UDP socket never connected from {held}");
    let err = lab.fails(&["publish", "web", &format!("{held}:53/udp")]);
    assert!(err.contains("in use by a socket"), "{err}");
    let range = format!("{held}-{}:53/udp", held + 1);
    assert_eq!(picked(&lab.ok(&["publish", "web", &range])), held + 1);

    // A given port is claimed before a pick takes one, in whichever order they come;
    // what is published is listed in the order written.
    let batch = lab.ok(&["publish", "web", "9060-9061:8000", "9060:8001"]);
    let specs: Vec<&str> = batch
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(specs, ["9061:8000/tcp", "9060:8001/tcp"], "{batch}");
    assert_eq!(lab.curl("wan", "http://198.51.100.2:9061/"), "200");

    // An empty host address is every address, as Docker takes it.
    let empty = picked(&lab.ok(&["publish", "web", "::8000"]));
    assert!((32768..=60999).contains(&empty), "{empty}");
    assert!(
        lab.ok(&["publish", "web", ":8080:8000"])
            .starts_with("8080:8000/tcp ->")
    );
    assert_eq!(lab.curl("wan", "http://198.51.100.2:8080/"), "200");

    // Nothing to pick from says why: the lab host's ephemeral ports all NAT ports of the
    // lab, or on eBPF no port outside them for UDP.
    let before = lab.ports();
    let range = |r: &str| {
        let set = format!("echo {r} > /proc/sys/net/ipv4/ip_local_port_range");
        lab.exec_ok("host", &["sh", "-c", &set]);
    };
    range("25000 25010");
    let err = lab.fails(&["publish", "web", "8000"]);
    assert!(
        err.contains(
            "no host port to pick for 8000/tcp: the lab host's ephemeral ports 25000-25010 are all NAT ports of the lab (--nat-ports 20000-29999)"
        ),
        "{err}"
    );
    if netlab_tests::is_ebpf(dp) {
        range("1024 65535");
        let err = lab.fails(&["publish", "web", "53/udp"]);
        assert!(
            err.contains(
                "no host port to pick for 53/udp: on eBPF a UDP port is picked outside the lab host's ephemeral ports (1024-65535), and none is left"
            ),
            "{err}"
        );
    }
    range("32768 60999");
    assert_eq!(
        lab.ports(),
        before,
        "a pick with nothing to pick from changed nothing"
    );
}

fn tcp_from_outside_keeps_the_client_address(dp: &str) {
    let lab = web(dp);
    lab.ok(&["publish", "web", "8080:8000"]);
    let server = lab.http_server("web", 8000);
    assert_eq!(lab.curl("wan", "http://198.51.100.2:8080/"), "200");
    let log = server.finish();
    let line = log
        .lines()
        .find(|l| l.contains("GET /"))
        .unwrap_or_else(|| panic!("no request: {log}"));
    assert!(
        line.starts_with(&WAN_ADDR.to_string()),
        "the container should see the real client: {line}"
    );
    if netlab_tests::is_ebpf(dp) {
        let p = &lab.ports()[0];
        assert_eq!(p["spec"], "8080:8000/tcp");
        assert_eq!(p["connections"], 1);
        assert!(p["packets"].as_u64().unwrap() >= 6, "{p}");
    }
}

fn tcp_from_the_host_and_localhost(dp: &str) {
    let lab = web(dp);
    lab.ok(&["publish", "web", "8080:8000"]);
    let _server = lab.http_server("web", 8000);
    assert_eq!(
        lab.curl("host", "http://198.51.100.2:8080/"),
        "200",
        "host via the uplink address"
    );
    assert_eq!(
        lab.curl("host", "http://127.0.0.1:8080/"),
        "200",
        "host via localhost"
    );
    assert_eq!(
        lab.curl("host", "http://172.18.0.1:8080/"),
        "200",
        "host via the bridge address"
    );
    assert_eq!(
        lab.curl("host", "http://127.0.0.2:8080/"),
        "200",
        "host via another loopback address"
    );
    lab.ok(&["run", "hn", "--network", "host"]);
    assert_eq!(
        lab.curl("hn", "http://127.0.0.1:8080/"),
        "200",
        "a --network host container via localhost"
    );
}

/// Host-local publishing shows each of the lab host's sockets the address it used:
/// two sockets of one port by two addresses, and one that reaches the container
/// directly, each see their own peer (TCP `getpeername`, UDP `recvfrom`), as the
/// kernel's NAT shows them; a socket's first datagram counts as a connection.
fn host_sockets_see_the_address_each_used(dp: &str) {
    let lab = web(dp);
    lab.ok(&["publish", "web", "8080:8000", "5353:5353/udp"]);
    let _http = lab.http_server("web", 8000);
    let _pong = lab.udp_server("web", 5353);
    let script = "import socket\n\
        a = socket.create_connection(('127.0.0.1', 8080), timeout=5)\n\
        b = socket.create_connection(('198.51.100.2', 8080), timeout=5)\n\
        c = socket.create_connection(('172.18.0.2', 8000), timeout=5)\n\
        print(*a.getpeername(), *b.getpeername(), *c.getpeername())\n\
        u = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]\n\
        to = [('127.0.0.1', 5353), ('198.51.100.2', 5353), ('172.18.0.2', 5353)]\n\
        for s, t in zip(u, to):\n    s.settimeout(5)\n    s.sendto(b'ping', t)\n\
        print(*[a for s in u for a in s.recvfrom(16)[1]])\n\
        m = [socket.socket(socket.AF_INET6) for _ in range(2)]\n\
        for s, t in zip(m, ['::ffff:127.0.0.1', '::ffff:198.51.100.2']):\n\
        \x20   s.settimeout(5)\n    s.connect((t, 8080))\n\
        print(*[a for s in m for a in s.getpeername()[:2]])\n\
        v = [socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) for _ in range(2)]\n\
        for s, t in zip(v, ['::ffff:127.0.0.1', '::ffff:198.51.100.2']):\n\
        \x20   s.settimeout(5)\n    s.sendto(b'ping', (t, 5353))\n\
        print(*[a for s in v for a in s.recvfrom(16)[1][:2]])\n\
        w = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\nw.settimeout(5)\n\
        w.connect(('::ffff:127.0.0.1', 5353))\nw.send(b'ping')\n\
        print(w.recv(16).decode(), *w.getpeername()[:2])\n\
        z = socket.create_connection(('0.0.0.0', 8080), timeout=5)\n\
        y = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ny.settimeout(5)\n\
        y.sendto(b'ping', ('0.0.0.0', 5353))\n\
        print(*z.getpeername(), *y.recvfrom(16)[1])\n";
    let out = lab.exec_ok("host", &["python3", "-c", script]);
    let lines: Vec<&str> = out.lines().collect();
    // The same from IPv6 sockets by IPv4-mapped addresses (a dual-stack socket's IPv4),
    // and to 0.0.0.0 (the host itself: the kernel sends to 127.0.0.1).
    assert_eq!(
        lines,
        [
            "127.0.0.1 8080 198.51.100.2 8080 172.18.0.2 8000",
            "127.0.0.1 5353 198.51.100.2 5353 172.18.0.2 5353",
            "::ffff:127.0.0.1 8080 ::ffff:198.51.100.2 8080",
            "::ffff:127.0.0.1 5353 ::ffff:198.51.100.2 5353",
            "pong ::ffff:127.0.0.1 5353",
            "127.0.0.1 8080 127.0.0.1 5353",
        ],
        "{dp}"
    );
    if netlab_tests::is_ebpf(dp) {
        let conns: Vec<u64> = lab
            .ports()
            .iter()
            .map(|p| p["connections"].as_u64().unwrap())
            .collect();
        assert_eq!(conns, [5, 6], "{dp}: connections through 8080 and 5353");
    }
}

fn tcp_hairpin_from_another_container_and_itself(dp: &str) {
    let lab = web(dp);
    lab.ok(&["run", "client"]);
    lab.ok(&["publish", "web", "8080:8000"]);
    let _server = lab.http_server("web", 8000);
    assert_eq!(
        lab.curl("client", "http://198.51.100.2:8080/"),
        "200",
        "another container"
    );
    assert_eq!(
        lab.curl("web", "http://198.51.100.2:8080/"),
        "200",
        "the container itself"
    );
    assert_eq!(
        lab.curl("client", "http://172.18.0.1:8080/"),
        "200",
        "via the gateway address"
    );
}

fn udp_on_every_path(dp: &str) {
    let lab = web(dp);
    lab.ok(&["run", "client"]);
    lab.ok(&["publish", "web", "5353:5353/udp"]);
    // From outside, the container sees the real client.
    let server = udp(&lab.ns("web"), "0.0.0.0:5353");
    let client = udp(&lab.ns("wan"), "0.0.0.0:0");
    client.send_to(b"hi", "198.51.100.2:5353").unwrap();
    let mut buf = [0u8; 16];
    let (_, from) = server.recv_from(&mut buf).expect("datagram from outside");
    assert_eq!(from.ip(), WAN_ADDR);
    server.send_to(b"yo", from).unwrap();
    let (n, back) = client
        .recv_from(&mut buf)
        .expect("reply to the outside client");
    assert_eq!(&buf[..n], b"yo");
    assert_eq!(
        back,
        "198.51.100.2:5353".parse().unwrap(),
        "the reply comes from the published address"
    );
    drop(server);
    // From the host (uplink and localhost) and from containers (hairpin).
    let _pong = lab.udp_server("web", 5353);
    assert_eq!(lab.udp_ask("host", "198.51.100.2:5353"), "pong");
    assert_eq!(lab.udp_ask("host", "127.0.0.1:5353"), "pong");
    assert_eq!(lab.udp_ask("client", "198.51.100.2:5353"), "pong");
    assert_eq!(lab.udp_ask("web", "198.51.100.2:5353"), "pong");
}

/// A published UDP port nobody listens on refuses a container's datagram through
/// hairpin as it refuses one from outside: the target's port unreachable, sent to the
/// NAT address, is translated back to the client (`ECONNREFUSED`), not left to the
/// lab host.
fn a_closed_port_refuses_hairpin_clients(dp: &str) {
    let lab = web(dp);
    lab.ok(&["run", "client"]);
    lab.ok(&["publish", "web", "8082:8002/udp"]);
    let script = "import socket\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        s.settimeout(3)\n\
        s.connect(('198.51.100.2', 8082))\n\
        for _ in range(3):\n    s.send(b'x')\n    try:\n        s.recv(16)\n        print('answered')\n        break\n    \
        except ConnectionRefusedError:\n        print('refused')\n        break\n    except TimeoutError:\n        pass\n\
        else:\n    print('no answer')\n";
    let out = lab.exec_ok("client", &["python3", "-c", script]);
    assert_eq!(out.trim(), "refused", "{dp}");
}

fn localhost_only_port_is_not_reachable_from_outside(dp: &str) {
    let lab = web(dp);
    lab.ok(&["publish", "web", "127.0.0.1:9090:8000"]);
    let _server = lab.http_server("web", 8000);
    assert_eq!(lab.curl("host", "http://127.0.0.1:9090/"), "200");
    assert_eq!(lab.curl("wan", "http://198.51.100.2:9090/"), "000");
    lab.ok(&["run", "client"]);
    assert_eq!(lab.curl("client", "http://198.51.100.2:9090/"), "000");
    // Any loopback address is the host's own, as Docker takes it; on that one only.
    lab.ok(&["publish", "web", "127.0.0.2:9091:8000"]);
    assert_eq!(lab.curl("host", "http://127.0.0.2:9091/"), "200");
    assert_eq!(lab.curl("host", "http://127.0.0.1:9091/"), "000");
    assert_eq!(lab.curl("wan", "http://198.51.100.2:9091/"), "000");
}

fn port_range_is_one_mapping(dp: &str) {
    let lab = web(dp);
    lab.ok(&["publish", "web", "7000-7009:8000-8009"]);
    assert_eq!(lab.ports().len(), 1);
    let _a = lab.http_server("web", 8000);
    let _b = lab.http_server("web", 8009);
    assert_eq!(lab.curl("wan", "http://198.51.100.2:7000/"), "200");
    assert_eq!(lab.curl("wan", "http://198.51.100.2:7009/"), "200");
    assert_eq!(lab.curl("host", "http://127.0.0.1:7009/"), "200");
    assert_eq!(lab.curl("wan", "http://198.51.100.2:7010/"), "000");
}

fn publish_and_unpublish_on_a_running_container(dp: &str) {
    let lab = web(dp);
    lab.ok(&["publish", "web", "8080:7001"]);
    let listener = tcp_listen(&lab.ns("web"), "0.0.0.0:7001");
    let mut client = tcp_connect(&lab.ns("wan"), "198.51.100.2:8080");
    let (mut conn, from) = listener.accept().unwrap();
    assert_eq!(from.ip(), WAN_ADDR);
    let mut buf = [0u8; 4];
    client.write_all(b"one!").unwrap();
    conn.read_exact(&mut buf).unwrap();

    // Publish and unpublish another port while that connection stays up.
    lab.ok(&["publish", "web", "9000:8000"]);
    let _server = lab.http_server("web", 8000);
    assert_eq!(
        lab.curl("wan", "http://198.51.100.2:9000/"),
        "200",
        "published on the running container"
    );
    lab.ok(&["unpublish", "web", "9000:8000"]);
    assert_eq!(
        lab.curl("wan", "http://198.51.100.2:9000/"),
        "000",
        "closed right after unpublish"
    );

    client.write_all(b"two!").unwrap();
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"two!");
    conn.write_all(b"ack!").unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(
        &buf, b"ack!",
        "the first connection survived the other port's changes"
    );
}

fn unpublish_leaves_no_flow_behind(dp: &str) {
    let lab = web(dp);
    lab.ok(&["publish", "web", "5353:5353/udp", "8080:8000"]);
    let _udp = lab.udp_server("web", 5353);
    let _http = lab.http_server("web", 8000);
    assert_eq!(lab.udp_ask("wan", "198.51.100.2:5353"), "pong");
    assert_eq!(lab.curl("wan", "http://198.51.100.2:8080/"), "200");
    lab.ok(&["unpublish", "web", "5353:5353/udp", "8080:8000"]);
    assert!(lab.ports().is_empty());
    if netlab_tests::is_ebpf(dp) {
        let flows = lab.conntrack();
        assert!(flows.is_empty(), "flows survived unpublish: {flows:?}");
    }
    // The same client port again: a stale UDP flow would still deliver it.
    assert_eq!(lab.udp_ask("wan", "198.51.100.2:5353"), "");

    // A connection of the lab host's through a port (TCP, and a connected UDP socket)
    // ends with the port too, as iptables' does.
    let _echo = lab.spawn(
        "web",
        &[
            "python3",
            "-c",
            "import socketserver\n\
             class E(socketserver.BaseRequestHandler):\n    def handle(self):\n\
             \x20       while True:\n            d = self.request.recv(64)\n\
             \x20           if not d: break\n            self.request.sendall(d)\n\
             socketserver.ThreadingTCPServer(('0.0.0.0', 9001), E).serve_forever()\n",
        ],
    );
    assert!(netlab_tests::wait_for(Duration::from_secs(10), || lab
        .exec_ok("web", &["ss", "-Htln"])
        .contains(":9001 ")));
    lab.ok(&["publish", "web", "5353:5353/udp", "9001:9001"]);
    let (first, after) = host_clients_across_unpublish(
        &lab,
        "t = socket.create_connection(('127.0.0.1', 9001), timeout=3)\n\
         u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu.settimeout(3)\n\
         u.connect(('127.0.0.1', 5353))\n\
         m = socket.socket(socket.AF_INET6)\nm.settimeout(3)\n\
         m.connect(('::ffff:127.0.0.1', 9001))\nsocks = [t, u, m]\n",
        &["5353:5353/udp", "9001:9001"],
    );
    assert_eq!(first, "one pong one");
    assert_eq!(
        after, "ended, ended, ended",
        "the withdrawn ports still carried the host's connections"
    );

    // The same ports on two host addresses are two mappings: withdrawing one ends the
    // connections through it, not those through the other.
    lab.ok(&[
        "publish",
        "web",
        "127.0.0.1:9002:9001",
        "198.51.100.2:9002:9001",
    ]);
    let (first, after) = host_clients_across_unpublish(
        &lab,
        "socks = [socket.create_connection((a, 9002), timeout=3)\n\
         \x20        for a in ('127.0.0.1', '198.51.100.2')]\n",
        &["127.0.0.1:9002:9001"],
    );
    assert_eq!(first, "one one");
    assert_eq!(after, "ended, answered two");
}

/// Clients in the lab host: `setup` (Python) opens `socks`, each says "one" and reads
/// the answer (what came back, the first string returned); `unpublish` withdraws
/// `specs`; then each says "two": the second string is, for each, `answered ...`,
/// `ended` (its socket ended: reset, aborted, refused) or `timed out`.
fn host_clients_across_unpublish(lab: &Lab, setup: &str, specs: &[&str]) -> (String, String) {
    let dir = netlab_tests::TempDir::new("clients");
    let out = dir.0.join("clients").display().to_string();
    let go = dir.0.join("go").display().to_string();
    let client = format!(
        "import socket, os, time\n{setup}\
         def write(text):\n    open('{out}.tmp', 'w').write(text)\n    os.rename('{out}.tmp', '{out}')\n\
         for s in socks: s.send(b'one')\n\
         write(' '.join(s.recv(16).decode() for s in socks))\n\
         while not os.path.exists('{go}'): time.sleep(0.05)\n\
         def again(s):\n    try:\n        s.send(b'two')\n        return 'answered ' + s.recv(16).decode()\n\
         \x20   except TimeoutError:\n        return 'timed out'\n\
         \x20   except OSError:\n        return 'ended'\n\
         write(', '.join(again(s) for s in socks))\n"
    );
    let _client = lab.spawn("host", &["python3", "-c", &client]);
    let read = || std::fs::read_to_string(&out).unwrap_or_default();
    let answered = netlab_tests::wait_for(Duration::from_secs(10), || !read().is_empty());
    let first = read();
    let _ = std::fs::remove_file(&out);
    assert!(answered, "the host's clients never answered");
    let mut unpublish = vec!["unpublish", "web"];
    unpublish.extend_from_slice(specs);
    lab.ok(&unpublish);
    std::fs::write(&go, "").unwrap();
    let ended = netlab_tests::wait_for(Duration::from_secs(10), || !read().is_empty());
    let _ = std::fs::remove_file(&go);
    let after = read();
    let _ = std::fs::remove_file(&out);
    assert!(ended, "the host's clients never said what became of them");
    (first, after)
}

/// An address on the lab host's `lo` (a service address, as a router's loopback
/// carries) is the host's as any other (`--dst-type LOCAL`): a port published on it, or
/// on every address, answers there from wan and from the host. The eBPF datapath took
/// only the addresses of the interfaces it watches, which `lo` is not: the publish was
/// accepted and nothing answered.
fn an_address_on_lo_is_the_hosts_too(dp: &str) {
    let lab = web(dp);
    lab.exec_ok("host", &["ip", "addr", "add", "10.99.0.1/32", "dev", "lo"]);
    lab.exec_ok(
        "wan",
        &["ip", "route", "add", "10.99.0.1/32", "via", "198.51.100.2"],
    );
    lab.ok(&["publish", "web", "10.99.0.1:7500:8000", "7504:8000"]);
    let _server = lab.http_server("web", 8000);
    for from in ["wan", "host"] {
        for port in [7500, 7504] {
            let url = format!("http://10.99.0.1:{port}/");
            assert_eq!(lab.curl(from, &url), "200", "{url} from {from}");
        }
    }
}

fn a_thousand_ports(dp: &str) {
    let lab = web(dp);
    let specs: Vec<String> = (20_000..21_000).map(|p| format!("{p}:8000")).collect();
    let mut args = vec!["publish", "web"];
    args.extend(specs.iter().map(String::as_str));
    lab.ok(&args);
    assert_eq!(lab.ports().len(), 1000);
    let _server = lab.http_server("web", 8000);
    assert_eq!(lab.curl("wan", "http://198.51.100.2:20999/"), "200");
    assert_eq!(lab.curl("wan", "http://198.51.100.2:20000/"), "200");
}

fn conflicts_and_bad_specs_change_nothing(dp: &str) {
    let lab = web(dp);
    lab.ok(&["run", "other", "--network", "none"]);
    lab.ok(&["publish", "web", "8080:8000", "7000-7009:8000-8009"]);
    let _busy = lab.http_server("host", 6000);
    let before = (lab.status(), lab.ports());
    for (args, expect) in [
        (vec!["publish", "web", "8080:80"], "already published"),
        (
            vec!["publish", "web", "127.0.0.1:8080:80"],
            "already published",
        ),
        (vec!["publish", "web", "7005:80"], "already published"),
        (vec!["publish", "web", "6000:80"], "in use by a socket"),
        (vec!["publish", "web", "9000:80", "9000:81"], "overlap"),
        (vec!["publish", "web", "1.2.3.4:80:80"], "not an address"),
        (vec!["publish", "nosuch", "80:80"], "no container"),
        (vec!["publish", "other", "80:80"], "bridge network"),
        (vec!["unpublish", "web", "80"], "host port is required"),
        (vec!["publish", "web", "0-5:80"], "outside 1-65535"),
        (vec!["publish", "web", "65536:80"], "outside 1-65535"),
        (vec!["publish", "web", "80:80/sctp"], "unknown protocol"),
        (
            vec!["publish", "web", "8000-8001:80-82"],
            "different lengths",
        ),
        (vec!["publish", "web", "x:y"], "not a port"),
        (vec!["unpublish", "web", "9999:80"], "not published"),
        (vec!["publish", "web", "0:80-81"], "picks one port"),
        (
            vec!["publish", "web", "7000-7009:80"],
            "no free host port for 7000-7009:80/tcp: every port of 7000-7009 is published or in use",
        ),
        (
            vec!["publish", "web", "6000-6001:80", "6001:81"],
            "every port of 6000-6001 is published, in use, or taken by another spec of this command",
        ),
        (vec!["publish", "web", ":8080:80"], "already published"),
        (
            vec!["unpublish", "web", "8080:8000", "8080:8000"],
            "named twice",
        ),
        (vec!["publish", "web", "+9100:80"], "not a port"),
        (vec!["run", "late", "-p", "8080:80"], "already published"),
        (vec!["run", "late", "-p", "bogus"], "invalid port spec"),
    ] {
        let err = lab.fails(&args);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert_eq!(
        (lab.status(), lab.ports()),
        before,
        "a refused command changed the lab"
    );
    assert!(!lab.ns("late").exists(), "a refused run left its container");
}

/// 256 MiB each way through a published port (whose port differs from the
/// container's, so that ports are rewritten both ways), with the senders' checksums computed in
/// software and verified by the receivers, and a sha256 of the payload at both ends.
fn checksummed_transfers_both_ways(dp: &str) {
    let lab = web(dp);
    lab.ok(&["publish", "web", "5201:5301"]);
    checksums_in_software(&lab, "web", "eth0");
    checksums_in_software(&lab, "wan", "wan0");
    let t = Transfer {
        listener: "web",
        listen_addr: "0.0.0.0",
        listen_port: 5301,
        client: "wan",
        connect_addr: "198.51.100.2",
        connect_port: 5201,
    };
    let (_, got) = t.intact(&lab, 256 << 20, true);
    assert_eq!(
        got.peer,
        WAN_ADDR.to_string(),
        "the container saw {}",
        got.peer
    );
    t.intact(&lab, 256 << 20, false);
    for ns in ["wan", "web"] {
        assert_eq!(lab.snmp(ns, "Tcp", "InCsumErrors"), 0, "in {ns}");
    }
}

/// The eBPF port table holds 65,536 single ports and 32 ranges: a batch that would
/// overflow it is refused whole, in one line with exit 2, before anything changes,
/// and the lab goes on (the port published before still answers, the next command
/// works).
#[test]
fn the_ebpf_port_table_refuses_what_it_cannot_hold() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "web"]);
    let _server = lab.http_server("web", 80);
    lab.ok(&["publish", "web", "8080:80"]);
    let mut specs: Vec<String> = (30_000..=65_535).map(|p| format!("{p}:80/udp")).collect();
    specs.extend((30_000..=60_000).map(|p| format!("{p}:80")));
    let mut args = vec!["publish", "web"];
    args.extend(specs.iter().map(String::as_str));
    let err = lab.fails(&args);
    assert!(
        err.contains("no room for 65537 more single ports") && err.contains("1 are published"),
        "{err}"
    );
    let ranges: Vec<String> = (0..33)
        .map(|i| format!("{0}-{1}:{0}-{1}", 40_000 + 10 * i, 40_001 + 10 * i))
        .collect();
    let mut args = vec!["publish", "web"];
    args.extend(ranges.iter().map(String::as_str));
    let err = lab.fails(&args);
    assert!(err.contains("no room for 33 more port ranges"), "{err}");
    // `run -p` refuses them before it makes the container: no namespace comes and goes.
    let mut args = vec!["run", "other"];
    for r in &ranges {
        args.extend(["-p", r.as_str()]);
    }
    let monitor = lab.spawn("host", &["ip", "monitor", "link"]);
    std::thread::sleep(Duration::from_millis(300));
    let err = lab.fails(&args);
    assert!(err.contains("no room for 33 more port ranges"), "{err}");
    std::thread::sleep(Duration::from_millis(300));
    let events = monitor.finish();
    assert!(events.trim().is_empty(), "a veth came and went: {events}");
    assert_eq!(lab.status()["containers"].as_array().unwrap().len(), 1);
    assert_eq!(lab.ports().len(), 1);
    assert_eq!(lab.curl("wan", "http://198.51.100.2:8080/"), "200");
    lab.ok(&["publish", "web", "8081:80"]);
    assert_eq!(lab.curl("wan", "http://198.51.100.2:8081/"), "200");
}

/// `rm` withdraws the container's ports: a container that takes its address afterwards
/// gets nothing through them, neither the next segment of a connection opened before
/// nor a new connection nor a host-local datagram (had the mappings or their flows
/// survived, each would reach it).
#[test]
fn run_with_publish_and_rm_withdraws() {
    let lab = Lab::sandbox(&[]);
    assert_eq!(
        lab.ok(&[
            "run",
            "web",
            "-p",
            "8080:8000",
            "-p",
            "127.0.0.1:5353:53/udp"
        ]),
        "web 172.18.0.2\n8080:8000/tcp -> 172.18.0.2:8000\n127.0.0.1:5353:53/udp -> 172.18.0.2:53\n"
    );
    assert_eq!(lab.ports().len(), 2);
    let listener = tcp_listen(&lab.ns("web"), "0.0.0.0:8000");
    let mut client = tcp_connect(&lab.ns("wan"), "198.51.100.2:8080");
    let (mut conn, _) = listener.accept().unwrap();
    client.write_all(b"one!").unwrap();
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).unwrap();
    let _pong = lab.udp_server("web", 53);
    assert_eq!(lab.udp_ask("host", "127.0.0.1:5353"), "pong");

    lab.ok(&["rm", "web"]);
    assert!(lab.ports().is_empty());
    assert_eq!(lab.ok(&["run", "web2"]).trim(), "web2 172.18.0.2");
    let server = lab.http_server("web2", 8000);
    let _pong2 = lab.udp_server("web2", 53);
    // The established connection's next segment, a new connection, a datagram.
    let _ = client.write_all(b"two!");
    assert_eq!(lab.curl("wan", "http://198.51.100.2:8080/"), "000");
    assert_eq!(lab.udp_ask("host", "127.0.0.1:5353"), "");
    assert_eq!(
        lab.snmp("web2", "Tcp", "InSegs"),
        0,
        "a TCP segment reached the new container through a withdrawn port"
    );
    assert_eq!(
        lab.snmp("web2", "Udp", "InDatagrams"),
        0,
        "a datagram reached the new container through a withdrawn port"
    );
    let log = server.finish();
    assert!(!log.contains("GET /"), "{log}");
    drop(conn);
}
