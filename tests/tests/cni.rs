//! netlab-cni against the CNI 1.0 contract, fed as libcni feeds it (the `CNI_*`
//! variables, the network configuration on stdin), inside a runtime's world of its own:
//! the result's format, ADD twice, DEL's idempotence, CHECK, VERSION, STATUS, GC and the
//! error codes; then real traffic through a network it made.

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use netlab_tests::{
    WAN_ADDR,
    cni::{CniWorld, Ctr, Reply},
    run_in_ns_ok, wait_for,
};
use serde_json::{Value, json};

/// The MAC of `ifname` inside namespace `ns`, as `ip` shows it.
fn mac_in(ns: &Path, ifname: &str) -> String {
    let out = run_in_ns_ok(ns, &["ip", "-j", "link", "show", ifname]);
    let v: Value = serde_json::from_str(&out).expect("ip -j");
    v[0]["address"].as_str().expect("a MAC").to_string()
}

fn is_mac(s: &Value) -> bool {
    s.as_str()
        .is_some_and(|m| m.len() == 17 && m.split(':').all(|b| u8::from_str_radix(b, 16).is_ok()))
}

#[test]
fn add_returns_interfaces_address_and_route() {
    let w = CniWorld::new();
    let conf = w.conf(json!({}));
    let a = w.container();
    let r = w.add(&a, &conf);
    assert_eq!(r["cniVersion"], "1.0.0");
    let ifs = r["interfaces"].as_array().expect("interfaces");
    assert_eq!(ifs.len(), 3, "{r}");
    assert_eq!(ifs[0]["name"], w.bridge().as_str(), "the configured bridge");
    assert!(ifs[1]["name"].as_str().unwrap().starts_with("veth"), "{r}");
    assert_eq!(ifs[2]["name"], "eth0");
    assert_eq!(ifs[2]["sandbox"], a.netns.display().to_string());
    for i in ifs {
        assert!(is_mac(&i["mac"]), "{i}");
    }
    assert!(ifs[0]["sandbox"].is_null() && ifs[1]["sandbox"].is_null());
    assert_eq!(ifs[2]["mac"], mac_in(&a.netns, "eth0").as_str());
    assert_eq!(
        r["ips"],
        json!([{"address": "10.77.0.2/24", "gateway": "10.77.0.1", "interface": 2}])
    );
    assert_eq!(
        r["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.77.0.1"}])
    );

    // The kernel agrees: the address and route inside, the veth on the bridge.
    let addr = run_in_ns_ok(&a.netns, &["ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(addr.contains("10.77.0.2/24"), "{addr}");
    let route = run_in_ns_ok(&a.netns, &["ip", "route", "show", "default"]);
    assert!(route.contains("via 10.77.0.1 dev eth0"), "{route}");
    let ports = run_in_ns_ok(
        &w.host(),
        &["ip", "-o", "link", "show", "master", &w.bridge()],
    );
    assert!(ports.contains(ifs[1]["name"].as_str().unwrap()), "{ports}");

    // The network is a lab: the CLI sees it and its container.
    let status = w.lab().status();
    assert_eq!(status["lab"], w.net.as_str());
    assert_eq!(status["datapath"], "ebpf");
    assert_eq!(status["bridge"]["name"], w.bridge().as_str());
    assert_eq!(status["containers"][0]["name"], a.name.as_str());
    assert_eq!(status["containers"][0]["ip"], "10.77.0.2");
    assert_eq!(
        status["containers"][0]["runtime_netns"],
        a.netns.display().to_string()
    );

    // A 0.4.0 configuration gets a 0.4.0 result, and the next address.
    let b = w.container();
    let r = w.add(&b, &w.conf(json!({"cniVersion": "0.4.0"})));
    assert_eq!(r["cniVersion"], "0.4.0");
    assert_eq!(
        r["ips"],
        json!([{"version": "4", "address": "10.77.0.3/24", "gateway": "10.77.0.1", "interface": 2}])
    );
}

#[test]
fn the_address_asked_for_in_cni_args() {
    let w = CniWorld::new();
    let conf = w.conf(json!({}));
    let a = w.container();
    let r = w
        .verb_with(
            "ADD",
            &a,
            "IgnoreUnknown=1;K8S_POD_NAME=a;IP=10.77.0.50",
            &conf,
        )
        .ok();
    assert_eq!(r["ips"][0]["address"], "10.77.0.50/24");
    let b = w.container();
    let msg = w.verb_with("ADD", &b, "IP=10.77.0.50", &conf).error(101);
    assert!(msg.contains("10.77.0.50"), "{msg}");
    // An address the network cannot give is a bad CNI_ARGS: the specification's 4.
    let msg = w.verb_with("ADD", &b, "IP=10.99.0.5", &conf).error(4);
    assert!(msg.contains("outside"), "{msg}");
    let msg = w.verb_with("ADD", &b, "IP=10.77.0.1", &conf).error(4);
    assert!(msg.contains("bridge"), "{msg}");
    // runtimeConfig.ips (podman's --ip with --ip6) asks the same way; the two sources
    // may not disagree, and an IPv6 address needs a network with subnet6. DEL with an
    // IPv6 IP= (podman's --ip6 alone) removes what there is, as every DEL does.
    let mut ips = conf.clone();
    ips["runtimeConfig"] = json!({"ips": ["10.77.0.60/24"]});
    let msg = w.verb_with("ADD", &b, "IP=10.77.0.61", &ips).error(7);
    assert!(
        msg.contains("runtimeConfig.ips asks for 10.77.0.60"),
        "{msg}"
    );
    ips["runtimeConfig"] = json!({"ips": ["fd00:77::60"]});
    let msg = w.verb("ADD", &b, &ips).error(7);
    assert!(msg.contains("has no subnet6"), "{msg}");
    let msg = w.verb_with("ADD", &b, "IP=fd00:77::60", &conf).error(4);
    assert!(msg.contains("has no subnet6"), "{msg}");
    w.verb_with("DEL", &b, "IP=fd00:77::60", &conf).ok();
    ips["runtimeConfig"] = json!({"ips": ["10.77.0.60"]});
    let r = w.verb("ADD", &b, &ips).ok();
    assert_eq!(r["ips"][0]["address"], "10.77.0.60/24");
    w.verb("DEL", &b, &ips).ok();
    // MAC= (podman's --mac-address) is the interface's MAC, in the result too.
    let r = w.verb_with("ADD", &b, "MAC=02:00:0A:4D:00:33", &conf).ok();
    assert_eq!(r["interfaces"][2]["mac"], "02:00:0a:4d:00:33", "{r}");
    assert_eq!(mac_in(&b.netns, "eth0"), "02:00:0a:4d:00:33");
    let c = w.container();
    let msg = w
        .verb_with("ADD", &c, "MAC=01:00:5e:00:00:01", &conf)
        .error(4);
    assert!(msg.contains("multicast"), "{msg}");
}

/// ADD makes its interface and never takes one it did not make: into the runtime's
/// own namespace (whose `eth0` is the uplink) or onto a `CNI_IFNAME` that exists in the
/// container, it is refused with the specification's code 4, and the interface that
/// was there stays, with its address and route.
#[test]
fn add_never_takes_an_interface_it_did_not_make() {
    let w = CniWorld::new();
    let conf = w.conf(json!({}));
    let host = w.host().display().to_string();
    let msg = w
        .call(
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "x"),
                ("CNI_NETNS", &host),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", ""),
            ],
            &conf.to_string(),
        )
        .error(4);
    assert!(msg.contains("namespace of its own"), "{msg}");
    let uplink = run_in_ns_ok(&w.host(), &["ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(uplink.contains("198.51.100.2/24"), "{uplink}");
    let routes = run_in_ns_ok(&w.host(), &["ip", "route", "show", "default"]);
    assert!(routes.contains("dev eth0"), "{routes}");

    let c = w.container();
    run_in_ns_ok(
        &c.netns,
        &[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
        ],
    );
    run_in_ns_ok(
        &c.netns,
        &["ip", "addr", "add", "10.1.1.1/24", "dev", "eth0"],
    );
    let msg = w.verb("ADD", &c, &conf).error(4);
    assert!(msg.contains("already exists"), "{msg}");
    let theirs = run_in_ns_ok(&c.netns, &["ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(theirs.contains("10.1.1.1/24"), "{theirs}");
    assert!(!w.lab_is_up(), "a refused ADD left the network up");
}

/// What the network's first ADD finds wrong with the configuration when it brings the
/// network up (an uplink that does not exist, NAT ports inside the host's ephemeral
/// range) is an invalid configuration: the specification's 7, and nothing left.
#[test]
fn configuration_problems_found_at_up_are_invalid_configuration() {
    let w = CniWorld::new();
    let a = w.container();
    let msg = w
        .verb("ADD", &a, &w.conf(json!({"uplink": "nosuch0"})))
        .error(7);
    assert!(msg.contains("nosuch0"), "{msg}");
    let msg = w
        .verb("ADD", &a, &w.conf(json!({"natPorts": "40000-40100"})))
        .error(7);
    assert!(msg.contains("ephemeral"), "{msg}");
    // Named as the configuration names it, not as the CLI's flag.
    assert!(
        msg.contains("\"natPorts\" 40000-40100") && !msg.contains("--"),
        "{msg}"
    );
    w.verb("ADD", &a, &w.conf(json!({"subnet": "127.0.0.0/24"})))
        .error(7);
    w.verb("ADD", &a, &w.conf(json!({"capabilities": "yes"})))
        .error(7);
    assert!(!w.lab_is_up());
}

/// A runtime's namespace deleted and made again under the same name (podman 4.3 never
/// sends GC): the network's lab is gone with it, and the next ADD cleans what was left
/// and brings the network up anew in the new namespace.
#[test]
fn a_network_whose_namespace_was_made_again_comes_up_anew() {
    let w = CniWorld::new();
    let conf = w.conf(json!({}));
    let a = w.container();
    w.add(&a, &conf);
    for ns in ["host", "wan"] {
        netlab::netlink::netns::delete(&format!("{}-{ns}", w.net)).unwrap();
    }
    netlab::topology::build_sandbox(&w.net, false).expect("the runtime's namespaces again");
    let b = w.container();
    let r = w.verb("ADD", &b, &conf);
    assert!(r.stderr.contains("brought up anew"), "{r:?}");
    let result = r.ok();
    assert_eq!(result["ips"][0]["address"], "10.77.0.2/24", "{result}");
    let status = w.lab().status();
    assert_eq!(
        status["containers"].as_array().unwrap().len(),
        1,
        "{status}"
    );
    let links = run_in_ns_ok(&w.host(), &["ip", "-o", "link", "show", &w.bridge()]);
    assert!(links.contains(&w.bridge()), "{links}");
}

#[test]
fn add_twice_fails_and_keeps_the_first() {
    let w = CniWorld::new();
    let conf = w.conf(json!({}));
    let a = w.container();
    let first = w.add(&a, &conf);
    let msg = w.verb("ADD", &a, &conf).error(101);
    assert!(msg.contains("already has interface eth0"), "{msg}");
    let mut check = conf.clone();
    check["prevResult"] = first;
    w.verb("CHECK", &a, &check).ok();
}

/// A verb about attachment (`id`, `ifname`) of `ctr`'s namespace.
fn verb_as(w: &CniWorld, command: &str, ctr: &Ctr, id: &str, ifname: &str, conf: &Value) -> Reply {
    verb_as_in(w, &w.host(), command, ctr, id, ifname, conf)
}

/// The same with the runtime in network namespace `net`.
fn verb_as_in(
    w: &CniWorld,
    net: &Path,
    command: &str,
    ctr: &Ctr,
    id: &str,
    ifname: &str,
    conf: &Value,
) -> Reply {
    let netns = ctr.netns.display().to_string();
    w.call_in(
        net,
        &[
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", &netns),
            ("CNI_IFNAME", ifname),
        ],
        &conf.to_string(),
    )
}

/// GC with (`id`, `ifname`) as the one valid attachment.
fn gc_keeping(w: &CniWorld, id: &str, ifname: &str, conf: &Value) -> Reply {
    let mut conf = conf.clone();
    conf["cniVersion"] = json!("1.1.0");
    conf["cni.dev/valid-attachments"] = json!([{"containerID": id, "ifname": ifname}]);
    w.call(&[("CNI_COMMAND", "GC")], &conf.to_string())
}

/// A runtime's namespace removed without a DEL (podman cannot enter it any more, and
/// 4.3 never sends GC): the next ADD removes the attachment, so that its address and
/// port serve another container, and the same container can be attached again. Before,
/// they stayed taken for ever ("unpublish it first"), and the same container's ADD was
/// refused as already attached.
#[test]
fn add_reaps_an_attachment_whose_namespace_is_gone() {
    let w = CniWorld::new();
    let conf = w.conf(json!({
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}
    }));
    let a = w.container();
    assert_eq!(w.add(&a, &conf)["ips"][0]["address"], "10.77.0.2/24");
    netlab_tests::netns::delete(a.netns.file_name().unwrap().to_str().unwrap()).unwrap();
    let b = w.container();
    assert_eq!(w.add(&b, &conf)["ips"][0]["address"], "10.77.0.2/24");
    let ports = w.lab().ports();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0]["container"], b.name.as_str());
    let containers = w.lab().status()["containers"].clone();
    assert_eq!(containers.as_array().unwrap().len(), 1, "{containers}");

    // The same container again, in a new namespace (its old one gone).
    netlab_tests::netns::delete(b.netns.file_name().unwrap().to_str().unwrap()).unwrap();
    let again = Ctr {
        netns: w.container().netns,
        ..b
    };
    w.add(&again, &conf);
    assert_eq!(w.lab().ports()[0]["container"], again.name.as_str());
}

