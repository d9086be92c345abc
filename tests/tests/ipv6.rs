//! Dual-stack labs (`up --ipv6`) on every datapath (ebpf, iptables, iptables-legacy,
//! nftables; nftables-flowtable in the guest suite, `tests/vm/e2e.sh`, where the kernel
//! has flowtables; the routed baseline without NAT): every container gets an IPv6
//! address beside its IPv4 one, is masqueraded behind the uplink's IPv6 address, and a
//! port published without a host address answers on both families — from wan, from
//! the lab host and hairpin — until it is withdrawn. `up --ipv6` asked for wrongly refuses with one line and makes nothing.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Ipv6Addr, SocketAddr, TcpListener},
    time::Duration,
};

use netlab_tests::{
    Background, FAR_ADDR6, FarHost, Lab, in_ns,
    sockets::{accept, tcp_connect, tcp_listen, udp},
    wait_for,
};

netlab_tests::per_datapath!(
    [
        dual_stack_masquerade_and_publishing,
        icmpv6_errors_and_udp_through_the_nat,
        large_datagrams_are_fragmented_and_translated,
        outside_a_sandbox_with_forwarding_as_it_was,
        a_given_ipv6_address,
        forwarding_turned_off_forwards_nothing,
        another_host_address_answers_hairpin,
        routes_and_rules_against_a_container_hold_on_every_path,
        an_address_on_lo_is_the_hosts_too,
        the_masquerade_follows_the_uplinks_address,
        an_unresolved_neighbour_is_unreachable,
        a_second_address_keeps_the_flows_behind_the_first,
        a_flow_a_route_moves_leaves_behind_the_new_interfaces_address,
        a_route_mtu_into_the_lab_holds,
        a_connection_idle_past_its_timeout_is_reset,
    ];
    ebpf = "ebpf",
    ebpf_slow = "ebpf-slow",
    iptables = "iptables",
    iptables_legacy = "iptables-legacy",
    nftables = "nftables",
);

const UPLINK6: &str = "2001:db8:100::2";
/// wan's address on the link to the lab host.
const WAN6: &str = "2001:db8:100::1";
const INTERNET6: &str = "2001:db8:113::1";

/// A masqueraded connection idle past `--tcp-timeout` meets a reset at its next segment,
/// as over IPv4 (`conntrack::*::a_connection_idle_past_its_timeout_is_reset`).
fn a_connection_idle_past_its_timeout_is_reset(dp: &str) {
    let lab = Lab::sandbox(
        &[
            netlab_tests::datapath_args(dp),
            vec!["--ipv6", "--tcp-timeout", "1"],
        ]
        .concat(),
    );
    lab.ok(&["run", "c"]);
    netlab_tests::an_idle_connection_is_reset(&lab, dp, &format!("[{INTERNET6}]:7000"), true);
}

/// The uplink's IPv6 address changing under a running lab, as IPv4's
/// (`masquerade::*::the_masquerade_follows_the_uplinks_address`).
fn the_masquerade_follows_the_uplinks_address(dp: &str) {
    let lab = Lab::sandbox(&[netlab_tests::datapath_args(dp), vec!["--ipv6"]].concat());
    netlab_tests::uplink_moves::masquerade_follows(&lab, dp, &netlab_tests::uplink_moves::IPV6);
}

/// A second address on the uplink leaves the flows behind the first alone.
fn a_second_address_keeps_the_flows_behind_the_first(dp: &str) {
    let lab = Lab::sandbox(&[netlab_tests::datapath_args(dp), vec!["--ipv6"]].concat());
    netlab_tests::uplink_moves::a_second_address_keeps_the_flows_behind_the_first(
        &lab,
        &netlab_tests::uplink_moves::IPV6,
    );
}

/// As IPv4's (`masquerade::*::a_flow_a_route_moves_leaves_behind_the_new_interfaces_address`).
fn a_flow_a_route_moves_leaves_behind_the_new_interfaces_address(dp: &str) {
    let lab = Lab::sandbox(&[netlab_tests::datapath_args(dp), vec!["--ipv6"]].concat());
    netlab_tests::uplink_moves::a_flow_a_route_moves(&lab, dp, &netlab_tests::uplink_moves::IPV6);
}

/// A route of the lab host's to a container with an MTU of its own (not locked), below
/// the bridge's: a datagram from wan to a published port too big for it is answered
/// with Packet Too Big, as forwarding does, and wan learns the MTU. Before, the eBPF
/// fast path took it into the container at 1,448 bytes (`bpf_fib_lookup` does not
/// answer an unlocked route MTU; the datapath now reads the routes' MTUs at its next
/// sync, here `run`). Found by a review.
fn a_route_mtu_into_the_lab_holds(dp: &str) {
    let lab = Lab::sandbox(&[netlab_tests::datapath_args(dp), vec!["--ipv6"]].concat());
    lab.ok(&["run", "web", "-p", "5353:53/udp"]);
    let bridge = lab.state().bridge;
    lab.exec_ok(
        "host",
        &[
            "ip",
            "-6",
            "route",
            "add",
            "fd00:ac12::2/128",
            "dev",
            &bridge,
            "mtu",
            "1280",
        ],
    );
    lab.ok(&["run", "other"]);
    let inside = netlab_tests::sockets::udp(&lab.ns("web"), "[::]:53");
    inside
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let outside = netlab_tests::sockets::udp(&lab.ns("wan"), "[::]:0");
    let to: SocketAddr = format!("[{UPLINK6}]:5353").parse().unwrap();
    let learnt = || {
        lab.exec_ok("wan", &["ip", "-6", "route", "get", UPLINK6])
            .contains("mtu 1280")
    };
    let mut got = None;
    for _ in 0..3 {
        let _ = outside.send_to(&[0x42; 1400], to);
        if let Ok((n, _)) = inside.recv_from(&mut [0u8; 2048]) {
            got = Some(n);
        }
        if wait_for(Duration::from_secs(1), learnt) {
            break;
        }
    }
    assert!(
        learnt(),
        "{dp}: wan did not learn the route's MTU (the container got {got:?} bytes): {}",
        lab.exec_ok("wan", &["ip", "-6", "route", "get", UPLINK6])
    );
}

