//! The mounts a lab's state names things in, as `up` saw them: `/run/netns` (its
//! namespaces), bpffs (an eBPF lab's pins) and the cgroup v2 hierarchy (its cgroups).
//!
//! A command run where one of them is another mount cannot see what the lab made
//! there — a runtime's private mount namespace with a `/run/netns` or a bpffs of its
//! own, `ip netns exec`, whose fresh /sys has no cgroup2 — and would take it for gone:
//! drop the lab's state, or report a `down` done, and leave the namespaces, pins or
//! cgroups behind for good. Such a command is refused instead, before it reads or
//! changes anything. In the mount namespace the lab was brought up in nothing is
//! refused: a mount changed there changed for the lab too (a bpffs unmounted took the
//! pins with it, and `down` takes down the rest). A state written before netlab kept
//! these records none, and is not checked.

use std::{os::unix::fs::MetadataExt, path::Path};

use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    netlink::{cgroup, netns::NETNS_DIR},
};

/// Where bpffs is.
const BPFFS: &str = "/sys/fs/bpf";

/// Each mount's identity: its device (and for `/run/netns`, a directory that may be
/// a bind mount of /run's own file system, its inode too); `None` for one not there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mounts {
    /// The mount namespace (`/proc/self/ns/mnt`'s inode).
    pub mnt: Option<u64>,
    pub netns: Option<(u64, u64)>,
    pub bpffs: Option<u64>,
    pub cgroup2: Option<u64>,
}

impl Mounts {
    /// The mounts as this process sees them (bpffs only for an eBPF lab).
    pub fn now(ebpf: bool) -> Self {
        let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        Self {
            mnt: id(Path::new("/proc/self/ns/mnt")).map(|i| i.1),
            netns: id(Path::new(NETNS_DIR)),
            bpffs: ebpf.then(|| id(Path::new(BPFFS))).flatten().map(|i| i.0),
            cgroup2: cgroup::root().ok().and_then(|r| id(&r)).map(|i| i.0),
        }
    }

    /// Refuses to go on where a mount the lab recorded is another one, or missing; the
    /// cgroup hierarchy only when the lab has cgroups in it (`cgroups`: an eBPF lab's
    /// own, a `--network host` container's).
    pub fn require_same(&self, lab: &str, cgroups: bool) -> Result<()> {
        let now = Self::now(self.bpffs.is_some());
        if self.mnt.is_some() && now.mnt == self.mnt {
            return Ok(());
        }
        let elsewhere = |what: &str| {
            Err(Error::Invalid(format!(
                "lab {lab} was brought up where {what}: what it made there cannot be seen from here, and would be left behind; run netlab where the lab was brought up (`nsenter --net=/run/netns/NS CMD` rather than `ip netns exec`, which mounts a /sys of its own)"
            )))
        };
        if self.netns.is_some() && now.netns != self.netns {
            return elsewhere(&format!(
                "{NETNS_DIR} is another mount than here (a mount namespace with one of its own)"
            ));
        }
        if self.bpffs.is_some() && now.bpffs != self.bpffs {
            return elsewhere(&format!(
                "{BPFFS} is another bpffs than here (its datapath is pinned in that one)"
            ));
        }
        if cgroups && self.cgroup2.is_some() && now.cgroup2 != self.cgroup2 {
            return elsewhere(
                "the cgroup v2 hierarchy is another one than here, or not mounted here",
            );
        }
        Ok(())
    }
}