#[test]
fn verbs_about_another_attachment_of_the_same_name_leave_it_alone() {
    let w = CniWorld::new();
    let conf = w.conf(json!({
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}
    }));
    let (one, two) = (w.container(), w.container());
    // (ab, c-d) and (ab-c, d) would both be the lab's container ab-c-d.
    let first = verb_as(&w, "ADD", &one, "ab", "c-d", &conf).ok();
    let msg = verb_as(&w, "ADD", &two, "ab-c", "d", &w.conf(json!({}))).error(101);
    assert!(
        msg.contains("ab-c-d") && msg.contains("taken by container ab's interface c-d"),
        "{msg}"
    );
    let mut check = conf.clone();
    check["prevResult"] = first;
    // The runtime's DEL after its refused ADD, its CHECK and a GC that keeps only it
    // are not about the first attachment.
    verb_as(&w, "DEL", &two, "ab-c", "d", &conf).ok();
    verb_as(&w, "CHECK", &two, "ab-c", "d", &check).error(3);
    let one_links = || run_in_ns_ok(&one.netns, &["ip", "-o", "link", "show"]);
    assert!(one_links().contains("c-d@"), "{}", one_links());
    assert_eq!(w.lab().ports().len(), 1);
    verb_as(&w, "CHECK", &one, "ab", "c-d", &check).ok();
    // GC by the pair: kept while valid, removed once it is not.
    gc_keeping(&w, "ab", "c-d", &conf).ok();
    verb_as(&w, "CHECK", &one, "ab", "c-d", &check).ok();
    gc_keeping(&w, "ab-c", "d", &conf).ok();
    assert!(!one_links().contains("c-d@"), "{}", one_links());
    assert!(!w.lab_is_up(), "GC left the network up with no attachment");
}

