//! netlab removes only what it made, and a refused or failed command changes nothing:
//! what is already there (someone else's pins, cgroup, rules, namespace, or another
//! lab's), and what a namespace-wide setting was, is left as it was found.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use netlab::{
    datapath::ebpf::pins,
    netlink::{cgroup, netns},
};
use netlab_tests::{Lab, netlab_bin, run_in_ns, run_in_ns_ok, unique_lab, wait_for};

netlab_tests::per_datapath!(
    [
        a_refused_lab_leaves_the_other_labs_rules,
        teardown_leaves_a_namespace_made_again_alone,
        a_failed_publish_takes_back_what_it_put_in,
        rm_withdraws_ports_whose_rules_are_already_gone,
        publishing_after_a_firewall_flush_says_what_is_gone,
    ];
    iptables = "iptables",
    iptables_legacy = "iptables-legacy",
    nftables = "nftables",
);

/// `netlab --lab LAB ARGS` run inside the network namespace `ns` (a lab on a namespace
/// that is not its own, as on the machine's).
fn netlab_in(ns: &Path, lab: &str, args: &[&str]) -> Output {
    let mut cmd = vec![netlab_bin().to_string_lossy().into_owned(), "--lab".into()];
    cmd.push(lab.to_string());
    cmd.extend(args.iter().map(|a| a.to_string()));
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    run_in_ns(ns, &cmd)
}

fn ok_in(ns: &Path, lab: &str, args: &[&str]) {
    let out = netlab_in(ns, lab, args);
    assert!(
        out.status.success(),
        "netlab {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// [`ok_in`], killed after 60 s: a command that waits for something that never comes
/// fails instead of hanging the suite.
fn ok_in_bounded(ns: &Path, lab: &str, args: &[&str]) {
    let child = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .arg(netlab_bin())
        .args(["--lab", lab])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nsenter");
    let (ok, out) = netlab_tests::Background::from(child).wait(Duration::from_secs(60));
    assert!(ok, "netlab {}: {out}", args.join(" "));
}

/// `up` of a lab on a namespace that is not its own (another lab's host, standing for
/// a machine's): datapath `dp`, that host's `eth0` as uplink, `subnet`, then `more`.
/// Without `--nat-ports` in `more`, 30000-30999: apart from the host lab's own
/// (20000-29999 behind the same `eth0`), as a lab beside an eBPF lab must be.
fn up_beside<'a>(dp: &'a str, subnet: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut up = vec![
        "up",
        "--datapath",
        dp,
        "--uplink",
        "eth0",
        "--subnet",
        subnet,
    ];
    if !more.contains(&"--nat-ports") {
        up.extend_from_slice(&["--nat-ports", "30000-30999"]);
    }
    up.extend_from_slice(more);
    up
}

/// `down` of a sandbox refuses while another lab lives in its host namespace (a lab
/// brought up there, a runtime's CNI network), naming it: taking the namespace away
/// would leave that lab gone. `--force` takes the sandbox down anyway, and the other
/// lab's next command finds it gone and clears it up. Before, `down` did so without a
/// word (a review, with podman running in a sandbox).
#[test]
fn down_of_a_sandbox_another_lab_lives_in_is_refused() {
    let one = Lab::sandbox(&[]);
    let host = one.ns("host");
    let two = unique_lab();
    // Taken down (or cleared up, once gone) whatever fails below.
    let two_guard = Lab::named(&two);
    ok_in(&host, &two, &up_beside("nftables", "10.52.0.0/24", &[]));
    let e = one.fails(&["down"]);
    assert!(
        e.contains(&format!("hosts lab {two}")) && e.contains("--force"),
        "{e}"
    );
    assert!(host.exists(), "{e}");
    ok_in(&host, &two, &["down"]);
    one.ok(&["down"]);
    one.forget();

    let one = Lab::sandbox(&[]);
    let host = one.ns("host");
    ok_in(&host, &two, &up_beside("nftables", "10.52.0.0/24", &[]));
    one.ok(&["down", "--force"]);
    one.forget();
    let out = netlab_tests::netlab(&["--lab", &two, "status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is gone"), "{err}");
    assert!(!Path::new("/run/netlab").join(&two).exists(), "{err}");
    two_guard.forget();
}

/// `flock --no-fork FILE sleep 600` (one process, killed with its guard), run by `user`
/// (`setpriv` arguments, or none for root),
/// once it holds the lock (`1: FLOCK  ADVISORY  WRITE PID MAJ:MIN:INODE 0 EOF` in
/// /proc/locks, not a waiter's `->` line); and a check that it still does.
fn flock_held_by(user: &[&str], file: &Path) -> (netlab_tests::Background, impl Fn() -> bool) {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(file).expect("the file to lock").ino();
    let mut cmd = match user.is_empty() {
        true => Command::new("flock"),
        false => {
            let mut c = Command::new("setpriv");
            c.args(user).arg("flock");
            c
        }
    };
    let holder: netlab_tests::Background = cmd
        .arg("--no-fork")
        .arg(file)
        .args(["sleep", "600"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("flock")
        .into();
    let held = move || {
        std::fs::read_to_string("/proc/locks")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" FLOCK ") && !l.contains(" -> "))
            .any(|l| {
                l.split_whitespace()
                    .any(|f| f.ends_with(&format!(":{ino}")))
            })
    };
    assert!(
        wait_for(Duration::from_secs(10), &held),
        "the flock never held"
    );
    (holder, held)
}

/// A user's `flock` on the lab host's namespace file holds up no netlab command there:
/// `up`, `publish` and `down` lock the namespace with a root-only file of netlab's own.
/// Before, they took an `flock` on the namespace's own file, which anyone may open
/// (`/run/netns/NAME`, or `/proc/self/ns/net` on the machine's namespace), and waited
/// for as long as that user held it (a review).
#[test]
fn a_users_lock_on_the_namespace_file_holds_nothing_up() {
    let one = Lab::sandbox(&[]);
    let host = one.ns("host");
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let (mut holder, held) = flock_held_by(&nobody, &host);
    let two = unique_lab();
    // Taken down (or cleared up) whatever fails below.
    let two_guard = Lab::named(&two);
    ok_in_bounded(&host, &two, &up_beside("nftables", "10.53.0.0/24", &[]));
    ok_in_bounded(&host, &two, &["run", "a"]);
    ok_in_bounded(&host, &two, &["publish", "a", "8080:80"]);
    ok_in_bounded(&host, &two, &["down"]);
    two_guard.forget();
    assert!(
        holder.running() && held(),
        "the user's lock went away meanwhile"
    );
}

/// A shared lock file a killed command left (of a namespace, or of a textfile
/// directory: `/run/netlab/shared-locks/netns-COOKIE.lock`, `dir-DEV-INO.lock`) is
/// removed by the next command that releases one, once nobody holds it; one held
/// stays. Before, the lock of a namespace gone with its sandbox stayed for ever (a
/// review killing commands at random moments left four in a minute).
#[test]
fn shared_lock_files_a_killed_command_left_go() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a"]);
    let state_dir = Path::new(netlab::store::LOCKS_DIR);
    std::fs::create_dir_all(state_dir).expect("the locks' directory");
    let stale = [
        state_dir.join(format!("netns-{}.lock", u64::MAX)),
        state_dir.join("dir-0-0.lock"),
    ];
    for f in &stale {
        std::fs::write(f, "").expect("a stale lock file");
    }
    let held = state_dir.join(format!("netns-{}.lock", u64::MAX - 1));
    std::fs::write(&held, "").expect("a held lock file");
    let (mut holder, _) = flock_held_by(&[], &held);
    // Takes the lab host's namespace lock, and releases it.
    lab.ok(&["publish", "a", "8080:80"]);
    for f in &stale {
        assert!(!f.exists(), "{} stayed", f.display());
    }
    assert!(
        held.exists() && holder.running(),
        "a held lock file was removed"
    );
    drop(holder);
    let _ = std::fs::remove_file(&held);
}

