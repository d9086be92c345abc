//! podman 4.3 (Debian bookworm's, unmodified) as netlab-cni's client, on the eBPF and
//! iptables datapaths: containers on a netlab network reach each other and wan,
//! `podman run -p` is reachable from wan (the client's address kept), from the host and
//! from another container, `podman rm` withdraws the ports and frees the address,
//! `podman network rm` and GC leave nothing, and a 10,000-port range is published fast.

use netlab_tests::{podman::Podman, run_in_ns};
use serde_json::json;

/// The client address busybox httpd's CGI saw (`you are [::ffff:10.77.0.3]`).
fn client(answer: &str) -> String {
    answer
        .lines()
        .find_map(|l| l.strip_prefix("you are "))
        .map(|a| {
            a.trim_matches(['[', ']'])
                .trim_start_matches("::ffff:")
                .to_string()
        })
        .unwrap_or_default()
}

netlab_tests::per_datapath!(
    [
        containers_reach_each_other_and_wan,
        published_port_from_wan_host_and_another_container,
        rm_withdraws_the_ports_and_frees_the_address,
        network_rm_and_gc_leave_nothing,
        ten_thousand_ports,
        a_static_address_with_a_published_port,
        a_published_port_on_two_networks,
    ];
    ebpf = "ebpf",
    iptables = "iptables",
);

fn containers_reach_each_other_and_wan(dp: &str) {
    let pm = Podman::new(dp);
    pm.web("web", &[]);
    pm.idle("b");
    let (web, b) = (pm.ip("web"), pm.ip("b"));
    assert_eq!((web.as_str(), b.as_str()), ("10.77.0.2", "10.77.0.3"));
    let answer = pm.get_from("b", &web, 80, "/cgi-bin/ip");
    assert_eq!(client(&answer), b, "b -> web: {answer}");

    // Out to wan, masqueraded behind the uplink's address.
    let w = &pm.world;
    let server = w.http_server_in(&w.wan(), "203.0.113.1", 80);
    let answer = pm.get_from("b", "203.0.113.1", 80, "/");
    assert!(answer.starts_with("HTTP/1.0 200"), "b -> wan: {answer}");
    let log = server.finish();
    assert!(
        log.lines().any(|l| l.starts_with("198.51.100.2 ")),
        "wan should see the uplink address: {log}"
    );
    // The CLI sees podman's containers.
    let status = w.lab().status();
    assert_eq!(status["datapath"], dp);
    assert_eq!(status["containers"].as_array().unwrap().len(), 2);
}

fn published_port_from_wan_host_and_another_container(dp: &str) {
    let pm = Podman::new(dp);
    pm.web("web", &["-p", "8080:80"]);
    pm.idle("b");
    let w = &pm.world;
    let ports = w.lab().ports();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0]["spec"], "8080:80/tcp");
    assert_eq!(ports[0]["ctr_ip"], "10.77.0.2");

    let from_wan = run_in_ns(
        &w.wan(),
        &[
            "curl",
            "-s",
            "-m",
            "3",
            "http://198.51.100.2:8080/cgi-bin/ip",
        ],
    );
    let from_wan = String::from_utf8_lossy(&from_wan.stdout);
    assert_eq!(
        client(&from_wan),
        "198.51.100.1",
        "the client's address is kept: {from_wan:?}"
    );
    let lab = w.lab();
    assert_eq!(
        lab.curl("host", "http://198.51.100.2:8080/"),
        "200",
        "from the host"
    );
    assert_eq!(
        lab.curl("host", "http://127.0.0.1:8080/"),
        "200",
        "host via localhost"
    );
    let hairpin = pm.get_from("b", "198.51.100.2", 8080, "/cgi-bin/ip");
    assert!(!client(&hairpin).is_empty(), "hairpin from b: {hairpin:?}");
}

