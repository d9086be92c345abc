//! A command killed at any point (`kill -9`) leaves the lab's state and the kernel
//! agreeing, or the next command on the lab makes them agree before it does anything
//! else (the journal, `netlab/src/ops/journal.rs`): `netlab ports` never hides a port
//! that answers, and no container is half made or half removed. Each test kills the
//! command at random moments (the seed is printed, to replay a failure).

use std::{
    collections::BTreeSet,
    process::{Command, Stdio},
    time::Duration,
};

use netlab_tests::{Lab, is_ebpf, netlab_bin};

netlab_tests::per_datapath!(
    [publish_and_unpublish_killed_anywhere, run_and_rm_killed_anywhere];
    ebpf = "ebpf",
    iptables = "iptables",
    nftables = "nftables",
);

/// A small xorshift generator: the moments to kill at.
struct Moments(u64);

impl Moments {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        println!("seed {seed}");
        Moments(seed)
    }

    /// A moment from 0 to `max_ms` milliseconds.
    fn next(&mut self, max_ms: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_micros(self.0 % (max_ms * 1000 + 1))
    }
}

/// Runs `netlab --lab L ARGS` and kills it (SIGKILL) after `after`, or lets it finish
/// if it does sooner.
fn killed(lab: &Lab, args: &[String], after: Duration) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    signalled(&lab.name, &args, after, nix::sys::signal::Signal::SIGKILL);
}

/// Starts `netlab --lab NAME ARGS`, sends it `signal` after `after` (unless it ended
/// sooner), and returns its exit code (none when the signal ended it).
fn signalled(
    name: &str,
    args: &[&str],
    after: Duration,
    signal: nix::sys::signal::Signal,
) -> Option<i32> {
    let mut child = Command::new(netlab_bin())
        .arg("--lab")
        .arg(name)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run netlab");
    std::thread::sleep(after);
    if child.try_wait().unwrap().is_none() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal);
    }
    child.wait().unwrap().code()
}