/// netlab's state, journal and lock files are root's only whatever the umask it is
/// started with, and a command it runs for the user (`exec`) gets the user's umask
/// back; a lab's state directory someone else could write in is refused. Before,
/// under a umask of 000 they were everyone's: a user planted a link where root then
/// wrote, and forged a state that had `rm` kill a cgroup's processes (a review).
#[test]
fn state_files_are_roots_only_whatever_the_umask() {
    let name = unique_lab();
    let lab = Lab::named(&name);
    let under_umask_0 = |args: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask 000 && exec {} --lab {name} {args}",
                netlab_bin().display()
            ))
            .output()
            .expect("sh");
        assert!(out.status.success(), "{args}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    under_umask_0("up --sandbox");
    under_umask_0("run a");
    let mode = |p: &str| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().mode() & 0o777
    };
    let dir = format!("/run/netlab/{name}");
    assert_eq!(mode(&dir), 0o755);
    assert_eq!(mode(&format!("{dir}/state.json")), 0o644);
    assert_eq!(mode(&format!("{dir}.lock")), 0o600);
    assert_eq!(under_umask_0("exec a sh -c umask").trim(), "0000");
    lab.ok(&["down"]);
    lab.forget();

    let name = unique_lab();
    let dir = format!("/run/netlab/{name}");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let out = netlab_tests::netlab(&["--lab", &name, "up", "--sandbox"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let refused = out.status.code() == Some(2) && err.contains("only root may write to");
    let made = netns::exists(&format!("{name}-host"));
    if made {
        // Made anyway: taken down (with the directory fixed) before anything fails.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let _ = netlab_tests::netlab(&["--lab", &name, "down", "--force"]);
    }
    let _ = std::fs::remove_dir(&dir);
    assert!(refused && !made, "{err}");
    assert!(!Path::new(&format!("{dir}.lock")).exists(), "{err}");
}

/// The iptables command an iptables datapath uses.
fn iptables_tool(dp: &str) -> &'static str {
    match dp {
        "iptables-legacy" => "iptables-legacy",
        _ => "iptables-nft",
    }
}