/// A runtime in another namespace whose network has this lab's name: its ADD is
/// refused (the network is a lab of another namespace), and the DEL that follows
/// succeeds and leaves this runtime's attachment of the same container and interface
/// alone. Before, that DEL removed it.
#[test]
fn del_from_another_namespace_leaves_its_attachment_alone() {
    let w = CniWorld::new();
    let conf = w.conf(json!({}));
    let a = w.container();
    w.add(&a, &conf);
    let verb = |command| verb_as_in(&w, &w.wan(), command, &a, &a.id, "eth0", &conf);
    let msg = verb("ADD").error(7);
    assert!(msg.contains("but the plugin runs in"), "{msg}");
    assert_eq!(verb("DEL").ok(), Value::Null);
    let links = run_in_ns_ok(&a.netns, &["ip", "-o", "link", "show", "eth0"]);
    assert!(links.contains("eth0@"), "{links}");
    assert_eq!(w.lab().status()["containers"][0]["name"], a.name.as_str());
}

#[test]
fn del_is_idempotent() {
    let w = CniWorld::new();
    let conf = w.conf(json!({}));
    // A network that was never up.
    let a = w.container();
    assert_eq!(w.verb("DEL", &a, &conf).ok(), Value::Null);
    assert!(!w.lab_is_up(), "DEL brought a lab up");
    assert!(
        !Path::new("/run/netlab")
            .join(format!("{}.lock", w.net))
            .exists()
    );

    let r = w.add(&a, &conf);
    let veth = r["interfaces"][1]["name"].as_str().unwrap().to_string();
    let mut del = conf.clone();
    del["prevResult"] = r;
    assert_eq!(w.verb("DEL", &a, &del).ok(), Value::Null);
    assert_eq!(w.verb("DEL", &a, &del).ok(), Value::Null, "second DEL");
    assert!(
        run_in_ns_ok(&a.netns, &["ip", "-o", "link", "show"])
            .lines()
            .count()
            == 1
    );
    let host_links = run_in_ns_ok(&w.host(), &["ip", "-o", "link", "show"]);
    assert!(!host_links.contains(&veth), "{host_links}");
    assert_eq!(w.lab().status()["containers"], json!([]));

    // The address is free again; and a container whose namespace is gone goes too.
    let r = w.add(&a, &conf);
    assert_eq!(r["ips"][0]["address"], "10.77.0.2/24");
    netlab_tests::netns::delete(a.netns.file_name().unwrap().to_str().unwrap()).unwrap();
    w.verb("DEL", &a, &conf).ok();
    w.verb("DEL", &a, &conf).ok();
    assert_eq!(w.lab().status()["containers"], json!([]));
    let host_links = run_in_ns_ok(&w.host(), &["ip", "-o", "link", "show"]);
    assert!(!host_links.contains("veth"), "{host_links}");

    // DEL without CNI_NETNS, and of a name netlab could never have made.
    w.call(
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "x"),
            ("CNI_IFNAME", "eth0"),
        ],
        &conf.to_string(),
    )
    .ok();
    let bad = w.conf(json!({"name": "not-a-lab-name"}));
    w.verb("DEL", &a, &bad).ok();

    // From a mount namespace where the lab's namespaces are out of sight (a /run/netns
    // of its own): a DEL of an attachment the network does not have succeeds, as
    // anywhere; one of an attachment it has is refused, and the attachment stays.
    // Before, both were refused (code 100), a review found.
    let b = w.container();
    w.add(&b, &conf);
    let del_elsewhere = |id: &str| {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", w.host().display()))
            .args(["unshare", "-m", "--propagation", "slave", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs tmpfs /run/netns && exec {}",
                netlab_tests::cni::cni_bin().display()
            ))
            .env("CNI_COMMAND", "DEL")
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", &b.netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/nonexistent")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("netlab-cni");
        let _ = child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes());
        child.wait_with_output().expect("netlab-cni")
    };
    let out = del_elsewhere("never-attached");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = del_elsewhere(&b.id);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && said.contains("another mount namespace"),
        "{said}"
    );
    assert_eq!(w.lab().status()["containers"][0]["name"], b.name.as_str());
}

