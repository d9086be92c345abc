//! Harness for netlab's root tests: sandbox labs with unique names torn down by a Drop
//! guard, commands run in their namespaces, and a packet builder for BPF_PROG_TEST_RUN.
//!
//! Every test needs root and fails (never skips) without it: run them with
//! `cargo xtask test`.

pub mod cni;
pub mod foreign;
pub mod forwarding;
pub mod model;
pub mod packet;
pub mod packet6;
pub mod podman;
pub mod race;
pub mod sockets;
pub mod stream;
pub mod transfer;
pub mod uplink_moves;

/// One test per datapath for each behaviour written once as `fn behaviour(dp: &str)`:
/// `per_datapath!([f, g]; a = "a", b = "b")` makes
/// `mod a { #[test] fn f() { super::f("a") } #[test] fn g() { super::g("a") } } mod b { ... }`.
/// On a kernel that cannot run datapath `b`, b's tests are skipped with the reason.
#[macro_export]
macro_rules! per_datapath {
    ($tests:tt; $($dp:ident = $name:literal),+ $(,)?) => {
        $( $crate::per_datapath!(@one $dp $name $tests); )+
    };
    (@one $dp:ident $name:literal [$($test:ident),+ $(,)?]) => {
        mod $dp {
            $(
                #[test]
                fn $test() {
                    if let Some(why) = $crate::unavailable($name) {
                        return $crate::skip(&why);
                    }
                    super::$test($name)
                }
            )+
        }
    };
}

use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

pub use netlab::netlink::netns;

pub const UPLINK_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const WAN_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const INTERNET: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const BRIDGE_ADDR: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);

/// Panics unless running as root: these tests create namespaces and load eBPF.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "netlab's tests need root (namespaces, eBPF): run `cargo xtask test` as root"
    );
}

/// The netlab binary: `NETLAB_BIN` (set by `cargo xtask test`), else next to the tests.
pub fn netlab_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NETLAB_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test exe");
    let p = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("netlab");
    assert!(
        p.exists(),
        "netlab binary not found at {}: run `cargo xtask test`",
        p.display()
    );
    p
}