/// A rule of someone else's that carries netlab's tag: `TOOL -A CHAIN [MATCH...] -m
/// comment --comment netlab -j ACCEPT`.
fn tagged_rule<'a>(tool: &'a str, chain_and_match: &[&'a str]) -> Vec<&'a str> {
    let tag = ["-m", "comment", "--comment", "netlab", "-j", "ACCEPT"];
    [&[tool, "-A"][..], chain_and_match, &tag].concat()
}

/// A datapath's whole ruleset in the namespace `ns`, as its tool prints it (without
/// the comment lines that carry the time, and the chains' packet counters).
fn ruleset(ns: &Path, dp: &str) -> String {
    let save = format!("{}-save", iptables_tool(dp));
    let cmd = match dp {
        "nftables" => vec!["nft", "list", "ruleset"],
        _ => vec![save.as_str()],
    };
    run_in_ns_ok(ns, &cmd)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match (l.starts_with(':'), l.rfind(" [")) {
            (true, Some(i)) => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A pin directory and a cgroup that someone else made under a lab's names are
/// refused by `up`, and left alone: also by an `up` refused for another reason
/// after it made its namespaces (whose rollback removes only what it made).
#[test]
fn a_refused_up_leaves_pins_and_cgroups_it_did_not_make() {
    // A lab of its own keeps bpffs mounted and netlab's pin root there meanwhile.
    let _other = Lab::sandbox(&[]);
    let name = unique_lab();
    let dir = pins::dir(&name);
    std::fs::create_dir(&dir).unwrap();
    let cg: PathBuf = cgroup::root().unwrap().join(format!("netlab-{name}"));
    std::fs::create_dir(&cg).unwrap();
    let lab = Lab::named(&name);
    let err = lab.fails(&["up", "--sandbox"]);
    assert!(err.contains("is not one netlab made"), "{err}");
    assert!(dir.exists() && cg.exists(), "a refused up removed them");
    std::fs::remove_dir(&dir).unwrap();
    let err = lab.fails(&["up", "--sandbox"]);
    assert!(err.contains(&cg.display().to_string()), "{err}");
    assert!(cg.exists(), "a refused up removed the cgroup");
    std::fs::create_dir(&dir).unwrap();
    // Refused after its namespaces were made: they go, the rest stays.
    let err = lab.fails(&["up", "--sandbox", "--nat-ports", "40000-40100"]);
    assert!(err.contains("ephemeral"), "{err}");
    assert!(dir.exists() && cg.exists(), "the rollback removed them");
    assert!(!netns::exists(&format!("{name}-host")));
    std::fs::remove_dir(&dir).unwrap();
    std::fs::remove_dir(&cg).unwrap();
    lab.forget();
}

/// `netlab --lab LAB ARGS` run elsewhere, refused: `wrap` is what it runs under — `ip
/// netns exec NS`, or `unshare ... sh -c MOUNT` whose last word is a mount made first —
/// and the refusal must be one line with exit code `code` that says `says`.
fn refused_elsewhere(wrap: &[&str], lab: &str, args: &[&str], code: i32, says: &str) {
    let out = elsewhere(wrap, lab, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(
        err.starts_with("netlab: ") && err.trim_end().lines().count() == 1,
        "{args:?}: {err:?}"
    );
    assert!(err.contains(says), "{args:?}: {err}");
}

/// `netlab --lab LAB ARGS` run under `wrap` (see [`refused_elsewhere`]).
fn elsewhere(wrap: &[&str], lab: &str, args: &[&str]) -> std::process::Output {
    let bin = netlab_bin();
    let mut cmd = Command::new(wrap[0]);
    if wrap[0] == "unshare" {
        let line = format!("{} --lab {lab} {}", bin.display(), args.join(" "));
        let (mount, rest) = wrap[1..].split_last().unwrap();
        cmd.args(rest)
            .arg(format!("{mount} && exec {line}"))
            .output()
    } else {
        cmd.args(&wrap[1..])
            .arg(&bin)
            .args(["--lab", lab])
            .args(args)
            .output()
    }
    .expect("run netlab elsewhere")
}

/// Under `ip netns exec`, which mounts a /sys of its own, an eBPF lab's pins are out of
/// sight: a command there is refused in one line naming the cause (exit 1: nothing is
/// wrong with the input), before it reads or changes anything: no journal is left for
/// the next command to settle, and the lab stays whole (`down` there is refused too).
#[test]
fn an_ebpf_lab_out_of_sight_of_its_pins_is_refused_whole() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "web"]);
    let host = format!("{}-host", lab.name);
    for args in [
        &["publish", "web", "9500:80"][..],
        &["status"],
        &["rm", "web"],
        &["down"],
    ] {
        let exec = ["ip", "netns", "exec", host.as_str()];
        refused_elsewhere(
            &exec,
            &lab.name,
            args,
            1,
            "no bpffs in this mount namespace",
        );
    }
    let journal = netlab::store::record_file(&lab.name, "journal.json");
    assert!(
        !journal.exists(),
        "a refused command left {}",
        journal.display()
    );
    assert!(!lab.ok(&["ports"]).contains("9500"));
    // web is there, and whole: its namespace too, not "namespace gone".
    assert_eq!(lab.status()["containers"][0]["state"], "up");
    assert!(netns::exists(&format!("{}-web", lab.name)));
}

/// A command in another mount namespace that cannot see the lab's namespaces, pins or
/// cgroups — a `/run/netns` or a bpffs of its own, a namespace made before the lab whose
/// mounts are private, `ip netns exec` without the cgroup v2 hierarchy — is refused in
/// one line, and the lab stays whole. Before, `status` there took the lab for gone and
/// removed its state, pins and cgroup, leaving its namespaces for good; `down` under
/// another bpffs said the lab was down and left every pin; `rm` of a `--network host`
/// container under `ip netns exec` left its cgroup and processes (found by a review).
#[test]
fn a_command_where_the_labs_mounts_are_others_is_refused() {
    let unshare =
        |mount: &'static str| ["unshare", "-m", "--propagation", "slave", "sh", "-c", mount];
    let own_netns = unshare("mount -t tmpfs tmpfs /run/netns");
    let own_bpffs = unshare("mount -t bpf bpf /sys/fs/bpf");
    let lab = Lab::sandbox(&[]);
    // A mount namespace made before the container, with private mounts (made after `up`,
    // whose bpffs it copies): the container's namespace mount never reaches it.
    let mut before = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sleep", "120"])
        .spawn()
        .expect("unshare");
    let pid = before.id().to_string();
    let own_mnt = || std::fs::read_link("/proc/self/ns/mnt").ok();
    let its_mnt = || std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    assert!(
        wait_for(Duration::from_secs(5), || its_mnt() != own_mnt()),
        "unshare made no mount namespace"
    );
    lab.ok(&["run", "web"]);
    let private = ["nsenter", "-t", pid.as_str(), "-m"];
    let netns_elsewhere = "brought up in another mount namespace, where its namespace /run/netns/";
    for args in [
        &["status"][..],
        &["rm", "web"],
        &["down"],
        &["up", "--sandbox"],
    ] {
        refused_elsewhere(&own_netns, &lab.name, args, 2, netns_elsewhere);
        refused_elsewhere(&private, &lab.name, args, 2, netns_elsewhere);
        let bpffs_elsewhere = "/sys/fs/bpf is another bpffs";
        refused_elsewhere(&own_bpffs, &lab.name, args, 2, bpffs_elsewhere);
    }
    // A scrape from there leaves the lab out and says why: out of sight, not gone
    // (before, "its host namespace is gone").
    let scrape = elsewhere(&own_netns, &lab.name, &["metrics", "--labs", &lab.name]);
    let err = String::from_utf8_lossy(&scrape.stderr);
    assert!(scrape.status.success(), "{err}");
    assert!(err.contains(netns_elsewhere), "{err}");
    let _ = before.kill();
    let _ = before.wait();
    assert!(lab.ok(&["status"]).contains("web"), "the lab is whole");
    assert!(netns::exists(&format!("{}-web", lab.name)));

    let lab = Lab::on("iptables");
    lab.ok(&["run", "h1", "--network", "host"]);
    let host = format!("{}-host", lab.name);
    let exec = ["ip", "netns", "exec", host.as_str()];
    for args in [&["rm", "h1"][..], &["down"]] {
        let cgroup_elsewhere = "the cgroup v2 hierarchy is mounted";
        refused_elsewhere(&exec, &lab.name, args, 2, cgroup_elsewhere);
    }
    assert!(lab.ok(&["status"]).contains("h1"), "h1 is still there");
}

/// An eBPF lab's own cgroup is the one its hooks are attached to (the kernel's record
/// in their links): one made again at its path behind netlab's back is not joined by
/// `exec host`, and `down` leaves it and its processes alone.
#[test]
fn an_ebpf_labs_cgroup_made_again_is_left_alone() {
    let lab = Lab::sandbox(&[]);
    let cg: PathBuf = cgroup::root().unwrap().join(format!("netlab-{}", lab.name));
    let joined = |lab: &Lab| lab.exec_ok("host", &["cat", "/proc/self/cgroup"]);
    assert!(
        joined(&lab).contains(&format!("0::/netlab-{}\n", lab.name)),
        "{}",
        joined(&lab)
    );
    std::fs::remove_dir(&cg).unwrap();
    std::fs::create_dir(&cg).unwrap();
    let theirs = in_cgroup(&cg);
    assert!(
        !joined(&lab).contains(&format!("netlab-{}", lab.name)),
        "exec host joined a cgroup netlab did not make: {}",
        joined(&lab)
    );
    lab.ok(&["down"]);
    left_alone(theirs, &cg, "down");
    lab.forget();
}

/// A second netfilter lab in a namespace that already has one is refused, and the
/// first one's rules are as they were (the refusal's rollback does not tear down what
/// it was refused over).
fn a_refused_lab_leaves_the_other_labs_rules(dp: &str) {
    let one = Lab::sandbox(&["--datapath", dp]);
    let host = one.ns("host");
    let before = ruleset(&host, dp);
    let two = unique_lab();
    let up = up_beside(dp, "10.51.0.0/24", &[]);
    let out = netlab_in(&host, &two, &up);
    assert!(
        !out.status.success(),
        "a second {dp} lab came up beside the first"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already"), "{err}");
    assert_eq!(
        ruleset(&host, dp),
        before,
        "the refused lab changed the rules"
    );
    assert!(!netlab_in(&host, &two, &["status"]).status.success());
}

/// A lab whose host namespace was deleted and made again under its name is gone, and
/// its datapath's teardown touches nothing in the new namespace, not even rules that
/// look like netlab's.
fn teardown_leaves_a_namespace_made_again_alone(dp: &str) {
    let lab = Lab::sandbox(&["--datapath", dp]);
    let host_name = format!("{}-host", lab.name);
    netns::delete(&host_name).unwrap();
    netns::create(&host_name).unwrap();
    let host = lab.ns("host");
    let theirs: Vec<Vec<&str>> = match dp {
        "nftables" => vec![vec!["nft", "add", "table", "ip", "netlab"]],
        _ => {
            let tool = iptables_tool(dp);
            vec![
                vec![tool, "-N", "NETLAB-MINE"],
                tagged_rule(tool, &["INPUT"]),
            ]
        }
    };
    for cmd in &theirs {
        run_in_ns_ok(&host, cmd);
    }
    let before = ruleset(&host, dp);
    let err = lab.fails(&["status"]);
    assert!(err.contains("is gone"), "{err}");
    assert_eq!(
        ruleset(&host, dp),
        before,
        "rules of the new namespace were removed"
    );
    netns::delete(&host_name).unwrap();
    lab.forget();
}

/// A publish whose last step fails (the kernel's conntrack tool, here a stand-in that
/// always fails) takes back the rules it put in: the port is not left open unrecorded.
fn a_failed_publish_takes_back_what_it_put_in(dp: &str) {
    let lab = Lab::sandbox(&["--datapath", dp]);
    lab.ok(&["run", "a"]);
    let host = lab.ns("host");
    let before = ruleset(&host, dp);
    let bin = netlab_tests::private_dir("fake");
    let fake = bin.join("conntrack");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'conntrack: out of order' >&2\nexit 1\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(netlab_bin())
        .env("PATH", path)
        .args(["--lab", &lab.name, "publish", "a", "8080:80"])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&bin).unwrap();
    assert!(!out.status.success(), "the publish did not fail");
    // It failed where meant to, at its last step, after its rules went in.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("out of order"), "it failed elsewhere: {err}");
    assert!(lab.ports().is_empty());
    assert_eq!(
        ruleset(&host, dp),
        before,
        "the failed publish left rules in"
    );
    // Nothing half-done stands in the way of doing it again.
    lab.ok(&["publish", "a", "8080:80"]);
    assert_eq!(lab.ports().len(), 1);
}

/// `down` of an iptables lab on a namespace that is not its own removes the rules and
/// chains its `setup` made, and leaves the user's: their rules in `NETLAB-USER` (the
/// chain is theirs to fill, as Docker's `DOCKER-USER`), a chain of theirs named like
/// netlab's, a rule of theirs carrying netlab's tag.
#[test]
fn iptables_down_leaves_the_users_rules() {
    for dp in ["iptables", "iptables-legacy"] {
        let tool = iptables_tool(dp);
        let one = Lab::sandbox(&[]);
        let host = one.ns("host");
        let two = unique_lab();
        let up = up_beside(dp, "10.51.0.0/24", &[]);
        ok_in(&host, &two, &up);
        for cmd in [
            vec![
                tool,
                "-A",
                "NETLAB-USER",
                "-s",
                "10.51.0.9/32",
                "-j",
                "DROP",
            ],
            vec![tool, "-N", "NETLAB-MINE"],
            tagged_rule(tool, &["INPUT", "-p", "tcp", "--dport", "22"]),
        ] {
            run_in_ns_ok(&host, &cmd);
        }
        ok_in(&host, &two, &["down"]);
        let left = ruleset(&host, dp);
        for theirs in [
            "-A NETLAB-USER -s 10.51.0.9/32 -j DROP",
            ":NETLAB-MINE",
            "--dport 22",
        ] {
            assert!(left.contains(theirs), "{dp}: {theirs} was removed:\n{left}");
        }
        for ours in [
            "NETLAB-FORWARD",
            "NETLAB-BRIDGE",
            "10.51.0.0/24",
            "-j NETLAB-USER",
        ] {
            assert!(!left.contains(ours), "{dp}: {ours} is left:\n{left}");
        }
        // The next lab takes NETLAB-USER with the user's rules as it is (Docker's
        // DOCKER-USER across restarts), and leaves it so again. (A rule carrying
        // netlab's tag outside its chains is taken for a lab's: it goes first.)
        let mut untag = tagged_rule(tool, &["INPUT", "-p", "tcp", "--dport", "22"]);
        untag[1] = "-D";
        run_in_ns_ok(&host, &untag);
        ok_in(&host, &two, &up);
        let again = ruleset(&host, dp);
        for line in ["-A NETLAB-USER -s 10.51.0.9/32 -j DROP", "-j NETLAB-USER"] {
            assert!(again.contains(line), "{dp}: {line} is missing:\n{again}");
        }
        ok_in(&host, &two, &["down"]);
        let left = ruleset(&host, dp);
        assert!(
            left.contains("-A NETLAB-USER -s 10.51.0.9/32 -j DROP"),
            "{dp}:\n{left}"
        );
    }
}

/// An iptables lab on a namespace whose FORWARD chain ends in a REJECT (a host
/// firewall's, firewalld's say): its jumps go first, as Docker inserts its own, so its
/// containers still reach the outside; `down` takes them out and leaves the REJECT.
#[test]
fn iptables_jumps_go_before_a_hosts_forward_reject() {
    for dp in ["iptables", "iptables-legacy"] {
        let tool = iptables_tool(dp);
        let one = Lab::sandbox(&[]);
        let host = one.ns("host");
        run_in_ns_ok(&host, &[tool, "-A", "FORWARD", "-j", "REJECT"]);
        let two = unique_lab();
        ok_in(&host, &two, &up_beside(dp, "10.53.0.0/24", &[]));
        let guard = Lab::named(&two);
        ok_in(&host, &two, &["run", "c"]);
        let ping = run_in_ns(
            &netns::path(&format!("{two}-c")),
            &["ping", "-c", "1", "-W", "3", "203.0.113.1"],
        );
        assert!(
            ping.status.success(),
            "{dp}: the host's REJECT came first: {}",
            String::from_utf8_lossy(&ping.stdout)
        );
        ok_in(&host, &two, &["down"]);
        guard.forget();
        let left = ruleset(&host, dp);
        assert!(left.contains("-A FORWARD -j REJECT"), "{dp}:\n{left}");
        assert!(!left.contains("NETLAB-FORWARD"), "{dp}:\n{left}");
    }
}

/// An iptables lab with a single NAT port (`--nat-ports 31000-31000`): its masquerade
/// rules are written as `iptables-save` prints them (`--to-ports 31000`), so `down`
/// finds and removes them, and the next lab comes up.
#[test]
fn iptables_rules_of_a_single_nat_port_go_with_down() {
    let one = Lab::sandbox(&[]);
    let host = one.ns("host");
    let two = unique_lab();
    let up = up_beside("iptables", "10.54.0.0/24", &["--nat-ports", "31000-31000"]);
    ok_in(&host, &two, &up);
    ok_in(&host, &two, &["down"]);
    let left = ruleset(&host, "iptables");
    assert!(!left.contains("31000"), "a rule is left:\n{left}");
    ok_in(&host, &two, &up);
    ok_in(&host, &two, &["down"]);
}

/// An eBPF lab whose uplink has no Ethernet header (a tun device here) is refused in
/// one line, and leaves nothing: no state, no bridge.
#[test]
fn an_ebpf_uplink_without_an_ethernet_header_is_refused() {
    let one = Lab::sandbox(&[]);
    let host = one.ns("host");
    let _tun = netlab_tests::sockets::Tun::open(&host, "tun0");
    for cmd in ["ip addr add 10.99.0.1/24 dev tun0", "ip link set tun0 up"] {
        run_in_ns_ok(&host, &cmd.split(' ').collect::<Vec<_>>());
    }
    let two = unique_lab();
    let mut up = up_beside("ebpf", "10.57.0.0/24", &[]);
    up[4] = "tun0";
    let out = netlab_in(&host, &two, &up);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "came up on tun0");
    assert!(err.contains("no Ethernet header"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!Path::new("/run/netlab").join(&two).exists(), "state left");
    let links = run_in_ns_ok(&host, &["ip", "-o", "link", "show"]);
    assert!(
        !links.contains(&format!("nl-{two}")),
        "bridge left: {links}"
    );
}

/// Two labs of one namespace taken down at the same moment: the namespace's settings
/// go back as they were found (each `down` saw the other still there and left them
/// changed, for the other to put back, which it never did).
#[test]
fn two_downs_at_once_put_the_settings_back() {
    const FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
    let one = Lab::sandbox(&[]);
    let host = one.ns("host");
    run_in_ns_ok(&host, &["sh", "-c", &format!("echo 0 > {FORWARD}")]);
    let labs = [unique_lab(), unique_lab()];
    for (lab, (dp, net, ports)) in labs.iter().zip([
        ("iptables", "10.55.0.0/24", "30000-30999"),
        ("nftables", "10.56.0.0/24", "31000-31999"),
    ]) {
        let up = up_beside(dp, net, &["--nat-ports", ports]);
        ok_in(&host, lab, &up);
    }
    std::thread::scope(|s| {
        for lab in &labs {
            let host = &host;
            s.spawn(move || ok_in(host, lab, &["down"]));
        }
    });
    let forward = run_in_ns_ok(&host, &["cat", FORWARD]);
    assert_eq!(
        forward.trim(),
        "0",
        "forwarding left on after both labs went"
    );
}

/// nftables' `down` deletes only the table that carries the lab's mark: one of the same
/// name made again behind netlab's back is someone else's, and stays.
#[test]
fn nftables_down_leaves_a_table_made_again() {
    let one = Lab::sandbox(&[]);
    let host = one.ns("host");
    let two = unique_lab();
    let up = up_beside("nftables", "10.52.0.0/24", &[]);
    ok_in(&host, &two, &up);
    run_in_ns_ok(&host, &["nft", "delete", "table", "ip", "netlab"]);
    run_in_ns_ok(&host, &["nft", "add", "table", "ip", "netlab"]);
    run_in_ns_ok(&host, &["nft", "add", "chain", "ip", "netlab", "mine"]);
    ok_in(&host, &two, &["down"]);
    let left = run_in_ns_ok(&host, &["nft", "list", "table", "ip", "netlab"]);
    assert!(left.contains("chain mine"), "their table went: {left}");
    run_in_ns_ok(&host, &["nft", "delete", "table", "ip", "netlab"]);
    // Its own table it deletes.
    ok_in(&host, &two, &up);
    ok_in(&host, &two, &["down"]);
    let tables = run_in_ns_ok(&host, &["nft", "list", "tables"]);
    assert!(!tables.contains("netlab"), "{tables}");
}

/// `exec` never enters a namespace made again under a container's name: it is someone
/// else's.
#[test]
fn exec_into_a_namespace_made_again_is_refused() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a"]);
    let name = format!("{}-a", lab.name);
    netns::delete(&name).unwrap();
    netns::create(&name).unwrap();
    let err = lab.fails(&["exec", "a", "--", "true"]);
    assert!(err.contains("is gone"), "{err}");
    netns::delete(&name).unwrap();
    lab.ok(&["rm", "a"]);
}

