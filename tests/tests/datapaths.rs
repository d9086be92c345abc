//! What masquerade.rs and publish.rs do not already cover on every datapath: a UDP
//! range on one host address, unpublish cutting an established flow (the datapath's
//! conntrack is emptied), the drop of direct access; and, for the netfilter datapaths,
//! their rules in place, teardown removing exactly them, and the routed baseline. Each
//! behaviour is written once and `per_datapath!` makes one `#[test]` per datapath.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use netlab::{
    datapath,
    lab::{DatapathKind, Published},
};
use netlab_tests::{Background, INTERNET, Lab, UPLINK_ADDR, WAN_ADDR, in_ns, wait_listening};

// Behaviours beyond masquerade.rs and publish.rs, on every datapath.
netlab_tests::per_datapath!(
    [
        publishes_on_one_address_and_udp_ranges,
        unpublish_forgets_established_flows,
        drops_direct_access_to_containers,
    ];
    ebpf = "ebpf",
    ebpf_slow = "ebpf-slow",
    iptables = "iptables",
    iptables_legacy = "iptables-legacy",
    nftables = "nftables",
    nftables_flowtable = "nftables-flowtable",
);

// What the netfilter datapaths leave in the kernel, and take away again.
netlab_tests::per_datapath!(
    [
        rules_are_visible_and_teardown_removes_exactly_them,
        conntrack_and_stats_point_to_the_kernel,
        a_rollback_takes_no_other_mappings_rule,
    ];
    iptables_rules = "iptables",
    iptables_legacy_rules = "iptables-legacy",
    nftables_rules = "nftables",
    nftables_flowtable_rules = "nftables-flowtable",
);

fn lab(dp: &str) -> Lab {
    Lab::on(dp)
}