/// As IPv4's (`masquerade::*::an_unresolved_neighbour_is_unreachable`).
fn an_unresolved_neighbour_is_unreachable(dp: &str) {
    let lab = Lab::sandbox(&[netlab_tests::datapath_args(dp), vec!["--ipv6"]].concat());
    netlab_tests::uplink_moves::an_unresolved_neighbour_is_unreachable(&lab, "2001:db8:100::77");
}

/// IPv6 forwarding turned off in the lab host after `up`
/// (`net.ipv6.conf.all.forwarding=0`) stops what the host forwards, as IPv4's does
/// (`strict`'s test of the same name), but for the hairpin on the classic datapaths,
/// which br_netfilter bridges without a forwarding check (eBPF refuses it: stricter).
fn forwarding_turned_off_forwards_nothing(dp: &str) {
    let lab = Lab::sandbox(&[netlab_tests::datapath_args(dp), vec!["--ipv6"]].concat());
    lab.ok(&["run", "web", "-p", "5300:53/udp"]);
    lab.ok(&["run", "client"]);
    let bridged = !netlab_tests::is_ebpf(dp);
    netlab_tests::forwarding::stops_what_is_forwarded(
        &lab,
        dp,
        &netlab_tests::forwarding::IPV6,
        bridged,
    );
}

/// A blackhole route to a container's IPv6 address, or a rule prohibiting what comes
/// in by the uplink, holds as IPv4's do (`strict`'s test of the same name).
fn routes_and_rules_against_a_container_hold_on_every_path(dp: &str) {
    let lab = Lab::sandbox(&[netlab_tests::datapath_args(dp), vec!["--ipv6"]].concat());
    lab.ok(&["run", "web", "-p", "5300:53/udp"]);
    let state = lab.state();
    let ctr = state
        .container_ip6(state.container("web").unwrap())
        .unwrap();
    netlab_tests::forwarding::routes_and_rules_hold(
        &lab,
        dp,
        &netlab_tests::forwarding::IPV6,
        &ctr.to_string(),
    );
}

/// A port published without an address answers a container on every IPv6 address of
/// the lab host's uplink, not only the first (the one `CONFIG` names): here one added
/// after `up`, which `run` picks up. On eBPF's fast path such a destination is left to
/// the route lookup (local), and the bridge turns the hairpin around.
fn another_host_address_answers_hairpin(dp: &str) {
    let lab = Lab::sandbox(&[netlab_tests::datapath_args(dp), vec!["--ipv6"]].concat());
    lab.exec_ok(
        "host",
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:100::3/64",
            "dev",
            "eth0",
            "nodad",
        ],
    );
    lab.ok(&["run", "web", "-p", "8080:80"]);
    let _server = dual_stack_server(&lab, "web", 80);
    lab.ok(&["run", "cli"]);
    for url in [
        "http://[2001:db8:100::3]:8080/",
        "http://[2001:db8:100::2]:8080/",
    ] {
        let code = lab.exec_ok("cli", &netlab_tests::curl_status(url));
        assert_eq!(code, "200", "{url} from a container");
    }
}

/// An IPv6 address on the lab host's `lo` is the host's, as IPv4's
/// (`publish`'s test of the same name): a port published on it, or on every address,
/// answers there from wan and from the host.
fn an_address_on_lo_is_the_hosts_too(dp: &str) {
    let lab = Lab::sandbox(&[netlab_tests::datapath_args(dp), vec!["--ipv6"]].concat());
    lab.ok(&["run", "web"]);
    lab.exec_ok(
        "host",
        &["ip", "-6", "addr", "add", "2001:db8:99::1/128", "dev", "lo"],
    );
    lab.exec_ok(
        "wan",
        &[
            "ip",
            "-6",
            "route",
            "add",
            "2001:db8:99::1/128",
            "via",
            UPLINK6,
        ],
    );
    lab.ok(&["publish", "web", "[2001:db8:99::1]:7500:8000", "7504:8000"]);
    let _server = dual_stack_server(&lab, "web", 8000);
    for from in ["wan", "host"] {
        for port in [7500, 7504] {
            let url = format!("http://[2001:db8:99::1]:{port}/");
            assert_eq!(lab.curl(from, &url), "200", "{url} from {from}");
        }
    }
}

/// `python3 -m http.server` on `[::]:port` (both families) in a container, once it
/// listens.
fn dual_stack_server(lab: &Lab, name: &str, port: u16) -> Background {
    let server = lab.spawn(
        name,
        &[
            "python3",
            "-m",
            "http.server",
            "-b",
            "::",
            &port.to_string(),
        ],
    );
    let listening = wait_for(Duration::from_secs(10), || {
        lab.exec_ok(name, &["ss", "-Htln"])
            .contains(&format!(":{port} "))
    });
    assert!(listening, "http server in {name} never listened on {port}");
    server
}

/// A TCP listener of `family` (with `setup` applied to socket `s`) on `addr`:`port` in
/// the lab host, once it listens.
fn host_listener(lab: &Lab, family: &str, setup: &str, addr: &str, port: u16) -> Background {
    let script = format!(
        "import socket, time\ns = socket.socket({family})\n{setup}\ns.bind(('{addr}', {port}))\ns.listen()\ntime.sleep(60)\n"
    );
    let listener = lab.spawn("host", &["python3", "-c", &script]);
    assert!(wait_for(Duration::from_secs(10), || lab
        .exec_ok("host", &["ss", "-Htln"])
        .contains(&format!(":{port} "))));
    listener
}

