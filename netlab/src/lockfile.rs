//! Exclusive file locks (`flock`) that may be removed when their last user is done.
//!
//! Unlinking a lock file that another process is waiting on would hand that process a
//! lock on a file nobody else can find, while a third process creates and locks a new
//! one: two holders at once. So a holder checks, once it has the lock, that the file it
//! locked is still the one at the path, and starts over when it is not.

use std::{
    fs::{self, File},
    os::{
        fd::{AsRawFd, RawFd},
        unix::fs::{MetadataExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
    sync::Mutex,
};

use crate::error::{Error, Result};

/// Held while it lives; released (closed) on drop.
pub struct FileLock {
    path: PathBuf,
    file: File,
}

/// The descriptors of the locks this process holds, for [`hold_in_child`].
static HELD: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// Makes a child process hold the locks this process holds until it exits, whatever
/// happens to this process: a netlab command killed while `iptables-restore` or `nft`
/// applies its changes leaves that tool running, and the next command must wait for it
/// (for the lock) before it looks at what the kernel holds. An flock belongs to the
/// open file: it is released only when every process holding it has let go.
pub fn hold_in_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let fds: Vec<RawFd> = HELD.lock().map(|h| h.clone()).unwrap_or_default();
    if fds.is_empty() {
        return;
    }
    // Between fork and exec, in the child: only its own descriptor table changes.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

impl FileLock {
    /// Waits for the exclusive lock on `path`, creating the file (and its directory).
    pub fn acquire(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        loop {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
            }
            // Root's only (0600): an flock needs no more than to open the file, so a
            // lock file others can read is one anyone can hold, hanging every netlab
            // command on the lab (a review); one an older netlab made readable is
            // closed up when taken.
            let file = match File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(&path)
                .and_then(|f| {
                    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
                    Ok(f)
                }) {
                Ok(f) => f,
                // The directory went with the last lab between the two calls.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("open lock", &path, e)),
            };
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(Error::io("lock", &path, std::io::Error::last_os_error()));
            }
            if Self::still_there(&path, &file) {
                if let Ok(mut held) = HELD.lock() {
                    held.push(file.as_raw_fd());
                }
                return Ok(Self { path, file });
            }
        }
    }

    /// The lock on `path` if the file is there and nobody holds it; never waits or
    /// creates. For removing a lock file left by a process killed while it held it.
    pub fn try_take(path: &Path) -> Option<Self> {
        let file = File::options()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .ok()?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return None;
        }
        Self::still_there(path, &file).then(|| {
            if let Ok(mut held) = HELD.lock() {
                held.push(file.as_raw_fd());
            }
            Self {
                path: path.to_path_buf(),
                file,
            }
        })
    }

    fn still_there(path: &Path, file: &File) -> bool {
        match (fs::metadata(path), file.metadata()) {
            (Ok(on_disk), Ok(held)) => on_disk.ino() == held.ino() && on_disk.dev() == held.dev(),
            _ => false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the lock file while still holding it, then releases it: whoever waits
    /// on it sees it gone and starts over.
    pub fn remove(self) {
        let _ = fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            // Only when empty: the last lock leaves no directory behind.
            let _ = fs::remove_dir(dir);
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let fd = self.file.as_raw_fd();
        if let Ok(mut held) = HELD.lock() {
            held.retain(|&h| h != fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use super::*;

    /// Whether a process waits in `flock` for the file with inode `ino`: a `->` line of
    /// /proc/locks (`1: -> FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF`).
    fn someone_waits_on(ino: u64) -> bool {
        fs::read_to_string("/proc/locks")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" -> FLOCK "))
            .any(|l| {
                l.split_whitespace()
                    .any(|f| f.ends_with(&format!(":{ino}")))
            })
    }

    /// A second taker waits while the first holds the lock (it must show up as a waiter
    /// on that very file, never get it), and once the first removes the file, it holds a
    /// lock on the file that is at the path, never on the removed one.
    #[test]
    fn a_holder_excludes_others_and_a_removed_lock_is_taken_afresh() {
        let dir = crate::files::test_dir("lock");
        let path = dir.join("x.lock");
        let a = FileLock::acquire(&path).unwrap();
        let ino = a.file.metadata().unwrap().ino();
        let got = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (path, got) = (path.clone(), got.clone());
            std::thread::spawn(move || {
                let b = FileLock::acquire(&path).unwrap();
                got.store(true, Ordering::SeqCst);
                assert!(
                    FileLock::still_there(b.path(), &b.file),
                    "b holds a lock on a file that is no longer at the path"
                );
                b.remove();
            })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !someone_waits_on(ino) {
            assert!(
                !got.load(Ordering::SeqCst),
                "a second holder got the lock while the first held it"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "b never waited on a's lock"
            );
            std::thread::yield_now();
        }
        assert!(!got.load(Ordering::SeqCst));
        a.remove();
        waiter.join().unwrap();
        assert!(got.load(Ordering::SeqCst));
        assert!(!path.exists());
        assert!(!dir.exists());
    }

    /// `try_take` takes a lock file only when it is there and nobody holds it, and
    /// never makes one.
    #[test]
    fn try_take_takes_only_a_lock_nobody_holds() {
        let dir = crate::files::test_dir("trylock");
        let path = dir.join("x.lock");
        assert!(FileLock::try_take(&path).is_none(), "made a lock file");
        assert!(!path.exists());
        let held = FileLock::acquire(&path).unwrap();
        assert!(FileLock::try_take(&path).is_none(), "took a held lock");
        drop(held);
        let taken = FileLock::try_take(&path).expect("a lock nobody holds");
        taken.remove();
        assert!(!path.exists() && !dir.exists());
    }
}
