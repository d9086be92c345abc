//! The processes living in a network namespace netlab made (started there with
//! `netlab exec` or `ip netns exec`). Removing the namespace ends them, as `docker rm
//! -f` ends a container's processes: left running, they would keep a namespace nobody
//! can reach any more, and its sockets, alive.
//!
//! A process is the namespace's when its `/proc/PID/ns/net` is the namespace's inode
//! (unique while the namespace is mounted, as it is here). Each is opened as a pidfd
//! and checked again through it before the signal, so a PID reused in between is never
//! signalled.

use std::{
    fs,
    os::{fd::AsRawFd, fd::FromRawFd, fd::OwnedFd, unix::fs::MetadataExt},
    path::Path,
    time::{Duration, Instant},
};

use crate::error::{Error, Result};

/// How long [`kill_all`] waits for the processes it killed to be gone.
const WAIT: Duration = Duration::from_secs(2);

/// Kills (SIGKILL) every process whose network namespace is `ns`, except the calling
/// one, and waits until each has exited; returns how many there were.
pub fn kill_all(ns: &Path) -> Result<usize> {
    let target = identity(ns).map_err(|e| Error::io("stat", ns, e))?;
    let me = std::process::id();
    let mut killed = Vec::new();
    // Again until none is left: one may fork while the others are being killed.
    for _ in 0..8 {
        let found: Vec<u32> = pids()
            .filter(|&pid| pid != me && in_ns(pid, target))
            .collect();
        if found.is_empty() {
            break;
        }
        for pid in found {
            if let Some(fd) = pidfd(pid)
                && in_ns(pid, target)
                && signal(&fd)
            {
                killed.push(fd);
            }
        }
    }
    let deadline = Instant::now() + WAIT;
    for fd in &killed {
        while !exited(fd) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(killed.len())
}

/// A namespace file's identity: the nsfs device and inode it refers to.
fn identity(p: &Path) -> std::io::Result<(u64, u64)> {
    fs::metadata(p).map(|m| (m.dev(), m.ino()))
}

/// Every process ID in /proc.
fn pids() -> impl Iterator<Item = u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

/// Whether process `pid` lives in the namespace `target` identifies.
fn in_ns(pid: u32, target: (u64, u64)) -> bool {
    identity(&Path::new("/proc").join(pid.to_string()).join("ns/net")).is_ok_and(|id| id == target)
}

/// A pidfd for `pid` (Linux 5.3), or `None` when it is gone.
fn pidfd(pid: u32) -> Option<OwnedFd> {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends SIGKILL through a pidfd; whether it was sent.
fn signal(fd: &OwnedFd) -> bool {
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    rc == 0
}

/// Whether the process behind a pidfd has exited (its pidfd polls readable then; a
/// zombie counts as exited).
fn exited(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    unsafe { libc::poll(&mut p, 1, 0) > 0 }
}
