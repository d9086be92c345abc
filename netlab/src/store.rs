//! Where a lab's state lives: `/run/netlab/<lab>/state.json`, edited under the lab's
//! lock (`/run/netlab/<lab>.lock`, outside the directory so that `down` can remove it).
//! A command on a lab that does not exist leaves neither behind.

use std::{
    fs,
    io::{BufWriter, Write},
    path::PathBuf,
};

use crate::{
    error::{Error, Result},
    lab::LabState,
    lockfile::FileLock,
};

pub const STATE_DIR: &str = "/run/netlab";

/// Every lab's state as it is now, read without locks (a snapshot, for checks across
/// labs).
pub fn all_labs() -> Result<Vec<LabState>> {
    Ok(read_labs(None).0)
}

/// [`all_labs`] but `lab`, whose own state is not read (a command holds it already,
/// and with 10,000 published ports reading it again is most of a `publish`'s time).
pub fn other_labs(lab: &str) -> Result<Vec<LabState>> {
    Ok(read_labs(Some(lab)).0)
}

/// [`all_labs`], and the labs whose state is there but cannot be read (written by
/// someone else than netlab), each with why, from one reading.
pub fn labs_and_unreadable() -> (Vec<LabState>, Vec<(String, String)>) {
    read_labs(None)
}

fn read_labs(skip: Option<&str>) -> (Vec<LabState>, Vec<(String, String)>) {
    let (mut labs, mut bad) = (Vec::new(), Vec::new());
    for entry in fs::read_dir(STATE_DIR).into_iter().flatten().flatten() {
        if skip.is_some_and(|lab| entry.file_name() == lab) {
            continue;
        }
        let Ok(text) = fs::read_to_string(entry.path().join("state.json")) else {
            continue;
        };
        match serde_json::from_str::<LabState>(&text) {
            Ok(state) => labs.push(state),
            Err(e) => bad.push((
                entry.file_name().to_string_lossy().into_owned(),
                e.to_string(),
            )),
        }
    }
    (labs, bad)
}

/// The other labs up in the namespace a lab runs in when that is not its own (a lab on
/// the machine's namespace or a runtime's): they share its namespace-wide settings.
/// None for a sandbox lab.
pub fn neighbours(state: &LabState) -> Vec<LabState> {
    if state.sandbox {
        return Vec::new();
    }
    other_labs(&state.name)
        .unwrap_or_default()
        .into_iter()
        .filter(|o| {
            o.name != state.name
                && !o.sandbox
                && o.host_netns == state.host_netns
                && o.cookies.host == state.cookies.host
        })
        .collect()
}

/// An exclusive lock on one lab's state, held for the whole command.
pub struct Locked {
    pub lab: String,
    lock: Option<FileLock>,
}

/// An exclusive lock of netlab's own on something several labs or runs share (a
/// network namespace, a textfile directory), held while it lives: a root-only file in
/// [`LOCKS_DIR`], removed on release.
pub struct SharedLock(Option<FileLock>);

/// The directory of the shared locks: netlab's own, holding nothing else (lab names
/// have no `-`: never a lab's state directory).
pub const LOCKS_DIR: &str = "/run/netlab/shared-locks";

/// Takes the lock of the network namespace with `cookie`
/// ([`crate::netlink::netns::cookie`]), waiting for another netlab command that holds
/// it. Not an `flock` on the namespace's own file (`/run/netns/NAME`,
/// `/proc/self/ns/net`): any user can open that, and its lock would hang every `up` and
/// `publish` there (a review).
pub fn lock_namespace(cookie: u64) -> Result<SharedLock> {
    lock_shared(&format!("netns-{cookie}"))
}

/// Takes the lock of the directory `dev`/`ino` (a `metrics --textfile` directory), so
/// that two runs at once never save its record over each other's. Not a lock file in
/// that directory, which others may be able to open and hold.
pub fn lock_directory(dev: u64, ino: u64) -> Result<SharedLock> {
    lock_shared(&format!("dir-{dev}-{ino}"))
}

fn lock_shared(what: &str) -> Result<SharedLock> {
    root_only(std::path::Path::new(STATE_DIR))?;
    root_only(std::path::Path::new(LOCKS_DIR))?;
    let path = PathBuf::from(LOCKS_DIR).join(format!("{what}.lock"));
    Ok(SharedLock(Some(FileLock::acquire(path)?)))
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        if let Some(lock) = self.0.take() {
            lock.remove();
        }
        remove_stale_shared_locks();
        // The state directory goes with its last file (a `metrics --textfile` run with
        // no lab made it for its lock alone).
        let _ = fs::remove_dir(STATE_DIR);
    }
}

/// Removes the lock files of [`LOCKS_DIR`] nobody holds: those of commands killed
/// while they held them (the lock of a namespace that is gone would otherwise stay for
/// ever). Every file there is a lock netlab made. Each is taken first, as a release
/// removes its own, so a command that waits on one starts over.
fn remove_stale_shared_locks() {
    for entry in fs::read_dir(LOCKS_DIR).into_iter().flatten().flatten() {
        if let Some(lock) = FileLock::try_take(&entry.path()) {
            lock.remove();
        }
    }
}

/// Whether `lab` exists: its state directory is there (being brought up, up, partly
/// taken down, or with a state netlab cannot read). Gone once `down` has finished.
pub fn exists(lab: &str) -> bool {
    dir(lab).exists()
}

fn dir(lab: &str) -> PathBuf {
    PathBuf::from(STATE_DIR).join(lab)
}