fn dual_stack_masquerade_and_publishing(dp: &str) {
    let lab = Lab::sandbox(&[netlab_tests::datapath_args(dp), vec!["--ipv6"]].concat());
    assert_eq!(
        lab.ok(&["run", "web"]).trim(),
        "web 172.18.0.2 fd00:ac12::2"
    );
    assert_eq!(
        lab.ok(&["run", "cli"]).trim(),
        "cli 172.18.0.3 fd00:ac12::3"
    );
    // A container takes no router advertisement (another's would route it).
    let ra = lab.exec_ok("cli", &["sysctl", "-n", "net.ipv6.conf.eth0.accept_ra"]);
    assert_eq!(ra.trim(), "0");
    let status = lab.status();
    assert_eq!(status["subnet6"], "fd00:ac12::/64");
    assert_eq!(status["containers"][0]["ip6"], "fd00:ac12::2");
    assert_eq!(status["uplink"]["address6"], UPLINK6);
    let text = lab.ok(&["status"]);
    for shown in [
        "fd00:ac12::1/64",
        "198.51.100.2 2001:db8:100::2",
        "fd00:ac12::3",
    ] {
        assert!(text.contains(shown), "{shown} not in:\n{text}");
    }

    // Masquerade: ICMPv6 echo and TCP to the "internet" leave as the uplink's address.
    lab.exec_ok("cli", &["ping", "-6", "-c", "1", "-W", "3", INTERNET6]);
    let wan = lab.ns("wan");
    let listener = in_ns(&wan, || {
        TcpListener::bind((INTERNET6.parse::<Ipv6Addr>().unwrap(), 9000)).expect("bind in wan")
    });
    let client = lab.spawn(
        "cli",
        &[
            "python3",
            "-c",
            "import socket; s = socket.create_connection(('2001:db8:113::1', 9000), 5); s.sendall(b'hi'); s.close()",
        ],
    );
    let (mut conn, peer) = listener.accept().expect("accept from the container");
    let mut got = String::new();
    conn.read_to_string(&mut got).expect("read");
    assert_eq!(got, "hi");
    let SocketAddr::V6(peer) = peer else {
        panic!("{peer} is not IPv6")
    };
    assert_eq!(peer.ip().to_string(), UPLINK6, "not masqueraded");
    assert!(
        (20000..=29999).contains(&peer.port()),
        "source port {} outside --nat-ports",
        peer.port()
    );
    drop(client);
    if netlab_tests::is_ebpf(dp) {
        // IPv6 leaves by the fast path as IPv4 does, and comes back by it into the
        // container (none of either with --no-fast-path). Nothing but IPv6 went yet.
        let out = lab.stat("counters", "fast_to_uplink");
        let back = lab.stat("counters", "fast_to_container");
        assert_eq!(
            (out > 0, back > 0),
            (dp == "ebpf", dp == "ebpf"),
            "{dp}: {out} IPv6 packets out and {back} in by the fast path"
        );
    }
    if netlab_tests::is_ebpf(dp) {
        // eBPF's own conntrack lists the IPv6 flows, and status its IPv6 tables.
        let flows = lab.conntrack();
        let port = peer.port();
        assert!(
            flows.iter().any(|f| f["original"]["dst"] == INTERNET6
                && f["translated"]["src"] == UPLINK6
                && f["translated"]["sport"] == port),
            "{flows:?}"
        );
        let text = lab.ok(&["conntrack"]);
        assert!(text.contains(&format!("[{UPLINK6}]:{port}")), "{text}");
        assert!(text.contains("icmpv6"), "{text}");
        let status = lab.status();
        let tables: Vec<&str> = status["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert!(
            tables.contains(&"CT6") && tables.contains(&"CT6_PENDING"),
            "{tables:?}"
        );
    }

    // Publishing without a host address answers on both families, from every side.
    let _server = dual_stack_server(&lab, "web", 80);
    lab.ok(&["publish", "web", "8080:80"]);
    for from in ["wan", "host", "cli"] {
        for url in [
            format!("http://[{UPLINK6}]:8080/"),
            "http://198.51.100.2:8080/".to_string(),
        ] {
            assert_eq!(lab.curl(from, &url), "200", "{url} from {from}");
        }
    }
    // The bridge's IPv6 address is the host's too.
    assert_eq!(lab.curl("host", "http://[fd00:ac12::1]:8080/"), "200");
    // An unconnected UDP socket of the lab host sends to a port on its IPv6 address,
    // and sees the answer come from there.
    lab.ok(&["publish", "web", "5353:53/udp"]);
    let _pong = lab.spawn(
        "web",
        &[
            "python3",
            "-c",
            "import socket\ns = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
             s.bind(('::', 53))\nwhile True:\n    d, a = s.recvfrom(64)\n    s.sendto(b'pong', a)\n",
        ],
    );
    assert!(netlab_tests::wait_for(Duration::from_secs(10), || lab
        .exec_ok("web", &["ss", "-Huln"])
        .contains(":53 ")));
    let asked = lab.exec_ok(
        "host",
        &[
            "python3",
            "-c",
            &format!(
                "import socket\ns = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
                 s.settimeout(5)\ns.sendto(b'ping', ('{UPLINK6}', 5353))\n\
                 d, a = s.recvfrom(64)\nprint(d.decode(), a[0], a[1])\n"
            ),
        ],
    );
    assert_eq!(asked.trim(), format!("pong {UPLINK6} 5353"), "{dp}");
    // ::1 is never routed off the host (Docker without its userland proxy is the same):
    // refused at once, not translated into a black hole.
    let out = lab.exec("host", &netlab_tests::curl_status("http://[::1]:8080/"));
    assert_eq!(out.status.code(), Some(7), "curl [::1]:8080: {out:?}");

    // A port on one IPv4 address stays off IPv6.
    let _other = dual_stack_server(&lab, "cli", 90);
    lab.ok(&["publish", "cli", "198.51.100.2:9090:90"]);
    assert_eq!(lab.curl("wan", "http://198.51.100.2:9090/"), "200");
    assert_eq!(lab.curl("wan", &format!("http://[{UPLINK6}]:9090/")), "000");

    // A port on one IPv6 address, or on `[::]`, stays off IPv4 (Docker's syntax); and
    // one host port may lead to two containers on two addresses of different families.
    lab.ok(&["publish", "web", &format!("[{UPLINK6}]:7070:80")]);
    lab.ok(&[
        "publish",
        "cli",
        "198.51.100.2:7070:90",
        "[::]:7171:90",
        "0.0.0.0:7272:90",
    ]);
    for (url, status) in [
        (format!("http://[{UPLINK6}]:7070/"), "200"),
        ("http://198.51.100.2:7070/".to_string(), "200"),
        (format!("http://[{UPLINK6}]:7171/"), "200"),
        ("http://198.51.100.2:7171/".to_string(), "000"),
        (format!("http://[{UPLINK6}]:7272/"), "000"),
        ("http://198.51.100.2:7272/".to_string(), "200"),
    ] {
        assert_eq!(lab.curl("wan", &url), status, "{url}");
    }
    // A lab-host socket on [::] that takes IPv6 only (IPV6_V6ONLY) holds its port for
    // IPv6, not for IPv4.
    let _v6only = host_listener(
        &lab,
        "socket.AF_INET6",
        "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)",
        "::",
        7103,
    );
    let err = lab.fails(&["publish", "web", "7103:80"]);
    assert!(err.contains("in use by a socket"), "{err}");
    lab.ok(&["publish", "web", "0.0.0.0:7103:80"]);
    assert_eq!(lab.curl("wan", "http://198.51.100.2:7103/"), "200");
    // And one on 0.0.0.0 holds it for IPv4, not for IPv6.
    let _v4only = host_listener(&lab, "socket.AF_INET", "", "0.0.0.0", 7104);
    let err = lab.fails(&["publish", "web", "7104:80"]);
    assert!(
        err.contains("in use by a socket in the lab host (0.0.0.0:7104)"),
        "{err}"
    );
    lab.ok(&["publish", "web", "[::]:7104:80"]);
    assert_eq!(lab.curl("wan", &format!("http://[{UPLINK6}]:7104/")), "200");

    // The bridge's IPv6 address is not the uplink's: a port on the uplink's is not there.
    assert_eq!(lab.curl("host", "http://[fd00:ac12::1]:7070/"), "000");
    let err = lab.fails(&["publish", "web", "[::]:8080:80"]);
    assert!(err.contains("already published"), "{err}");
    let ports = lab.ports();
    let families = |spec: &str| {
        ports
            .iter()
            .find(|p| p["spec"] == spec)
            .map(|p| p["families"].clone())
            .unwrap_or_else(|| panic!("no {spec} in {ports:?}"))
    };
    assert_eq!(families("8080:80/tcp"), serde_json::json!(["ipv4", "ipv6"]));
    assert_eq!(families("[::]:7171:90/tcp"), serde_json::json!(["ipv6"]));
    assert_eq!(families("0.0.0.0:7272:90/tcp"), serde_json::json!(["ipv4"]));
    assert_eq!(
        families("198.51.100.2:7070:90/tcp"),
        serde_json::json!(["ipv4"])
    );
    lab.ok(&["unpublish", "web", &format!("[{UPLINK6}]:7070:80")]);
    assert_eq!(lab.curl("wan", &format!("http://[{UPLINK6}]:7070/")), "000");
    assert_eq!(lab.curl("wan", "http://198.51.100.2:7070/"), "200");

    // Direct access to a container's IPv6 address from outside is dropped, as IPv4's.
    lab.exec_ok(
        "wan",
        &["ip", "-6", "route", "add", "fd00:ac12::/64", "via", UPLINK6],
    );
    assert_eq!(lab.curl("wan", "http://[fd00:ac12::2]:80/"), "000");
    // The bridge's address is the host's: a port on every address answers there.
    assert_eq!(lab.curl("wan", "http://[fd00:ac12::1]:8080/"), "200");

    // Withdrawn, the port answers on neither family.
    lab.ok(&["unpublish", "web", "8080:80"]);
    assert_eq!(lab.curl("wan", &format!("http://[{UPLINK6}]:8080/")), "000");
    assert_eq!(lab.curl("wan", "http://198.51.100.2:8080/"), "000");

    // A port of one family comes and goes on a host port another family's port has:
    // the other's established connection carries on (its conntrack entry stays).
    let listener = tcp_listen(&lab.ns("cli"), "[::]:85");
    lab.ok(&["publish", "cli", "[::]:8085:85"]);
    let mut client = tcp_connect(&lab.ns("wan"), &format!("[{UPLINK6}]:8085"));
    let mut conn = accept(&listener);
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 3];
    client.write_all(b"one").unwrap();
    conn.read_exact(&mut buf).expect("the first bytes");
    lab.ok(&["publish", "cli", "0.0.0.0:8085:85"]);
    lab.ok(&["unpublish", "cli", "0.0.0.0:8085:85"]);
    conn.write_all(b"two").unwrap();
    client
        .read_exact(&mut buf)
        .expect("the IPv6 connection carries on");
    assert_eq!(&buf, b"two");

    // A container made again at an address another one had is reached over IPv6 at
    // once (its new MAC announced, the lab host's entry replaced), as over IPv4.
    drop(_server);
    lab.ok(&["rm", "web"]);
    assert_eq!(
        lab.ok(&["run", "web"]).trim(),
        "web 172.18.0.2 fd00:ac12::2"
    );
    let _server = dual_stack_server(&lab, "web", 80);
    lab.ok(&["publish", "web", "8080:80"]);
    assert_eq!(lab.curl("wan", &format!("http://[{UPLINK6}]:8080/")), "200");
}