/// A lab name no other test (or test run) uses: `t<pid>_<n>`, at most 12 characters.
pub fn unique_lab() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}_{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs netlab with `args` and returns its output.
pub fn netlab(args: &[&str]) -> Output {
    Command::new(netlab_bin())
        .args(args)
        .output()
        .expect("run netlab")
}

/// A new directory for a test's files, root's only (0700), under a name no one can
/// take first ([`netlab::files::private_dir`]).
pub fn private_dir(tag: &str) -> PathBuf {
    netlab::files::private_dir(tag).unwrap_or_else(|e| panic!("make a directory for {tag}: {e}"))
}

/// A [`private_dir`] removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        TempDir(private_dir(tag))
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sandbox lab that is torn down when dropped.
pub struct Lab {
    pub name: String,
    /// The mount namespace netlab runs in for this lab, when not the test's own (a lab
    /// a container runtime made in a private mount namespace has its pins there).
    pub mount_ns: Option<PathBuf>,
    /// Whether dropping the guard takes the lab down (see [`Lab::forget`]).
    down_on_drop: bool,
}

/// Whether a datapath name of the parametrised suites is the eBPF datapath (with or
/// without its fast path).
pub fn is_ebpf(dp: &str) -> bool {
    dp == "ebpf" || dp == "ebpf-slow"
}

/// The NAT port of the lab's masqueraded TCP flow to port `dport` while it is in
/// `state` (as nf_conntrack names it), from netlab's conntrack on eBPF and the
/// kernel's (`conntrack -L` in the lab host) on the classic datapaths.
pub fn tcp_flow_to(lab: &Lab, dp: &str, dport: u16, state: &str) -> Option<u16> {
    if is_ebpf(dp) {
        return lab.conntrack().iter().find_map(|f| {
            (f["proto"] == "tcp" && f["original"]["dport"] == dport && f["state"] == state)
                .then(|| f["translated"]["sport"].as_u64().unwrap() as u16)
        });
    }
    let port = dport.to_string();
    let out = lab.exec_ok("host", &["conntrack", "-L", "-p", "tcp", "--dport", &port]);
    // tcp 6 119 SYN_SENT src=... dport=7060 [UNREPLIED] src=... sport=7060 dport=NAT
    let line = out
        .lines()
        .find(|l| l.split_whitespace().nth(3) == Some(state))?;
    let nat = line.rsplit("dport=").next()?.split_whitespace().next()?;
    nat.parse().ok()
}

/// A container's TCP connection to wan's `server` (an address and port wan has),
/// masqueraded, left idle past the lab's `--tcp-timeout` (1 s): its next segment must
/// meet a reset within 10 s, on every datapath (on eBPF sent by the datapath itself,
/// counted in `tcp_resets_sent`, the segment in `tcp_no_flow`). With `tx_off` the
/// container's host-side veth computes no checksum (`ethtool -K tx off`), so that the
/// kernel finishes an offloaded one (a review found eBPF's reset refused there).
pub fn an_idle_connection_is_reset(lab: &Lab, dp: &str, server: &str, tx_off: bool) {
    use std::io::{Read, Write};
    if tx_off {
        let veth = lab.status()["containers"][0]["veth"]
            .as_str()
            .expect("c's veth")
            .to_string();
        lab.exec_ok("host", &["ethtool", "-K", &veth, "tx", "off"]);
    }
    let listener = sockets::tcp_listen(&lab.ns("wan"), server);
    let mut client = sockets::tcp_connect(&lab.ns("c"), server);
    let mut conn = sockets::accept(&listener);
    client.write_all(b"one").unwrap();
    let mut buf = [0u8; 3];
    conn.read_exact(&mut buf).unwrap();
    // Past the timeout, and past the collector's next run.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let counts = || {
        is_ebpf(dp).then(|| {
            let resets = lab.stat("counters", "tcp_resets_sent");
            (resets, lab.stat("drops", "tcp_no_flow"))
        })
    };
    let before = counts();
    if is_ebpf(dp) {
        assert_eq!(lab.conntrack().len(), 0, "{dp}: the flow expired");
    }
    client.write_all(b"two").unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let err = client.read(&mut buf).expect_err("a reset");
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::ConnectionReset,
        "{dp}: {err}"
    );
    if let (Some((resets, no_flow)), Some(after)) = (before, counts()) {
        assert_eq!(
            after,
            (resets + 1, no_flow + 1),
            "{dp}: one reset for one segment"
        );
    }
}

/// The NAT port of the lab's masqueraded TCP flow to port `dport` once it shows in
/// SYN_SENT ([`tcp_flow_to`]), waited for up to 5 s.
pub fn wait_for_opening_flow(lab: &Lab, dp: &str, dport: u16) -> u16 {
    let mut nat_port = None;
    let seen = wait_for(Duration::from_secs(5), || {
        nat_port = tcp_flow_to(lab, dp, dport, "SYN_SENT");
        nat_port.is_some()
    });
    assert!(seen, "{dp}: no flow to port {dport} in SYN_SENT");
    nat_port.unwrap()
}

/// Why a datapath of the parametrised suites cannot run on this machine, asked of the
/// kernel itself ([`kernel_lacks`]), never of netlab: a probe of netlab's own that
/// went wrong would otherwise skip the very tests that should catch it. Only
/// `nftables-flowtable` can be missing (a kernel without CONFIG_NF_FLOW_TABLE); `up`
/// must then refuse it with a line that says so
/// (`datapaths::flowtable_refused_where_the_kernel_lacks_it`), and must bring it up
/// where the kernel has flowtables.
pub fn unavailable(dp: &str) -> Option<String> {
    match dp {
        "nftables-flowtable" => kernel_lacks(Feature::Flowtables).map(|why| format!("{dp}: {why}")),
        _ => None,
    }
}

