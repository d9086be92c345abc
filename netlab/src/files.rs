//! Files netlab writes for the user (benchmark results, metrics for node_exporter):
//! whole or not at all, so that a reader, or a failed write, never leaves half of one
//! where the old one was.

use std::{
    fs,
    io::{self, Write},
    path::{Component, Path, PathBuf},
};

/// The umask netlab was started with, while it runs with its own ([`own_umask`]).
static STARTED_WITH: std::sync::OnceLock<libc::mode_t> = std::sync::OnceLock::new();

/// Sets the umask netlab's own files and directories are made with (022: writable by
/// root only), whatever the one it was started with: under a umask of 000 its state,
/// journal and lock files were made writable by everyone, and a user could plant a
/// link where root then wrote, or forge a state that had `rm` kill a cgroup's
/// processes (a review). Called first thing by both binaries.
pub fn own_umask() {
    // SAFETY: umask only swaps the process's mask.
    let old = unsafe { libc::umask(0o022) };
    let _ = STARTED_WITH.set(old);
}

/// Gives back the umask netlab was started with, for a command it runs as the user's
/// (`netlab exec`).
pub fn user_umask() {
    if let Some(&old) = STARTED_WITH.get() {
        // SAFETY: as above.
        unsafe { libc::umask(old) };
    }
}

/// A temporary name for `path`, in its own directory (so that the rename is atomic),
/// hidden, and named by the process and the time, so that another user cannot know it
/// in advance.
fn temporary(path: &Path, attempt: u32) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    path.with_file_name(format!(
        ".{name}.{}.{nanos:09}{attempt}.tmp",
        std::process::id()
    ))
}

/// A new temporary file for `path`, made here and now, readable by all (0644, whatever
/// the umask: a node_exporter that is not root reads the metrics). Never a file or
/// link that was there: in a directory others may write to (a textfile directory
/// made 1777), a link planted at the name would otherwise have root write through it
/// into any file (`O_CREAT | O_EXCL | O_NOFOLLOW`; a name taken is tried again).
fn create_temporary(path: &Path) -> io::Result<(PathBuf, fs::File)> {
    let mut attempt = 0;
    loop {
        let tmp = temporary(path, attempt);
        match create_new(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 8 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Makes file `p`, mode 0644, failing where anything is there already.
fn create_new(p: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(p)?;
    f.set_permissions(fs::Permissions::from_mode(0o644))?;
    Ok(f)
}

/// Writes `bytes` to `path` atomically: a new temporary file beside it, synced,
/// renamed over it; on failure the temporary file is removed and `path` is as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_identified(path, bytes).map(|_| ())
}

/// [`write_atomic`], returning the identity (device, inode) of the file it made, taken
/// from the file itself before the rename: what is at `path` afterwards may already be
/// someone else's.
pub fn write_atomic_identified(path: &Path, bytes: &[u8]) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (tmp, mut f) = create_temporary(path)?;
    let result = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| f.metadata())
        .and_then(|m| fs::rename(&tmp, path).map(|()| (m.dev(), m.ino())));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Why `path` cannot be written by [`write_atomic`], found before any work is done:
/// its directory is missing or takes no new file, or it is there and is not a regular
/// file (a directory, a device: a rename would replace it).
pub fn unwritable(path: &Path) -> Option<String> {
    // `dir/` names a directory, whether or not it is there: no file goes by that name.
    if path.as_os_str().to_string_lossy().ends_with('/') {
        return Some("names a directory (it ends in /), give a file name".into());
    }
    // `x.json/.` and `x/..` name directories too; `Path` drops a last `.`, so that the
    // checks below would look at `x.json` and only the final rename fail.
    if !matches!(path.components().next_back(), Some(Component::Normal(_)))
        || path.as_os_str().to_string_lossy().ends_with("/.")
    {
        return Some("names a directory (it ends in . or ..), give a file name".into());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Some(format!("directory {} does not exist", dir.display()));
    }
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Some("is a directory, give a file name".into()),
        // Written by renaming over it, a link would be replaced, not followed.
        Ok(m) if m.file_type().is_symlink() => {
            return Some("is a symbolic link: give the file it points to".into());
        }
        Ok(m) if !m.is_file() => return Some("is not a regular file".into()),
        _ => {}
    }
    match create_temporary(path) {
        Ok((tmp, _)) => {
            let _ = fs::remove_file(&tmp);
            None
        }
        Err(e) => Some(format!("cannot write in {}: {e}", dir.display())),
    }
}