/// `run --ip6 ADDR`, as Docker's: the container has that address, is masqueraded from
/// it and its published ports lead to it; the IPv4 host number it spells is given to no
/// other container (whose IPv6 address would be the same), and an address that is not
/// the lab's to give, or taken, is refused with one line and nothing made.
fn a_given_ipv6_address(dp: &str) {
    let lab = Lab::sandbox(&[netlab_tests::datapath_args(dp), vec!["--ipv6"]].concat());
    assert_eq!(
        lab.ok(&["run", "web", "--ip6", "fd00:ac12::3"]).trim(),
        "web 172.18.0.2 fd00:ac12::3"
    );
    // 172.18.0.3 would be fd00:ac12::3 too: skipped.
    assert_eq!(
        lab.ok(&["run", "cli"]).trim(),
        "cli 172.18.0.4 fd00:ac12::4"
    );
    let addrs = lab.exec_ok("web", &["ip", "-6", "-o", "addr", "show", "eth0"]);
    assert!(addrs.contains("fd00:ac12::3/64"), "{addrs}");
    assert_eq!(lab.status()["containers"][0]["ip6"], "fd00:ac12::3");
    for (args, says) in [
        (
            vec!["--ip6", "fd00:ac12::3"],
            "already used by container web",
        ),
        (
            vec!["--ip", "172.18.0.3"],
            "IPv6 address fd00:ac12::3, which container web has",
        ),
        (vec!["--ip6", "fd00:ac12::1"], "the bridge's own address"),
        (vec!["--ip6", "fd00:ac12::"], "anycast"),
        (
            vec!["--ip6", "fd00:beef::5"],
            "outside the lab's IPv6 subnet",
        ),
        (
            vec!["--ip6", "fd00:ac12::9", "--network", "host"],
            "needs --network bridge",
        ),
    ] {
        let mut run = vec!["run", "x"];
        run.extend(args.iter().copied());
        let err = lab.fails(&run);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(lab.state().container("x").is_none(), "{args:?} left x");
    }
    // An --ip whose host number a given --ip6 holds is fine with an --ip6 of its own.
    assert_eq!(
        lab.ok(&["run", "f", "--ip", "172.18.0.3", "--ip6", "fd00:ac12::99"])
            .trim(),
        "f 172.18.0.3 fd00:ac12::99"
    );
    lab.ok(&["rm", "f"]);
    // So is a pick, when an --ip6 of its own is given (before, it skipped 172.18.0.3).
    assert_eq!(
        lab.ok(&["run", "g", "--ip6", "fd00:ac12::98"]).trim(),
        "g 172.18.0.3 fd00:ac12::98"
    );
    lab.ok(&["rm", "g"]);
    let err = lab.fails(&["run", "x", "--ip6", "not-an-address"]);
    assert!(err.contains("invalid"), "{err}");
    // Masqueraded from the given address, and reached by its published port.
    lab.exec_ok("web", &["ping", "-6", "-c", "1", "-W", "3", INTERNET6]);
    let _server = dual_stack_server(&lab, "web", 80);
    lab.ok(&["publish", "web", "8080:80"]);
    for from in ["wan", "host", "cli"] {
        let url = format!("http://[{UPLINK6}]:8080/");
        assert_eq!(lab.curl(from, &url), "200", "{url} from {from}");
    }
    // A port on an IPv6 address only leads to no IPv4 address.
    lab.ok(&["publish", "web", &format!("[{UPLINK6}]:8081:80")]);
    let ports = lab.ports();
    assert_eq!(ports[0]["ctr_ip"], "172.18.0.2", "{ports:?}");
    assert_eq!(ports[0]["ctr_ip6"], "fd00:ac12::3", "{ports:?}");
    assert!(ports[1]["ctr_ip"].is_null(), "{ports:?}");
    assert_eq!(ports[1]["ctr_ip6"], "fd00:ac12::3", "{ports:?}");
    lab.ok(&["unpublish", "web", &format!("[{UPLINK6}]:8081:80")]);
    lab.ok(&["unpublish", "web", "8080:80"]);
    assert_eq!(lab.curl("wan", &format!("http://[{UPLINK6}]:8080/")), "000");
    // Once web is gone its address, and the host number it spelled, are free again.
    drop(_server);
    lab.ok(&["rm", "web"]);
    assert_eq!(
        lab.ok(&["run", "again", "--ip", "172.18.0.3"]).trim(),
        "again 172.18.0.3 fd00:ac12::3"
    );
}