fn rm_withdraws_the_ports_and_frees_the_address(dp: &str) {
    let pm = Podman::new(dp);
    pm.web("web", &["-p", "8080:80", "-p", "5353:53/udp"]);
    let w = &pm.world;
    assert_eq!(w.lab().ports().len(), 2);
    assert_eq!(w.curl_in(&w.wan(), "http://198.51.100.2:8080/"), "200");
    pm.rm("web");
    assert_eq!(w.lab().ports(), Vec::<serde_json::Value>::new());
    assert_eq!(w.lab().status()["containers"], json!([]));
    assert_eq!(w.curl_in(&w.wan(), "http://198.51.100.2:8080/"), "000");
    // The port and the address are free for the next container.
    pm.web("web2", &["-p", "8080:80"]);
    assert_eq!(pm.ip("web2"), "10.77.0.2");
    assert_eq!(w.curl_in(&w.wan(), "http://198.51.100.2:8080/"), "200");
}

fn network_rm_and_gc_leave_nothing(dp: &str) {
    let pm = Podman::new(dp);
    pm.web("web", &["-p", "8080:80"]);
    pm.idle("b");
    let conflist: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pm.conflist()).unwrap()).unwrap();
    pm.rm("web");
    pm.rm("b");
    pm.ok(&["network", "rm", &pm.world.net]);
    assert!(
        !pm.conflist().exists(),
        "podman network rm deletes the conflist"
    );
    // podman 4.3 speaks CNI 1.0 and never sends GC; a 1.1 runtime would, with the
    // configuration it had.
    let w = &pm.world;
    let mut conf = conflist["plugins"][0].clone();
    conf["name"] = json!(w.net);
    w.gc(&[], &conf).ok();
    assert!(!w.lab_is_up());
    let net = &w.net;
    for p in [
        format!("/run/netlab/{net}"),
        netlab::datapath::ebpf::pins::dir(net).display().to_string(),
        format!("/sys/fs/cgroup/unified/netlab-{net}"),
    ] {
        assert!(!std::path::Path::new(&p).exists(), "{p} is left");
    }
    let links = netlab_tests::run_in_ns_ok(&w.host(), &["ip", "-o", "link", "show"]);
    assert!(
        !links.contains(&w.bridge()) && !links.contains("veth"),
        "{links}"
    );
    let rules = netlab_tests::run_in_ns_ok(&w.host(), &["iptables-save"]);
    assert!(!rules.to_lowercase().contains("netlab"), "{rules}");
}

/// `--ip` with `-p`: the port is published on the static address and answers from
/// wan. (Without `ips` among the conflist's capabilities podman 4.3 swaps them for its
/// own `{"ips": true}`, and the plugin never hears of the port: published nothing.)
fn a_static_address_with_a_published_port(dp: &str) {
    let pm = Podman::new(dp);
    pm.web("web", &["--ip", "10.77.0.50", "-p", "8080:80"]);
    assert_eq!(pm.ip("web"), "10.77.0.50");
    let w = &pm.world;
    let ports = w.lab().ports();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0]["ctr_ip"], "10.77.0.50");
    assert_eq!(w.curl_in(&w.wan(), "http://198.51.100.2:8080/"), "200");
}

