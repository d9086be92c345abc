//! The mounts a lab's state names things in, as `up` saw them: `/run/netns` (its
//! namespaces), bpffs (an eBPF lab's pins) and the cgroup v2 hierarchy (its cgroups).
//!
//! A command run in another mount namespace may not see what the lab made there — a
//! runtime's private mount namespace with a `/run/netns` or a bpffs of its own, or one
//! whose mounts no longer propagate from the lab's, `ip netns exec`, whose fresh /sys
//! has no cgroup2 — and would take it for gone: drop the lab's state, or report a
//! `down` done, and leave the namespaces, pins or cgroups behind for good. Such a
//! command is refused instead, before it reads or changes anything.
//!
//! Nothing is refused in the mount namespace the lab was brought up in (a mount
//! changed there changed for the lab too: a bpffs unmounted took the pins with it, and
//! `down` takes down the rest), nor for a bpffs once that mount namespace is gone (one
//! of its own went with it, with the pins). A state written before netlab kept these
//! records none, and is not checked.

use std::{fs, os::unix::fs::MetadataExt, path::Path};

use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    netlink::{cgroup, netns::NETNS_DIR},
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
    /// The peer group the mount holding `/run/netns` propagates in (mountinfo's
    /// `shared:N`): a mount namespace whose copy is neither in it nor its slave
    /// (`master:N`) cannot see the namespaces mounted there.
    pub netns_group: Option<u64>,
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
            netns_group: netns_groups().first().copied(),
            bpffs: ebpf.then(|| dev(BPFFS)).flatten(),
            cgroup2: cgroup::root()
                .ok()
                .and_then(|r| fs::metadata(r).ok())
                .map(|m| m.dev()),
        }
    }

    /// Refuses to go on where a mount the lab recorded is another one, or missing; the
    /// cgroup hierarchy only when the lab has cgroups in it (`cgroups`: an eBPF lab's
    /// own, a `--network host` container's).
    pub fn require_same(&self, lab: &str, cgroups: bool) -> Result<()> {
        let Some(mnt) = self.mnt else {
            return Ok(());
        };
        if mnt_ns(Path::new("/proc/self/ns/mnt")) == Some(mnt) {
            return Ok(());
        }
        let now = Self::now(self.bpffs.is_some());
        let elsewhere = |what: &str| {
            Err(Error::Invalid(format!(
                "lab {lab} was brought up in another mount namespace, where {what}: what it made there cannot be seen from here; run netlab in that one"
            )))
        };
        if let Some(group) = self.netns_group
            && !netns_groups().contains(&group)
        {
            return elsewhere(&format!(
                "{NETNS_DIR} is a mount whose namespaces do not reach this one"
            ));
        }
        // A bpffs of the lab's mount namespace's own went with it, and its pins too.
        if self.bpffs.is_some() && now.bpffs != self.bpffs && exists(mnt) {
            return elsewhere(&format!("{BPFFS} is another bpffs"));
        }
        if cgroups && self.cgroup2.is_some() && now.cgroup2 != self.cgroup2 {
            return elsewhere(
                "the cgroup v2 hierarchy is mounted (`ip netns exec` mounts a /sys without it)",
            );
        }
        Ok(())
    }
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

/// The peer groups of the mount `/run/netns` is on (the last mount at the longest
/// mount point above it): its own (`shared:N`) first, then the one it receives
/// from (`master:N`); none for a private mount.
fn netns_groups() -> Vec<u64> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut best: Option<(usize, Vec<u64>)> = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(point) = f.get(4) else { continue };
        let above =
            *point == "/" || NETNS_DIR == *point || NETNS_DIR.starts_with(&format!("{point}/"));
        if !above || best.as_ref().is_some_and(|(len, _)| point.len() < *len) {
            continue;
        }
        let tags = f[6..].iter().take_while(|t| **t != "-");
        let mut groups: Vec<(bool, u64)> = tags
            .filter_map(|t| {
                let (kind, n) = t.split_once(':')?;
                let n = n.parse().ok()?;
                match kind {
                    "shared" => Some((false, n)),
                    "master" => Some((true, n)),
                    _ => None,
                }
            })
            .collect();
        groups.sort();
        best = Some((point.len(), groups.into_iter().map(|g| g.1).collect()));
    }
    best.map(|b| b.1).unwrap_or_default()
}