/// The routed baseline (`--datapath routed`, no NAT) routes a dual-stack lab's IPv6
/// subnet as it does the IPv4 one: wan reaches a container at its own IPv6 address, and
/// the container's connections leave with that address as their source.
/// A lab whose free IPv4 addresses all have IPv6 twins (the same host number) that
/// containers were given with --ip6 says so, and what to do, rather than "no free
/// address left"; a full lab says what to do too, and a bad --ip6 there is said as
/// itself (a review found all three said as a full lab).
#[test]
fn a_pick_the_given_ipv6_addresses_block_says_so() {
    let lab = Lab::sandbox(&[
        "--ipv6",
        "--subnet",
        "10.94.0.0/29",
        "--subnet6",
        "fd00:94::/120",
    ]);
    lab.ok(&["run", "a", "--ip6", "fd00:94::6"]);
    for c in ["b", "c", "d"] {
        lab.ok(&["run", c]);
    }
    let err = lab.fails(&["run", "e"]);
    assert!(
        err.contains("(10.94.0.6, ...) is a container's, given by --ip6: give --ip6"),
        "{err}"
    );
    assert_eq!(
        lab.ok(&["run", "e", "--ip6", "fd00:94::7"]).trim(),
        "e 10.94.0.6 fd00:94::7"
    );
    let err = lab.fails(&["run", "f"]);
    assert!(
        err.contains("rm a container, or bring the lab up with a larger --subnet"),
        "{err}"
    );
    let err = lab.fails(&["run", "f", "--ip6", "fd00:95::5"]);
    assert!(err.contains("outside the lab's IPv6 subnet"), "{err}");
}

#[test]
fn routed_baseline_routes_ipv6_without_nat() {
    let lab = Lab::sandbox(&["--datapath", "routed", "--ipv6"]);
    assert_eq!(lab.ok(&["run", "a"]).trim(), "a 172.18.0.2 fd00:ac12::2");
    let wan = lab.ns("wan");
    let out = tcp_listen(&wan, &format!("[{INTERNET6}]:9000"));
    let _client = tcp_connect(&lab.ns("a"), &format!("[{INTERNET6}]:9000"));
    let peer = accept(&out).peer_addr().unwrap();
    assert_eq!(
        peer.ip().to_string(),
        "fd00:ac12::2",
        "routed traffic was NATed"
    );
    let into = tcp_listen(&lab.ns("a"), "[::]:8000");
    let _from_wan = tcp_connect(&wan, "[fd00:ac12::2]:8000");
    let peer = accept(&into).peer_addr().unwrap();
    assert_eq!(peer.ip().to_string(), WAN6, "wan reaches a directly");
}