/// Two labs on one namespace that is not their own: `down` of the first leaves the
/// namespace's forwarding and bridge netfilter as the second needs them, and `down`
/// of the last puts back what the namespace had before either came up.
#[test]
fn labs_sharing_a_namespace_leave_its_settings_as_found() {
    const FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
    const BRIDGE_NF: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    let one = Lab::sandbox(&[]);
    let host = one.ns("host");
    let read = |key: &str| run_in_ns_ok(&host, &["cat", key]).trim().to_string();
    run_in_ns_ok(
        &host,
        &[
            "sh",
            "-c",
            &format!("echo 0 > {FORWARD}; echo 0 > {BRIDGE_NF}"),
        ],
    );
    let (two, three) = (unique_lab(), unique_lab());
    let up_two = up_beside("ebpf", "10.51.0.0/24", &["--nat-ports", "30000-30999"]);
    ok_in(&host, &two, &up_two);
    let up_three = up_beside("iptables", "10.52.0.0/24", &["--nat-ports", "31000-31999"]);
    ok_in(&host, &three, &up_three);
    assert_eq!((read(FORWARD), read(BRIDGE_NF)), ("1".into(), "1".into()));
    ok_in(&host, &two, &["down"]);
    assert_eq!(
        (read(FORWARD), read(BRIDGE_NF)),
        ("1".into(), "1".into()),
        "the first lab down changed what the second needs"
    );
    ok_in(&host, &three, &["down"]);
    assert_eq!(
        (read(FORWARD), read(BRIDGE_NF)),
        ("0".into(), "0".into()),
        "the last lab down did not put the namespace back as it was"
    );
}

