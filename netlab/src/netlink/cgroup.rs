//! cgroup v2 directories netlab makes: a `--network host` container's, which holds
//! the processes started in it (`netlab exec`). Such a container has no namespace of
//! its own, so its cgroup is how `rm` finds its processes and ends them, as `docker rm
//! -f` ends a host-network container's.
//!
//! A cgroup is known by its id (the directory's inode, the kernel's cgroup id), which
//! is recorded once it is made: one made again under the same path (someone else's)
//! is never joined, emptied or removed.

use std::{
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::error::{Error, Result};

/// How long [`remove`] waits for the processes it killed to be gone.
const WAIT: Duration = Duration::from_secs(2);

/// Where cgroup v2 is mounted (the first `cgroup2` entry of /proc/self/mounts).
pub fn root() -> Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts")
        .map_err(|e| Error::io("read", "/proc/self/mounts", e))?;
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .next()
        .ok_or_else(|| Error::Invalid("no cgroup v2 hierarchy is mounted".into()))
}

/// Refuses a cgroup that is there already: someone else's, whose processes `remove`
/// would end.
pub fn check_free(cg: &Path) -> Result<()> {
    if cg.exists() {
        return Err(Error::Conflict(format!(
            "cgroup {} exists and is not one netlab made: remove it (`rmdir {}`) or pick another name",
            cg.display(),
            cg.display()
        )));
    }
    Ok(())
}

/// Makes the cgroup and returns its id; one that is there already is refused, not
/// taken over.
pub fn create(cg: &Path) -> Result<u64> {
    fs::create_dir(cg).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => check_free(cg)
            .err()
            .unwrap_or_else(|| Error::io("create cgroup", cg, e)),
        _ => Error::io("create cgroup", cg, e),
    })?;
    id(cg).ok_or_else(|| Error::Invalid(format!("cgroup {} went as it was made", cg.display())))
}

/// The id of the cgroup at `cg`, if there is one.
fn id(cg: &Path) -> Option<u64> {
    fs::metadata(cg).ok().map(|m| m.ino())
}

/// Whether the cgroup at `cg` is the one with id `made` (none: its id was never
/// recorded, so nothing there is known to be it).
pub fn is_the_one(cg: &Path, made: Option<u64>) -> bool {
    made.is_some() && id(cg) == made
}

/// Ends every process in the cgroup `made` (SIGKILL through `cgroup.kill`, Linux 5.14),
/// waits until it is empty, and removes it; nothing to do when it is gone already, or
/// when another is at its path. One holding a cgroup netlab did not make is refused
/// before anything is ended.
pub fn remove(cg: &Path, made: Option<u64>) -> Result<()> {
    if !is_the_one(cg, made) {
        return Ok(());
    }
    // netlab makes none inside: one there is someone else's, and `cgroup.kill` would
    // end its processes too.
    if let Some(child) = children(cg).first() {
        return Err(foreign_child(cg, child));
    }
    if populated(cg) {
        fs::write(cg.join("cgroup.kill"), "1")
            .map_err(|e| Error::io("kill the processes of", cg, e))?;
        let deadline = Instant::now() + WAIT;
        while populated(cg) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    fs::remove_dir(cg).or_else(|e| match e.kind() {
        io::ErrorKind::NotFound => Ok(()),
        _ => match children(cg).first() {
            Some(child) => Err(foreign_child(cg, child)),
            None => Err(Error::io("remove cgroup", cg, e)),
        },
    })
}

fn foreign_child(cg: &Path, child: &Path) -> Error {
    Error::Invalid(format!(
        "cgroup {} holds cgroup {}, which netlab did not make: remove it (`rmdir {}`), then try again",
        cg.display(),
        child.display(),
        child.display()
    ))
}

/// The cgroups inside `cg`.
fn children(cg: &Path) -> Vec<PathBuf> {
    fs::read_dir(cg)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// Whether a process is in the cgroup or below it (`populated 1` in `cgroup.events`).
fn populated(cg: &Path) -> bool {
    fs::read_to_string(cg.join("cgroup.events"))
        .is_ok_and(|ev| ev.lines().any(|l| l == "populated 1"))
}

/// Moves the calling process into `cgroup` (its `cgroup.procs`).
pub fn join(cg: &Path) -> Result<()> {
    let procs = cg.join("cgroup.procs");
    fs::write(&procs, std::process::id().to_string())
        .map_err(|e| Error::io("join cgroup", &procs, e))
}