#[test]
fn check_sees_a_removed_route_address_or_port() {
    let w = CniWorld::new();
    let mappings =
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
    let conf = w.conf(json!({"runtimeConfig": mappings}));
    let a = w.container();
    let mut check = conf.clone();
    check["prevResult"] = w.add(&a, &conf);
    w.verb("CHECK", &a, &check).ok();

    // Other ports than those published.
    let mut other = check.clone();
    other["runtimeConfig"]["portMappings"][0]["hostPort"] = json!(8081);
    let msg = w.verb("CHECK", &a, &other).error(102);
    assert!(msg.contains("8081"), "{msg}");
    // A prevResult that is not this attachment's.
    let mut wrong = check.clone();
    wrong["prevResult"]["ips"][0]["address"] = json!("10.77.0.9/24");
    w.verb("CHECK", &a, &wrong).error(102);
    // No prevResult at all.
    w.verb("CHECK", &a, &conf).error(7);

    run_in_ns_ok(&a.netns, &["ip", "route", "del", "default"]);
    let msg = w.verb("CHECK", &a, &check).error(102);
    assert!(msg.contains("default route"), "{msg}");
    run_in_ns_ok(
        &a.netns,
        &["ip", "route", "add", "default", "via", "10.77.0.1"],
    );
    w.verb("CHECK", &a, &check).ok();

    run_in_ns_ok(
        &a.netns,
        &["ip", "addr", "del", "10.77.0.2/24", "dev", "eth0"],
    );
    let msg = w.verb("CHECK", &a, &check).error(102);
    assert!(msg.contains("lacks address 10.77.0.2/24"), "{msg}");

    run_in_ns_ok(
        &a.netns,
        &["ip", "addr", "add", "10.77.0.2/24", "dev", "eth0"],
    );
    run_in_ns_ok(
        &a.netns,
        &["ip", "route", "replace", "default", "via", "10.77.0.1"],
    );
    w.verb("CHECK", &a, &check).ok();
    // The host end of the veth taken down: the container is cut off.
    let veth = w.lab().state().containers[0].veth.clone().unwrap();
    run_in_ns_ok(&w.host(), &["ip", "link", "set", &veth, "down"]);
    let msg = w.verb("CHECK", &a, &check).error(102);
    assert!(msg.contains("not up on bridge"), "{msg}");

    run_in_ns_ok(&a.netns, &["ip", "link", "del", "eth0"]);
    let msg = w.verb("CHECK", &a, &check).error(102);
    assert!(msg.contains("veth"), "{msg}");

    // A container the network does not know.
    let b = w.container();
    w.verb("CHECK", &b, &check).error(3);
}

/// `netlab down` refuses a network while a runtime's container is attached and runs
/// (its namespace there), naming it, as `docker network rm` refuses one with
/// endpoints; one whose namespace is gone does not hold it up, and `--force` cuts the
/// running ones off. Before, `down` took their interfaces without a word while podman
/// still showed them up with their ports (a review).
#[test]
fn down_refuses_while_a_runtimes_container_runs() {
    let mut w = CniWorld::new();
    let conf = w.conf(json!({}));
    let (a, b) = (w.container(), w.container());
    w.add(&a, &conf);
    w.add(&b, &conf);
    let e = w.lab().fails(&["down"]);
    assert!(
        e.contains("CNI runtime attached") && e.contains(&a.id) && e.contains(&b.id),
        "{e}"
    );
    assert!(e.contains("--force"), "{e}");
    assert_eq!(w.lab().status()["containers"].as_array().unwrap().len(), 2);
    // b's namespace gone without a DEL: only a holds it up.
    netlab_tests::netns::delete(b.netns.file_name().unwrap().to_str().unwrap()).unwrap();
    let e = w.lab().fails(&["down"]);
    assert!(e.contains("1 container(s)") && !e.contains(&b.id), "{e}");
    w.lab().ok(&["down", "--force"]);
    assert!(!w.lab_is_up());
    w.take_down();
    let links = run_in_ns_ok(&a.netns, &["ip", "-o", "link", "show"]);
    assert!(!links.contains("eth0"), "{links}");
}

/// The iptables datapath on a runtime's namespace that had no nf_tables tables:
/// iptables-nft makes `ip raw`, `ip nat` and `ip filter` with the network's first
/// rules, and `down` removes them again, where they hold nothing else; a table that was
/// there before, and one that holds another program's rule or policy since, stay, and
/// the base chains the rules made in a table that was there go, empty.
/// Before, the three stayed, empty, in every namespace an iptables network had been in.
#[test]
fn down_removes_the_tables_iptables_made_and_nothing_else() {
    let nft = |w: &CniWorld| run_in_ns_ok(&w.host(), &["nft", "list", "ruleset"]);
    let conf = |w: &CniWorld| w.conf(json!({"datapath": "iptables"}));

    let mut w = CniWorld::new();
    assert_eq!(nft(&w), "");
    w.add(&w.container(), &conf(&w));
    assert!(nft(&w).contains("table ip nat"));
    w.take_down();
    assert_eq!(nft(&w), "", "tables left behind");

    // The runtime's own nat table, and a rule and a policy put in since.
    let mut w = CniWorld::new();
    run_in_ns_ok(&w.host(), &["nft", "add", "table", "ip", "nat"]);
    run_in_ns_ok(
        &w.host(),
        &[
            "nft",
            "add chain ip nat POSTROUTING { type nat hook postrouting priority srcnat; }",
        ],
    );
    w.add(&w.container(), &conf(&w));
    run_in_ns_ok(
        &w.host(),
        &["iptables", "-t", "raw", "-A", "PREROUTING", "-j", "ACCEPT"],
    );
    run_in_ns_ok(&w.host(), &["iptables", "-P", "FORWARD", "DROP"]);
    w.take_down();
    let left = nft(&w);
    for table in ["table ip nat", "table ip raw", "table ip filter"] {
        assert!(left.contains(table), "{table} was removed: {left}");
    }
    assert!(left.contains("policy drop"), "{left}");
    // In the runtime's table, the base chains the network's rules made go, empty (a
    // review found `OUTPUT` and the others left), and the runtime's own stays.
    let nat = run_in_ns_ok(&w.host(), &["nft", "list", "table", "ip", "nat"]);
    assert_eq!(nat.matches("chain ").count(), 1, "{nat}");
    assert!(nat.contains("chain POSTROUTING"), "{nat}");
}

/// STATUS is 50 (not available) when the kernel lacks what the network's datapath or
/// device needs (flowtables, netkit), as the ADD then fails; 0 where it has them.
#[test]
fn status_says_when_the_kernel_lacks_the_datapath() {
    use netlab_tests::{Feature, kernel_lacks};
    for (extra, feature) in [
        (
            json!({"datapath": "nftables-flowtable"}),
            Feature::Flowtables,
        ),
        (json!({"device": "netkit"}), Feature::Netkit),
    ] {
        let w = CniWorld::new();
        let mut conf = w.conf(extra.clone());
        conf["cniVersion"] = json!("1.1.0");
        let status = w.call(&[("CNI_COMMAND", "STATUS")], &conf.to_string());
        let a = w.container();
        let add = w.verb("ADD", &a, &w.conf(extra.clone()));
        // What the kernel has is asked of it apart from netlab.
        let lacking = kernel_lacks(feature);
        assert_eq!(add.success, lacking.is_none(), "{lacking:?}: {add:?}");
        if add.success {
            status.ok();
            w.verb("DEL", &a, &w.conf(extra)).ok();
        } else {
            let msg = status.error(50);
            assert!(msg.contains("needs"), "{extra}: {msg}");
        }
    }
}

