//! Directories of xtask's own under the temporary directory.

use std::path::PathBuf;

use anyhow::Result;

/// A new directory, root's only (0700), under a name no one can take first: made here
/// and now, never one that was there. xtask runs as root; a file or link another user
/// put at a name known in advance (from the process id) had root append to, read out,
/// or write through it (a review).
pub fn private_dir(tag: &str) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let mut attempt = 0;
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "netlab-{tag}-{}-{nanos}{attempt}",
            std::process::id()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    }
}
