//! A fresh sandbox lab for one run of one datapath: built by the netlab binary itself
//! (`netlab up --sandbox`, `netlab run srv`), torn down by `netlab down` when dropped,
//! whatever happened in between. Ports are published through the library's
//! `Datapath::publish_many`, and recorded in the lab's state as `netlab publish` would.

use std::{
    net::Ipv4Addr,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use crate::{
    error::{Error, Result},
    lab::{DatapathKind, LabState, PortSpec, Proto, Published, names},
    netlink::netns,
    ops::Session,
};

/// The container every workload talks to.
pub const SERVER: &str = "srv";

pub struct BenchLab {
    pub name: String,
    pub datapath: DatapathKind,
    pub state: Option<LabState>,
    bin: PathBuf,
}

/// `bench_<n>`, unique in this process and, through the pid, almost surely among
/// concurrent benchmarks (a clash makes `up` fail cleanly).
fn next_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = (std::process::id() % 10_000) * 100 + NEXT.fetch_add(1, Ordering::Relaxed) % 100;
    format!("bench_{n}")
}

impl BenchLab {
    /// Brings up a sandbox lab on `datapath` with one container, [`SERVER`].
    pub fn up(datapath: DatapathKind) -> Result<BenchLab> {
        let bin = std::env::current_exe().map_err(|e| Error::io("find", "the netlab binary", e))?;
        let mut lab = BenchLab {
            name: next_name(),
            datapath,
            state: None,
            bin,
        };
        names::check_lab(&lab.name)?;
        lab.netlab(&["up", "--sandbox", "--datapath", datapath.name()])?;
        lab.netlab(&["run", SERVER])?;
        lab.state = Some(Session::open(&lab.name)?.state);
        Ok(lab)
    }

    /// Runs `netlab --lab NAME ARGS` in its own process group, so that a Ctrl-C meant
    /// for the benchmark does not kill it halfway.
    fn netlab(&self, args: &[&str]) -> Result<()> {
        let out = Command::new(&self.bin)
            .arg("--lab")
            .arg(&self.name)
            .args(args)
            .stdin(Stdio::null())
            .process_group(0)
            .output()
            .map_err(|e| Error::io("run", &self.bin, e))?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        Err(Error::Command {
            command: format!("netlab --lab {} {}", self.name, args.join(" ")),
            detail: err.trim().trim_start_matches("netlab: ").to_string(),
        })
    }

    fn state(&self) -> &LabState {
        self.state.as_ref().expect("the lab is up")
    }

    /// The path of `host`, `wan` or a container's namespace.
    pub fn ns(&self, which: &str) -> PathBuf {
        netns::path(&format!("{}-{which}", self.name))
    }

    pub fn server_ip(&self) -> Ipv4Addr {
        self.state()
            .container(SERVER)
            .and_then(|c| c.ip)
            .expect("the server container has an address")
    }

    pub fn uplink_ip(&self) -> Ipv4Addr {
        self.state().uplink_addr
    }

    /// TCP ports on every host address, host port `h` to the server's port `c`.
    pub fn port(&self, host: u16, ctr: u16) -> Published {
        Published {
            container: SERVER.to_string(),
            spec: PortSpec {
                host_ip: None,
                proto: Proto::Tcp,
                host_port: host,
                host_end: host,
                ctr_port: ctr,
            },
            ctr_ip: self.server_ip(),
            // Numbered when published.
            id: 0,
        }
    }

    /// Publishes `ports` in one batch through the datapath and records them; returns
    /// how long the datapath took.
    pub fn publish(&mut self, ports: &[Published]) -> Result<Duration> {
        let mut s = Session::open(&self.name)?;
        let first = s.state.ports.iter().map(|p| p.id).max().unwrap_or(0) + 1;
        let ports: Vec<Published> = ports
            .iter()
            .zip(first..)
            .map(|(p, id)| Published { id, ..p.clone() })
            .collect();
        let dp = s.datapath();
        let start = Instant::now();
        dp.publish(&s.state, &ports)?;
        let took = start.elapsed();
        s.state.ports.extend_from_slice(&ports);
        s.save()?;
        self.state = Some(s.state.clone());
        Ok(took)
    }

    /// Whether a host port is published already.
    pub fn is_published(&self, host_port: u16) -> bool {
        self.state()
            .ports
            .iter()
            .any(|p| (p.spec.host_port..=p.spec.host_end).contains(&host_port))
    }

    /// How many ports of scenario d's kind are published.
    pub fn published_count(&self, from: u16) -> u32 {
        self.state()
            .ports
            .iter()
            .filter(|p| p.spec.host_port >= from)
            .map(|p| p.spec.len())
            .sum()
    }
}

impl Drop for BenchLab {
    fn drop(&mut self) {
        match self.netlab(&["down"]) {
            Ok(()) => {}
            // `up` failed and removed what it had made.
            Err(Error::Command { detail, .. }) if detail.ends_with("does not exist") => {}
            Err(e) => eprintln!("netlab bench: tearing down lab {}: {e}", self.name),
        }
    }
}
