//! The mounts a lab's state names things in, as `up` saw them: `/run/netns` (its
//! namespaces), bpffs (an eBPF lab's pins) and the cgroup v2 hierarchy (its cgroups).
//!
//! A command run in another mount namespace may not see what the lab made there — a
//! runtime's private mount namespace with a `/run/netns` or a bpffs of its own, one
//! made before a namespace of the lab's with private mounts, `ip netns exec`, whose
//! fresh /sys has no cgroup2 — and would take it for gone: drop the lab's state, or
//! report a `down` done, and leave the namespaces, pins or cgroups behind for good. So
//! in another mount namespace than the lab's, while that one lives, every namespace of
//! the lab's must be seen (`ops::mounts_visible`), and the bpffs and cgroup2 be the
//! same; else the command is refused, before it reads or changes anything.
//!
//! Nothing is refused in the lab's own mount namespace (a mount changed there changed
//! for the lab too: a bpffs unmounted took the pins with it, and `down` takes down the
//! rest), nor once that mount namespace is gone (what only it saw went with it). A
//! state written before netlab kept these records none, and is not checked.

use std::{fs, os::unix::fs::MetadataExt, path::Path};

use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    netlink::cgroup,
};

/// Where bpffs is.
const BPFFS: &str = "/sys/fs/bpf";
/// `NS_GET_MNTNS_ID` (Linux 6.8+): a mount namespace's id, never given to another.
const NS_GET_MNTNS_ID: libc::c_ulong = 0x8008_b705;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mounts {
    /// The mount namespace: its id where the kernel tells it, else its inode (which a
    /// namespace made after it is gone may get again).
    pub mnt: Option<MntNs>,
    /// The bpffs at /sys/fs/bpf (an eBPF lab): its device.
    pub bpffs: Option<u64>,
    /// The cgroup v2 hierarchy: its device.
    pub cgroup2: Option<u64>,
}

/// A mount namespace's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MntNs {
    Id(u64),
    Inode(u64),
}

impl Mounts {
    /// The mounts as this process sees them (bpffs only for an eBPF lab).
    pub fn now(ebpf: bool) -> Self {
        let dev = |p: &str| fs::metadata(p).ok().map(|m| m.dev());
        Self {
            mnt: mnt_ns(Path::new("/proc/self/ns/mnt")),
            bpffs: ebpf.then(|| dev(BPFFS)).flatten(),
            cgroup2: cgroup::root()
                .ok()
                .and_then(|r| fs::metadata(r).ok())
                .map(|m| m.dev()),
        }
    }

    /// Whether this process runs in another mount namespace than the lab was brought up
    /// in, and that one still lives: what the lab made there may not be seen from
    /// here.
    pub fn elsewhere(&self) -> bool {
        self.mnt
            .is_some_and(|mnt| mnt_ns(Path::new("/proc/self/ns/mnt")) != Some(mnt) && exists(mnt))
    }

    /// Elsewhere ([`Self::elsewhere`]), refuses to go on where the bpffs or (for a lab
    /// with cgroups: an eBPF lab's own, a `--network host` container's) the cgroup v2
    /// hierarchy is another one, or missing.
    pub fn require_same(&self, lab: &str, cgroups: bool) -> Result<()> {
        let now = Self::now(self.bpffs.is_some());
        if self.bpffs.is_some() && now.bpffs != self.bpffs {
            return Err(elsewhere(lab, &format!("{BPFFS} is another bpffs")));
        }
        if cgroups && self.cgroup2.is_some() && now.cgroup2 != self.cgroup2 {
            return Err(elsewhere(
                lab,
                "the cgroup v2 hierarchy is mounted (`ip netns exec` mounts a /sys without it)",
            ));
        }
        Ok(())
    }
}

/// The refusal of a command where lab `lab` cannot be seen whole: `what` of the mount
/// namespace it was brought up in is not here.
pub fn elsewhere(lab: &str, what: &str) -> Error {
    Error::Invalid(format!(
        "lab {lab} was brought up in another mount namespace, where {what}: what it made there cannot be seen from here; run netlab in that one"
    ))
}

/// The identity of the mount namespace file `p` (`/proc/PID/ns/mnt`).
fn mnt_ns(p: &Path) -> Option<MntNs> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(p).ok()?;
    let mut id: u64 = 0;
    if unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_MNTNS_ID, &mut id) } == 0 {
        return Some(MntNs::Id(id));
    }
    f.metadata().ok().map(|m| MntNs::Inode(m.ino()))
}

/// Whether a process is still in mount namespace `mnt`.
fn exists(mnt: MntNs) -> bool {
    let Ok(procs) = fs::read_dir("/proc") else {
        return true;
    };
    procs
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .any(|e| mnt_ns(&e.path().join("ns/mnt")) == Some(mnt))
}
