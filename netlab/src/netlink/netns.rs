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

use super::members;
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
    create_recorded(name, |_| Ok(())).map(|(p, _)| p)
}

/// [`create`], handing the new namespace's cookie to `record` before anything is made
/// at its name (nothing is if `record` fails): whoever records it there knows, even
/// after a crash at any point, that a namespace with that cookie under `name` is the
/// one it made, and that an empty file there (the mount point, made just before the
/// mount) is its own too ([`delete_if_same`] removes it). Returns the path and the
/// cookie.
pub fn create_recorded(
    name: &str,
    record: impl FnOnce(u64) -> Result<()> + Send,
) -> Result<(PathBuf, u64)> {
    fs::create_dir_all(NETNS_DIR).map_err(|e| Error::io("create", NETNS_DIR, e))?;
    let p = path(name);
    if fs::symlink_metadata(&p).is_ok() {
        return Err(already(name));
    }
    let target = p.as_path();
    let made = std::thread::scope(|s| {
        s.spawn(move || -> Result<u64> {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io("unshare netns for", target, e.into()))?;
            let cookie = own_cookie(target)?;
            record(cookie)?;
            File::options()
                .write(true)
                .create_new(true)
                .open(target)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => already(name),
                    _ => Error::io("create", target, e),
                })?;
            let mounted = mount(
                Some("/proc/thread-self/ns/net"),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            );
            if let Err(e) = mounted {
                let _ = fs::remove_file(target);
                return Err(Error::io("bind-mount netns", target, e.into()));
            }
            Ok(cookie)
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Invalid("netns thread panicked".into())))
    });
    made.map(|cookie| (p, cookie))
}

fn already(name: &str) -> Error {
    Error::Conflict(format!("network namespace {name} already exists"))
}

/// Equivalent to `ip netns delete NAME`; a namespace that is already gone is not an
/// error. Unlike `ip netns delete`, it also succeeds where the file is mounted more
/// than once in this mount namespace (see [`remove_hidden`]).
pub fn delete(name: &str) -> Result<()> {
    let p = path(name);
    if fs::symlink_metadata(&p).is_err() {
        return Ok(());
    }
    unmount_all(&p)?;
    match fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            remove_hidden(&p).map_err(|e| Error::io("remove netns", &p, e))
        }
        Err(e) => Err(Error::io("remove netns", &p, e)),
    }
}

/// Deletes namespace `name` if it is still the one netlab made, known by its cookie,
/// and ends the processes living in it ([`members::kill_all`]): one that someone else
/// made again under the same name is left alone. Of one that is gone, the empty file
/// it was mounted on (a removal interrupted between unmount and unlink) goes too.
/// Returns whether a namespace was deleted.
pub fn delete_if_same(name: &str, cookie: u64) -> Result<bool> {
    let p = path(name);
    if !is_netns(&p) {
        remove_placeholder(name)?;
        return Ok(false);
    }
    if self::cookie(&p)? != cookie {
        return Ok(false);
    }
    members::kill_all(&p)?;
    delete(name).map(|()| true)
}

/// Removes the empty file `create` makes before it mounts a namespace on it, when a
/// crash left it without one (never a mounted namespace, nor a file with content).
pub fn remove_placeholder(name: &str) -> Result<()> {
    let p = path(name);
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_file() && m.len() == 0 && !is_netns(&p) => {
            fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))
        }
        _ => Ok(()),
    }
}

/// Unmounts every mount stacked on `p` that this mount namespace can reach.
fn unmount_all(p: &Path) -> Result<()> {
    for _ in 0..16 {
        match umount2(p, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(Error::io("unmount netns", p, e.into())),
        }
    }
    Ok(())
}

/// Removes a namespace file that is still a mount point of this mount namespace after
/// [`unmount_all`]: a copy of its mount hidden below a mount of /run/netns over itself.
/// That is what a mount namespace made after the file was (podman's, a systemd
/// service's with private mounts) holds once podman or `ip netns add` has bind-mounted
/// /run/netns onto itself there, as both do when it is not a mount point yet. Nothing
/// can reach the hidden copy by path, and `unlink` refuses (EBUSY) while it exists.
///
/// So, on a thread of its own: a throwaway mount namespace, made private so that
/// nothing done in it propagates anywhere; there the mount of the directory over
/// itself is taken away, which uncovers the hidden copy, that is unmounted, and the
/// file is unlinked, which detaches its mounts in every other mount namespace too.
/// Only a directory mounted over itself (the same directory below) is taken away.
fn remove_hidden(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let dir = p.parent().unwrap_or(Path::new(NETNS_DIR)).to_path_buf();
    let dir_id = id(&dir)?;
    let p = p.to_path_buf();
    std::thread::spawn(move || -> std::io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNS)?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )?;
        for _ in 0..16 {
            match fs::remove_file(&p) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => return Err(e),
            }
            if umount2(&p, MntFlags::MNT_DETACH).is_ok() {
                continue;
            }
            umount2(&dir, MntFlags::MNT_DETACH)?;
            if id(&dir)? != dir_id {
                // Another directory below: not a mount of the directory over itself.
                break;
            }
        }
        Err(std::io::Error::from_raw_os_error(libc::EBUSY))
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("netns removal thread panicked")))
}

/// The cookie of a network namespace (`SO_NETNS_COOKIE` of a socket made inside it):
/// its identity for as long as the kernel runs, never given to another namespace (an
/// inode number is, once the namespace is gone).
pub fn cookie(ns: &Path) -> Result<u64> {
    run_in(ns, || own_cookie(ns))
}

/// The cookie of the calling thread's network namespace (`ns` names it in errors).
/// The socket is never bound: a new namespace's `lo` is down, and nothing is sent.
fn own_cookie(ns: &Path) -> Result<u64> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Error::io("socket in", ns, std::io::Error::last_os_error()));
    }
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut cookie: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            &mut cookie as *mut u64 as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(Error::io(
            "SO_NETNS_COOKIE in",
            ns,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(cookie)
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
    run_in(ns, || netlink_here(ns, f))
}

/// Runs async netlink work in a throwaway network namespace of its own (a thread that
/// unshares one, gone with the thread): probing what the kernel can make touches
/// nothing anyone else sees.
pub fn netlink_in_throwaway<T, F, Fut>(f: F) -> Result<T>
where
    T: Send,
    F: FnOnce(rtnetlink::Handle) -> Fut + Send,
    Fut: Future<Output = Result<T>>,
{
    let label = Path::new("a throwaway namespace");
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| Error::io("unshare", label, e.into()))?;
            netlink_here(label, f)
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Invalid("probe thread panicked".into())))
    })
}

/// Async netlink work in the calling thread's namespace (`ns` names it in errors).
fn netlink_here<T, F, Fut>(ns: &Path, f: F) -> Result<T>
where
    F: FnOnce(rtnetlink::Handle) -> Fut,
    Fut: Future<Output = Result<T>>,
{
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