/// On a kernel without nftables flowtables, `up --datapath nftables-flowtable` refuses
/// with one line naming the missing feature, exit 2, and leaves nothing behind (the
/// `nftables_flowtable::*` tests are then skipped, with that reason).
#[test]
fn flowtable_refused_where_the_kernel_lacks_it() {
    if netlab_tests::unavailable("nftables-flowtable").is_none() {
        return netlab_tests::skip("this kernel has nftables flowtables: nothing to refuse");
    }
    let lab = netlab_tests::unique_lab();
    let out = netlab_tests::netlab(&[
        "--lab",
        &lab,
        "up",
        "--sandbox",
        "--datapath",
        "nftables-flowtable",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("netlab: "), "{err}");
    assert!(err.contains(netlab_tests::FLOWTABLE_MISSING), "{err}");
    for ns in ["host", "wan"] {
        assert!(
            !netlab_tests::netns::exists(&format!("{lab}-{ns}")),
            "{lab}-{ns} left"
        );
    }
    assert!(!std::path::Path::new("/run/netlab").join(&lab).exists());
    assert!(!netlab::datapath::ebpf::pins::dir(&lab).exists());
}

/// `up --device netkit`: where the kernel has no netkit (this machine's 6.18 is built
/// without it), refused with one line naming it, exit 2, nothing left behind; where it
/// has, the container's interface is one end of a netkit pair and `status` says so (the
/// guest suite, `tests/vm/e2e.sh`, runs the whole walkthrough there).
#[test]
fn netkit_devices_or_their_refusal() {
    let lab = netlab_tests::unique_lab();
    let up = |args: &[&str]| netlab_tests::netlab(&[&["--lab", &lab][..], args].concat());
    let out = up(&["up", "--sandbox", "--device", "netkit"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    // Whether it may refuse is the kernel's to say, asked apart from netlab.
    let lacking = netlab_tests::kernel_lacks(netlab_tests::Feature::Netkit);
    assert_eq!(
        out.status.success(),
        lacking.is_none(),
        "the kernel says {lacking:?}; up --device netkit: {err}"
    );
    if out.status.success() {
        let run = up(&["run", "a"]);
        let status = up(&["status", "--json"]);
        let link = up(&["exec", "a", "--", "ip", "-d", "link", "show", "eth0"]);
        let down = up(&["down"]);
        assert!(run.status.success(), "run: {run:?}");
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
        assert_eq!(status["device"], "netkit");
        assert!(
            String::from_utf8_lossy(&link.stdout).contains("netkit"),
            "{link:?}"
        );
        assert!(down.status.success(), "down: {down:?}");
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("--device netkit needs netkit devices"),
        "{err}"
    );
    for ns in ["host", "wan"] {
        assert!(
            !netlab_tests::netns::exists(&format!("{lab}-{ns}")),
            "{lab}-{ns} left"
        );
    }
    assert!(!std::path::Path::new("/run/netlab").join(&lab).exists());
}

/// `netlab publish CONTAINER SPEC`.
fn publish(lab: &Lab, container: &str, spec: &str) {
    lab.ok(&["publish", container, spec]);
}

/// `netlab unpublish CONTAINER SPEC`.
fn unpublish(lab: &Lab, container: &str, spec: &str) {
    lab.ok(&["unpublish", container, spec]);
}

/// The client addresses in http.server's log, one per GET.
fn clients(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("\"GET /"))
        .filter_map(|l| l.split(' ').next().map(str::to_string))
        .collect()
}

/// `python3 -m http.server PORT --bind ADDR` in a namespace, once it accepts.
fn web_server(lab: &Lab, name: &str, bind: Ipv4Addr, port: u16) -> Background {
    let server = lab.spawn(
        name,
        &[
            "python3",
            "-u",
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            &bind.to_string(),
        ],
    );
    let probe = if bind.is_unspecified() {
        Ipv4Addr::LOCALHOST
    } else {
        bind
    };
    assert!(
        wait_listening(&lab.ns(name), SocketAddr::from((probe, port))),
        "http.server in {name} did not start"
    );
    server
}

/// Whether `curl URL` from a namespace gets a 200.
fn get(lab: &Lab, from: &str, url: &str) -> bool {
    lab.curl(from, url) == "200"
}

fn publishes_on_one_address_and_udp_ranges(dp: &str) {
    let lab = lab(dp);
    lab.ok(&["run", "a"]);
    let _server = web_server(&lab, "a", Ipv4Addr::UNSPECIFIED, 8000);
    publish(&lab, "a", "127.0.0.1:9090:8000");
    assert!(get(&lab, "host", "http://127.0.0.1:9090/"));
    assert!(
        !get(&lab, "wan", "http://198.51.100.2:9090/"),
        "published on 127.0.0.1 only, yet reachable from wan"
    );

    // A UDP range on the uplink address: host port 6001 leads to container port 5354.
    let echo = in_ns(&lab.ns("a"), || UdpSocket::bind("0.0.0.0:5354")).unwrap();
    echo.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let echoer = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let (_, from) = echo.recv_from(&mut buf).ok()?;
        echo.send_to(from.to_string().as_bytes(), from).ok()?;
        Some(from)
    });
    publish(&lab, "a", "198.51.100.2:6000-6001:5353-5354/udp");
    let client = in_ns(&lab.ns("wan"), || UdpSocket::bind("0.0.0.0:0")).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.send_to(b"?", (UPLINK_ADDR, 6001)).unwrap();
    let mut buf = [0u8; 64];
    let (n, back) = client
        .recv_from(&mut buf)
        .expect("an echo through the published range");
    assert_eq!(
        back,
        SocketAddr::from((UPLINK_ADDR, 6001)),
        "reply not un-NATed"
    );
    let seen = echoer
        .join()
        .unwrap()
        .expect("the container got the datagram");
    assert_eq!(seen.ip(), WAN_ADDR);
    assert_eq!(String::from_utf8_lossy(&buf[..n]), seen.to_string());
}