/// Putting `ip_forward` back to 0 turns every interface's own forwarding off with it:
/// `down` turns on again those that were on by themselves (systemd-networkd sets it
/// per link), and a refused `up` changes none of it. Before, the last `down` left them
/// off, and an `up` refused by its datapath's check had turned forwarding on and back
/// off on the way (a review).
#[test]
fn interfaces_forwarding_on_by_themselves_stay_on() {
    const FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
    const UPLINK: &str = "/proc/sys/net/ipv4/conf/eth0/forwarding";
    const DEFAULT: &str = "/proc/sys/net/ipv4/conf/default/forwarding";
    let one = Lab::sandbox(&["--datapath", "routed"]);
    let host = one.ns("host");
    let read = || {
        let r = |key: &str| run_in_ns_ok(&host, &["cat", key]).trim().to_string();
        (r(FORWARD), r(UPLINK), r(DEFAULT))
    };
    run_in_ns_ok(
        &host,
        &[
            "sh",
            "-c",
            &format!("echo 0 > {FORWARD}; echo 1 > {UPLINK}"),
        ],
    );
    let before = read();
    assert_eq!(before, ("0".into(), "1".into(), "0".into()));
    // Refused by the datapath's own check: a table of its name is someone else's.
    run_in_ns_ok(&host, &["nft", "add", "table", "ip", "netlab"]);
    let two = unique_lab();
    // Takes the lab down if an assertion fails while it is up.
    let guard = Lab::named(&two);
    let out = netlab_in(&host, &two, &up_beside("nftables", "10.58.0.0/24", &[]));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(read(), before, "a refused up changed forwarding");
    run_in_ns_ok(&host, &["nft", "delete", "table", "ip", "netlab"]);
    for dp in ["ebpf", "nftables"] {
        ok_in(&host, &two, &up_beside(dp, "10.58.0.0/24", &[]));
        assert_eq!(read().0, "1", "{dp}");
        ok_in(&host, &two, &["down"]);
        assert_eq!(read(), before, "{dp}: down did not put the interfaces back");
    }
    guard.forget();
}

/// A forward chain of someone else's that drops by policy (iptables' FORWARD set to
/// DROP, as Docker with iptables sets it) is said at `up`, in one warning line naming
/// it: netfilter drops there what the lab's own rules accept (on eBPF, what goes past
/// the fast path). Not for the iptables datapath, whose accepts are in that chain, and
/// not once the policy accepts. Before, nothing was said, and hairpin on eBPF, or
/// every packet of an nftables lab, was dropped without a word (a review).
#[test]
fn a_forward_chain_dropping_by_policy_is_said_at_up() {
    let one = Lab::sandbox(&["--datapath", "routed"]);
    let host = one.ns("host");
    // iptables-nft's chain, which nft lists (a legacy one it does not see).
    run_in_ns_ok(&host, &["iptables-nft", "-P", "FORWARD", "DROP"]);
    let two = unique_lab();
    let guard = Lab::named(&two);
    let warned = |dp: &str| {
        let out = netlab_in(&host, &two, &up_beside(dp, "10.59.0.0/24", &[]));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{dp}: {err}");
        ok_in(&host, &two, &["down"]);
        err
    };
    for dp in ["ebpf", "nftables"] {
        let err = warned(dp);
        assert!(
            err.contains("warning: the forward chain `ip filter FORWARD` drops by policy")
                && err.lines().count() == 1,
            "{dp}: {err}"
        );
    }
    let err = warned("iptables");
    assert!(err.is_empty(), "iptables: {err}");
    run_in_ns_ok(&host, &["iptables-nft", "-P", "FORWARD", "ACCEPT"]);
    let err = warned("ebpf");
    assert!(err.is_empty(), "policy accept: {err}");
    guard.forget();
}