#[test]
fn version_and_status() {
    let w = CniWorld::new();
    let r = w.call(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#);
    assert_eq!(
        r.ok(),
        json!({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]})
    );
    // VERSION never fails: discovery of a version netlab does not speak.
    let r = w.call(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"0.3.1"}"#);
    assert_eq!(r.ok()["supportedVersions"][2], "1.1.0");

    let mut conf = w.conf(json!({}));
    conf["cniVersion"] = json!("1.1.0");
    let r = w.call(&[("CNI_COMMAND", "STATUS")], &conf.to_string());
    assert_eq!(r.ok(), Value::Null);
    assert!(!w.lab_is_up(), "STATUS brought a lab up");
    // Still ready once the network is up.
    let a = w.container();
    w.add(&a, &w.conf(json!({})));
    w.call(&[("CNI_COMMAND", "STATUS")], &conf.to_string()).ok();
}

#[test]
fn gc_removes_what_is_not_valid_then_the_network() {
    let w = CniWorld::new();
    let conf = w.conf(json!({
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}
    }));
    let (a, b) = (w.container(), w.container());
    w.add(&a, &conf);
    let rb = w.add(&b, &w.conf(json!({})));
    assert_eq!(w.lab().ports().len(), 1);

    // b stays, a goes, with its port.
    w.gc(&[&b], &conf).ok();
    let status = w.lab().status();
    let names: Vec<&str> = status["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [b.name.as_str()]);
    assert_eq!(w.lab().ports(), Vec::<Value>::new());
    assert_eq!(
        run_in_ns_ok(&a.netns, &["ip", "-o", "link", "show"])
            .lines()
            .count(),
        1
    );
    let mut check = w.conf(json!({}));
    check["prevResult"] = rb;
    w.verb("CHECK", &b, &check).ok();

    // Nothing valid, as libcni says it (an empty Go slice is `null`): nothing of the
    // network is left. Before, `null` was refused.
    let mut none = conf.clone();
    none["cniVersion"] = json!("1.1.0");
    none["cni.dev/valid-attachments"] = Value::Null;
    w.call(&[("CNI_COMMAND", "GC")], &none.to_string()).ok();
    assert!(!w.lab_is_up());
    let net = &w.net;
    for p in [
        format!("/run/netlab/{net}"),
        format!("/run/netlab/{net}.lock"),
        netlab::datapath::ebpf::pins::dir(net).display().to_string(),
        format!("/sys/fs/cgroup/unified/netlab-{net}"),
        format!("/sys/fs/cgroup/netlab-{net}"),
    ] {
        assert!(!Path::new(&p).exists(), "{p} is left");
    }
    let links = run_in_ns_ok(&w.host(), &["ip", "-o", "link", "show"]);
    assert!(
        !links.contains(&w.bridge()) && !links.contains("veth"),
        "{links}"
    );
    // GC of a network that is gone is nothing to do.
    w.gc(&[], &conf).ok();
}

#[test]
fn errors_are_cni_error_objects() {
    let w = CniWorld::new();
    let a = w.container();
    let add = |conf: &str| {
        w.call(
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", &a.id),
                ("CNI_NETNS", a.netns.to_str().unwrap()),
                ("CNI_IFNAME", "eth0"),
            ],
            conf,
        )
    };
    let conf = |extra: Value| w.conf(extra).to_string();
    add("{not json").error(6);
    let msg = add(&conf(json!({"cniVersion": "0.3.1"}))).error(1);
    assert!(msg.contains("0.4.0, 1.0.0, 1.1.0"), "{msg}");
    add(&conf(json!({"cniVersion": null}))).error(7);
    let msg = add(&conf(json!({"name": "no-dashes"}))).error(7);
    assert!(msg.contains("lab name"), "{msg}");
    add(&conf(json!({"name": "thirteen_char"}))).error(7);
    add(&conf(json!({"subnet": "10.77.0.0/33"}))).error(7);
    add(&conf(json!({"datapath": "pf"}))).error(7);
    let msg = add(&conf(json!({"ipam": {"type": "host-local"}}))).error(2);
    assert!(msg.contains("\"ipam\""), "{msg}");
    let msg = add(&conf(json!({"subnett": "10.0.0.0/8"}))).error(2);
    assert!(msg.contains("subnett"), "{msg}");
    add(&conf(
        json!({"runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": 80}]}}),
    ))
    .error(7);
    add(&conf(json!({"runtimeConfig": {"portMappings": "8080:80"}}))).error(6);
    // A known field of the wrong type is not dropped in silence (before, these were).
    for bad in [
        json!({"dns": "bogus"}),
        json!({"args": ["ips"]}),
        json!({"args": {"cni": "ips"}}),
        json!({"prevResult": 1}),
    ] {
        let msg = add(&conf(bad.clone())).error(7);
        assert!(msg.contains("is not an object"), "{bad}: {msg}");
    }

    // The environment.
    let good = conf(json!({}));
    let netns = a.netns.to_str().unwrap();
    w.call(&[], &good).error(4);
    w.call(&[("CNI_COMMAND", "WHAT")], &good).error(4);
    w.call(
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", &a.id),
            ("CNI_IFNAME", "eth0"),
        ],
        &good,
    )
    .error(4);
    w.call(
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "eth0"),
        ],
        &good,
    )
    .error(4);
    w.call(
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", &a.id),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "way_too_long_name"),
        ],
        &good,
    )
    .error(4);
    w.verb_with("ADD", &a, "FOO=bar", &w.conf(json!({})))
        .error(4);
    let gone = Ctr {
        id: "gone".into(),
        netns: "/run/netns/no-such-namespace".into(),
        name: "gone-eth0".into(),
    };
    w.verb("ADD", &gone, &w.conf(json!({}))).error(3);
    // GC and STATUS came with 1.1.0: refused for an older configuration (code 1), as
    // the reference plugins' library does; before, netlab-cni ran them.
    for verb in ["GC", "STATUS"] {
        let msg = w.call(&[("CNI_COMMAND", verb)], &good).error(1);
        assert!(msg.contains("1.1.0"), "{verb}: {msg}");
    }
    let good11 = conf(json!({"cniVersion": "1.1.0"}));
    w.call(&[("CNI_COMMAND", "GC")], &good11).error(7);

    // None of it left a network behind.
    assert!(!w.lab_is_up(), "a refused ADD left the lab up");

    // A refusal after the network came up takes it down again: nothing half-done.
    let conf = w.conf(json!({"runtimeConfig": {"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "hostIP": "192.0.2.1"}
    ]}}));
    // A hostIP that is not the host's is the configuration's fault, as other bad
    // mappings are: code 7.
    let msg = w.verb("ADD", &a, &conf).error(7);
    assert!(msg.contains("192.0.2.1"), "{msg}");
    assert!(!w.lab_is_up(), "the refused ADD left the lab up");
    assert!(!netlab::datapath::ebpf::pins::dir(&w.net).exists());
    assert_eq!(
        run_in_ns_ok(&a.netns, &["ip", "-o", "link", "show"])
            .lines()
            .count(),
        1
    );
    // And the same ADD without the bad port works.
    w.add(&a, &w.conf(json!({})));
}