/// How many flows to `port` the datapath tracks.
fn flows_to(lab: &Lab, dp: &str, port: u16) -> usize {
    if netlab_tests::is_ebpf(dp) {
        return lab
            .conntrack()
            .iter()
            .filter(|f| f["original"]["dport"] == port)
            .count();
    }
    let out = lab.exec_ok(
        "host",
        &[
            "conntrack",
            "-L",
            "-p",
            "tcp",
            "--orig-port-dst",
            &port.to_string(),
        ],
    );
    out.lines().filter(|l| !l.trim().is_empty()).count()
}

fn unpublish_forgets_established_flows(dp: &str) {
    let lab = lab(dp);
    lab.ok(&["run", "a"]);
    let listener = in_ns(&lab.ns("a"), || TcpListener::bind("0.0.0.0:7000")).unwrap();
    publish(&lab, "a", "7070:7000");
    // An echo server for one connection; it gives up once the flow is cut.
    std::thread::spawn(move || -> Option<()> {
        let (mut s, _) = listener.accept().ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut buf = [0u8; 16];
        loop {
            let n = s.read(&mut buf).ok().filter(|n| *n > 0)?;
            s.write_all(&buf[..n]).ok()?;
        }
    });
    let mut c = in_ns(&lab.ns("wan"), || {
        TcpStream::connect_timeout(&(UPLINK_ADDR, 7070).into(), Duration::from_secs(5))
    })
    .expect("connect to the published port");
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).expect("echo while published");
    assert_eq!(&buf, b"ping");
    assert_eq!(flows_to(&lab, dp, 7070), 1);

    unpublish(&lab, "a", "7070:7000");
    assert_eq!(flows_to(&lab, dp, 7070), 0, "the flow outlived unpublish");
    // The next segment finds neither a flow nor a rule: it is not delivered.
    let _ = c.write_all(b"more");
    let got = c.read(&mut buf);
    assert!(
        !matches!(got, Ok(4)),
        "the withdrawn port still delivered: {got:?}"
    );
}

fn drops_direct_access_to_containers(dp: &str) {
    let lab = lab(dp);
    lab.ok(&["run", "a"]);
    let _server = web_server(&lab, "a", Ipv4Addr::UNSPECIFIED, 8000);
    publish(&lab, "a", "8080:8000");
    // Give wan a route to the containers, as a neighbour on the uplink LAN could.
    lab.exec_ok(
        "wan",
        &["ip", "route", "add", "172.18.0.0/16", "via", "198.51.100.2"],
    );
    assert!(
        !get(&lab, "wan", "http://172.18.0.2:8000/"),
        "a container is reachable at its own address from outside"
    );
    assert!(
        get(&lab, "wan", "http://198.51.100.2:8080/"),
        "published port"
    );
    if netlab_tests::is_ebpf(dp) {
        assert!(lab.stat("drops", "direct_access") >= 1);
    }
    // The bridge's own address is the host's, not a container's: a port published on
    // every host address answers there from outside too, as on a netfilter datapath;
    // and the host's own connections to it (which come in by lo) are not direct access.
    assert!(
        get(&lab, "wan", "http://172.18.0.1:8080/"),
        "the published port on the bridge's address, from outside"
    );
    let _gateway = lab.http_server("host", 7000);
    assert_eq!(lab.curl("host", "http://172.18.0.1:7000/"), "200");
}

/// The tools that show a netfilter datapath's rules: (dump command, rule tool).
fn tools(dp: &str) -> (Vec<&'static str>, &'static str) {
    match dp {
        "iptables" => (vec!["iptables-nft-save", "-c"], "iptables-nft"),
        "iptables-legacy" => (vec!["iptables-legacy-save", "-c"], "iptables-legacy"),
        "nftables" | "nftables-flowtable" => (vec!["nft", "list", "ruleset"], "nft"),
        _ => panic!("{dp} is not a netfilter datapath"),
    }
}

