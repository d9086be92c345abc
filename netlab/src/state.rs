//! The lab's own description, `/run/netlab/<lab>/state.json`, edited under a file lock
//! (`/run/netlab/<lab>.lock`, outside the directory so that `down` can remove it).

use std::{
    fs::{self, File},
    net::Ipv4Addr,
    os::fd::AsRawFd,
    path::PathBuf,
};

use serde::{Deserialize, Serialize};

use crate::{
    datapath::{DatapathKind, NatOptions},
    error::{Error, Result},
    publish::PortSpec,
    topology::ipam::Subnet,
};

pub const STATE_DIR: &str = "/run/netlab";
pub const STATE_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabState {
    pub version: u32,
    pub name: String,
    pub sandbox: bool,
    pub datapath: DatapathKind,
    pub subnet: Subnet,
    pub bridge: String,
    pub bridge_addr: Ipv4Addr,
    pub uplink: String,
    pub uplink_addr: Ipv4Addr,
    /// The lab's host namespace; `None` for a lab on the machine's own namespace.
    pub host_netns: Option<String>,
    /// The sandbox's `wan` namespace.
    pub wan_netns: Option<String>,
    /// `ip_forward` before `up` changed it, restored by `down` (non-sandbox labs only).
    pub ip_forward_was: Option<String>,
    /// NAT tunables the datapath was set up with.
    pub nat: NatOptions,
    /// Whether the datapath was loaded with its debug logs on (`up --debug`).
    #[serde(default)]
    pub debug: bool,
    pub containers: Vec<Container>,
    /// Published ports, in the order they were published.
    #[serde(default)]
    pub ports: Vec<Published>,
}

/// A published port range and the container it leads to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub container: String,
    pub spec: PortSpec,
    /// The container's address when it was published.
    pub ctr_ip: Ipv4Addr,
    /// The mapping's number, unique in the lab (the eBPF datapath's counter slot).
    pub id: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Own namespace, veth on the lab bridge (Docker's default).
    Bridge,
    /// Own namespace with only `lo`.
    None,
    /// The lab host's namespace, shared.
    Host,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Container {
    pub name: String,
    pub network: Network,
    /// Namespace name under /run/netns (none for `--network host`).
    pub netns: Option<String>,
    pub ip: Option<Ipv4Addr>,
    /// Host end of the veth (bridge network only).
    pub veth: Option<String>,
}

impl LabState {
    pub fn container(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }

    pub fn taken_ips(&self) -> Vec<Ipv4Addr> {
        self.containers.iter().filter_map(|c| c.ip).collect()
    }
}

/// An exclusive lock on one lab's state, held for the whole command.
pub struct Locked {
    pub lab: String,
    _lock: File,
}

fn dir(lab: &str) -> PathBuf {
    PathBuf::from(STATE_DIR).join(lab)
}

fn file(lab: &str) -> PathBuf {
    dir(lab).join("state.json")
}

impl Locked {
    /// Takes the lab's lock, waiting for another netlab command on the same lab.
    pub fn acquire(lab: &str) -> Result<Self> {
        fs::create_dir_all(STATE_DIR).map_err(|e| Error::io("create", STATE_DIR, e))?;
        let path = PathBuf::from(STATE_DIR).join(format!("{lab}.lock"));
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open lock", &path, e))?;
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::io("lock", &path, std::io::Error::last_os_error()));
        }
        Ok(Self {
            lab: lab.to_string(),
            _lock: f,
        })
    }

    pub fn load(&self) -> Result<Option<LabState>> {
        let path = file(&self.lab);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let state: LabState = serde_json::from_str(&text)
            .map_err(|e| Error::io("parse", &path, std::io::Error::other(e)))?;
        Ok(Some(state))
    }

    /// The lab's state, or a clear error when the lab is not up.
    pub fn require(&self) -> Result<LabState> {
        self.load()?.ok_or_else(|| {
            Error::Invalid(format!(
                "lab {} is not up: run `netlab up --lab {}` first",
                self.lab, self.lab
            ))
        })
    }

    /// Writes the state atomically (temp file and rename).
    pub fn save(&self, state: &LabState) -> Result<()> {
        let d = dir(&self.lab);
        fs::create_dir_all(&d).map_err(|e| Error::io("create", &d, e))?;
        let tmp = d.join("state.json.tmp");
        let text = serde_json::to_string_pretty(state).expect("state serialises");
        fs::write(&tmp, text).map_err(|e| Error::io("write", &tmp, e))?;
        fs::rename(&tmp, file(&self.lab)).map_err(|e| Error::io("rename", &tmp, e))
    }

    /// Removes the state directory and the lock file.
    pub fn remove(self) -> Result<()> {
        let d = dir(&self.lab);
        match fs::remove_dir_all(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &d, e)),
        }
        let lock = PathBuf::from(STATE_DIR).join(format!("{}.lock", self.lab));
        let _ = fs::remove_file(lock);
        // The last lab leaves no /run/netlab behind.
        let _ = fs::remove_dir(STATE_DIR);
        Ok(())
    }
}
