//! A container runtime's world for netlab-cni: the sandbox's `<net>-host` and
//! `<net>-wan` namespaces, built by the library without a lab (the runtime's host and
//! the internet), the plugin run inside `<net>-host` as libcni runs it (`CNI_*`
//! variables, the network configuration on stdin), container namespaces
//! `<net>-c<n>` as a runtime makes them, and all of it removed on drop.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use serde_json::{Value, json};

use crate::{Background, Lab, netns, require_root, unique_lab, wait_for};

/// The netlab-cni binary: `NETLAB_CNI_BIN` (set by `cargo xtask test`), else next to
/// the netlab binary.
pub fn cni_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NETLAB_CNI_BIN") {
        return PathBuf::from(p);
    }
    let p = crate::netlab_bin().with_file_name("netlab-cni");
    assert!(
        p.exists(),
        "netlab-cni not found at {}: run `cargo xtask test`",
        p.display()
    );
    p
}

/// What the plugin answered.
#[derive(Debug)]
pub struct Reply {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Reply {
    /// The JSON it printed (Null when it printed nothing).
    pub fn json(&self) -> Value {
        if self.stdout.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("plugin printed no JSON ({e}): {self:?}"))
    }

    /// Asserts a CNI error object with `code` and a non-zero exit; returns its message.
    pub fn error(&self, code: u64) -> String {
        assert!(!self.success, "the plugin should have failed: {self:?}");
        let e = self.json();
        assert_eq!(e["code"], code, "error code: {e}");
        assert!(e["cniVersion"].is_string(), "error lacks cniVersion: {e}");
        let msg = e["msg"].as_str().unwrap_or_default().to_string();
        assert!(!msg.is_empty() && !msg.contains('\n'), "msg: {e}");
        msg
    }

    /// Asserts success; returns the JSON printed.
    pub fn ok(&self) -> Value {
        assert!(self.success, "the plugin failed: {self:?}");
        self.json()
    }
}

/// A container as a runtime makes it: an id and a namespace of its own.
pub struct Ctr {
    pub id: String,
    pub netns: PathBuf,
    /// Its name in the lab (`<id>-eth0`), for `netlab exec`.
    pub name: String,
}

pub struct CniWorld {
    /// The network's (and its lab's) name.
    pub net: String,
    /// The lab as the CLI sees it, for `netlab exec/status/ports`; taken down on drop.
    lab: Option<Lab>,
    next: AtomicU32,
}

impl Default for CniWorld {
    fn default() -> Self {
        Self::new()
    }
}

impl CniWorld {
    pub fn new() -> Self {
        Self::with(false)
    }

    /// The runtime's world, with IPv6 addresses too when `ipv6`.
    fn with(ipv6: bool) -> Self {
        require_root();
        let net = unique_lab();
        let world = CniWorld {
            lab: Some(Lab::named(&net)),
            net,
            next: AtomicU32::new(0),
        };
        netlab::topology::build_sandbox(&world.net, ipv6).expect("build the runtime's namespaces");
        world
    }

    /// The same world with IPv6 addresses too, and IPv6 forwarding turned on in the
    /// runtime's namespace (netlab requires it there, as on a machine).
    pub fn dual_stack() -> Self {
        let world = Self::with(true);
        crate::run_in_ns_ok(
            &world.host(),
            &[
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding",
            ],
        );
        world
    }

    pub fn lab(&self) -> &Lab {
        self.lab.as_ref().expect("lab")
    }

    /// Runs the CLI on the lab in mount namespace `ns` (where the runtime that made it
    /// runs, with its pins).
    pub fn set_mount_ns(&mut self, ns: PathBuf) {
        if let Some(lab) = &mut self.lab {
            lab.mount_ns = Some(ns);
        }
    }

    /// Takes the lab down now (the guard's `netlab down`), before the runtime's mount
    /// namespace goes; a lab a GC took down already is only let go.
    pub fn take_down(&mut self) {
        let Some(lab) = self.lab.take() else { return };
        if self.lab_is_up() {
            drop(lab);
        } else {
            lab.forget();
        }
    }

    pub fn host(&self) -> PathBuf {
        netns::path(&format!("{}-host", self.net))
    }

    pub fn wan(&self) -> PathBuf {
        netns::path(&format!("{}-wan", self.net))
    }

    /// A bridge name for this network: `b<net>`, so that parallel tests never share one.
    pub fn bridge(&self) -> String {
        format!("b{}", self.net)
    }