/// An eBPF lab and a netfilter lab masquerading behind one uplink never share NAT
/// ports: the second `up` with an overlapping range is refused, whichever comes first,
/// and one apart is taken. Before, only two eBPF labs were kept apart, and on their
/// default ranges an iptables lab's replies reached an eBPF lab's container (a review).
#[test]
fn ebpf_and_netfilter_labs_behind_one_uplink_keep_their_nat_ports_apart() {
    // A sandbox that masquerades nothing itself.
    let one = Lab::sandbox(&["--datapath", "routed"]);
    let host = one.ns("host");
    for (first, second) in [("ebpf", "iptables"), ("nftables", "ebpf")] {
        let (a, b) = (unique_lab(), unique_lab());
        let _a_guard = Lab::named(&a);
        let default = ["--nat-ports", "20000-29999"];
        ok_in(&host, &a, &up_beside(first, "10.54.0.0/24", &default));
        // Taken down (or cleared up) whatever fails below, once it is up.
        let _b_guard = Lab::named(&b);
        let out = netlab_in(&host, &b, &up_beside(second, "10.55.0.0/24", &default));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{first} then {second}: {err}");
        assert!(
            err.contains(&format!("lab {a} already masquerades")),
            "{err}"
        );
        assert!(!Path::new("/run/netlab").join(&b).exists(), "{err}");
        ok_in(
            &host,
            &b,
            &up_beside(second, "10.55.0.0/24", &["--nat-ports", "30000-30999"]),
        );
    }
    // Two netfilter labs share nf_conntrack's NAT, which keeps them apart itself.
    let (c, d) = (unique_lab(), unique_lab());
    let (_c_guard, _d_guard) = (Lab::named(&c), Lab::named(&d));
    let default = ["--nat-ports", "20000-29999"];
    ok_in(&host, &c, &up_beside("iptables", "10.56.0.0/24", &default));
    ok_in(&host, &d, &up_beside("nftables", "10.57.0.0/24", &default));
}

/// A lab puts back only the settings it changes: bridge netfilter goes back with the
/// last lab that turned it on (iptables, here gone first, while an eBPF lab keeps the
/// namespace forwarding), and an eBPF lab, which leaves it alone outside a sandbox,
/// never writes it, whoever turned it on meanwhile (Docker, say).
#[test]
fn a_lab_puts_back_only_the_settings_it_changes() {
    const FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
    const BRIDGE_NF: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    let one = Lab::sandbox(&[]);
    let host = one.ns("host");
    let read = || {
        let r = |key: &str| run_in_ns_ok(&host, &["cat", key]).trim().to_string();
        (r(FORWARD), r(BRIDGE_NF))
    };
    let set_bridge_nf = |v: &str| {
        run_in_ns_ok(&host, &["sh", "-c", &format!("echo {v} > {BRIDGE_NF}")]);
    };
    run_in_ns_ok(&host, &["sh", "-c", &format!("echo 0 > {FORWARD}")]);
    set_bridge_nf("0");
    let (ebpf, iptables) = (unique_lab(), unique_lab());
    let up_ebpf = up_beside("ebpf", "10.53.0.0/24", &["--nat-ports", "30000-30999"]);
    ok_in(&host, &ebpf, &up_ebpf);
    assert_eq!(
        read(),
        ("1".into(), "0".into()),
        "eBPF changed bridge netfilter"
    );
    let up_iptables = up_beside("iptables", "10.54.0.0/24", &["--nat-ports", "31000-31999"]);
    ok_in(&host, &iptables, &up_iptables);
    assert_eq!(read(), ("1".into(), "1".into()));
    ok_in(&host, &iptables, &["down"]);
    assert_eq!(
        read(),
        ("1".into(), "0".into()),
        "iptables, the last lab that needed bridge netfilter, did not put it back, or took forwarding from the eBPF lab"
    );
    set_bridge_nf("1");
    ok_in(&host, &ebpf, &["down"]);
    assert_eq!(
        read(),
        ("0".into(), "1".into()),
        "the eBPF lab wrote back a setting it never changed, or left forwarding on"
    );
}

/// Two labs of one namespace publishing one host port at the same moment: one gets it,
/// the other is refused (each checks the other's saved ports, and would otherwise find
/// the port free before the other saved it, and both translate it).
#[test]
fn two_labs_publishing_one_port_at_once_get_it_once() {
    let one = Lab::sandbox(&[]);
    let host = one.ns("host");
    let labs = [unique_lab(), unique_lab()];
    let ups = [
        up_beside("ebpf", "10.55.0.0/24", &["--nat-ports", "30000-30999"]),
        up_beside("iptables", "10.56.0.0/24", &["--nat-ports", "31000-31999"]),
    ];
    let mut guards = Vec::new();
    for (lab, up) in labs.iter().zip(&ups) {
        ok_in(&host, lab, up);
        guards.push(Lab::named(lab));
        ok_in(&host, lab, &["run", "c"]);
    }
    for port in 8000..8015 {
        let spec = format!("{port}:80");
        let outs: Vec<Output> = std::thread::scope(|s| {
            let runs: Vec<_> = labs
                .iter()
                .map(|lab| {
                    let (host, spec) = (&host, &spec);
                    s.spawn(move || netlab_in(host, lab, &["publish", "c", spec]))
                })
                .collect();
            runs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won: Vec<usize> = (0..2).filter(|&i| outs[i].status.success()).collect();
        assert_eq!(won.len(), 1, "port {port}: {outs:?}");
        let err = String::from_utf8_lossy(&outs[1 - won[0]].stderr).into_owned();
        assert!(err.contains("already published by lab"), "{err}");
    }
    drop(guards);
}

/// nftables: withdrawing ports works whatever became of the lab's table behind its
/// back — an element changed to lead elsewhere (a restored snapshot: adding it again,
/// as the withdrawal's one transaction does for an element already gone, fails) or the
/// table flushed away (`nft flush ruleset`, a firewall reload). `rm` succeeds, removes
/// what is left of its ports by key, and the lab's commands go on (a failed
/// withdrawal left its journal, and every later command failed replaying it).
#[test]
fn nftables_withdraws_from_a_changed_or_flushed_table() {
    let lab = Lab::sandbox(&["--datapath", "nftables"]);
    let host = lab.ns("host");
    lab.ok(&["run", "web", "-p", "8080:80", "-p", "5353:53/udp"]);
    let nft = |args: &str| run_in_ns_ok(&host, &["sh", "-c", &format!("nft {args}")]);
    nft("delete element ip netlab ports_any '{ tcp . 8080 }'");
    nft("add element ip netlab ports_any '{ tcp . 8080 : 172.18.0.99 . 80 }'");
    lab.ok(&["rm", "web"]);
    assert!(lab.ports().is_empty());
    let left = ruleset(&host, "nftables");
    for port in ["8080", "5353", "172.18.0.99"] {
        assert!(!left.contains(port), "a rule for {port} is left:\n{left}");
    }
    lab.ok(&["run", "web", "-p", "8080:80"]);
    nft("flush ruleset");
    lab.ok(&["rm", "web"]);
    lab.ok(&["status"]);
    lab.ok(&["run", "again"]);
}

/// A `run` killed at any moment leaves nothing that keeps the container's name from
/// being used again: what it made is marked as the container's (or inside the
/// container's own namespace) and goes with the next `run` of that name or with `rm`.
#[test]
fn a_killed_run_leaves_the_name_usable() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "warm"]);
    for delay_ms in [1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 30] {
        let mut child = Command::new(netlab_bin())
            .args(["--lab", &lab.name, "run", "c"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // The killed run may have finished before the kill: then it is up, and goes.
        let _ = lab.run(&["rm", "c"]);
        lab.ok(&["run", "c"]);
        lab.ok(&["rm", "c"]);
    }
}

/// `rm` ends the processes started in the container's namespace, and `down` those in
/// the sandbox's, as `docker rm -f` ends a container's: left running, they would keep
/// a namespace nobody can reach alive. A process elsewhere (in another container, the
/// test's own) goes on.
#[test]
fn rm_and_down_end_the_processes_in_what_they_remove() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a"]);
    lab.ok(&["run", "b"]);
    let mut procs: Vec<_> = ["a", "b", "wan", "host"]
        .into_iter()
        .map(|ns| lab.spawn(ns, &["sleep", "600"]))
        .collect();
    for p in &procs {
        wait_started(p);
    }
    lab.ok(&["rm", "a"]);
    assert!(!procs[0].running(), "rm left a's process running");
    assert!(procs[1].running(), "rm a ended b's process");
    lab.ok(&["rm", "b"]);
    assert!(!procs[1].running(), "rm left b's process running");
    assert!(procs[2].running() && procs[3].running());
    lab.ok(&["down"]);
    assert!(!procs[2].running(), "down left wan's process running");
    assert!(!procs[3].running(), "down left the host's process running");
    lab.forget();
}