/// A container with `-p` on two netlab networks of one runtime (`--network a,b`), and
/// connected to a third network later: podman sends the port to each, the first
/// network to take it publishes it and the others leave it to that one (a host port is
/// one network's per namespace), so the run and the connect succeed and the port
/// answers from wan. Before, the second network's ADD was refused as a conflict with
/// the first, and the whole run with it. `podman rm` withdraws it from all.
fn a_published_port_on_two_networks(dp: &str) {
    let pm = Podman::new(dp);
    // One iptables lab per namespace: beside one, an nftables network.
    let second = pm.second_network(if dp == "iptables" { "nftables" } else { dp });
    let networks = format!("{},{}", pm.world.net, second.name);
    let httpd = ["/bin/httpd", "-f", "-p", "80", "-h", "/www"];
    let out = pm.run_on(&networks, "web", &["-p", "8080:80"], &httpd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = &pm.world;
    let count = |lab: &netlab_tests::Lab| lab.ports().len();
    assert_eq!(count(w.lab()) + count(&second), 1, "published once");
    pm.wait_listening("web", 80);
    assert_eq!(w.curl_in(&w.wan(), "http://198.51.100.2:8080/"), "200");
    pm.rm("web");
    assert_eq!(count(w.lab()) + count(&second), 0, "withdrawn");

    // Connected to the second network after it was run with -p on the first.
    pm.web("late", &["-p", "8081:80"]);
    pm.ok(&["network", "connect", &second.name, "late"]);
    assert_eq!((count(w.lab()), count(&second)), (1, 0));
    assert_eq!(w.curl_in(&w.wan(), "http://198.51.100.2:8081/"), "200");
    pm.rm("late");
}

/// `-p 40000-49999:40000-49999` reaches the plugin as 10,000 portMappings entries (the
/// CNI portmap plugin took more than two minutes for them): all are published and
/// answer, and `podman rm` withdraws them all. The times are printed, not asserted
/// (they are the benchmark's business; the README reports them).
fn ten_thousand_ports(dp: &str) {
    let pm = Podman::new(dp);
    pm.idle("warm");
    let (out, _) = Podman::timed(
        &format!("{dp}: podman run -p 40000-49999:40000-49999"),
        || {
            pm.run_container(
                "big",
                &["-p", "40000-49999:40000-49999"],
                &["/bin/httpd", "-f", "-p", "49999", "-h", "/www"],
            )
        },
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = &pm.world;
    assert_eq!(w.lab().ports().len(), 10_000);
    pm.wait_listening("big", 49999);
    assert_eq!(w.curl_in(&w.wan(), "http://198.51.100.2:49999/"), "200");
    Podman::timed(
        &format!("{dp}: podman rm of the container with 10,000 ports"),
        || pm.rm("big"),
    );
    assert_eq!(w.lab().ports().len(), 0);
}

/// podman's `--ip` and `--ip6` (which podman 4.3 sends as `runtimeConfig.ips` when
/// both are given, or `--ip6` alone) give the container those addresses; on a network
/// without IPv6, `--ip6` is refused rather than ignored.
#[test]
fn static_addresses_of_both_families() {
    let pm = Podman::dual_stack("iptables", "fd00:a4d::/64");
    let out = pm.run_container(
        "fixed",
        &["--ip", "10.77.0.50", "--ip6", "fd00:a4d::50"],
        &["/bin/sleep", "600"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pm.ip("fixed"), "10.77.0.50");
    let addrs = pm.run(&["exec", "fixed", "ip", "-6", "-o", "addr", "show", "eth0"]);
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    assert!(addrs.contains("fd00:a4d::50/64"), "{addrs}");
    let out = pm.run_container("six", &["--ip6", "fd00:a4d::60"], &["/bin/sleep", "600"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addrs = pm.run(&["exec", "six", "ip", "-6", "-o", "addr", "show", "eth0"]);
    assert!(String::from_utf8_lossy(&addrs.stdout).contains("fd00:a4d::60/64"));
    // Taken, or outside the subnet: refused, and no container is left running.
    for (name, args, says) in [
        ("again", ["--ip6", "fd00:a4d::50"], "already used"),
        (
            "out",
            ["--ip6", "fd00:beef::5"],
            "outside the lab's IPv6 subnet",
        ),
    ] {
        let out = pm.run_container(name, &args, &["/bin/sleep", "600"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{name}: {err}");
    }

    let v4 = Podman::new("iptables");
    let out = v4.run_container("fixed", &["--ip6", "fd00:a4d::50"], &["/bin/sleep", "600"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("has no subnet6"),
        "{err}"
    );
}