/// `up --ipv6` asked for wrongly: one line, exit 2, and nothing made.
#[test]
fn ipv6_asked_for_wrongly_is_refused() {
    netlab_tests::require_root();
    for (args, says) in [
        (
            &["--datapath", "iptables", "--subnet6", "fd00:1::/64"][..],
            "--subnet6 needs --ipv6",
        ),
        (
            &[
                "--datapath",
                "iptables",
                "--ipv6",
                "--subnet6",
                "fd00:1::1/64",
            ],
            "host bits set",
        ),
        (
            &["--datapath", "iptables", "--ipv6", "--subnet6", "fe80::/64"],
            "not a unicast range",
        ),
        (
            &[
                "--datapath",
                "iptables",
                "--ipv6",
                "--subnet6",
                "fd00:1::/120",
            ],
            "fewer host bits",
        ),
        (
            &[
                "--datapath",
                "iptables",
                "--ipv6",
                "--subnet6",
                "2001:db8:100::/64",
            ],
            "overlaps the sandbox's uplink network",
        ),
    ] {
        let lab = netlab_tests::unique_lab();
        let mut all = vec!["--lab", &lab, "up", "--sandbox"];
        all.extend_from_slice(args);
        let out = netlab_tests::netlab(&all);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(says), "{args:?}: {err}");
        for ns in ["host", "wan"] {
            assert!(!netlab_tests::netns::exists(&format!("{lab}-{ns}")));
        }
        assert!(!std::path::Path::new("/run/netlab").join(&lab).exists());
    }
    // [::1] cannot lead to a container (the kernel never routes it off the host), and a
    // lab without IPv6 takes no IPv6 host address.
    let lab = Lab::sandbox(&["--datapath", "iptables", "--ipv6"]);
    lab.ok(&["run", "web"]);
    let err = lab.fails(&["publish", "web", "[::1]:8080:80"]);
    assert!(err.contains("never routed off the host"), "{err}");
    // Nor a link-local address, even the host's own (never forwarded).
    let err = lab.fails(&["publish", "web", "[fe80::1]:8080:80"]);
    assert!(err.contains("is link-local"), "{err}");
    let err = lab.fails(&["publish", "web", "[2001:db8:100::9]:8080:80"]);
    assert!(err.contains("is not an address of lab"), "{err}");
    let v4 = Lab::sandbox(&["--datapath", "iptables"]);
    v4.ok(&["run", "web"]);
    let err = v4.fails(&["publish", "web", "[2001:db8:100::2]:8080:80"]);
    assert!(err.contains("has no IPv6"), "{err}");
    let err = v4.fails(&["run", "x", "--ip6", "fd00:ac12::9"]);
    assert!(err.contains("--ip6 needs a lab with IPv6"), "{err}");
    assert!(v4.state().container("x").is_none());
}

/// What the kernel's NAT66 does with the rest of IPv6: UDP masqueraded, ICMPv6 errors
/// about a masqueraded flow translated back to the container (port unreachable, time
/// exceeded for traceroute6, packet too big for path MTU discovery: IPv6 routers never
/// fragment, so a transfer through a smaller link completes only if it is).
fn icmpv6_errors_and_udp_through_the_nat(dp: &str) {
    let lab = Lab::sandbox(
        &[
            netlab_tests::datapath_args(dp),
            vec!["--ipv6", "--icmp-timeout", "7"],
        ]
        .concat(),
    );
    lab.ok(&["run", "a"]);
    // `--icmp-timeout` is the kernel's for ICMPv6 echo too (eBPF's own for both).
    if netlab_tests::is_ebpf(dp) {
        assert_eq!(lab.status()["nat"]["icmp_secs"], 7);
    } else {
        for key in ["icmp", "icmpv6"] {
            let path = format!("net.netfilter.nf_conntrack_{key}_timeout");
            assert_eq!(
                lab.exec_ok("host", &["sysctl", "-n", &path]).trim(),
                "7",
                "{key}"
            );
        }
    }

    let server = udp(&lab.ns("wan"), &format!("[{INTERNET6}]:7000"));
    let client = udp(&lab.ns("a"), "[::]:0");
    client
        .send_to(b"hello", format!("[{INTERNET6}]:7000"))
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = server.recv_from(&mut buf).expect("wan receives");
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(from.ip().to_string(), UPLINK6, "wan saw {from}");
    server.send_to(b"back", from).unwrap();
    let (n, _) = client.recv_from(&mut buf).expect("the reply comes back");
    assert_eq!(&buf[..n], b"back");

    // Port unreachable, back to the container's connected socket.
    let client = udp(&lab.ns("a"), "[::]:0");
    client.connect(format!("[{INTERNET6}]:9")).unwrap();
    let refused = (0..5).any(|_| {
        let _ = client.send(b"anyone?");
        matches!(client.recv(&mut [0u8; 8]), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
    });
    assert!(refused, "the container never saw ECONNREFUSED");

    // traceroute6: the lab host, wan as a router beyond the uplink, the far host.
    let far = FarHost::new(&lab, 1280);
    let (hops, out) = netlab_tests::traceroute_hops(&lab, "a", &FAR_ADDR6.to_string());
    assert_eq!(
        hops,
        [
            "fd00:ac12::1",
            "2001:db8:100::1",
            FAR_ADDR6.to_string().as_str()
        ],
        "{out}"
    );

    // Path MTU: wan's link to the far host carries 1280 bytes; the container's
    // full-size segments come back as packet too big, translated, and shrink.
    let listener = tcp_listen(&far.ns(), &format!("[{FAR_ADDR6}]:7100"));
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        got.len()
    });
    let payload = vec![0x5au8; 1 << 20];
    let mut client = tcp_connect(&lab.ns("a"), &format!("[{FAR_ADDR6}]:7100"));
    client.write_all(&payload).expect("send");
    drop(client);
    assert_eq!(receiver.join().unwrap(), payload.len());
    let learnt = lab.exec_ok("a", &["ip", "-6", "route", "get", &FAR_ADDR6.to_string()]);
    assert!(learnt.contains("mtu 1280"), "{learnt}");
}

/// UDP datagrams of 4,000 bytes over IPv6, larger than the MTU (1,500): the sender's
/// stack fragments each (IPv6 routers never do), the NAT translates every fragment, and
/// each arrives whole — a container's to wan from the uplink's address and wan's answer
/// back, a client's on wan to a published port (its address kept) and the container's
/// answer from the published address.
fn large_datagrams_are_fragmented_and_translated(dp: &str) {
    let lab = Lab::sandbox(&[netlab_tests::datapath_args(dp), vec!["--ipv6"]].concat());
    lab.ok(&["run", "a"]);
    let big: Vec<u8> = (0..4000u32).map(|i| (i * 7) as u8).collect();
    let mut buf = vec![0u8; 8192];
    let whole = |got: &[u8], what: &str| {
        assert!(got == big, "{what} arrived changed ({} bytes)", got.len());
    };

    let server = udp(&lab.ns("wan"), &format!("[{INTERNET6}]:7003"));
    let client = udp(&lab.ns("a"), "[::]:0");
    client.send_to(&big, format!("[{INTERNET6}]:7003")).unwrap();
    let (n, from) = server
        .recv_from(&mut buf)
        .expect("the datagram never arrived");
    whole(&buf[..n], "the datagram");
    assert_eq!(from.ip().to_string(), UPLINK6, "not masqueraded");
    server.send_to(&big, from).unwrap();
    let (n, _) = client
        .recv_from(&mut buf)
        .expect("the answer never arrived");
    whole(&buf[..n], "the answer");

    lab.ok(&["publish", "a", "7004:7004/udp"]);
    let inside = udp(&lab.ns("a"), "[::]:7004");
    let outside = udp(&lab.ns("wan"), "[::]:0");
    outside.send_to(&big, format!("[{UPLINK6}]:7004")).unwrap();
    let (n, from) = inside
        .recv_from(&mut buf)
        .expect("the datagram to the published port never arrived");
    whole(&buf[..n], "the datagram to the published port");
    assert_eq!(from.ip().to_string(), WAN6, "the client's address not kept");
    inside.send_to(&big, from).unwrap();
    let (n, from) = outside
        .recv_from(&mut buf)
        .expect("the container's answer never arrived");
    whole(&buf[..n], "the container's answer");
    assert_eq!(from.to_string(), format!("[{UPLINK6}]:7004"));
    if netlab_tests::is_ebpf(dp) {
        // Two later fragments of each of the four datagrams, none dropped.
        assert!(lab.stat("counters", "fragments_translated") >= 8);
        assert_eq!(lab.stat("drops", "fragment"), 0);
    }
}

