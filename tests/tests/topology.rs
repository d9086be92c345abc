//! The seed's container network, built by netlab in sandbox labs (issue: foundation).

use std::path::Path;

use aya::programs::{SchedClassifier, TcAttachType};
use netlab_tests::{BRIDGE_ADDR, Lab, UPLINK_ADDR, in_ns, netlab, require_root, unique_lab};

fn ping(lab: &Lab, from: &str, to: &str) -> bool {
    lab.exec(from, &["ping", "-c", "1", "-W", "2", to])
        .status
        .success()
}

#[test]
fn containers_on_the_bridge_reach_each_other() {
    let lab = Lab::sandbox(&[]);
    assert_eq!(lab.ok(&["run", "a"]).trim(), "a 172.18.0.2");
    assert_eq!(lab.ok(&["run", "b"]).trim(), "b 172.18.0.3");
    assert!(ping(&lab, "a", "172.18.0.3"), "a cannot reach b");
    assert!(ping(&lab, "b", "172.18.0.2"), "b cannot reach a");
}

/// Two containers whose names hash to one host-side veth name (28 bits: names of one
/// lab can meet) both run, and `rm` of one leaves the other as it was.
#[test]
fn two_names_of_one_veth_hash_both_run() {
    let lab = Lab::sandbox(&[]);
    let mut seen = std::collections::HashMap::new();
    let (a, b) = (0u32..)
        .map(|n| format!("c{n}"))
        .find_map(|name| {
            let v = netlab::lab::names::veth(&lab.name, &name);
            seen.insert(v, name.clone()).map(|other| (other, name))
        })
        .unwrap();
    lab.ok(&["run", &a]);
    lab.ok(&["run", &b]);
    let status = lab.status();
    let veths: Vec<&str> = status["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["veth"].as_str().unwrap())
        .collect();
    assert_ne!(veths[0], veths[1], "{a} and {b}: {veths:?}");
    assert!(ping(&lab, &a, "172.18.0.3") && ping(&lab, &b, "172.18.0.2"));
    lab.ok(&["rm", &a]);
    assert!(
        ping(&lab, &b, &BRIDGE_ADDR.to_string()),
        "{b} lost its network with {a}"
    );
    assert!(ping(&lab, &b, &UPLINK_ADDR.to_string()));
}

/// A link of the lab host's that is not netlab's and holds the name a container's
/// veth would get: the container gets another name, runs, and `rm` leaves that link
/// alone. Before, `run` failed on the kernel's "File exists", for ever for that name.
#[test]
fn a_foreign_link_of_the_veths_name_is_passed_over() {
    let lab = Lab::sandbox(&[]);
    let theirs = netlab::lab::names::veth(&lab.name, "z");
    lab.exec_ok("host", &["ip", "link", "add", &theirs, "type", "bridge"]);
    lab.ok(&["run", "z"]);
    let veth = lab.status()["containers"][0]["veth"].clone();
    assert_ne!(veth, theirs.as_str());
    assert!(ping(&lab, "z", &BRIDGE_ADDR.to_string()));
    lab.ok(&["rm", "z"]);
    lab.exec_ok("host", &["ip", "link", "show", &theirs]);
}

#[test]
fn container_reaches_bridge_and_host_uplink() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a", "--ip", "172.18.5.9"]);
    assert!(ping(&lab, "a", &BRIDGE_ADDR.to_string()));
    assert!(ping(&lab, "a", &UPLINK_ADDR.to_string()));
    let route = lab.exec_ok("a", &["ip", "-4", "route", "show", "default"]);
    assert!(route.contains("via 172.18.0.1"), "default route: {route}");
}

