//! The eBPF datapath's pins: maps, programs and tcx/cgroup links under
//! `/sys/fs/bpf/netlab/<layout>/<lab>/`, so that the datapath keeps forwarding when no
//! netlab process runs. netlab mounts bpffs (mode 0700) when nothing is mounted there,
//! and unmounts it again when its last lab is gone.
//!
//! Whoever can write into netlab's pin directories can put maps there that root then
//! opens as its own: on a bpffs someone else mounted world-writable (the kernel's
//! default mode is 1777), an unprivileged user could create `/sys/fs/bpf/netlab` first.
//! So netlab makes its directories 0700, and refuses one that is not owned by root or
//! that others may write to.

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::maps::{Map, MapData};

use crate::{
    error::{Error, Result},
    lockfile::FileLock,
};

/// Where bpffs lives.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Bumped when a map layout changes, so an old pinned map is never reused by new code.
pub const LAYOUT_VERSION: &str = "v14";
/// The layouts before [`LAYOUT_VERSION`]. A lab brought up by an earlier netlab has its
/// pins under one of them: never read, but removed with the lab.
const EARLIER_LAYOUTS: [&str; 13] = [
    "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13",
];
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Serialises mounting, pinning and unmounting bpffs between concurrent netlab commands.
const BPFFS_LOCK: &str = "/run/netlab.bpffs/lock";
/// Present while a bpffs that netlab mounted is on /sys/fs/bpf; it names the mount
/// namespace it was mounted in, since /run may be shared with other mount namespaces
/// (a container runtime's) that have their own /sys/fs/bpf.
const BPFFS_MARK: &str = "/run/netlab.bpffs/mounted";

/// The calling process's mount namespace, as `mnt:[inode]`.
fn mount_ns() -> String {
    fs::read_link("/proc/self/ns/mnt")
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Whether netlab mounted the bpffs on /sys/fs/bpf of this mount namespace.
fn mounted_here() -> bool {
    fs::read_to_string(BPFFS_MARK).is_ok_and(|ns| ns == mount_ns())
}

pub fn root() -> PathBuf {
    Path::new(BPFFS).join("netlab")
}

pub fn dir(lab: &str) -> PathBuf {
    root().join(LAYOUT_VERSION).join(lab)
}

pub fn links(lab: &str) -> PathBuf {
    dir(lab).join("links")
}

/// Holds the bpffs lock while it lives; the lock file goes with netlab's mount.
pub struct BpffsLock(Option<FileLock>);

impl BpffsLock {
    pub fn acquire() -> Result<Self> {
        Ok(Self(Some(FileLock::acquire(BPFFS_LOCK)?)))
    }
}

impl Drop for BpffsLock {
    fn drop(&mut self) {
        if let Some(lock) = self.0.take()
            && !Path::new(BPFFS_MARK).exists()
            && !root().exists()
        {
            lock.remove();
        }
    }
}

fn is_bpffs() -> Result<bool> {
    let st = nix::sys::statfs::statfs(BPFFS).map_err(|e| Error::io("statfs", BPFFS, e.into()))?;
    Ok(st.filesystem_type().0 as i64 == BPF_FS_MAGIC)
}

/// Refuses to go on with lab `lab`, whose datapath is pinned, where /sys/fs/bpf is not
/// a bpffs: a mount namespace of its own (`ip netns exec` mounts a fresh /sys), where
/// its pins cannot be seen; a command there would take them for gone, and change the
/// lab by halves.
pub fn require_visible(lab: &str) -> Result<()> {
    if is_bpffs()? {
        return Ok(());
    }
    Err(Error::ebpf(
        "open pins",
        format!(
            "lab {lab} runs on eBPF but {BPFFS} is no bpffs in this mount namespace (`ip netns exec` mounts a /sys of its own): run netlab outside it, e.g. `netlab exec --lab {lab} host -- CMD` or `nsenter --net=/run/netns/NS CMD`"
        ),
    ))
}

/// Mounts bpffs on /sys/fs/bpf unless one is there already (equivalent to
/// `mount -t bpf bpf /sys/fs/bpf`), remembers that netlab mounted it, and makes the
/// lab's pin directory.
pub fn prepare(lab: &str) -> Result<PathBuf> {
    let _lock = BpffsLock::acquire()?;
    if !is_bpffs()? {
        nix::mount::mount(
            Some("bpf"),
            BPFFS,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            Some("mode=0700"),
        )
        .map_err(|e| Error::io("mount bpffs on", BPFFS, e.into()))?;
        fs::write(BPFFS_MARK, mount_ns()).map_err(|e| Error::io("write", BPFFS_MARK, e))?;
    }
    for d in [root(), root().join(LAYOUT_VERSION)] {
        make_private_dir(&d)?;
    }
    // The lab's own directory is made here or not at all: one that is there already is
    // not this lab's (see `check_free`), and is left alone.
    for d in [dir(lab), links(lab)] {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&d)
            .map_err(|e| Error::io("create", &d, e))?;
    }
    Ok(dir(lab))
}