/// The packet count of the raw drop of direct access, from a rules dump
/// (`[PKTS:BYTES] -A PREROUTING -d SUBNET ...` or `... counter packets PKTS ...`).
fn direct_access_drops(dp: &str, dump: &str) -> u64 {
    let line = dump
        .lines()
        .find(|l| {
            l.contains("ip daddr 172.18.0.0/16") || l.contains("-A PREROUTING -d 172.18.0.0/16")
        })
        .unwrap_or_else(|| panic!("no direct-access drop in:\n{dump}"));
    let count = if dp.starts_with("nftables") {
        line.split("packets ").nth(1)
    } else {
        line.strip_prefix('[')
    };
    count
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {line:?}"))
}

fn rules_are_visible_and_teardown_removes_exactly_them(dp: &str) {
    let lab = lab(dp);
    lab.ok(&["run", "a"]);
    let (dump, tool) = tools(dp);
    let _server = web_server(&lab, "a", Ipv4Addr::UNSPECIFIED, 8000);
    publish(&lab, "a", "8080:8000");
    let rules = lab.exec_ok("host", &dump);
    if dp.starts_with("nftables") {
        assert!(rules.contains("table ip netlab"), "{rules}");
        assert!(rules.contains("tcp . 8080 : 172.18.0.2 . 8000"), "{rules}");
        assert!(rules.contains("masquerade"), "{rules}");
        assert_eq!(
            rules.contains("flow add @fastpath"),
            dp == "nftables-flowtable",
            "{rules}"
        );
    } else {
        for rule in [
            "-A POSTROUTING -s 172.18.0.0/16 ! -o nl-",
            "-A NETLAB -p tcp -m tcp --dport 8080 -m comment --comment netlab -j DNAT --to-destination 172.18.0.2:8000",
            "-A NETLAB -d 172.18.0.2/32 ! -i nl-",
            "-A FORWARD -m comment --comment netlab -j NETLAB-USER",
            // Docker's policy is DROP; the lab's drop is its bridge's only.
            ":FORWARD ACCEPT",
            "-A NETLAB-BRIDGE ! -i nl-",
        ] {
            assert!(rules.contains(rule), "no {rule:?} in:\n{rules}");
        }
    }
    // Direct access from wan is dropped in the raw table, before conntrack.
    lab.exec_ok(
        "wan",
        &["ip", "route", "add", "172.18.0.0/16", "via", "198.51.100.2"],
    );
    assert!(!get(&lab, "wan", "http://172.18.0.2:8000/"));
    let drops = direct_access_drops(dp, &lab.exec_ok("host", &dump));
    assert!(drops > 0, "the raw drop counted nothing");

    if dp == "nftables-flowtable" {
        // The uplink and the container's veth are the flowtable's devices; a veth that
        // goes leaves it.
        let veth = lab.state().container("a").unwrap().veth.clone().unwrap();
        let devices = |lab: &Lab| {
            lab.exec_ok(
                "host",
                &["nft", "list", "flowtable", "ip", "netlab", "fastpath"],
            )
        };
        let listed = devices(&lab);
        assert!(
            listed.contains("eth0") && listed.contains(&veth),
            "{listed}"
        );
        lab.ok(&["run", "b"]);
        lab.ok(&["rm", "b"]);
        lab.ok(&["rm", "a"]);
        let listed = devices(&lab);
        assert!(
            listed.contains("eth0") && !listed.contains(&veth),
            "{listed}"
        );
    }
    // Someone else's rules in the same namespace.
    if dp.starts_with("nftables") {
        lab.exec_ok("host", &["nft", "add", "table", "ip", "user"]);
        lab.exec_ok(
            "host",
            &[
                "nft",
                "add",
                "chain",
                "ip",
                "user",
                "input",
                "{ type filter hook input priority 0; }",
            ],
        );
    } else {
        lab.exec_ok(
            "host",
            &[
                tool, "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT",
            ],
        );
        lab.exec_ok("host", &[tool, "-t", "nat", "-N", "USERCHAIN"]);
    }
    let state = lab.state();
    datapath::for_kind(state.datapath)
        .teardown(&state)
        .expect("teardown");
    let left = lab.exec_ok("host", &dump);
    assert!(
        !left.to_lowercase().contains("netlab"),
        "left behind:\n{left}"
    );
    if dp.starts_with("nftables") {
        assert!(left.contains("table ip user"), "{left}");
    } else {
        assert!(
            left.contains("-A INPUT -p tcp -m tcp --dport 9 -j ACCEPT"),
            "{left}"
        );
        assert!(left.contains(":USERCHAIN"), "{left}");
        assert!(left.contains(":FORWARD ACCEPT"), "{left}");
    }
    // A second teardown finds nothing to do, and `down` (the guard) still works.
    datapath::for_kind(state.datapath)
        .teardown(&state)
        .expect("second teardown");
}