#[test]
fn network_none_has_only_loopback() {
    let lab = Lab::sandbox(&[]);
    assert_eq!(lab.ok(&["run", "iso", "--network", "none"]).trim(), "iso");
    let links = lab.exec_ok("iso", &["ip", "-o", "link", "show"]);
    let names: Vec<&str> = links.lines().filter_map(|l| l.split(": ").nth(1)).collect();
    assert_eq!(names, ["lo"], "links: {links}");
    assert!(links.contains("UP"), "lo is not up: {links}");
}

#[test]
fn network_host_shares_the_lab_host_namespace() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "h", "--network", "host"]);
    let links = lab.exec_ok("h", &["ip", "-o", "link", "show"]);
    assert!(
        links.contains(&format!("nl-{}", lab.name)),
        "not the host namespace: {links}"
    );
    assert!(links.contains("eth0"));
}

/// The bridge and a container's interface take the uplink's MTU: a lab brought up in
/// a namespace whose uplink has 1400 (not the default 1500, which they would have
/// anyway) gets 1400 on both.
#[test]
fn uplink_and_bridge_share_the_mtu() {
    let outer = Lab::sandbox(&[]);
    let host = outer.ns("host");
    netlab_tests::run_in_ns_ok(&host, &["ip", "link", "set", "eth0", "mtu", "1400"]);
    /// A lab in the outer lab's host namespace, taken down before it.
    struct Inner<'a>(&'a Path, String);
    impl Inner<'_> {
        fn ok(&self, args: &[&str]) -> String {
            let bin = netlab_tests::netlab_bin();
            let mut cmd = vec![bin.to_str().unwrap(), "--lab", &self.1];
            cmd.extend_from_slice(args);
            netlab_tests::run_in_ns_ok(self.0, &cmd)
        }
    }
    impl Drop for Inner<'_> {
        fn drop(&mut self) {
            // Never a panic here: a failed `up` leaves nothing to take down.
            let bin = netlab_tests::netlab_bin();
            let cmd = [bin.to_str().unwrap(), "--lab", &self.1, "down", "--force"];
            let _ = netlab_tests::run_in_ns(self.0, &cmd);
        }
    }
    let inner = Inner(&host, unique_lab());
    inner.ok(&[
        "up",
        "--datapath",
        "iptables",
        "--uplink",
        "eth0",
        "--subnet",
        "10.52.0.0/24",
        // Apart from the outer eBPF lab's, behind the same uplink.
        "--nat-ports",
        "30000-30999",
    ]);
    inner.ok(&["run", "a"]);
    let bridge = format!("nl-{}", inner.1);
    let shown = netlab_tests::run_in_ns_ok(&host, &["ip", "-o", "link", "show", &bridge]);
    assert!(shown.contains("mtu 1400"), "{shown}");
    let ctr = inner.ok(&["exec", "a", "--", "ip", "-o", "link", "show", "eth0"]);
    assert!(ctr.contains("mtu 1400"), "{ctr}");
}

/// The bridge keeps the MAC it was made with while containers come and go (a bridge
/// without one takes its lowest port's, and containers that cached it for their
/// gateway lose the gateway when that container goes), and it is a locally
/// administered one, as Docker's.
#[test]
fn the_bridge_keeps_its_mac() {
    let lab = Lab::sandbox(&[]);
    let bridge = format!("nl-{}", lab.name);
    let mac = || {
        let out = lab.exec_ok("host", &["ip", "-o", "link", "show", &bridge]);
        let at = out.find("link/ether ").expect("a MAC") + "link/ether ".len();
        out[at..at + 17].to_string()
    };
    let first = mac();
    let octet = u8::from_str_radix(&first[..2], 16).unwrap();
    assert_eq!(
        octet & 0x03,
        0x02,
        "{first}: not locally administered unicast"
    );
    for c in ["a", "b", "c"] {
        lab.ok(&["run", c]);
        assert_eq!(mac(), first, "after run {c}");
    }
    for c in ["c", "a", "b"] {
        lab.ok(&["rm", c]);
        assert_eq!(mac(), first, "after rm {c}");
    }
}

