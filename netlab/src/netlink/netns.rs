//! Named network namespaces (`/run/netns/NAME`, as `ip netns` keeps them) and running
//! work inside one. Work in a namespace runs on a dedicated OS thread that has called
//! `setns`, never on a thread that other work shares.

use std::{
    fs::{self, File},
    future::Future,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use nix::{
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, setns, unshare},
};

use crate::error::{Error, Result};

pub const NETNS_DIR: &str = "/run/netns";

pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Equivalent to `ip netns add NAME`: unshare on a throwaway thread and bind-mount its
/// namespace onto /run/netns/NAME (no fork from a multi-threaded process).
pub fn create(name: &str) -> Result<PathBuf> {
    fs::create_dir_all(NETNS_DIR).map_err(|e| Error::io("create", NETNS_DIR, e))?;
    let p = path(name);
    File::options()
        .write(true)
        .create_new(true)
        .open(&p)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                Error::Conflict(format!("network namespace {name} already exists"))
            }
            _ => Error::io("create", &p, e),
        })?;
    let target = p.clone();
    let made = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::io("unshare netns for", &target, e.into()))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::io("bind-mount netns", &target, e.into()))
    })
    .join()
    .unwrap_or_else(|_| Err(Error::Invalid("netns thread panicked".into())));
    if let Err(e) = made {
        let _ = fs::remove_file(&p);
        return Err(e);
    }
    Ok(p)
}

/// Equivalent to `ip netns delete NAME`; a namespace that is already gone is not an error.
pub fn delete(name: &str) -> Result<()> {
    let p = path(name);
    if !p.exists() {
        return Ok(());
    }
    match umount2(&p, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(Error::io("unmount netns", &p, e.into())),
    }
    match fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove netns", &p, e)),
    }
}

/// Whether `p` is a network namespace file (an nsfs mount such as /run/netns/NAME or
/// /proc/PID/ns/net): a runtime's namespace that is gone may leave an empty file behind.
pub fn is_netns(p: &Path) -> bool {
    nix::sys::statfs::statfs(p).is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// Opens a namespace file for `setns` or for moving links into it.
pub fn open(ns: &Path) -> Result<File> {
    File::open(ns).map_err(|e| Error::io("open netns", ns, e))
}

/// Moves the calling thread into `ns`. Only for threads that netlab owns and that end
/// with the work (see [`run_in`]), or just before `exec`.
pub fn enter(ns: &Path) -> Result<()> {
    let f = open(ns)?;
    setns(f.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| Error::io("setns", ns, e.into()))
}

/// Runs `f` on a new OS thread inside the network namespace `ns`.
pub fn run_in<T: Send>(ns: &Path, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Invalid(format!(
                "worker thread in {} panicked",
                ns.display()
            )))
        })
    })
}

/// Runs async netlink work inside `ns`: a thread in the namespace, a current-thread
/// runtime, and an rtnetlink connection whose socket lives in that namespace.
pub fn netlink_in<T, F, Fut>(ns: &Path, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce(rtnetlink::Handle) -> Fut + Send,
    Fut: Future<Output = Result<T>>,
{
    run_in(ns, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("start runtime in", ns, e))?;
        rt.block_on(async {
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|e| Error::io("open netlink in", ns, e))?;
            tokio::spawn(conn);
            f(handle).await
        })
    })
}

/// The name under /run/netns of the calling thread's network namespace: `Ok(None)` for
/// the machine's own (that of pid 1), an error for an unnamed one.
pub fn current_name() -> Result<Option<String>> {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let me = id(Path::new("/proc/thread-self/ns/net"))
        .map_err(|e| Error::io("stat", "/proc/thread-self/ns/net", e))?;
    if id(Path::new("/proc/1/ns/net")).is_ok_and(|init| init == me) {
        return Ok(None);
    }
    for entry in fs::read_dir(NETNS_DIR).into_iter().flatten().flatten() {
        if id(&entry.path()).is_ok_and(|ns| ns == me)
            && let Ok(name) = entry.file_name().into_string()
        {
            return Ok(Some(name));
        }
    }
    Err(Error::Invalid(
        "this network namespace has no name under /run/netns: run netlab in the machine's namespace or in a named one (`ip netns add`)".into(),
    ))
}

/// The network namespace this process runs in (the machine's own, for non-sandbox labs).
pub fn current() -> PathBuf {
    PathBuf::from(format!("/proc/{}/ns/net", std::process::id()))
}