/// Rolling back a publish that never reached the kernel (a `publish` interrupted before
/// its rules went in, settled by the next command) takes nothing of a published port
/// that leads to the same container port, whose filter rule is the same line; and CNI's
/// CHECK question, whether a port's rules are all there, counts that line's copies
/// (one copy for two ports is one port short).
fn a_rollback_takes_no_other_mappings_rule(dp: &str) {
    let lab = lab(dp);
    lab.ok(&["run", "a"]);
    let _server = web_server(&lab, "a", Ipv4Addr::UNSPECIFIED, 8000);
    publish(&lab, "a", "8080:8000");
    let state = lab.state();
    let interrupted = Published {
        id: 2,
        spec: "9090:8000".parse().unwrap(),
        ..state.ports[0].clone()
    };
    let dp_impl = datapath::for_kind(state.datapath);
    dp_impl
        .withdraw_leftovers(&state, std::slice::from_ref(&interrupted))
        .expect("withdraw the leftovers");
    assert!(
        get(&lab, "wan", "http://198.51.100.2:8080/"),
        "8080 lost its rules"
    );
    // Both published, then the shared filter rule's one copy removed behind netlab's
    // back (iptables): one of the two ports lacks it, which CHECK must see though a
    // copy is left.
    publish(&lab, "a", "9090:8000");
    let state = lab.state();
    assert!(
        dp_impl
            .absent(&state, &state.ports)
            .expect("absent")
            .is_empty()
    );
    if dp.starts_with("iptables") {
        let (dump, tool) = tools(dp);
        let save = lab.exec_ok("host", &dump);
        let rule = save
            .lines()
            .map(|l| l.split_once("] ").map_or(l, |(_, r)| r))
            .find(|l| l.starts_with("-A NETLAB -d 172.18.0.2/32") && l.contains("--dport 8000"))
            .unwrap_or_else(|| panic!("no filter rule in:\n{save}"))
            .to_string();
        let mut delete = vec![tool, "-D"];
        delete.extend(rule.trim_start_matches("-A ").split_whitespace());
        lab.exec_ok("host", &delete);
        assert_eq!(
            dp_impl.absent(&state, &state.ports).expect("absent").len(),
            1
        );
    }
}

fn conntrack_and_stats_point_to_the_kernel(dp: &str) {
    let lab = lab(dp);
    let err = lab.fails(&["conntrack"]);
    assert!(err.contains(&format!("runs the {dp} datapath")), "{err}");
    // Where the kernel's table is: the lab host's namespace, not this one.
    let there = format!("`netlab exec --lab {} host -- conntrack -L`", lab.name);
    assert!(err.contains(&there), "{err}");
    let err = lab.fails(&["stats"]);
    assert!(err.contains("no eBPF counters"), "{err}");
    assert_eq!(lab.status()["datapath"], dp);
}