/// What a chain, the CNI conventions and another spelling of the namespace bring, as
/// the specification has a plugin take them (a review drove each by hand):
/// - ADD passes an earlier plugin's `prevResult` on, its interfaces, addresses, routes
///   and DNS first, netlab's after them (before, they were dropped);
/// - `args.cni.ips` asks for an address as `runtimeConfig.ips` does (before, ignored);
/// - CHECK takes `CNI_NETNS` spelled another way for the same namespace
///   (`/var/run/netns/...`, `/proc/PID/ns/net`; before, a difference), an address
///   without its optional `interface` index, and leaves a chain's other routes to it.
#[test]
fn a_chain_the_conventions_args_and_another_spelling_of_the_namespace() {
    let w = CniWorld::new();
    let a = w.container();
    let earlier = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "lo", "sandbox": a.netns}],
        "ips": [{"address": "127.0.0.1/8", "interface": 0}],
        "routes": [{"dst": "192.0.2.0/24"}],
        "dns": {"nameservers": ["192.0.2.53"]}
    });
    let mut conf = w.conf(json!({"args": {"cni": {"ips": ["10.77.0.99"], "labels": []}}}));
    conf["prevResult"] = earlier.clone();
    let r = w.add(&a, &conf);
    let names: Vec<&str> = r["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4, "{r}");
    assert_eq!((names[0], names[3]), ("lo", "eth0"), "{r}");
    assert_eq!(
        r["ips"],
        json!([
            {"address": "127.0.0.1/8", "interface": 0},
            {"address": "10.77.0.99/24", "gateway": "10.77.0.1", "interface": 3}
        ])
    );
    assert_eq!(
        r["routes"],
        json!([{"dst": "192.0.2.0/24"}, {"dst": "0.0.0.0/0", "gw": "10.77.0.1"}])
    );
    assert_eq!(r["dns"], earlier["dns"]);
    let addr = run_in_ns_ok(&a.netns, &["ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(addr.contains("10.77.0.99/24"), "{addr}");

    let mut check = w.conf(json!({}));
    check["prevResult"] = r.clone();
    w.verb("CHECK", &a, &check).ok();
    let var_run = Ctr {
        id: a.id.clone(),
        netns: Path::new("/var/run/netns").join(a.netns.file_name().unwrap()),
        name: a.name.clone(),
    };
    w.verb("CHECK", &var_run, &check).ok();
    let holder = w.spawn_in(&a.netns, &["sleep", "60"]);
    let comm = format!("/proc/{}/comm", holder.pid());
    let entered = || std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep");
    assert!(
        wait_for(Duration::from_secs(5), entered),
        "nsenter did not exec"
    );
    let by_pid = Ctr {
        netns: format!("/proc/{}/ns/net", holder.pid()).into(),
        ..var_run
    };
    w.verb("CHECK", &by_pid, &check).ok();
    let mut no_index = check.clone();
    for ip in no_index["prevResult"]["ips"].as_array_mut().unwrap() {
        ip.as_object_mut().unwrap().remove("interface");
    }
    w.verb("CHECK", &a, &no_index).ok();
    // Another namespace is still a difference.
    let b = w.container();
    let elsewhere = Ctr {
        netns: b.netns.clone(),
        ..by_pid
    };
    let msg = w.verb("CHECK", &elsewhere, &check).error(102);
    assert!(msg.contains("not in CNI_NETNS"), "{msg}");
    // A default route however written, and any route via another address of the
    // network, are checked; a chain's route elsewhere is its own.
    for (route, differs) in [
        (json!({"dst": "0.0.0.0/0", "gw": "10.77.0.9"}), true),
        (json!({"dst": "0.0.0.0/00", "gw": "10.77.0.9"}), true),
        (json!({"dst": "10.0.0.0/8", "gw": "10.77.0.5"}), true),
        (json!({"dst": "198.18.0.0/15", "gw": "192.0.2.1"}), false),
        (json!({"dst": "0.0.0.0/0", "gw": "10.77.0.1"}), false),
    ] {
        let mut routed = check.clone();
        routed["prevResult"]["routes"]
            .as_array_mut()
            .unwrap()
            .push(route.clone());
        let reply = w.verb("CHECK", &a, &routed);
        match differs {
            true => {
                let msg = reply.error(102);
                assert!(msg.contains("not one netlab made"), "{route}: {msg}");
            }
            false => drop(reply.ok()),
        }
    }
    // An earlier result ADD cannot pass on as it is: code 7, nothing made.
    for prev in [
        json!({"ips": [{"address": "127.0.0.1/8", "interface": 0}]}),
        json!({"interfaces": [{"name": "lo"}], "ips": [{"address": "127.0.0.1/8", "interface": 1}]}),
        json!({"ips": {"address": "127.0.0.1/8"}}),
        json!({"routes": "none"}),
    ] {
        let mut bad = w.conf(json!({}));
        bad["prevResult"] = prev.clone();
        let msg = w.verb("ADD", &b, &bad).error(7);
        assert!(msg.contains("prevResult"), "{prev}: {msg}");
        let links = run_in_ns_ok(&b.netns, &["ip", "-o", "link", "show"]);
        assert_eq!(links.lines().count(), 1, "{prev}: {links}");
    }
    // `runtimeConfig.ips` and `args.cni.ips` may not disagree.
    let mut both = w.conf(json!({"args": {"cni": {"ips": ["10.77.0.98"]}}}));
    both["runtimeConfig"] = json!({"ips": ["10.77.0.97"]});
    let msg = w.verb("ADD", &b, &both).error(7);
    assert!(msg.contains("args.cni.ips"), "{msg}");
}

#[test]
fn the_network_must_match_its_running_lab() {
    let w = CniWorld::new();
    let a = w.container();
    w.add(&a, &w.conf(json!({})));
    let b = w.container();
    let msg = w
        .verb("ADD", &b, &w.conf(json!({"subnet": "10.78.0.0/24"})))
        .error(7);
    assert!(msg.contains("subnet 10.77.0.0/24"), "{msg}");
    w.verb("ADD", &b, &w.conf(json!({"datapath": "nftables"})))
        .error(7);
    // Leaving them out takes the lab as it is.
    let r = w.add(&b, &w.conf(json!({"subnet": null, "bridge": null})));
    assert_eq!(r["ips"][0]["address"], "10.77.0.3/24");
}

#[test]
fn two_networks_in_one_namespace() {
    let w = CniWorld::new();
    let a = w.container();
    w.add(&a, &w.conf(json!({})));
    // A second network of the same runtime, taken down before the world goes, also
    // when the test fails before its GC.
    struct Down(String);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = netlab_tests::netlab(&["--lab", &self.0, "down"]);
        }
    }
    let second = Down(format!("{}x", w.net));
    let name = &second.0;
    let conf = w.conf(json!({"name": name, "bridge": null, "subnet": "10.78.0.0/24"}));
    let b = w.container();
    // Both on eBPF behind the same uplink: their NAT ports must not overlap.
    let msg = w.verb("ADD", &b, &conf).error(101);
    assert!(msg.contains("20000-29999"), "{msg}");
    let mut conf = conf;
    conf["natPorts"] = json!("30000-30999");
    let r = w.add(&b, &conf);
    assert_eq!(r["interfaces"][0]["name"], format!("nl-{name}"));
    assert_eq!(r["ips"][0]["address"], "10.78.0.2/24");
    let status = netlab_tests::netlab(&["--lab", name, "status", "--json"]);
    let status: Value = serde_json::from_slice(&status.stdout).expect("status");
    assert_eq!(status["nat"]["port_min"], 30000);
    assert_eq!(w.lab().status()["containers"].as_array().unwrap().len(), 1);
    // The first container joins the second network too, by eth1: its default route
    // there goes after the first network's (a higher metric), rather than failing.
    let netns = a.netns.display().to_string();
    let on_eth1 = |command: &str| {
        w.call(
            &[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", &a.id),
                ("CNI_NETNS", &netns),
                ("CNI_IFNAME", "eth1"),
                ("CNI_ARGS", ""),
            ],
            &conf.to_string(),
        )
    };
    let r = on_eth1("ADD").ok();
    assert_eq!(r["ips"][0]["address"], "10.78.0.3/24", "{r}");
    let routes = run_in_ns_ok(&a.netns, &["ip", "route", "show", "default"]);
    assert!(routes.contains("via 10.77.0.1 dev eth0"), "{routes}");
    assert!(
        routes.contains("via 10.78.0.1 dev eth1") && routes.contains("metric 100"),
        "{routes}"
    );
    on_eth1("DEL").ok();
    let routes = run_in_ns_ok(&a.netns, &["ip", "route", "show", "default"]);
    assert!(!routes.contains("eth1"), "{routes}");
    w.gc(&[], &conf).ok();
    assert!(!Path::new("/run/netlab").join(name).exists());
}

