//! A guest's file tree as a list: guest path -> host file, bytes or symlink, with
//! every program's shared libraries found by ldd. Written out as one cpio archive.
//!
//! The guest is merged-/usr like Debian 12 (`/lib` -> `usr/lib`, ...), so every path
//! is stored under `/usr` and the host's paths can be used as they are.

use std::{
    collections::BTreeMap,
    io::BufWriter,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::cpio;

enum Node {
    Dir,
    Host { source: PathBuf, executable: bool },
    Bytes { data: Vec<u8>, executable: bool },
    Symlink(String),
}

#[derive(Default)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

/// The top-level links of a merged-/usr system.
const MERGED: [(&str, &str); 4] = [
    ("bin", "usr/bin"),
    ("sbin", "usr/sbin"),
    ("lib", "usr/lib"),
    ("lib64", "usr/lib64"),
];

impl Tree {
    pub fn new() -> Tree {
        let mut tree = Tree::default();
        for (link, target) in MERGED {
            tree.dir(target);
            tree.nodes.insert(link.into(), Node::Symlink(target.into()));
        }
        tree
    }

    /// `path` and its parents.
    pub fn dir(&mut self, path: &str) {
        let path = normalise(path);
        let mut at = String::new();
        for part in path.split('/') {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            self.nodes.entry(at.clone()).or_insert(Node::Dir);
        }
    }

    pub fn host_file(&mut self, guest: &str, source: &Path, executable: bool) {
        self.insert(
            guest,
            Node::Host {
                source: source.to_path_buf(),
                executable,
            },
        );
    }

    pub fn bytes(&mut self, guest: &str, data: impl Into<Vec<u8>>, executable: bool) {
        let data = data.into();
        self.insert(guest, Node::Bytes { data, executable });
    }

    pub fn symlink(&mut self, guest: &str, target: &str) {
        self.insert(guest, Node::Symlink(target.into()));
    }

    pub fn contains(&self, guest: &str) -> bool {
        self.nodes.contains_key(&normalise(guest))
    }

    /// A program and every shared library it loads (`ldd`), libraries at their
    /// host paths.
    pub fn program(&mut self, guest: &str, source: &Path) -> Result<()> {
        self.host_file(guest, source, true);
        self.libraries(source)
    }

    /// The shared libraries `binary` loads, at their host paths.
    pub fn libraries(&mut self, binary: &Path) -> Result<()> {
        let out = Command::new("ldd")
            .arg(binary)
            .output()
            .context("run ldd")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("not a dynamic executable") || !out.status.success() {
            // Static (busybox) or not ELF: nothing to add.
            return Ok(());
        }
        for line in text.lines() {
            let line = line.trim();
            if let Some((name, _)) = line.split_once(" => not found") {
                bail!(
                    "{}: needs {name}, which the host does not have",
                    binary.display()
                );
            }
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or the loader,
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
            let path = match line.split_once(" => ") {
                Some((_, rest)) => rest,
                None => line,
            };
            let path = path.split(" (").next().unwrap_or("");
            if path.starts_with('/') {
                self.host_file(path, Path::new(path), true);
            }
        }
        Ok(())
    }

    /// Writes the tree as an uncompressed newc cpio archive; returns (files, bytes).
    pub fn write(&self, archive: &Path) -> Result<(usize, u64)> {
        let file = std::fs::File::create(archive)
            .with_context(|| format!("create {}", archive.display()))?;
        let mut w = cpio::Writer::new(BufWriter::with_capacity(1 << 20, file));
        let mut files = 0;
        for (path, node) in &self.nodes {
            match node {
                Node::Dir => w.dir(path)?,
                Node::Symlink(target) => w.symlink(path, target)?,
                Node::Bytes { data, executable } => {
                    files += 1;
                    w.file(path, *executable, data)?
                }
                Node::Host { source, executable } => {
                    files += 1;
                    let data = std::fs::read(source)
                        .with_context(|| format!("read {}", source.display()))?;
                    w.file(path, *executable, &data)?
                }
            }
        }
        let file = w.finish()?.into_inner().map_err(|e| e.into_error())?;
        Ok((files, file.metadata()?.len()))
    }

    fn insert(&mut self, guest: &str, node: Node) {
        let path = normalise(guest);
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.nodes.insert(path, node);
    }
}

/// `guest` without its leading `/`, and under `usr/` where the merged links point.
fn normalise(guest: &str) -> String {
    let path = guest.trim_start_matches('/');
    for (link, target) in MERGED {
        if let Some(rest) = path.strip_prefix(link).and_then(|r| r.strip_prefix('/')) {
            return format!("{target}/{rest}");
        }
    }
    path.to_string()
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn merged_usr_paths() {
        assert_eq!(
            normalise("/lib/x86_64-linux-gnu/libc.so.6"),
            "usr/lib/x86_64-linux-gnu/libc.so.6"
        );
        assert_eq!(
            normalise("/lib64/ld-linux-x86-64.so.2"),
            "usr/lib64/ld-linux-x86-64.so.2"
        );
        assert_eq!(normalise("/sbin/ip"), "usr/sbin/ip");
        assert_eq!(normalise("/library"), "library");
        assert_eq!(normalise("/usr/bin/curl"), "usr/bin/curl");
    }
}
