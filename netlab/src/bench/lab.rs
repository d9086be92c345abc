//! A fresh sandbox lab for one run of one datapath: built by the netlab binary itself
//! (`netlab up --sandbox`, `netlab run srv`), torn down by `netlab down` when dropped,
//! whatever happened in between. Ports are published through the library's
//! `Datapath::publish`, and recorded in the lab's state as `netlab publish` would.
//!
//! The veth reference is built here instead, with the library's netlink layer: two
//! namespaces named like a lab's, `bench_<n>-srv` and `bench_<n>-wan`, and one veth
//! pair between them, 192.0.2.2/24 and 192.0.2.1/24, MTU 1500 like the labs' links.
//! Nothing else: no bridge, no route, no NAT, no netfilter rule. Dropping it deletes
//! both namespaces, and the pair with them.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::{fd::AsFd, unix::process::CommandExt},
    path::PathBuf,
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use super::{Contender, Family};
use crate::{
    error::{Error, Result},
    lab::{DatapathKind, LabState, PortSpec, Proto, Published, names},
    netlink::{addr, link, netns},
    ops::Session,
    topology::sandbox::{INTERNET_ADDR, INTERNET_ADDR6},
};

/// The container every workload talks to.
pub const SERVER: &str = "srv";
/// The veth reference's addresses (TEST-NET-1): the server's end and wan's end.
pub const VETH_SRV_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const VETH_WAN_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const VETH_PREFIX: u8 = 24;
/// Over IPv6 (documentation addresses), for `veth6`.
pub const VETH_SRV_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
pub const VETH_WAN_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
const VETH_PREFIX6: u8 = 64;
/// The labs' links have the sandbox uplink's MTU.
const VETH_MTU: u32 = 1500;

pub struct BenchLab {
    pub name: String,
    pub contender: Contender,
    pub state: Option<LabState>,
    /// The namespaces the veth reference made (and its drop deletes).
    made: Vec<String>,
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
    /// Brings up a sandbox lab on a datapath with one container, [`SERVER`], or the
    /// veth reference.
    pub fn up(contender: Contender) -> Result<BenchLab> {
        Self::up_with(contender, &[])
    }

    /// [`BenchLab::up`] with more `netlab up` flags for a lab.
    pub fn up_with(contender: Contender, flags: &[&str]) -> Result<BenchLab> {
        let bin = std::env::current_exe().map_err(|e| Error::io("find", "the netlab binary", e))?;
        let mut lab = BenchLab {
            name: next_name(),
            contender,
            state: None,
            made: Vec::new(),
            bin,
        };
        names::check_lab(&lab.name)?;
        match contender {
            Contender::Lab(dp, device, family) => {
                let mut args = vec!["up", "--sandbox", "--datapath", dp.name()];
                args.extend_from_slice(&["--device", device.name()]);
                if family == Family::V6 {
                    args.push("--ipv6");
                }
                args.extend_from_slice(flags);
                lab.netlab(&args)?;
                lab.netlab(&["run", SERVER])?;
                lab.state = Some(Session::open(&lab.name)?.state);
            }
            Contender::Veth | Contender::Veth6 => lab.veth_pair()?,
        }
        Ok(lab)
    }

    /// The veth reference: `<name>-srv` and `<name>-wan` joined by one veth pair, with
    /// addresses of both families (usable at once: no duplicate address detection).
    fn veth_pair(&mut self) -> Result<()> {
        let mut made = Vec::new();
        for which in [SERVER, "wan"] {
            let name = format!("{}-{which}", self.name);
            made.push(netns::create(&name)?);
            self.made.push(name);
        }
        let (srv, wan) = (made[0].clone(), made[1].clone());
        let wan_file = netns::open(&wan)?;
        netns::netlink_in(&srv, |h| async move {
            let lo = link::require(&h, "lo").await?;
            link::up(&h, "lo", lo).await?;
            let eth = link::add_veth(&h, "eth0", "wan0", VETH_MTU).await?;
            let peer = link::require(&h, "wan0").await?;
            link::move_to_netns(&h, "wan0", peer, wan_file.as_fd()).await?;
            addr::add(&h, "eth0", eth, VETH_SRV_ADDR, VETH_PREFIX).await?;
            addr::add6(&h, "eth0", eth, VETH_SRV_ADDR6, VETH_PREFIX6).await?;
            link::up(&h, "eth0", eth).await
        })?;
        netns::netlink_in(&wan, |h| async move {
            let lo = link::require(&h, "lo").await?;
            link::up(&h, "lo", lo).await?;
            let w = link::require(&h, "wan0").await?;
            addr::add(&h, "wan0", w, VETH_WAN_ADDR, VETH_PREFIX).await?;
            addr::add6(&h, "wan0", w, VETH_WAN_ADDR6, VETH_PREFIX6).await?;
            link::up(&h, "wan0", w).await
        })
    }