#[test]
fn concurrent_adds_bring_the_network_up_once() {
    let w = CniWorld::new();
    let conf = w.conf(json!({}));
    let ctrs: Vec<Ctr> = (0..6).map(|_| w.container()).collect();
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = ctrs.iter().map(|c| s.spawn(|| w.add(c, &conf))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut addrs: Vec<&str> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().unwrap())
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 6, "{addrs:?}");
    assert_eq!(w.lab().status()["containers"].as_array().unwrap().len(), 6);
}

netlab_tests::per_datapath!(
    [published_ports_and_masquerade];
    ebpf = "ebpf",
    iptables = "iptables",
);

/// A published port from wan (the client's address kept), from the host and from
/// another container; the container reaching wan masqueraded.
fn published_ports_and_masquerade(dp: &str) {
    let w = CniWorld::new();
    let conf = w.conf(json!({
        "datapath": dp,
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 8000, "protocol": "tcp"}]},
    }));
    let (web, other) = (w.container(), w.container());
    w.add(&web, &conf);
    w.add(&other, &w.conf(json!({"datapath": dp})));
    let lab = w.lab();
    let ports = lab.ports();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["container"], web.name.as_str());
    assert_eq!(ports[0]["spec"], "8080:8000/tcp");

    let server = lab.http_server(&web.name, 8000);
    assert_eq!(
        w.curl_in(&w.wan(), "http://198.51.100.2:8080/"),
        "200",
        "from wan"
    );
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
    assert_eq!(
        lab.curl(&other.name, "http://198.51.100.2:8080/"),
        "200",
        "hairpin from the other container"
    );
    assert_eq!(
        lab.curl(&other.name, "http://10.77.0.2:8000/"),
        "200",
        "container to container"
    );
    let log = server.finish();
    let first = log
        .lines()
        .find(|l| l.contains("GET /"))
        .unwrap_or_default();
    assert!(
        first.starts_with(&WAN_ADDR.to_string()),
        "the container should see the wan client: {log}"
    );

    let wan_server = w.http_server_in(&w.wan(), "203.0.113.1", 80);
    assert_eq!(lab.curl(&web.name, "http://203.0.113.1/"), "200", "to wan");
    let log = wan_server.finish();
    assert!(
        log.lines().any(|l| l.starts_with("198.51.100.2 ")),
        "wan should see the uplink address: {log}"
    );

    // DEL withdraws the port at once.
    w.verb("DEL", &web, &conf).ok();
    assert_eq!(lab.ports(), Vec::<Value>::new());
    let _server = lab.http_server(&other.name, 8000);
    assert_eq!(w.curl_in(&w.wan(), "http://198.51.100.2:8080/"), "000");
}

netlab_tests::per_datapath!(
    [a_dual_stack_network];
    dual_stack_ebpf = "ebpf",
    dual_stack_iptables = "iptables",
    dual_stack_nftables = "nftables",
);

/// `"subnet6"` makes the network dual-stack: ADD's result has both addresses and both
/// default routes, the container has them, a port mapping answers on both families,
/// CHECK passes, and a network up without IPv6 refuses a configuration that has it.
fn a_dual_stack_network(dp: &str) {
    let w = CniWorld::dual_stack();
    let conf = w.conf(json!({
        "datapath": dp,
        "subnet6": "fd00:77::/64",
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 8000, "protocol": "tcp"}]},
    }));
    let web = w.container();
    let r = w.add(&web, &conf);
    assert_eq!(
        r["ips"],
        json!([
            {"address": "10.77.0.2/24", "gateway": "10.77.0.1", "interface": 2},
            {"address": "fd00:77::2/64", "gateway": "fd00:77::1", "interface": 2},
        ])
    );
    assert_eq!(
        r["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.77.0.1"}, {"dst": "::/0", "gw": "fd00:77::1"}])
    );
    let addr = run_in_ns_ok(&web.netns, &["ip", "-6", "-o", "addr", "show", "eth0"]);
    assert!(addr.contains("fd00:77::2/64"), "{addr}");

    let mut check = conf.clone();
    check["prevResult"] = r.clone();
    w.verb("CHECK", &web, &check).ok();
    // A prevResult without one of the two addresses is not this attachment's.
    let mut one = check.clone();
    one["prevResult"]["ips"] = json!([r["ips"][1].clone()]);
    let msg = w.verb("CHECK", &web, &one).error(102);
    assert!(msg.contains("no address 10.77.0.2/24"), "{msg}");

    let lab = w.lab();
    let _server = lab.spawn(
        &web.name,
        &["python3", "-m", "http.server", "-b", "::", "8000"],
    );
    assert!(netlab_tests::wait_for(
        std::time::Duration::from_secs(10),
        || lab.exec_ok(&web.name, &["ss", "-Htln"]).contains(":8000 ")
    ));
    for url in [
        "http://[2001:db8:100::2]:8080/",
        "http://198.51.100.2:8080/",
    ] {
        assert_eq!(w.curl_in(&w.wan(), url), "200", "{url} from wan");
    }
    lab.exec_ok(
        &web.name,
        &["ping", "-6", "-c", "1", "-W", "3", "2001:db8:113::1"],
    );

    // The network is up with IPv6: a configuration without it still fits (what it
    // leaves out is whatever the network has), one with another IPv6 subnet does not.
    let other = w.container();
    let msg = w
        .verb(
            "ADD",
            &other,
            &w.conf(json!({"datapath": dp, "subnet6": "fd00:78::/64"})),
        )
        .error(7);
    assert!(msg.contains("subnet6 fd00:77::/64"), "{msg}");
    w.verb("DEL", &web, &conf).ok();
}