/// How many published host ports the lab's datapath holds in the kernel.
fn ports_in_kernel(lab: &Lab, dp: &str) -> usize {
    if is_ebpf(dp) {
        use aya::maps::{HashMap, MapData};
        use netlab_common::{
            maps as names,
            publish::{PubKey, PubTarget},
        };
        let m: HashMap<MapData, PubKey, PubTarget> =
            netlab::datapath::ebpf::pins::typed(&lab.name, names::PUBLISH).unwrap();
        return m.keys().count();
    }
    if dp.starts_with("iptables") {
        return lab
            .exec_ok("host", &["iptables-save", "-t", "nat"])
            .lines()
            .filter(|l| l.starts_with("-A NETLAB ") && l.contains("--to-destination"))
            .count();
    }
    let out = lab.exec_ok(
        "host",
        &["nft", "-j", "list", "map", "ip", "netlab", "ports_any"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["map"]["elem"].as_array())
        .map(|e| e.len())
        .sum()
}

/// `netlab publish` of 2,000 ports and `netlab unpublish` of them, killed at random
/// moments: after each, `netlab ports` lists exactly what the kernel holds.
fn publish_and_unpublish_killed_anywhere(dp: &str) {
    let lab = Lab::on(dp);
    lab.ok(&["run", "web"]);
    let specs: Vec<String> = (0..2_000)
        .map(|i| format!("{p}:{p}", p = 40_000 + i))
        .collect();
    let mut moments = Moments::new();
    for round in 0..6 {
        let mut publish = vec!["publish".to_string(), "web".to_string()];
        publish.extend(specs.iter().cloned());
        let at = moments.next(400);
        killed(&lab, &publish, at);
        let listed = lab.ports().len();
        assert_eq!(
            ports_in_kernel(&lab, dp),
            listed,
            "round {round}: publish killed after {at:?}: the kernel and `netlab ports` disagree"
        );
        if listed == 0 {
            continue;
        }
        let mut unpublish = vec!["unpublish".to_string(), "web".to_string()];
        unpublish.extend(specs.iter().cloned());
        let at = moments.next(400);
        killed(&lab, &unpublish, at);
        let listed = lab.ports().len();
        assert_eq!(
            ports_in_kernel(&lab, dp),
            listed,
            "round {round}: unpublish killed after {at:?}: the kernel and `netlab ports` disagree"
        );
        assert!(
            listed == 0 || listed == specs.len(),
            "round {round}: unpublish was half done: {listed} ports left"
        );
        if listed != 0 {
            lab.ok(&unpublish.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
    // Every round may have been killed before anything: the same publish, left to
    // finish, must list and hold every port, so that the checks above compared
    // something real.
    let mut publish = vec!["publish", "web"];
    publish.extend(specs.iter().map(String::as_str));
    lab.ok(&publish);
    assert_eq!(lab.ports().len(), specs.len());
    assert_eq!(ports_in_kernel(&lab, dp), specs.len());
}

/// `netlab run` and `netlab rm` killed at random moments: after each, the containers
/// `netlab status` lists are exactly those whose namespaces and veths exist.
fn run_and_rm_killed_anywhere(dp: &str) {
    let lab = Lab::on(dp);
    let mut moments = Moments::new();
    for round in 0..10 {
        let name = format!("c{round}");
        let at = moments.next(150);
        // With a port: an interrupted `run -p` leaves no container without its port,
        // an interrupted `rm` no container without its port either.
        let port = format!("{}:80", 8000 + round);
        killed(&lab, &["run".into(), name.clone(), "-p".into(), port], at);
        check_containers(&lab, &format!("round {round}: run killed after {at:?}"));
        if lab.state().container(&name).is_some() {
            let at = moments.next(150);
            killed(&lab, &["rm".into(), name], at);
            check_containers(&lab, &format!("round {round}: rm killed after {at:?}"));
        }
    }
    // The same run, left to finish, makes its container and port (every round may
    // have been killed before anything).
    lab.ok(&["run", "last", "-p", "8999:80"]);
    check_containers(&lab, "run left to finish");
    assert!(lab.state().container("last").is_some());
    // A round's container whose `rm` was killed before it acted keeps its port too.
    let listed = lab.ports();
    assert!(
        listed.iter().any(|p| p["spec"] == "8999:80/tcp"),
        "{listed:?}"
    );
    assert_eq!(ports_in_kernel(&lab, dp), listed.len());
}

/// The lab's containers, as `netlab status` lists them (which settles an interrupted
/// command first).
fn listed(lab: &Lab) -> BTreeSet<String> {
    lab.status()["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// The lab's containers are exactly those whose namespace and veth exist, and those
/// with a published port (each is run with one).
fn check_containers(lab: &Lab, when: &str) {
    let listed = listed(lab);
    let with_ports: BTreeSet<String> = lab
        .ports()
        .iter()
        .map(|p| p["container"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(with_ports, listed, "{when}: ports");
    let prefix = format!("{}-", lab.name);
    let namespaces: BTreeSet<String> = std::fs::read_dir("/run/netns")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_prefix(&prefix).map(str::to_string))
        .filter(|n| n != "host" && n != "wan")
        .collect();
    assert_eq!(namespaces, listed, "{when}: namespaces");
    let links = lab.exec_ok("host", &["ip", "-o", "link", "show"]);
    let marked: BTreeSet<String> = links
        .lines()
        .filter_map(|l| l.split("alias ").nth(1))
        .filter_map(|a| a.trim().strip_prefix(&format!("netlab:{}:", lab.name)))
        .filter(|c| *c != "bridge")
        .map(str::to_string)
        .collect();
    assert_eq!(marked, listed, "{when}: veths");
}

/// What of lab `name` is left on the machine: its state, its namespaces, its pins.
fn remains(name: &str) -> Vec<String> {
    let mut left = Vec::new();
    for path in [
        format!("/run/netlab/{name}"),
        format!("/run/netns/{name}-host"),
        format!("/run/netns/{name}-wan"),
        format!(
            "/sys/fs/bpf/netlab/{}/{name}",
            netlab::datapath::ebpf::pins::LAYOUT_VERSION
        ),
    ] {
        if std::path::Path::new(&path).exists() {
            left.push(path);
        }
    }
    left
}

/// `up --sandbox` killed in its first milliseconds, while it makes the sandbox's
/// namespaces: whatever it left, `down` removes it all and exits 0, and the lab can
/// come up again. Before, an `up` killed between making a namespace's mount point and
/// recording the namespace left an empty file that `down` either failed on (the lab
/// host's: "setns ... Invalid argument", every time) or left behind (wan's, which the
/// next `up` then took for someone else's).
#[test]
fn up_killed_while_it_makes_the_sandbox_leaves_nothing_down_cannot_remove() {
    let mut moments = Moments::new();
    for round in 0..60 {
        let name = netlab_tests::unique_lab();
        let guard = Lab::named(&name);
        let at = moments.next(15);
        signalled(
            &name,
            &["up", "--sandbox"],
            at,
            nix::sys::signal::Signal::SIGKILL,
        );
        // Without a state (killed before it wrote one) `down` says the lab does not
        // exist, and takes the lock file along, and a state directory half written.
        let made = std::path::Path::new(&format!("/run/netlab/{name}/state.json")).exists();
        let out = guard.run(&["down"]);
        assert!(
            out.status.success() || !made,
            "round {round}: down after up killed at {at:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            remains(&name).is_empty(),
            "round {round}: up killed at {at:?} left {:?}",
            remains(&name)
        );
        guard.forget();
    }
}

/// Runs `netlab --lab NAME ARGS` under strace, killed (SIGKILL) at the `nth` call of
/// `syscall` on `path`: an exact moment, where a timer would hit a window of
/// microseconds once in hundreds of tries.
fn killed_at(name: &str, args: &[&str], path: &std::path::Path, syscall: &str, nth: u32) {
    let out = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-P"])
        .arg(path)
        .args(["-e", &format!("trace={syscall}")])
        .args(["-e", &format!("inject={syscall}:signal=SIGKILL:when={nth}")])
        .arg(netlab_bin())
        .args(["--lab", name])
        .args(args)
        .output()
        .expect("run strace (installed by `cargo xtask setup`)");
    assert_eq!(out.status.code(), None, "not killed: {out:?}");
}

/// The cgroups of an eBPF lab and of its `--network host` container, each killed
/// between being made and its id being recorded: the next command takes the
/// container's back (its journal says the `run` was making it, at a path that was
/// free), `down` the lab's (recorded as being made), and nothing is left. Before,
/// `down` failed on the container's for good ("Device or resource busy", found by a
/// review), and left the lab's, which the next `up` then refused as someone else's.
#[test]
fn cgroups_killed_while_made_are_taken_back() {
    let root = netlab::netlink::cgroup::root().unwrap();
    let name = netlab_tests::unique_lab();
    let guard = Lab::named(&name);
    // `up`, killed at its second open of the lab's cgroup record: after the cgroup is
    // made, before its id is written.
    let record = std::path::Path::new("/run/netlab")
        .join(&name)
        .join("ebpf-cgroup-id");
    killed_at(&name, &["up", "--sandbox"], &record, "openat", 2);
    let lab_cg = root.join(format!("netlab-{name}"));
    assert!(lab_cg.exists(), "the kill came too early to test anything");
    guard.ok(&["down"]);
    assert!(!lab_cg.exists(), "down left the lab's cgroup");
    assert!(remains(&name).is_empty(), "{:?}", remains(&name));

    // A host-network container's, killed at its second look at its cgroup: made, its
    // id not recorded.
    guard.ok(&["up", "--sandbox"]);
    let cg = lab_cg.join(format!("netlab-{name}-h"));
    killed_at(&name, &["run", "h", "--network", "host"], &cg, "statx", 2);
    assert!(cg.exists(), "the kill came too early to test anything");
    guard.ok(&["status"]);
    assert!(!cg.exists(), "the next command left the container's cgroup");
    guard.ok(&["run", "h", "--network", "host"]);
    guard.ok(&["rm", "h"]);

    // The same kill, then `down` at once (which settles no journal), on eBPF (the
    // container's cgroup is under the lab's) and on nftables (under the root). Before,
    // `down` failed for good on eBPF and left the cgroup on nftables (a review).
    for (dp, cg) in [
        ("ebpf", cg.clone()),
        ("nftables", root.join(format!("netlab-{name}-h"))),
    ] {
        if dp != "ebpf" {
            guard.ok(&["up", "--sandbox", "--datapath", dp]);
        }
        killed_at(&name, &["run", "h", "--network", "host"], &cg, "statx", 2);
        assert!(
            cg.exists(),
            "{dp}: the kill came too early to test anything"
        );
        guard.ok(&["down"]);
        assert!(!cg.exists(), "{dp}: down left the container's cgroup");
        assert!(remains(&name).is_empty(), "{dp}: {:?}", remains(&name));
    }
    assert!(!lab_cg.exists());
    guard.forget();
}

/// Starts `netlab ARGS` on lab `name` and sends it SIGINT (Ctrl-C) after `after`;
/// returns its exit code.
fn interrupted(name: &str, args: &[&str], after: Duration) -> Option<i32> {
    signalled(name, args, after, nix::sys::signal::Signal::SIGINT)
}

/// Ctrl-C never stops `up` or `down` half-way: an interrupted `up` makes the lab, then
/// takes it away again and exits 130; an interrupted `down` finishes. A `down` cut
/// short all the same (SIGKILL) leaves a lab every command says is partly taken down,
/// and that a `down` again removes.
#[test]
fn ctrl_c_stops_up_and_down_only_whole() {
    let mut moments = Moments::new();
    for round in 0..4 {
        let name = netlab_tests::unique_lab();
        let guard = Lab::named(&name);
        let at = moments.next(300);
        let code = interrupted(&name, &["up", "--sandbox"], at);
        println!("round {round}: up interrupted after {at:?}: exit {code:?}");
        // No code: the signal ended `up` before its hold began (nothing made) or after
        // it ended (the lab is up).
        assert!(
            code == Some(130) || code == Some(0) || code.is_none(),
            "round {round}: up after {at:?} exited {code:?}"
        );
        let up = code == Some(0) || (code.is_none() && guard.run(&["status"]).status.success());
        if !up {
            assert!(
                remains(&name).is_empty(),
                "round {round}: up after {at:?} left {:?}",
                remains(&name)
            );
            guard.ok(&["up", "--sandbox"]);
        }
        guard.ok(&["run", "a"]);
        let at = moments.next(300);
        let code = interrupted(&name, &["down"], at);
        println!("round {round}: down interrupted after {at:?}: exit {code:?}");
        if code.is_none() {
            // Before `down`'s hold began (the lab is whole, and goes now) or after it
            // ended (the lab is gone).
            if !remains(&name).is_empty() {
                guard.ok(&["down"]);
            }
        } else {
            assert_eq!(code, Some(0), "round {round}: down after {at:?}");
        }
        assert!(
            remains(&name).is_empty(),
            "round {round}: down after {at:?} left {:?}",
            remains(&name)
        );
        guard.forget();
    }

    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a"]);
    let path = format!("/run/netlab/{}/state.json", lab.name);
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    state["taking_down"] = serde_json::Value::Bool(true);
    std::fs::write(&path, state.to_string()).unwrap();
    for args in [&["status"][..], &["run", "b"], &["up", "--sandbox"]] {
        let err = lab.fails(args);
        assert!(err.contains("partly taken down"), "{args:?}: {err}");
    }
    lab.ok(&["down"]);
    assert!(remains(&lab.name).is_empty(), "{:?}", remains(&lab.name));
    lab.forget();
}

/// A tool of the netfilter datapaths that dies before reading its input (here every
/// tool, killed at its `execve`) fails the command with an error, exit 1, and the next
/// command settles what it left. Before, the broken pipe's SIGPIPE killed `publish`
/// without a word (exit 141, a review).
#[test]
fn a_tool_dying_unread_is_an_error_not_a_silent_death() {
    let lab = Lab::sandbox(&["--datapath", "iptables"]);
    lab.ok(&["run", "c1"]);
    let out = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=execve"])
        .args(["-e", "inject=execve:signal=SIGKILL:when=1"])
        .arg(netlab_bin())
        .args(["--lab", &lab.name, "publish", "c1", "9000:80"])
        .output()
        .expect("run strace (installed by `cargo xtask setup`)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(err.contains("SIGKILL"), "{err}");
    assert!(lab.ports().is_empty(), "{err}");
    lab.ok(&["status"]);
}