/// Whether `a` and `b` name one file, however spelled (`x` and `./x`, a relative and
/// an absolute path, through a symbolic link, hard links of one file): their
/// directories resolved and the names compared, or the files' identities where both
/// are there.
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(x), Ok(y)) = (fs::metadata(a), fs::metadata(b)) {
        return (x.dev(), x.ino()) == (y.dev(), y.ino());
    }
    let resolved = |p: &Path| {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Some((fs::canonicalize(dir).ok()?, p.file_name()?.to_owned()))
    };
    match (resolved(a), resolved(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A new directory under the temporary directory, root's only (0700), under a name
/// no one can take first (`netlab-TAG-PID-NANOS`): made here and now, never one that
/// was there. The tests run as root, and a directory or link another user put at a
/// name known in advance had root run or write through what they left there (a
/// review). For the unit tests and the test suite.
pub fn private_dir(tag: &str) -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let mut attempt = 0;
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "netlab-{tag}-{}-{nanos}{attempt}",
            std::process::id()
        ));
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 8 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// [`private_dir`] for a unit test.
#[cfg(test)]
pub(crate) fn test_dir(tag: &str) -> PathBuf {
    private_dir(tag).unwrap_or_else(|e| panic!("make a directory for {tag}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_however_spelled() {
        let dir = test_dir("same");
        let abs = dir.join("o.json");
        let dotted = dir.join(".").join("o.json");
        assert!(same_file(&abs, &dotted));
        assert!(!same_file(&abs, &dir.join("o.svg")));
        fs::write(&abs, "x").unwrap();
        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&abs, &link).unwrap();
        assert!(same_file(&abs, &link));
        assert!(
            unwritable(&dir.join("newdir/"))
                .unwrap()
                .contains("ends in /")
        );
        // `Path` drops a last `.`: the check once looked at `o.json` and passed.
        for spelled in ["o.json/.", "o.json/..", "."] {
            let why = unwritable(&dir.join(spelled)).unwrap_or_default();
            assert!(why.contains("ends in . or .."), "{spelled}: {why:?}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn what_cannot_be_written_is_said_first() {
        let dir = test_dir("files");
        assert_eq!(unwritable(&dir.join("out.json")), None);
        assert!(unwritable(&dir).unwrap().contains("is a directory"));
        assert!(
            unwritable(&dir.join("no/out.json"))
                .unwrap()
                .contains("does not exist")
        );
        assert!(
            unwritable(Path::new("/dev/null"))
                .unwrap()
                .contains("not a regular file")
        );
        let link = dir.join("link.json");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        assert!(unwritable(&link).unwrap().contains("is a symbolic link"));
        fs::remove_file(&link).unwrap();
        assert!(
            unwritable(Path::new("/proc/out.json"))
                .unwrap()
                .contains("cannot write")
        );
        write_atomic(&dir.join("out.json"), b"new").unwrap();
        assert_eq!(fs::read(dir.join("out.json")).unwrap(), b"new");
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join("out.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        // A link planted at a temporary name is not written through (before, root
        // truncated and wrote the file it pointed at), nor a file there reused.
        let victim = dir.join("victim");
        fs::write(&victim, "theirs").unwrap();
        let planted = dir.join(".planted.tmp");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        assert_eq!(
            create_new(&planted).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(fs::read(&victim).unwrap(), b"theirs");
        fs::remove_file(&planted).unwrap();
        fs::remove_file(&victim).unwrap();
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "a temporary file is left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