/// A file of the lab's record beside its state (removed with it), for what a datapath
/// records of its own.
pub fn record_file(lab: &str, name: &str) -> PathBuf {
    dir(lab).join(name)
}

fn file(lab: &str) -> PathBuf {
    dir(lab).join("state.json")
}

fn journal_file(lab: &str) -> PathBuf {
    dir(lab).join("journal.json")
}

/// Refuses a state directory (`/run/netlab`, a lab's) that someone else could write in:
/// not root's, or writable by its group or others (made under a umask of 000 by a
/// netlab before it set its own). What is in it would no longer be netlab's record.
/// Nothing to refuse where it is not there yet.
fn root_only(d: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    match fs::symlink_metadata(d) {
        Ok(m) if m.is_dir() && m.uid() == 0 && m.mode() & 0o022 == 0 => Ok(()),
        Ok(m) => Err(Error::Invalid(format!(
            "refusing {}: it is not a directory only root may write to (owner uid {}, mode {:o}); check what is in it, then make it root's with mode 0755",
            d.display(),
            m.uid(),
            m.mode() & 0o7777
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("stat", d, e)),
    }
}

/// Writes `text` to `path` atomically: a temporary file, renamed over it.
fn write_atomic(
    path: &std::path::Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    // Never through a link (in a directory only root may write to: `Locked::acquire`).
    let f = fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| Error::io("write", &tmp, e))?;
    let mut w = BufWriter::with_capacity(1 << 16, f);
    write(&mut w)
        .and_then(|()| w.flush())
        .map_err(|e| Error::io("write", &tmp, e))?;
    drop(w);
    fs::rename(&tmp, path).map_err(|e| Error::io("rename", &tmp, e))
}

impl Locked {
    /// Takes the lab's lock, waiting for another netlab command on the same lab.
    pub fn acquire(lab: &str) -> Result<Self> {
        // Before the lock, which would make the lock file in it (and take it away again).
        root_only(std::path::Path::new(STATE_DIR))?;
        root_only(&dir(lab))?;
        let lock = FileLock::acquire(PathBuf::from(STATE_DIR).join(format!("{lab}.lock")))?;
        Ok(Self {
            lab: lab.to_string(),
            lock: Some(lock),
        })
    }

    pub fn load(&self) -> Result<Option<LabState>> {
        let path = file(&self.lab);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        // netlab writes it whole (a temp file renamed); one it cannot read was changed
        // by someone else, and what the lab made is no longer known.
        let state: LabState = serde_json::from_str(&text).map_err(|e| {
            Error::Invalid(format!(
                "the state of lab {} ({}) is unreadable ({e}): netlab no longer knows what the lab made; remove by hand its namespaces and interfaces, its pins ({}) and cgroup (netlab-{} under the cgroup root) if it is an eBPF lab, then {} and {}.lock",
                self.lab,
                path.display(),
                crate::datapath::ebpf::pins::dir(&self.lab).display(),
                self.lab,
                dir(&self.lab).display(),
                dir(&self.lab).display()
            ))
        })?;
        Ok(Some(state))
    }

    /// The lab's state, or a clear error when the lab is not up.
    pub fn require(&self) -> Result<LabState> {
        self.load()?.ok_or_else(|| {
            Error::Invalid(format!(
                "lab {} is not up: bring it up first (`netlab up --lab {} --sandbox` makes it in namespaces of its own; without --sandbox it is made on this machine's network)",
                self.lab, self.lab
            ))
        })
    }

    /// Writes the state atomically (temp file and rename).
    pub fn save(&self, state: &LabState) -> Result<()> {
        let d = dir(&self.lab);
        fs::create_dir_all(&d).map_err(|e| Error::io("create", &d, e))?;
        // Straight to the file through a buffer: a lab with 10,000 published ports has
        // a 380 KB state, which a growing `String` would copy and fault in twice over.
        write_atomic(&file(&self.lab), |w| {
            serde_json::to_writer(w, state).map_err(std::io::Error::other)
        })
    }

    /// Records the operation about to change the kernel (see `ops::journal`), before
    /// it does: whatever a crash leaves half-done, the next command finds here.
    pub fn write_journal<T: serde::Serialize>(&self, entry: &T) -> Result<()> {
        write_atomic(&journal_file(&self.lab), |w| {
            serde_json::to_writer(w, entry).map_err(std::io::Error::other)
        })
    }

    /// The operation a crash interrupted, if any.
    pub fn read_journal<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>> {
        let path = journal_file(&self.lab);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::io("parse", &path, std::io::Error::other(e)))
    }

    /// The operation is done (or undone): its journal goes.
    pub fn clear_journal(&self) -> Result<()> {
        let path = journal_file(&self.lab);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &path, e)),
        }
    }

    /// Removes the state directory (state and journal): the lab no longer exists. The
    /// lock file goes when the lock is released.
    pub fn forget(&self) -> Result<()> {
        let d = dir(&self.lab);
        match fs::remove_dir_all(&d) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &d, e)),
        }
    }
}

impl Drop for Locked {
    /// A lab without state keeps no lock file (and the last one no /run/netlab), nor
    /// the state directory of a first `save` a crash cut short (its temporary file).
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take()
            && !file(&self.lab).exists()
        {
            let _ = fs::remove_file(file(&self.lab).with_extension("json.tmp"));
            let _ = fs::remove_dir(dir(&self.lab));
            lock.remove();
        }
    }
}