    /// A network configuration as libcni hands it to the plugin: the conflist's
    /// `cniVersion` and `name` injected, then `extra`'s fields.
    pub fn conf(&self, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": "1.0.0",
            "name": self.net,
            "type": "netlab-cni",
            "bridge": self.bridge(),
            "subnet": "10.77.0.0/24",
            "capabilities": {"portMappings": true},
        });
        for (k, v) in extra.as_object().expect("an object") {
            if v.is_null() {
                c.as_object_mut().expect("object").remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    /// A new container namespace, `<net>-c<n>`, with id `c<n>`, its `lo` up as podman
    /// brings it up before it calls the plugins (CNI's `loopback` plugin for others).
    pub fn container(&self) -> Ctr {
        let c = self.bare_container();
        crate::run_in_ns_ok(&c.netns, &["ip", "link", "set", "lo", "up"]);
        c
    }

    /// A new container namespace as the kernel makes it, `lo` down.
    pub fn bare_container(&self) -> Ctr {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let ns = format!("{}-c{n}", self.net);
        let netns = netns::create(&ns).expect("create a container namespace");
        Ctr {
            id: format!("c{n}"),
            name: format!("c{n}-eth0"),
            netns,
        }
    }

    /// Runs the plugin in the runtime's namespace with `env` and `conf` on stdin, and in
    /// the runtime's mount namespace when it has one of its own (podman's, where the
    /// lab's pins are: a runtime calls its plugins where it runs).
    pub fn call(&self, env: &[(&str, &str)], stdin: &str) -> Reply {
        self.call_in(&self.host(), env, stdin)
    }

    /// The same with the runtime running in network namespace `net` instead.
    pub fn call_in(&self, net: &Path, env: &[(&str, &str)], stdin: &str) -> Reply {
        self.call_wrapped(net, &[], env, stdin)
    }

    /// The same with the plugin run by `wrap` (`strace ...`, to kill it at a moment).
    pub fn call_wrapped(
        &self,
        net: &Path,
        wrap: &[&str],
        env: &[(&str, &str)],
        stdin: &str,
    ) -> Reply {
        let mut cmd = Command::new("nsenter");
        if let Some(ns) = self.lab.as_ref().and_then(|l| l.mount_ns.as_ref()) {
            cmd.arg(format!("--mount={}", ns.display()));
        }
        cmd.arg(format!("--net={}", net.display()))
            .args(wrap)
            .arg(cni_bin())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in [
            "CNI_COMMAND",
            "CNI_CONTAINERID",
            "CNI_NETNS",
            "CNI_IFNAME",
            "CNI_ARGS",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("CNI_PATH", cni_bin().parent().expect("dir"));
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().expect("run netlab-cni");
        let written = child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes());
        // A plugin may answer (with an error) before it reads its input, as libcni allows.
        if let Err(e) = written {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "write the configuration: {e}"
            );
        }
        let out = child.wait_with_output().expect("wait for netlab-cni");
        Reply {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A verb about `ctr`'s `eth0`, as libcni calls it.
    pub fn verb(&self, command: &str, ctr: &Ctr, conf: &Value) -> Reply {
        self.verb_with(command, ctr, "", conf)
    }

    /// The same with `CNI_ARGS`.
    pub fn verb_with(&self, command: &str, ctr: &Ctr, args: &str, conf: &Value) -> Reply {
        self.verb_wrapped(&[], command, ctr, args, conf)
    }

    /// The same with the plugin run by `wrap` (`strace ...`, to kill it at a moment).
    pub fn verb_wrapped(
        &self,
        wrap: &[&str],
        command: &str,
        ctr: &Ctr,
        args: &str,
        conf: &Value,
    ) -> Reply {
        let netns = ctr.netns.display().to_string();
        self.call_wrapped(
            &self.host(),
            wrap,
            &[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", &ctr.id),
                ("CNI_NETNS", &netns),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", args),
            ],
            &conf.to_string(),
        )
    }

    /// ADD that must succeed; returns the result.
    pub fn add(&self, ctr: &Ctr, conf: &Value) -> Value {
        self.verb("ADD", ctr, conf).ok()
    }

    /// GC with these containers' `eth0` as the valid attachments.
    pub fn gc(&self, valid: &[&Ctr], conf: &Value) -> Reply {
        let mut conf = conf.clone();
        conf["cniVersion"] = json!("1.1.0");
        conf["cni.dev/valid-attachments"] = valid
            .iter()
            .map(|c| json!({"containerID": c.id, "ifname": "eth0"}))
            .collect();
        self.call(&[("CNI_COMMAND", "GC")], &conf.to_string())
    }

    /// Starts `cmd` inside namespace `ns`; killed when the guard drops.
    pub fn spawn_in(&self, ns: &std::path::Path, cmd: &[&str]) -> Background {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        Background(Some(child))
    }

    /// `python3 -m http.server PORT --bind ADDR` in namespace `ns`, once it listens;
    /// its request log (client addresses) comes back from [`Background::finish`].
    pub fn http_server_in(&self, ns: &std::path::Path, addr: &str, port: u16) -> Background {
        let server = self.spawn_in(
            ns,
            &[
                "python3",
                "-u",
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                addr,
            ],
        );
        let listening = wait_for(std::time::Duration::from_secs(10), || {
            String::from_utf8_lossy(&crate::run_in_ns(ns, &["ss", "-Htln"]).stdout)
                .contains(&format!("{addr}:{port} "))
        });
        assert!(listening, "http server in {} never listened", ns.display());
        server
    }

    /// The HTTP status of `curl URL` run in namespace `ns` (`000` when nothing answers).
    pub fn curl_in(&self, ns: &std::path::Path, url: &str) -> String {
        let out = crate::run_in_ns(ns, &crate::curl_status(url));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether the network's lab is up (its state exists).
    pub fn lab_is_up(&self) -> bool {
        std::path::Path::new("/run/netlab")
            .join(&self.net)
            .join("state.json")
            .exists()
    }
}

impl Drop for CniWorld {
    /// `netlab down` takes the lab down (the runtime's namespaces stay, as its own),
    /// then the runtime's and the containers' namespaces go.
    fn drop(&mut self) {
        self.take_down();
        let _ = netns::delete(&format!("{}-host", self.net));
        let _ = netns::delete(&format!("{}-wan", self.net));
        for n in 0..self.next.load(Ordering::Relaxed) {
            let _ = netns::delete(&format!("{}-c{n}", self.net));
        }
    }
}