/// A lab of one framework in the host namespace of a sandbox lab of the other (a CNI
/// network beside the lab): neither drops the other's traffic, as neither sets
/// FORWARD's policy. Its container reaches wan masqueraded, and wan its published port.
fn a_lab_beside_a_sandbox_lab_of_the_other_framework(outer_dp: &str, inner_dp: &str) {
    let outer = lab(outer_dp);
    let inner = Lab::named(&netlab_tests::unique_lab());
    let bin = netlab_tests::netlab_bin().display().to_string();
    let in_host = |args: &[&str]| {
        let mut cmd = vec![bin.as_str(), "--lab", &inner.name];
        cmd.extend_from_slice(args);
        outer.exec_ok("host", &cmd)
    };
    in_host(&[
        "up",
        "--datapath",
        inner_dp,
        "--uplink",
        "eth0",
        "--subnet",
        "10.77.0.0/24",
    ]);
    in_host(&["run", "c"]);
    let server = web_server(&outer, "wan", INTERNET, 80);
    assert_eq!(
        inner.curl("c", "http://203.0.113.1/"),
        "200",
        "{inner_dp} beside {outer_dp}: out"
    );
    assert_eq!(clients(&server.finish()), [UPLINK_ADDR.to_string()]);
    let _web = inner.http_server("c", 8000);
    in_host(&["publish", "c", "8081:8000"]);
    assert!(
        get(&outer, "wan", "http://198.51.100.2:8081/"),
        "{inner_dp} beside {outer_dp}: in"
    );
    in_host(&["down"]);
    inner.forget();
}

#[test]
fn an_iptables_lab_beside_an_nftables_sandbox_lab() {
    a_lab_beside_a_sandbox_lab_of_the_other_framework("nftables", "iptables");
}

#[test]
fn an_nftables_lab_beside_an_iptables_sandbox_lab() {
    a_lab_beside_a_sandbox_lab_of_the_other_framework("iptables", "nftables");
}

#[test]
fn routed_baseline_routes_without_nat_and_publishes_nothing() {
    let lab = Lab::sandbox(&["--datapath", "routed"]);
    lab.ok(&["run", "a"]);
    let server = web_server(&lab, "wan", INTERNET, 80);
    assert!(get(&lab, "a", "http://203.0.113.1/"));
    let log = server.finish();
    assert_eq!(
        clients(&log),
        ["172.18.0.2"],
        "routed traffic was NATed: {log}"
    );
    let _web = web_server(&lab, "a", Ipv4Addr::UNSPECIFIED, 8000);
    assert!(
        get(&lab, "wan", "http://172.18.0.2:8000/"),
        "wan reaches a directly"
    );
    let state = lab.state();
    assert_eq!(state.datapath, DatapathKind::Routed);
    let port = Published {
        container: "a".into(),
        spec: "8080:8000".parse().unwrap(),
        ctr_ip: "172.18.0.2".parse().unwrap(),
        id: 1,
    };
    let err = datapath::for_kind(state.datapath)
        .publish(&state, std::slice::from_ref(&port))
        .unwrap_err();
    assert!(err.to_string().contains("publishes no ports"), "{err}");
    let rules = lab.exec_ok("host", &["nft", "list", "ruleset"]);
    assert!(rules.trim().is_empty(), "the baseline has rules: {rules}");
    // Through the CLI, refused before anything is made, and the lab goes on. Before,
    // the refusal came after the journal entry, whose rollback failed the same way:
    // every later command on the lab failed with it, and `run -p` left its namespace.
    let e = lab.fails(&["publish", "a", "8080:8000"]);
    assert!(e.contains("publishes no ports"), "{e}");
    let e = lab.fails(&["run", "b", "-p", "8080:8000"]);
    assert!(e.contains("publishes no ports"), "{e}");
    assert!(!lab.ns("b").exists(), "a refused run left its namespace");
    lab.ok(&["status"]);
    lab.ok(&["run", "b"]);
    assert!(lab.ports().is_empty());
}