/// A runtime's world with IPv6 (the sandbox's two namespaces, made without a lab), in
/// which a lab comes up as it would on a machine: removed on drop.
struct World(String);

impl World {
    fn new() -> World {
        netlab_tests::require_root();
        let w = World(netlab_tests::unique_lab());
        netlab::topology::build_sandbox(&w.0, true).expect("the world's namespaces");
        w
    }

    fn host(&self) -> std::path::PathBuf {
        netlab_tests::netns::path(&format!("{}-host", self.0))
    }

    /// `netlab --lab LAB ARGS` run inside the world's host namespace.
    fn netlab(&self, lab: &str, args: &[&str]) -> std::process::Output {
        let bin = netlab_tests::netlab_bin();
        let mut cmd = vec![bin.to_str().unwrap(), "--lab", lab];
        cmd.extend_from_slice(args);
        netlab_tests::run_in_ns(&self.host(), &cmd)
    }

    fn sysctl(&self, path: &str) -> String {
        netlab_tests::run_in_ns_ok(&self.host(), &["cat", path])
            .trim()
            .to_string()
    }

    fn set_sysctl(&self, path: &str, value: &str) {
        netlab_tests::run_in_ns_ok(
            &self.host(),
            &["sh", "-c", &format!("echo {value} > {path}")],
        );
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for ns in ["host", "wan"] {
            let _ = netlab_tests::netns::delete(&format!("{}-{ns}", self.0));
        }
    }
}

const FORWARDING6: &str = "/proc/sys/net/ipv6/conf/all/forwarding";
const BRIDGE_NF6: &str = "/proc/sys/net/bridge/bridge-nf-call-ip6tables";