/// What a datapath or device needs of the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// nftables flowtables (CONFIG_NF_FLOW_TABLE).
    Flowtables,
    /// netkit devices (CONFIG_NETKIT, Linux 6.7+).
    Netkit,
}

/// Why this kernel lacks `feature`, found once per test binary by making one in a
/// scratch namespace with the system's own tools (`nft`, `ip`); `None` when it has it.
/// Any other failure of the probe fails the test that asked.
pub fn kernel_lacks(feature: Feature) -> Option<String> {
    static FLOWTABLES: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    static NETKIT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let once = match feature {
        Feature::Flowtables => &FLOWTABLES,
        Feature::Netkit => &NETKIT,
    };
    once.get_or_init(|| {
        require_root();
        /// The scratch namespace, deleted however the probe ends.
        struct Scratch(String);
        impl Drop for Scratch {
            fn drop(&mut self) {
                let _ = netns::delete(&self.0);
            }
        }
        let scratch = Scratch(format!("{}-probe", unique_lab()));
        let ns = netns::create(&scratch.0).expect("create a scratch namespace");
        let (out, lacking) = match feature {
            // The flowtable, and the rule that offloads into it (`flow add`), as the
            // nftables-flowtable datapath writes them.
            Feature::Flowtables => {
                let nft = |cmd: &str| run_in_ns(&ns, &["nft", cmd]);
                let steps = [
                    "add table inet probe",
                    "add flowtable inet probe f { hook ingress priority 0; devices = { lo }; }",
                    "add chain inet probe fwd { type filter hook forward priority 0; }",
                    "add rule inet probe fwd meta l4proto tcp flow add @f",
                ];
                let out = steps
                    .iter()
                    .map(|step| nft(step))
                    .find(|out| !out.status.success())
                    .unwrap_or_else(|| nft("list ruleset"));
                (out, "No such file or directory")
            }
            Feature::Netkit => (
                run_in_ns(&ns, &["ip", "link", "add", "nkprobe", "type", "netkit"]),
                "Unknown device type",
            ),
        };
        drop(scratch);
        if out.status.success() {
            return None;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or_default().trim().to_string();
        assert!(
            err.contains(lacking),
            "probing the kernel for {feature:?} failed for another reason: {err}"
        );
        Some(match feature {
            Feature::Flowtables => format!("this kernel has no nftables flowtables (nft: {first})"),
            Feature::Netkit => format!("this kernel has no netkit devices (ip: {first})"),
        })
    })
    .clone()
}

/// What `netlab up --datapath nftables-flowtable` says on a kernel without flowtables.
pub const FLOWTABLE_MISSING: &str = "needs nftables flowtables, which this kernel does not have";

/// Records that the running test cannot run here, and why: `cargo xtask test` counts
/// it as skipped (not passed) and lists the reason. Call it and return.
pub fn skip(why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("(unnamed test)")
        .to_string();
    eprintln!("skipped: {test}: {why}");
    if let Ok(path) = std::env::var("NETLAB_SKIP_LOG") {
        use std::io::Write as _;
        let line = format!("{test}: {}\n", why.replace('\n', " "));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .unwrap_or_else(|e| panic!("record the skip in {path}: {e}"));
    }
}

/// `netlab up` flags for a datapath name of the parametrised suites: `ebpf-slow` is the
/// eBPF datapath without its fast path, so that every behaviour is checked both ways.
pub fn datapath_args(dp: &str) -> Vec<&str> {
    match dp {
        "ebpf-slow" => vec!["--datapath", "ebpf", "--no-fast-path"],
        _ => vec!["--datapath", dp],
    }
}

impl Lab {
    /// A fresh sandbox lab on datapath `dp` (a name of the parametrised suites).
    pub fn on(dp: &str) -> Lab {
        Lab::sandbox(&datapath_args(dp))
    }

    /// `netlab up --sandbox` with extra `args`, on a fresh unique lab.
    pub fn sandbox(args: &[&str]) -> Lab {
        require_root();
        let lab = Lab::named(&unique_lab());
        let mut all = vec!["up", "--sandbox"];
        all.extend_from_slice(args);
        lab.ok(&all);
        lab
    }

    /// The guard of lab `name`, which something else brings up (a CNI runtime).
    pub fn named(name: &str) -> Lab {
        Lab {
            name: name.to_string(),
            mount_ns: None,
            down_on_drop: true,
        }
    }

    /// Lets go of a lab that something else took down already (a CNI GC): `netlab
    /// down` would rightly say that it does not exist.
    pub fn forget(mut self) {
        self.down_on_drop = false;
    }

    /// `netlab --lab NAME ARGS`, in the lab's mount namespace.
    fn command(&self) -> Command {
        let mut c = match &self.mount_ns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--mount={}", ns.display()))
                    .arg("--")
                    .arg(netlab_bin());
                c
            }
            None => Command::new(netlab_bin()),
        };
        c.arg("--lab").arg(&self.name);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run netlab")
    }

    /// Runs netlab on this lab and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "netlab {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs netlab on this lab and asserts a one-line error and a non-zero exit.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "netlab {} should have failed",
            args.join(" ")
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "error is not one line: {err:?}"
        );
        assert!(
            err.starts_with("netlab: "),
            "error lacks the netlab prefix: {err:?}"
        );
        err
    }

    /// `netlab exec NAME -- CMD...`, returning its output.
    pub fn exec(&self, name: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", name, "--"];
        args.extend_from_slice(cmd);
        self.run(&args)
    }

    /// `netlab exec` that must succeed; returns stdout.
    pub fn exec_ok(&self, name: &str, cmd: &[&str]) -> String {
        let out = self.exec(name, cmd);
        assert!(
            out.status.success(),
            "{} in {name} failed: {}{}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `CMD` in a namespace in the background; killed when the guard drops.
    pub fn spawn(&self, name: &str, cmd: &[&str]) -> Background {
        let child = self
            .command()
            .args(["exec", name, "--"])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        Background(Some(child))
    }

    /// Gives the lab host's default route (by the sandbox's uplink) an MTU of its own,
    /// locked, below its devices' (a tunnel's, a cloud's): `ip route replace default
    /// via 198.51.100.1 dev eth0 mtu lock MTU`.
    pub fn lock_route_mtu(&self, mtu: u32) {
        self.route_mtu(mtu, true);
    }

    /// The lab host's default route with MTU `mtu`, locked (`mtu lock N`) or not.
    pub fn route_mtu(&self, mtu: u32, locked: bool) {
        let mtu = mtu.to_string();
        let mut cmd = vec![
            "ip",
            "route",
            "replace",
            "default",
            "via",
            "198.51.100.1",
            "dev",
            "eth0",
            "mtu",
        ];
        if locked {
            cmd.push("lock");
        }
        cmd.push(&mtu);
        self.exec_ok("host", &cmd);
    }

    /// `python3 -m http.server PORT` in a namespace, once it listens. Its output (the
    /// request log, with client addresses) comes back from [`Background::finish`].
    pub fn http_server(&self, name: &str, port: u16) -> Background {
        let server = self.spawn(
            name,
            &["python3", "-u", "-m", "http.server", &port.to_string()],
        );
        let listening = wait_for(Duration::from_secs(10), || {
            self.exec_ok(name, &["ss", "-Htln"])
                .contains(&format!(":{port} "))
        });
        assert!(listening, "http server in {name} never listened on {port}");
        server
    }

    /// The HTTP status of `curl URL` run in a namespace (`000` when nothing answers).
    pub fn curl(&self, from: &str, url: &str) -> String {
        let out = self.exec(from, &curl_status(url));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends one UDP datagram from a namespace (a connected socket, as `socat UDP:` uses)
    /// and returns the reply, or "" when none comes within 5 s.
    pub fn udp_ask(&self, from: &str, addr: &str) -> String {
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        let script = format!(
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(5)\n\
             s.connect(('{host}', {port}))\ns.send(b'ping')\ntry:\n    print(s.recv(64).decode().strip())\n\
             except OSError:\n    pass\n"
        );
        let out = self.exec(from, &["python3", "-c", &script]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A UDP server answering every datagram with `pong`, on PORT in a namespace.
    pub fn udp_server(&self, name: &str, port: u16) -> Background {
        let script = format!(
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', {port}))\n\
             while True:\n    d, a = s.recvfrom(64)\n    s.sendto(b'pong', a)\n"
        );
        let server = self.spawn(name, &["python3", "-c", &script]);
        let bound = wait_for(Duration::from_secs(10), || {
            self.exec_ok(name, &["ss", "-Huln"])
                .contains(&format!(":{port} "))
        });
        assert!(bound, "udp server in {name} never bound {port}");
        server
    }

    /// `netlab ports --json`, parsed.
    pub fn ports(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["ports", "--json"])).expect("ports json")
    }

    /// The path of one of the lab's namespaces (`host`, `wan` or a container).
    pub fn ns(&self, name: &str) -> PathBuf {
        netns::path(&format!("{}-{}", self.name, name))
    }

    /// `netlab status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status json")
    }

    /// A counter or drop reason from `netlab stats --json`.
    pub fn stat(&self, section: &str, name: &str) -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["stats", "--json"])).expect("stats json");
        v[section][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no {section}.{name} in stats"))
    }

    /// `netlab conntrack --json`, parsed.
    pub fn conntrack(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["conntrack", "--json"])).expect("conntrack json")
    }

    /// A counter of `/proc/net/snmp` in one of the lab's namespaces: `proto` is the
    /// line's prefix without its colon (`Ip`, `Tcp`, `Udp`), `field` the column.
    pub fn snmp(&self, ns: &str, proto: &str, field: &str) -> u64 {
        let snmp = self.exec_ok(ns, &["cat", "/proc/net/snmp"]);
        let prefix = format!("{proto}:");
        let mut lines = snmp.lines().filter(|l| l.starts_with(&prefix));
        let (names, values) = (lines.next(), lines.next());
        let (Some(names), Some(values)) = (names, values) else {
            panic!("no {proto} lines in /proc/net/snmp: {snmp}");
        };
        let i = names
            .split_whitespace()
            .position(|n| n == field)
            .unwrap_or_else(|| panic!("no {proto} {field} in /proc/net/snmp"));
        values
            .split_whitespace()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("bad {proto} {field} in {values:?}"))
    }

    /// The lab's state file, read through the library.
    pub fn state(&self) -> netlab::lab::LabState {
        netlab::ops::Session::open(&self.name)
            .expect("lab state")
            .state
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.down_on_drop {
            return;
        }
        // --force: a CNI network's guard takes it down whatever a failed test left
        // attached.
        let out = self.run(&["down", "--force"]);
        if !out.status.success() && !std::thread::panicking() {
            panic!(
                "netlab down --lab {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Puts `flows` synthetic established flows into an eBPF lab's conntrack, as the
/// benchmark does; returns how many went in.
pub fn fill_conntrack(lab: &Lab, flows: u32) -> u32 {
    let state = lab.state();
    netlab::datapath::for_kind(state.datapath)
        .fill()
        .expect("the eBPF datapath fills")
        .fill_conntrack(&state, flows)
        .expect("fill")
}

/// Makes every flow of an eBPF lab `secs` seconds older (both IPv4 conntrack tables,
/// and the first fragments remembered, of both families), as if that much time had
/// passed without a packet: timeouts are tested without waiting.
pub fn age_flows(lab: &Lab, secs: u32) {
    use aya::maps::{HashMap, MapData};
    use netlab::datapath::ebpf::pins;
    use netlab_common::{
        conntrack::{CtEntry, CtKey},
        frag::{FragKey, FragKey6, FragNat, FragNat6},
        maps as names,
    };
    let mut frags: HashMap<MapData, FragKey, FragNat> =
        pins::typed(&lab.name, names::FRAGS).expect("open FRAGS");
    let all: Vec<(FragKey, FragNat)> = frags.iter().filter_map(|r| r.ok()).collect();
    for (k, mut n) in all {
        n.seen = n.seen.saturating_sub(secs);
        let _ = frags.insert(k, n, 2);
    }
    let mut frags6: HashMap<MapData, FragKey6, FragNat6> =
        pins::typed(&lab.name, names::FRAGS6).expect("open FRAGS6");
    let all: Vec<(FragKey6, FragNat6)> = frags6.iter().filter_map(|r| r.ok()).collect();
    for (k, mut n) in all {
        n.seen = n.seen.saturating_sub(secs);
        let _ = frags6.insert(k, n, 2);
    }
    for table in [names::CT, names::CT_PENDING] {
        let mut m: HashMap<MapData, CtKey, CtEntry> =
            pins::typed(&lab.name, table).expect("open a conntrack table");
        let all: Vec<(CtKey, CtEntry)> = m.iter().filter_map(|r| r.ok()).collect();
        for (k, mut e) in all {
            e.last_seen = e.last_seen.saturating_sub(secs);
            e.created = e.created.saturating_sub(secs);
            // BPF_EXIST: a flow removed meanwhile stays removed (re-created, it would be
            // an entry nobody counted in `CT`).
            let _ = m.insert(k, e, 2);
        }
    }
}

/// The hops `traceroute -n -q 1 -w 2 -m 5 DEST` from container `from` shows (an
/// address each, `*` for a silent one); `DEST` of either family.
pub fn traceroute_hops(lab: &Lab, from: &str, dest: &str) -> (Vec<String>, String) {
    let family = if dest.contains(':') { "-6" } else { "-4" };
    let out = lab.exec_ok(
        from,
        &[
            "traceroute",
            family,
            "-n",
            "-q",
            "1",
            "-w",
            "2",
            "-m",
            "5",
            dest,
        ],
    );
    let hops = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
        .collect();
    (hops, out)
}

/// `curl` printing only the HTTP status of URL (`000` when nothing answers in 3 s).
pub fn curl_status(url: &str) -> [&str; 9] {
    [
        "curl",
        "-s",
        "-m",
        "3",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        url,
    ]
}

/// A background process, killed on drop.
pub struct Background(Option<Child>);

impl Background {
    /// The process's ID.
    pub fn pid(&self) -> u32 {
        self.0.as_ref().expect("child").id()
    }

    /// Whether the process is still running (not exited, not a zombie).
    pub fn running(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("try_wait").is_none())
    }

    /// Stops the process and returns what it printed.
    pub fn finish(mut self) -> String {
        let child = self.0.take().expect("child");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let out = child.wait_with_output().expect("wait");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Waits for the process to exit on its own (bounded), returning (success, output).
    pub fn wait(mut self, timeout: Duration) -> (bool, String) {
        let mut child = self.0.take().expect("child");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                let out = child.wait_with_output().expect("wait");
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                return (status.success(), text);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().expect("wait");
                return (
                    false,
                    format!("timed out; {}", String::from_utf8_lossy(&out.stderr)),
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl From<Child> for Background {
    fn from(child: Child) -> Self {
        Background(Some(child))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The ifindex and MAC of link `name` in namespace `ns`.
pub fn link_of(ns: &std::path::Path, name: &str) -> (u32, [u8; 6]) {
    use netlab::netlink::link;
    let name = name.to_string();
    netns::netlink_in(ns, |h| async move {
        let index = link::require(&h, &name).await?;
        let mac = link::mac(&h, &name).await?;
        Ok((index, netlab::datapath::ebpf::parse_mac(&mac)?))
    })
    .expect("link")
}

/// Runs `f` on a thread inside namespace `ns`; sockets it creates stay in `ns` and may
/// be used from the calling thread afterwards.
pub fn in_ns<T: Send>(ns: &std::path::Path, f: impl FnOnce() -> T + Send) -> T {
    netns::run_in(ns, || Ok(f())).expect("enter namespace")
}

/// Waits until something accepts TCP connections on `addr`, as seen from namespace
/// `ns` (a probe connection is opened and closed).
pub fn wait_listening(ns: &Path, addr: SocketAddr) -> bool {
    wait_for(Duration::from_secs(10), || {
        in_ns(ns, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        })
    })
}

/// Waits until `cond` holds, polling, for at most `timeout`.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// A private mount namespace, held by a process that sleeps in it (`unshare --mount
/// --propagation private`) after running `setup` there; killed when dropped, so that a
/// teardown step that panics before the end cannot leave it running. Its output goes
/// nowhere: it must never keep the test run's stdout or stderr open.
pub struct MountNs(Child);

impl MountNs {
    pub fn new(setup: &str) -> MountNs {
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(format!("{setup} && echo ready && exec sleep infinity"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a mount namespace holder");
        let mut holder = MountNs(child);
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.0.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("holder ready");
        assert_eq!(
            line.trim(),
            "ready",
            "the mount namespace holder failed: {setup}"
        );
        holder
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// `/proc/PID/ns/mnt` of the holder.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/mnt", self.pid()))
    }

    /// Kills the holder and waits for it (again, harmlessly, if it is gone).
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for MountNs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A second network on the lab host, besides the uplink: namespace `<lab>-side`
/// joined to the lab host by a veth (`side0` in the host, [`SIDE_HOST_ADDR`]/24;
/// `side1` in `side`, [`SIDE_ADDR`]/24), routing the lab subnet through the host — a
/// neighbour that could reach containers directly. Removed when dropped.
pub struct SideHost {
    ns: String,
}

pub const SIDE_HOST_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const SIDE_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

impl SideHost {
    pub fn new(lab: &Lab) -> SideHost {
        use netlab::netlink::{addr, link, route};
        use std::os::fd::AsFd;
        let side = SideHost {
            ns: format!("{}-side", lab.name),
        };
        let side_ns = netns::create(&side.ns).expect("create the side namespace");
        let side_file = netns::open(&side_ns).expect("open the side namespace");
        netns::netlink_in(&lab.ns("host"), |h| async move {
            let s = link::add_veth(&h, "side0", "side1", 1500).await?;
            let p = link::require(&h, "side1").await?;
            link::move_to_netns(&h, "side1", p, side_file.as_fd()).await?;
            addr::add(&h, "side0", s, SIDE_HOST_ADDR, 24).await?;
            link::up(&h, "side0", s).await
        })
        .expect("the host's side of the side link");
        let subnet = lab.state().subnet;
        netns::netlink_in(&side_ns, |h| async move {
            let lo = link::require(&h, "lo").await?;
            link::up(&h, "lo", lo).await?;
            let p = link::require(&h, "side1").await?;
            addr::add(&h, "side1", p, SIDE_ADDR, 24).await?;
            link::up(&h, "side1", p).await?;
            route::add_via(&h, subnet.network, subnet.prefix, SIDE_HOST_ADDR).await
        })
        .expect("the side host's end");
        side
    }

    pub fn ns(&self) -> PathBuf {
        netns::path(&self.ns)
    }
}

impl Drop for SideHost {
    fn drop(&mut self) {
        let _ = netns::delete(&self.ns);
    }
}

/// A host one router beyond the uplink: namespace `<lab>-far` at [`FAR_ADDR`] (and
/// [`FAR_ADDR6`] in a dual-stack lab), behind `wan`, which routes for it with a path
/// MTU of `mtu` (the link itself is 1500, so the far host's own TCP still offers a
/// full-size MSS; IPv6 needs 1280 at least). Removed when dropped.
pub struct FarHost {
    ns: String,
}

/// The far host's address, and wan's on the link to it (inside the sandbox's
/// 203.0.113.0/24 "internet").
pub const FAR_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 130);
pub const FAR_GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 129);
/// The same in IPv6, on a network of its own beyond wan.
pub const FAR_ADDR6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x130, 0, 0, 0, 0, 2);
pub const FAR_GATEWAY6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x130, 0, 0, 0, 0, 1);

impl FarHost {
    pub fn new(lab: &Lab, mtu: u32) -> FarHost {
        use netlab::netlink::{addr, link, route, sysctl};
        use std::os::fd::AsFd;
        let far = FarHost {
            ns: format!("{}-far", lab.name),
        };
        let far_ns = netns::create(&far.ns).expect("create far namespace");
        // In a dual-stack lab, the links come up without duplicate address detection
        // on either end: a tentative link-local address loses the answers to wan's
        // first neighbour solicitations.
        let ipv6 = lab.state().subnet6.is_some();
        let no_dad = move |ifname: &str| match ipv6 {
            true => sysctl::ipv6_no_dad(ifname),
            false => Ok(()),
        };
        let far_file = netns::open(&far_ns).expect("open far namespace");
        netns::netlink_in(&lab.ns("wan"), |h| async move {
            let w = link::add_veth(&h, "tofar", "farlink", 1500).await?;
            let p = link::require(&h, "farlink").await?;
            link::move_to_netns(&h, "farlink", p, far_file.as_fd()).await?;
            addr::add(&h, "tofar", w, FAR_GATEWAY, 25).await?;
            no_dad("tofar")?;
            link::up(&h, "tofar", w).await?;
            sysctl::set(sysctl::IP_FORWARD, "1")
        })
        .expect("wan's side of the far link");
        netns::netlink_in(&far_ns, |h| async move {
            let lo = link::require(&h, "lo").await?;
            link::up(&h, "lo", lo).await?;
            let p = link::require(&h, "farlink").await?;
            addr::add(&h, "farlink", p, FAR_ADDR, 25).await?;
            no_dad("farlink")?;
            link::up(&h, "farlink", p).await?;
            route::add_default(&h, "farlink", p, FAR_GATEWAY, 0).await
        })
        .expect("the far host's side");
        if ipv6 {
            netns::netlink_in(&lab.ns("wan"), |h| async move {
                let w = link::require(&h, "tofar").await?;
                addr::add6(&h, "tofar", w, FAR_GATEWAY6, 64).await?;
                sysctl::set(sysctl::IP6_FORWARD, "1")
            })
            .expect("wan's IPv6 side of the far link");
            netns::netlink_in(&far_ns, |h| async move {
                let p = link::require(&h, "farlink").await?;
                addr::add6(&h, "farlink", p, FAR_ADDR6, 64).await?;
                route::add_default6(&h, "farlink", p, FAR_GATEWAY6, 0).await
            })
            .expect("the far host's IPv6 side");
            if mtu < 1500 {
                lab.exec_ok(
                    "wan",
                    &[
                        "ip",
                        "-6",
                        "route",
                        "replace",
                        "2001:db8:130::/64",
                        "dev",
                        "tofar",
                        // The kernel's own route for the link (IPv6 gives it metric 256).
                        "metric",
                        "256",
                        "mtu",
                        "lock",
                        &mtu.to_string(),
                    ],
                );
            }
        }
        if mtu < 1500 {
            lab.exec_ok(
                "wan",
                &[
                    "ip",
                    "route",
                    "replace",
                    "203.0.113.128/25",
                    "dev",
                    "tofar",
                    "mtu",
                    "lock",
                    &mtu.to_string(),
                ],
            );
        }
        far
    }

    pub fn ns(&self) -> PathBuf {
        netns::path(&self.ns)
    }
}

impl Drop for FarHost {
    fn drop(&mut self) {
        let _ = netns::delete(&self.ns);
    }
}

/// Runs `cmd` inside the namespace at `ns` (`nsenter --net=`) and returns its output.
pub fn run_in_ns(ns: &Path, cmd: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(cmd)
        .output()
        .expect("run nsenter")
}

/// The same, asserting success; returns stdout.
pub fn run_in_ns_ok(ns: &Path, cmd: &[&str]) -> String {
    let out = run_in_ns(ns, cmd);
    assert!(
        out.status.success(),
        "{} in {} failed: {}",
        cmd.join(" "),
        ns.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