/// Refuses a lab name whose pin directory (under this layout or an earlier one) is
/// there already though no lab of that name is up: someone else's, or left by hand.
pub fn check_free(lab: &str) -> Result<()> {
    for layout in EARLIER_LAYOUTS.iter().chain([&LAYOUT_VERSION]) {
        let d = root().join(layout).join(lab);
        if fs::symlink_metadata(&d).is_ok() {
            return Err(Error::Conflict(format!(
                "{} exists and is not one netlab made for lab {lab}: remove it (`rm -r {}`) or pick another lab name",
                d.display(),
                d.display()
            )));
        }
    }
    Ok(())
}

/// Makes `d` (mode 0700) unless it exists; refuses one that exists and is not a
/// directory owned by root that only its owner may write to.
fn make_private_dir(d: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match fs::symlink_metadata(d) {
        Ok(m) => {
            if !m.is_dir() || m.uid() != 0 || m.mode() & 0o022 != 0 {
                return Err(Error::Invalid(format!(
                    "refusing {}: it is not a directory owned by root that only root may write to (owner uid {}, mode {:o}); someone else made it: remove it",
                    d.display(),
                    m.uid(),
                    m.mode() & 0o7777
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
            .mode(0o700)
            .create(d)
            .map_err(|e| Error::io("create", d, e)),
        Err(e) => Err(Error::io("stat", d, e)),
    }
}

/// Unmounts the bpffs netlab mounted once nothing of netlab's is pinned there: the
/// machine is left as it was found (a fresh bpffs holds only the kernel's preloaded
/// `maps.debug` and `progs.debug` iterators).
fn release_bpffs(_lock: &BpffsLock) -> Result<()> {
    if !mounted_here() || root().exists() || !is_bpffs()? {
        return Ok(());
    }
    let ours_only = fs::read_dir(BPFFS)
        .map_err(|e| Error::io("list", BPFFS, e))?
        .flatten()
        .all(|e| matches!(e.file_name().to_str(), Some("maps.debug" | "progs.debug")));
    if ours_only {
        nix::mount::umount(BPFFS).map_err(|e| Error::io("unmount", BPFFS, e.into()))?;
        let _ = fs::remove_file(BPFFS_MARK);
    }
    Ok(())
}

/// Removes the lab's pins (which detaches its links), or, for a lab an earlier netlab
/// brought up (none under this layout), its pins under the earlier layouts; then the
/// empty parents. Returns whether there were any.
pub fn remove(lab: &str) -> Result<bool> {
    let lock = BpffsLock::acquire()?;
    let mut existed = false;
    let layouts: &[&str] = if dir(lab).exists() {
        &[LAYOUT_VERSION]
    } else {
        &EARLIER_LAYOUTS
    };
    for layout in layouts {
        let dir = root().join(layout).join(lab);
        match fs::remove_dir_all(&dir) {
            Ok(()) => existed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove pins", &dir, e)),
        }
        // Leave nothing behind once the last lab is gone.
        let _ = fs::remove_dir(root().join(layout));
    }
    let _ = fs::remove_dir(root());
    release_bpffs(&lock)?;
    Ok(existed)
}

/// The earlier layout a lab's pins are under, if an earlier netlab brought it up.
fn earlier_layout(lab: &str) -> Option<&'static str> {
    EARLIER_LAYOUTS
        .into_iter()
        .find(|v| root().join(v).join(lab).exists())
}

/// A map deletion that found no such key: done already (an interrupted command, or
/// a second withdrawal of the same thing), not an error.
pub fn gone_already(
    r: std::result::Result<(), aya::maps::MapError>,
) -> std::result::Result<(), aya::maps::MapError> {
    match r {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Opens one of a running lab's pinned maps, untyped.
pub fn map_data(lab: &str, name: &str) -> Result<MapData> {
    let path = dir(lab).join(name);
    MapData::from_pin(&path).map_err(|e| {
        Error::Invalid(match earlier_layout(lab) {
            Some(v) => format!(
                "lab {lab} was brought up by an earlier netlab, whose maps (pins layout {v}) this one cannot read: `netlab down --lab {lab}` it and bring it up again"
            ),
            None => format!(
                "lab {lab} has no eBPF datapath pinned at {} ({e})",
                path.display()
            ),
        })
    })
}

/// Opens one of a running lab's pinned maps.
pub fn open_map(lab: &str, name: &str) -> Result<Map> {
    Map::from_map_data(map_data(lab, name)?).map_err(|e| Error::ebpf("open map", e))
}

/// Opens a pinned map as a typed aya map.
pub fn typed<T>(lab: &str, name: &str) -> Result<T>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    open_map(lab, name)?
        .try_into()
        .map_err(|e| Error::ebpf("open map", format!("{name}: {e}")))
}

/// Size and memory of one of a running lab's maps, with the entries it holds (counted
/// here when `in_use` is `None`). The memory is what the kernel charges for it
/// (`memlock` in the map fd's fdinfo).
pub fn info(
    lab: &str,
    name: &'static str,
    in_use: Option<u64>,
) -> Result<crate::datapath::TableInfo> {
    use std::os::fd::{AsFd, AsRawFd};
    let path = dir(lab).join(name);
    let map =
        MapData::from_pin(&path).map_err(|e| Error::ebpf("open map", format!("{name}: {e}")))?;
    let info = map
        .info()
        .map_err(|e| Error::ebpf("map info", format!("{name}: {e}")))?;
    let fd = map.fd().as_fd().as_raw_fd();
    let fdinfo = format!("/proc/self/fdinfo/{fd}");
    let text = fs::read_to_string(&fdinfo).map_err(|e| Error::io("read", &fdinfo, e))?;
    let memory_bytes = text
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(crate::datapath::TableInfo {
        name,
        max_entries: info.max_entries(),
        memory_bytes,
        in_use: match in_use {
            Some(n) => n,
            None => super::batch::count(&map)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory somebody else made, or that others may write to, is refused; one
    /// netlab makes is 0700.
    #[test]
    fn only_roots_private_directories_are_used() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let base = crate::files::test_dir("pins");
        let mine = base.join("mine");
        make_private_dir(&mine).unwrap();
        assert_eq!(fs::metadata(&mine).unwrap().mode() & 0o777, 0o700);
        make_private_dir(&mine).unwrap();
        let open = base.join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        let err = make_private_dir(&open).unwrap_err().to_string();
        assert!(err.contains("refusing"), "{err}");
        let theirs = base.join("theirs");
        fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
        let err = make_private_dir(&theirs).unwrap_err().to_string();
        assert!(err.contains("uid 65534"), "{err}");
        fs::remove_dir_all(&base).unwrap();
    }
}
