//! cgroup v2 directories netlab makes: a `--network host` container's, which holds
//! the processes started in it (`netlab exec`). Such a container has no namespace of
//! its own, so its cgroup is how `rm` finds its processes and ends them, as `docker rm
//! -f` ends a host-network container's.

use std::{
    fs, io,
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

/// Makes the cgroup; one that is there already is refused, not taken over.
pub fn create(cg: &Path) -> Result<()> {
    fs::create_dir(cg).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => check_free(cg)
            .err()
            .unwrap_or_else(|| Error::io("create cgroup", cg, e)),
        _ => Error::io("create cgroup", cg, e),
    })
}

/// Ends every process in the cgroup (SIGKILL through `cgroup.kill`, Linux 5.14), waits
/// until it is empty, and removes it; nothing to do when it is gone already.
pub fn remove(cg: &Path) -> Result<()> {
    if !cg.exists() {
        return Ok(());
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
        _ => Err(Error::io("remove cgroup", cg, e)),
    })
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