    /// The datapath of a lab; `None` for the veth reference.
    pub fn datapath(&self) -> Option<DatapathKind> {
        match self.contender {
            Contender::Lab(dp, ..) => Some(dp),
            Contender::Veth | Contender::Veth6 => None,
        }
    }

    /// Where wan's servers listen: "the internet" (203.0.113.1, 2001:db8:113::1 over
    /// IPv6) behind a lab's NAT, wan's end of the pair for the veth reference.
    pub fn far_addr(&self) -> IpAddr {
        match self.contender {
            Contender::Lab(.., Family::V6) => INTERNET_ADDR6.into(),
            Contender::Lab(..) => INTERNET_ADDR.into(),
            Contender::Veth => VETH_WAN_ADDR.into(),
            Contender::Veth6 => VETH_WAN_ADDR6.into(),
        }
    }

    /// The address a server binds to take every connection of the lab's family.
    pub fn unspecified(&self) -> IpAddr {
        match self.contender.family() {
            Family::V4 => Ipv4Addr::UNSPECIFIED.into(),
            Family::V6 => Ipv6Addr::UNSPECIFIED.into(),
        }
    }

    /// Runs `netlab --lab NAME ARGS` and returns how long it took, the process's
    /// start and exit included (what a user waits for).
    pub fn netlab_timed(&self, args: &[&str]) -> Result<Duration> {
        let start = Instant::now();
        self.netlab(args)?;
        Ok(start.elapsed())
    }

    /// Runs `netlab --lab NAME ARGS` in its own process group, so that a Ctrl-C meant
    /// for the benchmark does not kill it halfway.
    pub fn netlab(&self, args: &[&str]) -> Result<()> {
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
        // Ten thousand specs do not make a readable command line.
        let shown: Vec<&str> = args.iter().take(4).copied().collect();
        let more = if args.len() > shown.len() { " ..." } else { "" };
        Err(Error::Command {
            command: format!("netlab --lab {} {}{more}", self.name, shown.join(" ")),
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

    /// The server's own address, of the contender's family (where the routed
    /// baseline and the veth reference are reached).
    pub fn server_ip(&self) -> IpAddr {
        match self.contender {
            Contender::Veth => VETH_SRV_ADDR.into(),
            Contender::Veth6 => VETH_SRV_ADDR6.into(),
            Contender::Lab(.., Family::V6) => {
                let state = self.state();
                state
                    .container(SERVER)
                    .and_then(|c| state.container_ip6(c))
                    .expect("the server container of a dual-stack lab has an IPv6 address")
                    .into()
            }
            Contender::Lab(..) => self.container_ip().into(),
        }
    }

    /// The server container's IPv4 address (a published port's target, of either
    /// family).
    fn container_ip(&self) -> Ipv4Addr {
        self.state()
            .container(SERVER)
            .and_then(|c| c.ip)
            .expect("the server container has an address")
    }

    /// The lab host's uplink address of the lab's family, where published ports are
    /// reached from wan.
    pub fn uplink_ip(&self) -> IpAddr {
        match self.contender.family() {
            Family::V6 => self
                .state()
                .uplink_addr6
                .expect("a dual-stack sandbox has an IPv6 uplink address")
                .into(),
            Family::V4 => self.state().uplink_addr.into(),
        }
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
            ctr_ip: self.container_ip(),
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

    /// Fills the datapath's conntrack table with `flows` synthetic flows.
    pub fn fill_conntrack(&self, flows: u32) -> Result<u32> {
        let s = crate::ops::Session::open(&self.name)?;
        let dp = s.datapath();
        let fill = dp.fill().ok_or_else(|| {
            Error::Invalid(format!(
                "lab {} runs the {} datapath: its conntrack is the kernel's",
                s.state.name,
                s.state.datapath.name()
            ))
        })?;
        fill.fill_conntrack(&s.state, flows)
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
        if self.contender.is_reference() {
            for ns in &self.made {
                if let Err(e) = netns::delete(ns) {
                    progress!("netlab bench: tearing down the veth reference: {e}");
                }
            }
            return;
        }
        match self.netlab(&["down"]) {
            Ok(()) => {}
            // `up` failed and removed what it had made.
            Err(Error::Command { detail, .. }) if detail.ends_with("does not exist") => {}
            Err(e) => progress!("netlab bench: tearing down lab {}: {e}", self.name),
        }
    }
}
