//! podman 4.3 (Debian's, unmodified) as the client of netlab-cni, in a world of its own:
//! the runtime's namespaces of [`CniWorld`], podman started inside `<net>-host` with
//! `nsenter --net=` and inside a private mount namespace (a holder process with its own
//! `/dev/shm` for podman's lock table and its own `/var/lib` for libcni's cache, so that
//! nothing of podman's is shared with other tests or left on the machine), every other
//! file in a private directory, and a busybox root filesystem instead of an image.
//! Drop removes the containers (through the plugin's DEL), the holder, the cgroups,
//! the directory, and then the world.

use std::{
    fs,
    os::unix::fs::{PermissionsExt, symlink},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{Lab, MountNs, cni::CniWorld, netns};

pub struct Podman {
    pub world: CniWorld,
    /// Everything podman writes: storage, run root, tmp, plugin dir, conflists, rootfs.
    dir: PathBuf,
    /// Holds the private mount namespace podman runs in.
    holder: MountNs,
    /// podman's cgroup parent, `/netlab-podman-<net>` in every hierarchy.
    cgroup: String,
}

/// Runs `cmd`, asserting success; returns stdout.
fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A busybox root: the static busybox, its applets as links, `/www` with a CGI that
/// answers `you are <client address>`.
fn busybox_root(root: &Path) {
    for d in [
        "bin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "www/cgi-bin",
    ] {
        fs::create_dir_all(root.join(d)).expect("rootfs dir");
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    let list = sh(Command::new("/bin/busybox").arg("--list"));
    for applet in list.lines().filter(|a| *a != "busybox") {
        let _ = symlink("busybox", root.join("bin").join(applet));
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    fs::write(
        root.join("www/index.html"),
        "hello from a podman container\n",
    )
    .unwrap();
    let cgi = root.join("www/cgi-bin/ip");
    fs::write(
        &cgi,
        "#!/bin/sh\necho 'Content-type: text/plain'\necho\necho \"you are $REMOTE_ADDR\"\n",
    )
    .unwrap();
    fs::set_permissions(&cgi, fs::Permissions::from_mode(0o755)).unwrap();
}

impl Podman {
    /// A world whose network `<net>` runs on datapath `dp`, with its conflist.
    pub fn new(dp: &str) -> Podman {
        Self::with(dp, CniWorld::new(), None)
    }

    /// The same with a dual-stack network (`"subnet6"`), in a world with IPv6.
    pub fn dual_stack(dp: &str, subnet6: &str) -> Podman {
        Self::with(dp, CniWorld::dual_stack(), Some(subnet6))
    }

    fn with(dp: &str, world: CniWorld, subnet6: Option<&str>) -> Podman {
        // Short: podman refuses a runroot of more than 50 characters.
        let dir = crate::private_dir("pm");
        for d in ["storage", "runroot", "runc", "tmp", "xdg", "cni", "net.d"] {
            fs::create_dir_all(dir.join(d)).expect("podman dir");
        }
        fs::set_permissions(dir.join("xdg"), fs::Permissions::from_mode(0o700)).unwrap();
        symlink(crate::cni::cni_bin(), dir.join("cni/netlab-cni")).expect("plugin link");
        busybox_root(&dir.join("rootfs"));
        // runc with a state directory of its own. Under the machine's /run/runc one
        // test's cleanup removed the directory while another's runc was about to
        // create a container in it. A wrapper rather than --runtime-flag: podman's
        // `container cleanup`, run when a container exits, is not given the flag.
        let runc = dir.join("runc.sh");
        fs::write(
            &runc,
            format!(
                "#!/bin/sh\nexec runc --root {} \"$@\"\n",
                dir.join("runc").display()
            ),
        )
        .expect("runc wrapper");
        fs::set_permissions(&runc, fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.display();
        fs::write(
            dir.join("containers.conf"),
            format!(
                "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{d}/cni\"]\n\
                 network_config_dir = \"{d}/net.d\"\n\n[engine]\ncgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\nevents_logfile_path = \"{d}/tmp/events.log\"\n\
                 enable_port_reservation = false\nruntime = \"{d}/runc.sh\"\ntmp_dir = \"{d}/tmp\"\n"
            ),
        )
        .unwrap();
        let mut plugin = json!({
            "type": "netlab-cni",
            "bridge": world.bridge(),
            "subnet": "10.77.0.0/24",
            "datapath": dp,
            // `ips` declared, as the README's conflist does: podman 4.3 otherwise
            // replaces the capabilities with its own `{"ips": true}` for a static
            // address, and `-p` reaches the plugin no more.
            "capabilities": {"portMappings": true, "ips": true},
        });
        if let Some(s6) = subnet6 {
            plugin["subnet6"] = json!(s6);
        }
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": world.net,
            "plugins": [plugin],
        });
        fs::write(
            dir.join("net.d").join(format!("{}.conflist", world.net)),
            serde_json::to_string_pretty(&conflist).unwrap(),
        )
        .unwrap();
        let holder = Self::holder();
        let mut world = world;
        // The lab podman brings up has its pins in podman's mount namespace.
        world.set_mount_ns(holder.path());
        Podman {
            cgroup: format!("netlab-podman-{}", world.net),
            world,
            dir,
            holder,
        }
    }

    /// A mount namespace of its own with a fresh `/dev/shm` and `/var/lib`.
    fn holder() -> MountNs {
        MountNs::new(
            "mount -t tmpfs -o size=64m,mode=1777 netlab-shm /dev/shm && \
             mount -t tmpfs -o mode=755 netlab-varlib /var/lib",
        )
    }

    /// The path of the conflist in podman's network directory.
    pub fn conflist(&self) -> PathBuf {
        self.dir
            .join("net.d")
            .join(format!("{}.conflist", self.world.net))
    }

    /// `podman ARGS` in the runtime's namespaces, with the private files.
    pub fn run(&self, args: &[&str]) -> Output {
        let d = &self.dir;
        Command::new("nsenter")
            .arg(format!("--mount={}", self.holder.path().display()))
            .arg(format!("--net={}", self.world.host().display()))
            .arg("podman")
            .arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--runtime")
            .arg(d.join("runc.sh"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .args(args)
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("XDG_RUNTIME_DIR", d.join("xdg"))
            .stdin(Stdio::null())
            .output()
            .expect("run podman")
    }

    /// `podman ARGS` that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A second network of the same runtime, on datapath `dp` with the subnet
    /// 10.78.0.0/24 and NAT ports apart from the first's; its lab (which the first ADD
    /// on it brings up) is taken down when the returned guard goes, if it is up.
    pub fn second_network(&self, dp: &str) -> Lab {
        let name = crate::unique_lab();
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [{
                "type": "netlab-cni",
                "bridge": format!("b{name}"),
                "subnet": "10.78.0.0/24",
                "natPorts": "10000-19999",
                "datapath": dp,
                "capabilities": {"portMappings": true, "ips": true},
            }],
        });
        fs::write(
            self.dir.join("net.d").join(format!("{name}.conflist")),
            serde_json::to_string_pretty(&conflist).unwrap(),
        )
        .unwrap();
        let mut lab = Lab::named(&name);
        lab.mount_ns = Some(self.holder.path());
        lab
    }

    /// `podman run -d --name NAME [extra] --rootfs ROOT CMD...` on the network.
    pub fn run_container(&self, name: &str, extra: &[&str], cmd: &[&str]) -> Output {
        self.run_on(&self.world.net, name, extra, cmd)
    }

    /// [`Podman::run_container`] on `networks` (comma-separated, podman's `--network`).
    pub fn run_on(&self, networks: &str, name: &str, extra: &[&str], cmd: &[&str]) -> Output {
        let parent = format!("/{}", self.cgroup);
        let rootfs = self.dir.join("rootfs").display().to_string();
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            networks,
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "--dns",
            "203.0.113.53",
            "--cgroup-parent",
            &parent,
        ];
        args.extend_from_slice(extra);
        // `--rootfs` is a flag: the root comes first among the positional arguments.
        args.extend_from_slice(&["--rootfs", &rootfs]);
        args.extend_from_slice(cmd);
        self.run(&args)
    }

    /// A busybox httpd on port 80 (its CGI shows the client's address), with `extra`
    /// options (`-p ...`), once it listens: `podman run -d` returns when the container's
    /// process has started, which may be before it has bound its port.
    pub fn web(&self, name: &str, extra: &[&str]) {
        let out = self.run_container(name, extra, &["/bin/httpd", "-f", "-p", "80", "-h", "/www"]);
        assert!(
            out.status.success(),
            "podman run {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.wait_listening(name, 80);
    }

    /// Waits until a TCP socket listens on `port` inside container `name` (a server
    /// that `podman run -d` started may not have bound it yet).
    pub fn wait_listening(&self, name: &str, port: u16) {
        assert!(
            crate::wait_for(Duration::from_secs(10), || self.listens(name, port)),
            "nothing in {name} ever listened on port {port}"
        );
    }

    /// Whether a TCP socket listens on `port` inside container `name`, read from its
    /// `/proc/net/tcp` and `tcp6` (state 0A).
    fn listens(&self, name: &str, port: u16) -> bool {
        let out = self.run(&["exec", name, "cat", "/proc/net/tcp", "/proc/net/tcp6"]);
        let local = format!(":{port:04X}");
        String::from_utf8_lossy(&out.stdout).lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&local) && f[3] == "0A"
        })
    }

    /// A container that only sleeps.
    pub fn idle(&self, name: &str) {
        let out = self.run_container(name, &[], &["/bin/sleep", "1d"]);
        assert!(
            out.status.success(),
            "podman run {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The container's address on the network, as podman reports it.
    pub fn ip(&self, name: &str) -> String {
        let net = &self.world.net;
        self.ok(&[
            "inspect",
            name,
            "--format",
            &format!("{{{{.NetworkSettings.Networks.{net}.IPAddress}}}}"),
        ])
        .trim()
        .to_string()
    }

    /// `GET PATH` from inside a container with busybox nc; the response (empty when
    /// nothing answers).
    pub fn get_from(&self, name: &str, addr: &str, port: u16, path: &str) -> String {
        let script = format!("printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {addr} {port}");
        let out = self.run(&["exec", name, "sh", "-c", &script]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `podman rm -f -t 0 NAME` (one at a time: a missing name makes podman remove none).
    pub fn rm(&self, name: &str) {
        self.ok(&["rm", "-f", "-t", "0", name]);
    }

    /// Times `f`, printing how long it took.
    pub fn timed<T>(what: &str, f: impl FnOnce() -> T) -> (T, Duration) {
        let t = Instant::now();
        let v = f();
        let took = t.elapsed();
        println!("{what}: {:.3} s", took.as_secs_f64());
        (v, took)
    }

    /// The nsfs mounts under /run/netns in the holder's mount namespace that the
    /// machine's does not have: the namespaces podman made for our containers.
    fn private_netns_mounts(&self) -> Vec<PathBuf> {
        let mounts = |pid: &str| -> Vec<String> {
            fs::read_to_string(format!("/proc/{pid}/mountinfo"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
                .filter(|m| m.starts_with("/run/netns/netns-"))
                .collect()
        };
        let ours = mounts(&self.holder.pid().to_string());
        let machine = mounts("1");
        ours.into_iter()
            .filter(|m| !machine.contains(m))
            .map(PathBuf::from)
            .collect()
    }

    /// Removes podman's cgroup parent from every hierarchy, deepest first.
    fn remove_cgroups(&self) {
        fn rmdir_all(p: &Path) {
            if let Ok(entries) = fs::read_dir(p) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        rmdir_all(&e.path());
                    }
                }
            }
            let _ = fs::remove_dir(p);
        }
        let left = || -> Vec<PathBuf> {
            fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .map(|h| h.path().join(&self.cgroup))
                .filter(|cg| cg.exists())
                .collect()
        };
        // conmon may still be on its way out when `rm` returns.
        let gone = crate::wait_for(Duration::from_secs(10), || {
            left().iter().for_each(|cg| rmdir_all(cg));
            left().is_empty()
        });
        if !gone && !std::thread::panicking() {
            panic!("podman's cgroups are left: {:?}", left());
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Every container goes through the plugin's DEL.
        let _ = self.run(&["rm", "-a", "-f", "-t", "0"]);
        // While podman's mount namespace, where the lab's pins are, still exists.
        self.world.take_down();
        let left = self.private_netns_mounts();
        self.holder.stop();
        for p in left {
            if !netns::is_netns(&p) {
                let _ = fs::remove_file(&p);
            }
        }
        self.remove_cgroups();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