/// `exec` enters the container's namespace under the lab's lock, where it checked it:
/// an `rm` that comes while it is entering waits, then finds the command there and ends
/// it. strace holds the `setns` back three seconds and `rm` comes in the middle. Before,
/// the command went on in the namespace `rm` had removed, out of everyone's reach (a
/// review, which found the same with `down` and `exec host`).
#[test]
fn an_exec_racing_rm_ends_with_the_container() {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "c"]);
    // A name of its own, to find the command wherever it ended up.
    let seconds = format!("600.{}", std::process::id());
    let mut exec = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=setns"])
        .args(["-e", "inject=setns:delay_enter=3000000"])
        .arg(netlab_bin())
        .args(["--lab", &lab.name, "exec", "c", "sleep", &seconds])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run strace (installed by `cargo xtask setup`)");
    std::thread::sleep(Duration::from_millis(1500));
    lab.ok(&["rm", "c"]);
    let ended = wait_for(Duration::from_secs(10), || {
        exec.try_wait().expect("wait").is_some()
    });
    let survivor = Command::new("pkill")
        .args(["-9", "-f", &format!("^sleep {seconds}$")])
        .status()
        .expect("pkill")
        .success();
    let _ = exec.kill();
    let out = exec.wait_with_output().expect("exec");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("no container"),
        "rm came before exec looked: {err}"
    );
    // Killed, not refused: strace ran it (an option strace refused would end at once).
    assert!(
        !err.contains("strace:") && out.status.code() != Some(0),
        "exec never ran: {out:?}"
    );
    assert!(ended && !survivor, "exec's command outlived rm: {err}");
}

/// A `--network host` container has no namespace of its own: its processes are found
/// by its cgroup, and `rm` ends them as `docker rm -f` does, and only them (the lab
/// host's go on). On eBPF the cgroup is under the lab host's, so the host-local
/// publishing hooks still see its sockets; on iptables it is under the cgroup root.
fn rm_ends_a_host_network_containers_processes(dp: &str) {
    let lab = Lab::on(dp);
    lab.ok(&["run", "h", "--network", "host"]);
    let cg = lab
        .state()
        .container("h")
        .unwrap()
        .cgroup
        .clone()
        .expect("a cgroup");
    let leaf = format!("netlab-{}-h", lab.name);
    let parent = if netlab_tests::is_ebpf(dp) {
        cgroup::root().unwrap().join(format!("netlab-{}", lab.name))
    } else {
        cgroup::root().unwrap()
    };
    assert_eq!(cg, parent.join(leaf));
    let mut procs = [
        lab.spawn("h", &["sleep", "600"]),
        lab.spawn("host", &["sleep", "600"]),
    ];
    for p in &procs {
        wait_started(p);
    }
    let procs_of = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap();
    assert_eq!(procs_of.trim(), procs[0].pid().to_string());
    lab.ok(&["rm", "h"]);
    assert!(!procs[0].running(), "rm left h's process running");
    assert!(procs[1].running(), "rm h ended the lab host's process");
    assert!(!cg.exists(), "rm left h's cgroup");
    // A cgroup of that name that netlab did not make is refused, and left.
    std::fs::create_dir(&cg).unwrap();
    let err = lab.fails(&["run", "h", "--network", "host"]);
    assert!(err.contains("is not one netlab made"), "{err}");
    assert!(cg.exists() && lab.state().container("h").is_none());
    std::fs::remove_dir(&cg).unwrap();
    // A cgroup made again at its path behind netlab's back is someone else's: exec
    // does not join it, and rm neither empties nor removes it.
    lab.ok(&["run", "h", "--network", "host"]);
    std::fs::remove_dir(&cg).unwrap();
    std::fs::create_dir(&cg).unwrap();
    let theirs = in_cgroup(&cg);
    let err = lab.fails(&["exec", "h", "--", "true"]);
    assert!(err.contains("removed behind netlab's back"), "{err}");
    lab.ok(&["rm", "h"]);
    left_alone(theirs, &cg, "rm");
    // A cgroup made inside its own is not netlab's to remove: rm says so before it
    // ends anything (its processes, and theirs, run on), and works once it is gone.
    lab.ok(&["run", "h", "--network", "host"]);
    let ours = lab.spawn("h", &["sleep", "600"]);
    wait_started(&ours);
    let inner = cg.join("theirs");
    std::fs::create_dir(&inner).unwrap();
    let theirs = in_cgroup(&inner);
    let err = lab.fails(&["rm", "h"]);
    assert!(err.contains("which netlab did not make"), "{err}");
    let mut ours = ours;
    assert!(ours.running(), "a refused rm ended h's process");
    left_alone(theirs, &inner, "a refused rm");
    lab.ok(&["rm", "h"]);
    assert!(!ours.running(), "rm left h's process running");
    assert!(!cg.exists());
    // `down` ends a host-network container's processes with the rest.
    lab.ok(&["run", "h", "--network", "host"]);
    let mut late = lab.spawn("h", &["sleep", "600"]);
    wait_started(&late);
    lab.ok(&["down"]);
    assert!(!late.running(), "down left h's process running");
    assert!(!cg.exists(), "down left h's cgroup");
    lab.forget();
}

/// `sleep 600` in cgroup `cg`, started by a shell that moves itself there first.
fn in_cgroup(cg: &Path) -> netlab_tests::Background {
    let procs = cg.join("cgroup.procs");
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("echo $$ > {} && exec sleep 600", procs.display()))
        .spawn()
        .expect("sh");
    let mut bg = netlab_tests::Background::from(child);
    assert!(wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&procs).is_ok_and(|p| !p.trim().is_empty())
    }));
    assert!(bg.running());
    bg
}

/// Asserts that someone else's process in `cg`, and `cg`, are still there after `what`;
/// then ends the process and removes the cgroup.
fn left_alone(mut theirs: netlab_tests::Background, cg: &Path, what: &str) {
    assert!(
        theirs.running() && cg.exists(),
        "{what} emptied someone else's cgroup"
    );
    drop(theirs.finish());
    assert!(wait_for(Duration::from_secs(5), || std::fs::remove_dir(cg).is_ok()));
}