/// `run --mac-address` gives the container's interface that MAC, as Docker's does; the
/// container works (its own MAC is what the eBPF datapath lets it send from); one
/// already taken (by a container, or by an interface of the lab host), a bad one, or
/// one for a container without a veth is refused.
#[test]
fn run_with_a_mac_address() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a", "--mac-address", "02:42:AC:12:00:42"]);
    lab.ok(&["run", "b"]);
    let link = lab.exec_ok("a", &["ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("link/ether 02:42:ac:12:00:42"), "{link}");
    assert!(ping(&lab, "a", "172.18.0.3") && ping(&lab, "b", "172.18.0.2"));
    assert_eq!(lab.status()["containers"][0]["mac"], "02:42:ac:12:00:42");
    let err = lab.fails(&["run", "c", "--mac-address", "02:42:ac:12:00:42"]);
    assert!(err.contains("already used by container a"), "{err}");
    let err = lab.fails(&["run", "c", "--mac-address", "02:42:ac:12:00"]);
    assert!(err.contains("six hex octets"), "{err}");
    // Nor the bridge's or the uplink's: the container would answer for the host.
    for link in [lab.state().bridge, "eth0".to_string()] {
        let shown = lab.exec_ok("host", &["ip", "-o", "link", "show", &link]);
        let mac = shown
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .expect("a MAC")
            .to_uppercase();
        let err = lab.fails(&["run", "c", "--mac-address", &mac]);
        assert!(
            err.contains(&format!("is the lab host's interface {link}'s")),
            "{err}"
        );
    }
    let err = lab.fails(&[
        "run",
        "c",
        "--network",
        "none",
        "--mac-address",
        "02:42:ac:12:00:43",
    ]);
    assert!(err.contains("needs --network bridge"), "{err}");
    assert_eq!(lab.status()["containers"].as_array().unwrap().len(), 2);
}

/// `up` of a lab whose host namespace was removed behind netlab's back removes what
/// is left of it, as every command does, and brings it up anew (it said "already up:
/// run `netlab down` first" before).
#[test]
fn up_again_after_the_host_namespace_was_removed() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a"]);
    netlab::netlink::netns::delete(&format!("{}-host", lab.name)).unwrap();
    let out = lab.run(&["up", "--sandbox"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("was gone"), "{err}");
    assert_eq!(lab.ok(&["run", "a"]).trim(), "a 172.18.0.2");
    assert!(ping(&lab, "a", "198.51.100.1"), "a cannot reach wan");
}

#[test]
fn down_leaves_nothing_behind() {
    require_root();
    let name = unique_lab();
    let out = netlab(&["--lab", &name, "up", "--sandbox"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for c in ["a", "b"] {
        assert!(netlab(&["--lab", &name, "run", c]).status.success());
    }
    let out = netlab(&["--lab", &name, "down"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout);
    assert!(
        !netns.lines().any(|l| l.starts_with(&format!("{name}-"))),
        "namespaces left: {netns}"
    );
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains(&format!("netlab:{name}")));
    assert!(!Path::new(&format!("/run/netlab/{name}")).exists());
    assert!(!netlab::datapath::ebpf::pins::dir(&name).exists());
    // A second down says the lab does not exist.
    let again = netlab(&["--lab", &name, "down"]);
    assert!(!again.status.success());
}

#[test]
fn down_succeeds_on_a_half_gone_lab() {
    require_root();
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a"]);
    // Someone removed the container's and the wan namespace behind netlab's back.
    netlab::netlink::netns::delete(&format!("{}-a", lab.name)).unwrap();
    netlab::netlink::netns::delete(&format!("{}-wan", lab.name)).unwrap();
    lab.ok(&["down"]);
    assert!(!lab.ns("host").exists());
    // The guard's own down now finds nothing: bring the lab back so it has one to do.
    lab.ok(&["up", "--sandbox"]);
}

/// `down` from a mount namespace that was made after the lab's namespaces and that
/// then mounted /run/netns over itself, as podman and `ip netns add` do when it is not a
/// mount point yet (a container runtime, a systemd service with private mounts): there
/// every namespace file is mounted twice, once out of reach below the directory's own
/// mount, and unlinking it fails with EBUSY. `down` must still remove exactly the lab's
/// namespaces, seen from there and from the machine's mount namespace.
#[test]
fn down_from_a_runtimes_mount_namespace() {
    let mut lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a"]);
    let runtime = netlab_tests::MountNs::new(
        "mount --rbind /run/netns /run/netns && mount --make-rshared /run/netns",
    );
    let ns_file = format!("/run/netns/{}-host", lab.name);
    let seen_in = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .unwrap()
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some(ns_file.as_str()))
            .count()
    };
    assert_eq!(
        seen_in(&runtime.pid().to_string()),
        2,
        "the namespace mounted twice there"
    );
    lab.mount_ns = Some(runtime.path());
    lab.ok(&["down"]);
    for ns in ["host", "wan", "a"] {
        assert!(!lab.ns(ns).exists(), "{ns} left in the machine's view");
    }
    assert_eq!(
        seen_in(&runtime.pid().to_string()),
        0,
        "left in the runtime's view"
    );
    assert_eq!(seen_in("self"), 0, "left mounted in the machine's view");
    lab.forget();
}

/// `down` of a lab that never existed deletes nothing, even where namespaces carry
/// names a lab of that name would have given them (as containerd's `cni-<uuid>` and
/// podman's `netns-<uuid>` would for labs called `cni` and `netns`).
#[test]
fn down_of_a_lab_that_never_was_deletes_nothing() {
    require_root();
    let name = unique_lab();
    let theirs: Vec<String> = ["host", "wan", "other", "c0"]
        .iter()
        .map(|n| format!("{name}-{n}"))
        .collect();
    for ns in &theirs {
        netlab::netlink::netns::create(ns).unwrap();
    }
    let out = netlab(&["--lab", &name, "down"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    for ns in &theirs {
        assert!(netlab::netlink::netns::exists(ns), "{ns} was deleted");
        netlab::netlink::netns::delete(ns).unwrap();
    }
}

/// A lab whose host namespace was deleted and made again under its name behind
/// netlab's back is gone: the next command says so and removes what was left of it
/// (its pins), and leaves the new namespace, which is someone else's, alone.
#[test]
fn a_lab_whose_namespace_was_made_again_is_gone() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a"]);
    let host = format!("{}-host", lab.name);
    netlab::netlink::netns::delete(&host).unwrap();
    netlab::netlink::netns::create(&host).unwrap();
    let err = lab.fails(&["status"]);
    assert!(err.contains("is gone"), "{err}");
    assert!(
        netlab::netlink::netns::exists(&host),
        "the new namespace was deleted"
    );
    assert!(!netlab::datapath::ebpf::pins::dir(&lab.name).exists());
    assert!(!lab.ns("a").exists(), "the container's namespace is left");
    assert!(!lab.ns("wan").exists(), "the wan namespace is left");
    lab.fails(&["status"]);
    netlab::netlink::netns::delete(&host).unwrap();
    lab.forget();
}

/// Publishing to a container whose namespace was removed behind netlab's back is
/// refused: the port would answer nowhere.
#[test]
fn publish_to_a_container_that_is_gone_is_refused() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a"]);
    netlab::netlink::netns::delete(&format!("{}-a", lab.name)).unwrap();
    let err = lab.fails(&["publish", "a", "8080:80"]);
    assert!(err.contains("is gone"), "{err}");
    assert!(lab.ports().is_empty());
    lab.ok(&["rm", "a"]);
}

/// netlab's pin directories are root's alone (0700), so nobody else can put maps
/// there for root to open as its own; one somebody else made is refused.
#[test]
fn pins_are_roots_alone() {
    use std::os::unix::fs::MetadataExt;
    let lab = Lab::sandbox(&[]);
    for d in [
        netlab::datapath::ebpf::pins::root(),
        netlab::datapath::ebpf::pins::dir(&lab.name),
    ] {
        let m = std::fs::metadata(&d).unwrap();
        assert_eq!(m.uid(), 0, "{}", d.display());
        assert_eq!(m.mode() & 0o077, 0, "{} is {:o}", d.display(), m.mode());
    }
}

/// A lab an earlier netlab brought up has its pins under an earlier layout (`v3`):
/// this netlab cannot read its maps and says so in one line, and `down` removes those
/// pins with the rest of the lab.
#[test]
fn pins_of_an_earlier_layout_go_with_the_lab() {
    use netlab::datapath::ebpf::pins;
    let lab = Lab::sandbox(&[]);
    let old = pins::root().join("v3").join(&lab.name);
    std::fs::create_dir_all(&old).unwrap();
    let map = old.join("CT");
    let out = std::process::Command::new("bpftool")
        .args(["map", "create"])
        .arg(&map)
        .args(["type", "hash", "key", "4", "value", "4", "entries", "1"])
        .args(["name", "netlab_old"])
        .output()
        .expect("bpftool");
    assert!(out.status.success(), "{out:?}");
    // What an earlier netlab's lab looks like to this one: its own layout absent.
    std::fs::remove_dir_all(pins::dir(&lab.name)).unwrap();
    let err = lab.fails(&["stats"]);
    assert!(
        err.contains("earlier netlab") && err.contains("v3"),
        "{err}"
    );
    lab.ok(&["down"]);
    assert!(!old.exists(), "{} is left", old.display());
    lab.forget();
}

#[test]
fn up_twice_is_a_clear_error() {
    let lab = Lab::sandbox(&[]);
    let err = lab.fails(&["up", "--sandbox"]);
    assert!(err.contains("already up"), "{err}");
}

#[test]
fn bad_up_input_is_refused_and_leaves_nothing() {
    require_root();
    let name = unique_lab();
    for args in [
        vec!["up", "--sandbox", "--subnet", "10.0.0.1/8"],
        vec!["up", "--sandbox", "--subnet", "banana"],
        vec!["up", "--sandbox", "--nat-ports", "30000-20000"],
        // Inside the lab host's ephemeral ports (32768-60999).
        vec!["up", "--sandbox", "--nat-ports", "40000-40000"],
        vec!["up", "--sandbox", "--udp-timeout", "0"],
        vec!["up", "--sandbox", "--udp-timeout", "99999999999"],
        vec!["up", "--sandbox", "--uplink", "eth0"],
        vec!["up", "--sandbox", "--subnet", "198.51.100.0/24"],
        // Special-purpose ranges (RFC 6890): loopback, "this network", reserved,
        // link-local, multicast.
        vec!["up", "--sandbox", "--subnet", "127.0.0.0/24"],
        vec!["up", "--sandbox", "--subnet", "0.0.0.0/8"],
        vec!["up", "--sandbox", "--subnet", "240.0.0.0/24"],
        vec!["up", "--sandbox", "--subnet", "169.254.0.0/16"],
        vec!["up", "--sandbox", "--subnet", "224.0.0.0/24"],
        vec!["up", "--sandbox", "--gc-interval", "0"],
        // Negative numbers say the range, as out-of-range ones do.
        vec!["up", "--sandbox", "--tcp-timeout", "-1"],
        vec!["up", "--sandbox", "--conntrack-max", "-1"],
        vec!["up", "--sandbox", "--gc-interval", "-1"],
        // The routed baseline tracks no connection.
        vec![
            "up",
            "--sandbox",
            "--datapath",
            "routed",
            "--udp-timeout",
            "5",
        ],
        vec![
            "up",
            "--sandbox",
            "--datapath",
            "iptables",
            "--no-fast-path",
        ],
        vec!["up", "--sandbox", "--datapath", "nftables", "--debug"],
        vec!["up", "--sandbox", "--datapath", "pf"],
        // A flag that does not apply is refused at its default value too.
        vec![
            "up",
            "--sandbox",
            "--datapath",
            "routed",
            "--nat-ports",
            "20000-29999",
        ],
        vec![
            "up",
            "--sandbox",
            "--datapath",
            "routed",
            "--tcp-timeout",
            "7440",
        ],
        vec![
            "up",
            "--sandbox",
            "--datapath",
            "iptables",
            "--conntrack-max",
            "262144",
        ],
        vec![
            "up",
            "--sandbox",
            "--datapath",
            "nftables",
            "--gc-interval",
            "250",
        ],
    ] {
        let mut full = vec!["--lab", name.as_str()];
        full.extend(args.iter());
        let out = netlab(&full);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        if args.contains(&"-1") {
            assert!(err.contains("-1 is not in "), "{args:?}: {err}");
        }
        assert!(
            !Path::new(&format!("/run/netlab/{name}")).exists(),
            "{args:?} left state"
        );
        assert!(
            !netlab::netlink::netns::exists(&format!("{name}-host")),
            "{args:?} left a namespace"
        );
    }
    let out = netlab(&["--lab", "bad-name", "up", "--sandbox"]);
    assert!(!out.status.success());
}

#[test]
fn bad_run_input_is_refused_and_changes_nothing() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a"]);
    let before = lab.status();
    for (args, expect) in [
        (vec!["run", "a"], "already exists"),
        (
            vec!["run", "b", "--ip", "10.9.9.9"],
            "outside the lab subnet",
        ),
        (vec!["run", "b", "--ip", "172.18.0.1"], "bridge"),
        (vec!["run", "b", "--ip", "172.18.0.2"], "already used"),
        (
            vec!["run", "b", "--network", "none", "--ip", "172.18.0.9"],
            "--ip",
        ),
        (vec!["run", "bad name"], "invalid container name"),
        (vec!["run", "host"], "reserved"),
        (vec!["rm", "nosuch"], "no container"),
        (vec!["exec", "nosuch", "--", "true"], "no container"),
    ] {
        let err = lab.fails(&args);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert_eq!(lab.status(), before, "a refused command changed the lab");
    assert!(!lab.ns("b").exists());
}

#[test]
fn exec_of_a_missing_program_exits_127() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a"]);
    let out = lab.run(&["exec", "a", "--", "no-such-program"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-program"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    // As in `docker exec`, the `--` may be left out, and the command's own options
    // are its own (before, `exec a true` was refused: "unexpected argument 'true'").
    let out = lab.run(&["exec", "a", "echo", "-n", "hi"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi", "{out:?}");
    let out = lab.run(&["exec", "a", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // A usage error is one line, clap's tip after a semicolon.
    let err = lab.fails(&["run", "-bad"]);
    assert!(err.contains("found; tip: "), "{err}");
}

#[test]
fn commands_on_a_lab_that_is_not_up_fail_clearly() {
    require_root();
    let name = unique_lab();
    for args in [
        vec!["status"],
        vec!["ports"],
        vec!["conntrack"],
        vec!["publish", "a", "80"],
        vec!["run", "a"],
        vec!["exec", "a", "--", "true"],
        vec!["down"],
    ] {
        let mut full = vec!["--lab", name.as_str()];
        full.extend(args.iter());
        let out = netlab(&full);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr)
                .trim_end()
                .lines()
                .count(),
            1
        );
    }
    assert!(!Path::new(&format!("/run/netlab/{name}")).exists());
    assert!(
        !Path::new(&format!("/run/netlab/{name}.lock")).exists(),
        "a command on a lab that does not exist left its lock file"
    );
}

#[test]
fn rm_removes_the_container_and_its_veth() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a"]);
    let veth = lab.status()["containers"][0]["veth"]
        .as_str()
        .unwrap()
        .to_string();
    lab.ok(&["rm", "a"]);
    assert!(!lab.ns("a").exists());
    let links = lab.exec_ok("host", &["ip", "-o", "link", "show"]);
    assert!(!links.contains(&veth), "{links}");
    // The freed name and address can be used again.
    assert_eq!(lab.ok(&["run", "a"]).trim(), "a 172.18.0.2");
}

#[test]
fn ebpf_programs_attach_by_tcx_and_count() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a"]);
    let attached = in_ns(&lab.ns("host"), || {
        let mut names = Vec::new();
        for (iface, dir) in [
            ("eth0", TcAttachType::Egress),
            ("eth0", TcAttachType::Ingress),
        ] {
            let (_, progs) = SchedClassifier::query_tcx(iface, dir).expect("query tcx");
            names.extend(
                progs
                    .iter()
                    .filter_map(|p| p.name_as_str().map(str::to_string)),
            );
        }
        let (_, progs) =
            SchedClassifier::query_tcx(&format!("nl-{}", lab.name), TcAttachType::Ingress)
                .expect("query tcx");
        names.extend(
            progs
                .iter()
                .filter_map(|p| p.name_as_str().map(str::to_string)),
        );
        names
    });
    assert_eq!(
        attached,
        ["uplink_egress", "uplink_ingress", "bridge_ingress"]
    );
    let before = lab.stat("counters", "uplink_egress_packets");
    assert!(ping(&lab, "a", "203.0.113.1"));
    assert!(lab.stat("counters", "uplink_egress_packets") > before);
    assert!(lab.stat("counters", "bridge_ingress_packets") > 0);
}

/// A state someone else changed into something netlab cannot read (it writes it whole)
/// stops every command with one line that says what to do, and touches nothing.
#[test]
fn an_unreadable_state_is_said_so() {
    let lab = Lab::sandbox(&["--datapath", "iptables"]);
    let path = format!("/run/netlab/{}/state.json", lab.name);
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, "{").unwrap();
    for args in [&["status"][..], &["down"]] {
        let err = lab.fails(args);
        assert!(
            err.contains("is unreadable") && err.contains("by hand"),
            "{err}"
        );
    }
    std::fs::write(&path, good).unwrap();
    lab.ok(&["status"]);
}

/// Output that cannot be written (`> /dev/full`) ends the command with one line on
/// stderr and exit 1, saying what the command did is done; before, a panic with its
/// backtrace and exit 101, after `run` had made the container (a review).
#[test]
fn output_that_cannot_be_written_is_one_line() {
    let lab = Lab::sandbox(&[]);
    for args in [vec!["run", "a"], vec!["status"], vec!["stats", "--json"]] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let out = std::process::Command::new(netlab_tests::netlab_bin())
            .args(["--lab", &lab.name])
            .args(&args)
            .env("RUST_BACKTRACE", "1")
            .stdout(full)
            .output()
            .expect("netlab");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("cannot write the output"), "{args:?}: {err}");
    }
    assert!(lab.state().container("a").is_some(), "run did not make a");
}

/// Docker's habits are taken where netlab already does what they ask: `run -d` (a
/// container runs nothing in the foreground), `exec -it` (stdin and the terminal are
/// the command's), `port` for `ports`, `rm -f` (`rm` always ends the processes).
/// Before, each was a usage error whose tip (`-- -f`) led to a second one (a review).
#[test]
fn dockers_habits_are_taken() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "-d", "x", "-p", "8080:80"]);
    assert_eq!(lab.ok(&["exec", "-it", "x", "echo", "hi"]).trim(), "hi");
    assert!(lab.ok(&["port", "x"]).contains("8080"));
    lab.ok(&["rm", "-f", "x"]);
    assert!(lab.state().container("x").is_none());
}