/// Outside a sandbox netlab takes IPv6 forwarding as the namespace has it: off, `up
/// --ipv6` is refused in one line and makes nothing (turning it on would stop the
/// namespace's interfaces from taking router advertisements); on, the lab works, and
/// `down` leaves the namespace's IPv6 settings and rules as they were.
fn outside_a_sandbox_with_forwarding_as_it_was(dp: &str) {
    let world = World::new();
    let name = netlab_tests::unique_lab();
    let up = [
        vec!["up"],
        netlab_tests::datapath_args(dp),
        vec!["--uplink", "eth0", "--ipv6"],
    ]
    .concat();
    let rules = || match dp {
        "nftables" => netlab_tests::run_in_ns_ok(&world.host(), &["nft", "list", "ruleset"]),
        "iptables" => netlab_tests::run_in_ns_ok(&world.host(), &["ip6tables-nft-save"]),
        _ => netlab_tests::run_in_ns_ok(&world.host(), &["ip6tables-legacy-save"]),
    };
    // The rules and chains (an iptables-save shows the built-in chains of every table
    // it has ever listed, with their counters: those are not the lab's).
    let strip = |t: String| -> String {
        t.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with('*') && !l.starts_with("COMMIT"))
            .filter(|l| !l.starts_with(':') || l.starts_with(":NETLAB"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let before = strip(rules());

    assert_eq!(world.sysctl(FORWARDING6), "0");
    let out = world.netlab(&name, &up);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--ipv6 needs IPv6 forwarding on"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!std::path::Path::new("/run/netlab").join(&name).exists());
    assert_eq!(world.sysctl(FORWARDING6), "0");

    world.set_sysctl(FORWARDING6, "1");
    world.set_sysctl(BRIDGE_NF6, "0");
    let lab = Lab::named(&name);
    let out = world.netlab(&name, &up);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("uplink eth0 198.51.100.2 2001:db8:100::2"),
        "{out:?}"
    );
    // The netfilter datapaths need bridge netfilter for IPv6; eBPF leaves it as it was.
    let bridge_nf = if netlab_tests::is_ebpf(dp) { "0" } else { "1" };
    assert_eq!(world.sysctl(BRIDGE_NF6), bridge_nf);
    lab.ok(&["run", "a"]);
    lab.exec_ok("a", &["ping", "-6", "-c", "1", "-W", "3", INTERNET6]);
    lab.ok(&["publish", "a", "8080:80"]);
    let _server = dual_stack_server(&lab, "a", 80);
    let wan = netlab_tests::netns::path(&format!("{}-wan", world.0));
    let got = netlab_tests::run_in_ns(
        &wan,
        &netlab_tests::curl_status(&format!("http://[{UPLINK6}]:8080/")),
    );
    assert_eq!(String::from_utf8_lossy(&got.stdout), "200");

    drop(_server);
    drop(lab);
    assert_eq!(world.sysctl(BRIDGE_NF6), "0", "not restored");
    assert_eq!(world.sysctl(FORWARDING6), "1");
    assert_eq!(strip(rules()), before, "rules left behind");
}

/// Two labs in one namespace (a machine's, here a world of the test's own): a subnet of
/// either family that holds the other's bridge (or an address of the host) is refused in one
/// line, IPv6's default follows the IPv4 subnet so that two labs get two; a socket on
/// `[::1]` is no reason to refuse a port (nothing translates ::1), `0.0.0.0:` is every
/// address in a lab without IPv6 (and unpublished as such); and whichever lab goes last
/// puts bridge netfilter for IPv6 back as it was.
#[test]
fn two_labs_in_one_namespace_keep_apart() {
    let world = World::new();
    world.set_sysctl(FORWARDING6, "1");
    world.set_sysctl(BRIDGE_NF6, "0");
    let (a, b) = (netlab_tests::unique_lab(), netlab_tests::unique_lab());
    let lab_a = Lab::named(&a);
    let out = world.netlab(&a, &["up", "--datapath", "nftables", "--uplink", "eth0"]);
    assert!(out.status.success(), "{out:?}");
    let lab_b = Lab::named(&b);
    let refused = |args: &[&str], says: &str| {
        let out = world.netlab(&b, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(!std::path::Path::new("/run/netlab").join(&b).exists());
    };
    let up_b = ["up", "--datapath", "iptables", "--uplink", "eth0", "--ipv6"];
    // The same IPv4 subnet as a's (the default), the uplink's IPv6 network, a's IPv6
    // subnet once a has one... here a has none, so the IPv6 subnet a would get is free.
    refused(&up_b, &format!("overlaps lab {a}'s 172.18.0.0/16"));
    let mut other = up_b.to_vec();
    other.extend(["--subnet", "10.9.0.0/16", "--subnet6", "2001:db8:100::/64"]);
    refused(&other, "holds 2001:db8:100::2/64");
    // Inside a's subnet is no better; nor one that holds the next hop of a route (the
    // bridge would take the router's address).
    let mut inside = up_b.to_vec();
    inside.extend(["--subnet", "172.18.5.0/24"]);
    refused(&inside, &format!("overlaps lab {a}'s 172.18.0.0/16"));
    netlab_tests::run_in_ns_ok(
        &world.host(),
        &[
            "ip",
            "route",
            "add",
            "192.0.2.0/24",
            "via",
            "10.99.0.1",
            "dev",
            "eth0",
            "onlink",
        ],
    );
    let mut router = up_b.to_vec();
    router.extend(["--subnet", "10.99.0.0/24"]);
    refused(&router, "holds 10.99.0.1, a route's next hop");
    let out = world.netlab(&b, &[&up_b[..], &["--subnet", "10.9.0.0/16"]].concat());
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("fd00:a09::1/64"),
        "{out:?}"
    );
    assert_eq!(lab_b.ok(&["run", "c"]).trim(), "c 10.9.0.2 fd00:a09::2");
    lab_a.ok(&["run", "c"]);

    // A socket on [::1]:8080 in the namespace: no lab translates ::1.
    let _socket = in_ns(&world.host(), || {
        TcpListener::bind((Ipv6Addr::LOCALHOST, 8080)).expect("bind [::1]:8080")
    });
    lab_a.ok(&["publish", "c", "8080:80"]);
    lab_b.ok(&["publish", "c", "8081:80"]);
    // 0.0.0.0 in a lab without IPv6 is every address, kept as no address.
    lab_a.ok(&["publish", "c", "0.0.0.0:9090:90"]);
    let ports = lab_a.ports();
    assert!(
        ports
            .iter()
            .any(|p| p["spec"] == "9090:90/tcp" && p["host_ip"].is_null()),
        "{ports:?}"
    );
    lab_a.ok(&["unpublish", "c", "9090:90"]);

    // IPv6 bridge netfilter goes back with the last dual-stack lab, IPv4's with the
    // last lab.
    assert_eq!(world.sysctl(BRIDGE_NF6), "1");
    drop(lab_b);
    assert_eq!(
        world.sysctl(BRIDGE_NF6),
        "0",
        "not put back by the last dual-stack lab"
    );
    drop(lab_a);
    assert_eq!(world.sysctl(BRIDGE_NF6), "0");
}

/// A lab without IPv6 takes no IPv6 in: its bridge and its containers' interfaces have
/// IPv6 turned off (no link-local address either), so a container cannot give itself an
/// IPv6 address and have a host that forwards IPv6 route it on, untranslated and
/// unfiltered, on any datapath.
#[test]
fn a_lab_without_ipv6_takes_none_in() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a"]);
    let off = |ns: &str, ifname: &str| {
        lab.exec_ok(
            ns,
            &[
                "cat",
                &format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"),
            ],
        )
        .trim()
        .to_string()
    };
    assert_eq!(off("host", &format!("nl-{}", lab.name)), "1");
    assert_eq!(off("a", "eth0"), "1");
    let veth = lab.state().container("a").unwrap().veth.clone().unwrap();
    assert_eq!(off("host", &veth), "1", "the bridge port {veth}");
    let out = lab.exec(
        "a",
        &["ip", "-6", "addr", "add", "2001:db8:5::2/64", "dev", "eth0"],
    );
    assert!(
        !out.status.success(),
        "a container gave itself an IPv6 address"
    );
    // IPv4 is as it was.
    lab.exec_ok("a", &["ping", "-c", "1", "-W", "3", "203.0.113.1"]);
}

/// Two `up`s in one namespace at the same moment with the same subnets: one comes up,
/// the other is refused (each would otherwise have found the subnet free before the
/// other's bridge existed).
#[test]
fn two_ups_at_once_in_one_namespace_take_one_subnet() {
    let world = World::new();
    world.set_sysctl(FORWARDING6, "1");
    let names = [netlab_tests::unique_lab(), netlab_tests::unique_lab()];
    let results: Vec<std::process::Output> = std::thread::scope(|s| {
        let world = &world;
        let ups: Vec<_> = names
            .iter()
            .zip(["iptables", "nftables"])
            .map(|(lab, dp)| {
                s.spawn(move || {
                    world.netlab(
                        lab,
                        &[
                            "up",
                            "--datapath",
                            dp,
                            "--uplink",
                            "eth0",
                            "--ipv6",
                            "--subnet",
                            "10.77.1.0/24",
                        ],
                    )
                })
            })
            .collect();
        ups.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let up: Vec<&str> = names
        .iter()
        .zip(&results)
        .filter(|(_, out)| out.status.success())
        .map(|(lab, _)| lab.as_str())
        .collect();
    // Each lab that came up is taken down, whatever is asserted.
    let _guards: Vec<Lab> = up.iter().map(|l| Lab::named(l)).collect();
    assert_eq!(up.len(), 1, "{results:?}");
    let refused = results.iter().find(|o| !o.status.success()).unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("overlaps lab"), "{err}");
}