/// A `run --network host` killed after it journaled its cgroup but before it made it:
/// the next command's recovery leaves a cgroup someone else made at that path, and its
/// processes, alone (it knows its own by the id recorded once made).
#[test]
fn recovery_leaves_a_cgroup_it_did_not_make() {
    let lab = Lab::on("iptables");
    let cg = cgroup::root()
        .unwrap()
        .join(format!("netlab-{}-z", lab.name));
    let entry = serde_json::json!({"op": "attach", "container": {
        "name": "z", "network": "host", "netns": null, "ip": null, "veth": null,
        "cgroup": cg,
    }});
    let journal = Path::new("/run/netlab")
        .join(&lab.name)
        .join("journal.json");
    std::fs::write(&journal, entry.to_string()).unwrap();
    std::fs::create_dir(&cg).unwrap();
    let theirs = in_cgroup(&cg);
    lab.ok(&["status"]);
    assert!(!journal.exists(), "the journal was not settled");
    left_alone(theirs, &cg, "recovery");
}

#[test]
fn rm_ends_a_host_network_containers_processes_on_ebpf() {
    rm_ends_a_host_network_containers_processes("ebpf");
}

#[test]
fn rm_ends_a_host_network_containers_processes_on_iptables() {
    rm_ends_a_host_network_containers_processes("iptables");
}

/// Waits until `sleep`, started through `netlab exec`, runs: `exec` replaces netlab
/// once it is in the namespace (and cgroup).
fn wait_started(p: &netlab_tests::Background) {
    let comm = format!("/proc/{}/comm", p.pid());
    assert!(
        wait_for(Duration::from_secs(10), || std::fs::read_to_string(&comm)
            .is_ok_and(|c| c.trim() == "sleep")),
        "sleep did not start"
    );
}

/// `status` says what of a container was removed behind netlab's back: its namespace,
/// or its veth pair; the others are up. `rm` then removes what is left. So for the
/// uplink and the bridge, and `down` still works.
#[test]
fn status_shows_what_of_a_container_is_gone() {
    let lab = Lab::sandbox(&[]);
    for c in ["a", "b", "c"] {
        lab.ok(&["run", c]);
    }
    netns::delete(&format!("{}-a", lab.name)).unwrap();
    let veth = lab.state().container("b").unwrap().veth.clone().unwrap();
    run_in_ns_ok(&lab.ns("host"), &["ip", "link", "del", &veth]);
    let states: Vec<(String, String)> = lab.status()["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("a", "namespace gone"),
        ("b", "veth pair gone"),
        ("c", "up"),
    ];
    assert_eq!(
        states,
        want.map(|(n, s)| (n.to_string(), s.to_string())),
        "{states:?}"
    );
    assert!(lab.ok(&["status"]).contains("namespace gone"));
    // What a command on them says to do names this lab, not the default one.
    let rm_a = format!("`netlab rm --lab {} a`", lab.name);
    for args in [
        &["publish", "a", "9700:80"][..],
        &["exec", "a", "--", "true"],
    ] {
        let err = lab.fails(args);
        assert!(err.contains(&rm_a), "{args:?}: {err}");
    }
    let err = lab.fails(&["publish", "b", "9700:80"]);
    assert!(
        err.contains(&format!("`netlab rm --lab {} b`", lab.name)),
        "{err}"
    );
    for c in ["a", "b", "c"] {
        lab.ok(&["rm", c]);
    }
    // The uplink.
    assert_eq!(lab.status()["uplink"]["state"], "up");
    run_in_ns_ok(&lab.ns("host"), &["ip", "link", "del", "eth0"]);
    let status = lab.status();
    assert_eq!(status["uplink"]["state"], "gone", "{status}");
    assert_eq!(status["uplink"]["address"], serde_json::Value::Null);
    let text = lab.ok(&["status"]);
    assert!(
        text.contains("eth0 GONE (removed behind netlab's back; it had 198.51.100.2 at up)"),
        "{text}"
    );
    // And the bridge.
    lab.ok(&["run", "d"]);
    assert_eq!(lab.status()["bridge"]["state"], "up");
    run_in_ns_ok(&lab.ns("host"), &["ip", "link", "del", &lab.state().bridge]);
    assert_eq!(lab.status()["bridge"]["state"], "gone");
    // `publish` says so too, and publishes nothing.
    let err = lab.fails(&["publish", "d", "3333:80"]);
    assert!(
        err.contains("is gone") && err.contains("netlab down"),
        "{err}"
    );
    assert!(lab.ports().is_empty());
    assert!(
        lab.ok(&["status"])
            .contains("GONE (removed behind netlab's back)")
    );
    // `run` says so, and what to do, rather than the kernel's "does not exist".
    let err = lab.fails(&["run", "early"]);
    assert!(
        err.contains("is gone") && err.contains("netlab down"),
        "{err}"
    );
    assert!(lab.state().container("early").is_none());
    // A bridge of its name made again is someone else's: still gone, and no container
    // is plugged into it (nothing is made).
    let bridge = lab.state().bridge;
    run_in_ns_ok(
        &lab.ns("host"),
        &["ip", "link", "add", &bridge, "type", "bridge"],
    );
    assert_eq!(lab.status()["bridge"]["state"], "gone");
    let err = lab.fails(&["run", "late"]);
    assert!(err.contains("made again, behind netlab's back"), "{err}");
    assert!(lab.state().container("late").is_none());
    let ports = run_in_ns_ok(&lab.ns("host"), &["ip", "link", "show", "master", &bridge]);
    assert!(ports.trim().is_empty(), "plugged into theirs: {ports}");
}

/// A published port whose rule (nftables: element) was removed behind netlab's back, as
/// a firewall reload does, is still withdrawn: `rm` (and so a CNI DEL) succeeds and
/// leaves the container's other rules gone too, rather than failing on the missing one
/// and keeping the container.
fn rm_withdraws_ports_whose_rules_are_already_gone(dp: &str) {
    let lab = Lab::sandbox(&["--datapath", dp]);
    lab.ok(&["run", "web", "-p", "8080:80", "-p", "5353:53/udp"]);
    let host = lab.ns("host");
    let remove: Vec<&str> = match dp {
        "nftables" => vec![
            "nft",
            "delete",
            "element",
            "ip",
            "netlab",
            "ports_any",
            "{ tcp . 8080 }",
        ],
        _ => vec![iptables_tool(dp), "-t", "nat", "-F", "NETLAB"],
    };
    run_in_ns_ok(&host, &remove);
    lab.ok(&["rm", "web"]);
    assert!(lab.ports().is_empty());
    let left = ruleset(&host, dp);
    for port in ["8080", "5353", "172.18.0.2"] {
        assert!(
            !left.contains(port),
            "{dp}: a rule for {port} is left:\n{left}"
        );
    }
}

/// `publish` after the lab's rules were flushed away behind netlab's back (`nft flush
/// ruleset`, `iptables -F -X`, a firewall reload) says what is gone and what to do, in
/// one line, rather than the tool's "No such file or directory" or "No chain/target/
/// match by that name", and publishes nothing.
fn publishing_after_a_firewall_flush_says_what_is_gone(dp: &str) {
    let lab = Lab::sandbox(&["--datapath", dp]);
    lab.ok(&["run", "web"]);
    let host = lab.ns("host");
    let flush = match dp {
        "nftables" => "nft flush ruleset".to_string(),
        _ => format!("{0} -t nat -F && {0} -t nat -X", iptables_tool(dp)),
    };
    run_in_ns_ok(&host, &["sh", "-c", &flush]);
    let err = lab.fails(&["publish", "web", "8080:80"]);
    assert!(
        err.contains("is gone (removed behind netlab's back") && err.contains("netlab down"),
        "{dp}: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(lab.ports().is_empty());
}