/// ADD touches nothing in the runtime's namespace but the interface it makes: `lo` is
/// the runtime's (podman brings it up itself), and a refused ADD leaves the namespace
/// as it found it.
#[test]
fn add_leaves_the_runtimes_lo_alone() {
    let w = CniWorld::new();
    let a = w.bare_container();
    let lo_up = || run_in_ns_ok(&a.netns, &["ip", "-o", "link", "show", "lo"]).contains(",UP");
    assert!(!lo_up(), "a new namespace's lo is down");
    let refused = w.conf(json!({
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "hostIP": "192.0.2.77"}]},
    }));
    w.verb("ADD", &a, &refused).error(7);
    assert!(!lo_up(), "a refused ADD brought lo up");
    let links = run_in_ns_ok(&a.netns, &["ip", "-o", "link", "show"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    w.add(&a, &w.conf(json!({})));
    assert!(!lo_up(), "ADD brought the runtime's lo up");
}

netlab_tests::per_datapath!(
    [check_sees_a_port_removed_from_the_kernel];
    kernel_ebpf = "ebpf",
    kernel_iptables = "iptables",
    kernel_nftables = "nftables",
);

netlab_tests::per_datapath!(
    [check_sees_the_networks_rules_removed];
    rules_iptables = "iptables",
    rules_nftables = "nftables",
);

/// CHECK looks at the network's own rules too, not only the container's ports: the
/// jump to the published ports removed (iptables) or their chain flushed (nftables),
/// or the masquerade gone, behind netlab's back, fails it, ports or none.
fn check_sees_the_networks_rules_removed(dp: &str) {
    let w = CniWorld::new();
    let conf = w.conf(json!({"datapath": dp}));
    let a = w.container();
    let mut check = conf.clone();
    check["prevResult"] = w.add(&a, &conf);
    w.verb("CHECK", &a, &check).ok();
    let run = |cmd: &str| run_in_ns_ok(&w.host(), &cmd.split(' ').collect::<Vec<_>>());
    let (jump, masquerade) = match dp {
        "iptables" => (
            "iptables-nft -t nat -F PREROUTING",
            "iptables-nft -t nat -F POSTROUTING",
        ),
        _ => (
            "nft flush chain ip netlab publish",
            "nft flush chain ip netlab nat_postrouting",
        ),
    };
    for removed in [jump, masquerade] {
        run(removed);
        let msg = w.verb("CHECK", &a, &check).error(102);
        assert!(msg.contains("is gone"), "after {removed}: {msg}");
    }
    w.verb("DEL", &a, &conf).ok();
}

/// CHECK looks for the container's ports in the kernel, not only in the lab's state: a
/// rule, element or map entry removed (or an element changed) behind netlab's back
/// fails it; DEL still works.
fn check_sees_a_port_removed_from_the_kernel(dp: &str) {
    let w = CniWorld::new();
    let mappings =
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
    let conf = w.conf(json!({"datapath": dp, "runtimeConfig": mappings}));
    let a = w.container();
    let mut check = conf.clone();
    check["prevResult"] = w.add(&a, &conf);
    w.verb("CHECK", &a, &check).ok();
    match dp {
        "iptables" => {
            run_in_ns_ok(&w.host(), &["iptables-nft", "-t", "nat", "-F", "NETLAB"]);
        }
        "nftables" => {
            // Led elsewhere (another container port): not the port CHECK asks about.
            let nft = |args: &str| {
                let mut cmd = vec!["nft"];
                cmd.extend(args.split(' '));
                run_in_ns_ok(&w.host(), &cmd);
            };
            nft("delete element ip netlab ports_any { tcp . 8080 }");
            nft("add element ip netlab ports_any { tcp . 8080 : 10.77.0.2 . 81 }");
            let msg = w.verb("CHECK", &a, &check).error(102);
            assert!(msg.contains("no longer has it"), "{msg}");
            run_in_ns_ok(
                &w.host(),
                &["nft", "flush", "map", "ip", "netlab", "ports_any"],
            );
        }
        _ => {
            // PubKey: any address, port 8080 (0x1f90) in network order, TCP, padding.
            let map = netlab::datapath::ebpf::pins::dir(&w.net).join("PUBLISH");
            let out = std::process::Command::new("bpftool")
                .args(["map", "delete", "pinned"])
                .arg(&map)
                .args(["key", "0", "0", "0", "0", "0x1f", "0x90", "6", "0"])
                .output()
                .expect("run bpftool");
            assert!(out.status.success(), "bpftool: {out:?}");
        }
    }
    let msg = w.verb("CHECK", &a, &check).error(102);
    assert!(
        msg.contains("8080:80/tcp") && msg.contains("no longer has it"),
        "{msg}"
    );
    w.verb("DEL", &a, &conf).ok();
}

/// DEL of an attachment an ADD killed half-way was making (its interface made, the
/// network's state not saying so yet) rolls back what that ADD left, and succeeds.
/// Before, DEL succeeded leaving `eth0`, with its address, in the container until
/// another call on the network ran (a review).
#[test]
fn del_after_an_add_killed_half_way_leaves_no_interface() {
    let w = CniWorld::new();
    let conf = w.conf(json!({}));
    // The network up already: the next ADD only attaches.
    let a = w.container();
    w.add(&a, &conf);
    let b = w.container();
    let strace = [
        "strace",
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-b",
        "execve",
        "-e",
        "trace=rename",
        "-e",
        "inject=rename:signal=SIGKILL:when=2",
    ];
    let killed = w.verb_wrapped(&strace, "ADD", &b, "", &conf);
    assert!(!killed.success, "not killed: {killed:?}");
    let journal = Path::new("/run/netlab").join(&w.net).join("journal.json");
    let links = || run_in_ns_ok(&b.netns, &["ip", "-o", "link", "show"]);
    assert!(
        journal.exists() && links().contains("eth0"),
        "the kill came at another moment than the test is for: {}",
        links()
    );
    w.verb("DEL", &b, &conf).ok();
    assert!(!links().contains("eth0"), "DEL left {}", links());
    assert!(!journal.exists());
    // The other attachment is untouched.
    let theirs = run_in_ns_ok(&a.netns, &["ip", "-o", "link", "show"]);
    assert!(theirs.contains("eth0"), "{theirs}");
}
