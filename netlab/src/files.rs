//! Files netlab writes for the user (benchmark results, metrics for node_exporter):
//! whole or not at all, so that a reader, or a failed write, never leaves half of one
//! where the old one was.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

/// The temporary name `path` is written under, in its own directory (so that the
/// rename is atomic), hidden and named by the process.
fn temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, synced, renamed
/// over it; on failure the temporary file is removed and `path` is as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temporary(path);
    let result = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Why `path` cannot be written by [`write_atomic`], found before any work is done:
/// its directory is missing or takes no new file, or it is there and is not a regular
/// file (a directory, a device: a rename would replace it).
pub fn unwritable(path: &Path) -> Option<String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Some(format!("directory {} does not exist", dir.display()));
    }
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Some("is a directory, give a file name".into()),
        Ok(m) if !m.is_file() => return Some("is not a regular file".into()),
        _ => {}
    }
    let tmp = temporary(path);
    match fs::File::create(&tmp) {
        Ok(_) => {
            let _ = fs::remove_file(&tmp);
            None
        }
        Err(e) => Some(format!("cannot write in {}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_cannot_be_written_is_said_first() {
        let dir = std::env::temp_dir().join(format!("netlab-files-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
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
        assert!(
            unwritable(Path::new("/proc/out.json"))
                .unwrap()
                .contains("cannot write")
        );
        write_atomic(&dir.join("out.json"), b"new").unwrap();
        assert_eq!(fs::read(dir.join("out.json")).unwrap(), b"new");
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "a temporary file is left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
