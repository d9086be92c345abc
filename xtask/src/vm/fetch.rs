//! The VM cache: Debian packages fetched once by the private apt, unpacked with
//! `dpkg-deb -x` (never installed), and kept, so that a second run downloads nothing.
//!
//! Lives in `$NETLAB_VM_CACHE`, else `$XDG_CACHE_HOME/netlab-vm`, else
//! `~/.cache/netlab-vm`, outside the work tree: `cargo clean` keeps it and every
//! checkout shares it. Its lock is held for a whole run, from fetching to power-off, so
//! that a machine runs one guest at a time: a TCG guest keeps every CPU busy.

use std::{
    cell::Cell,
    fs::File,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::{
    apt::{Apt, Package},
    kernel::{Kernel, Unpacked},
};

/// The backports iproute2 (6.15): bookworm's `ip` does not know netkit.
const IPROUTE2: (&str, &str) = ("bookworm-backports", "iproute2");

/// Prometheus and promtool for `netlab metrics`' tests: unpacked, never installed, so
/// that no Prometheus service is started (or enabled) on the machine.
const PROMETHEUS: (&str, &str) = ("bookworm", "prometheus");

pub struct Cache {
    dir: PathBuf,
    apt: Apt,
    /// Whether this run already refreshed the package lists.
    updated: Cell<bool>,
    _lock: File,
}

impl Cache {
    pub fn open() -> Result<Cache> {
        let dir = cache_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let lock = File::create(dir.join("lock"))?;
        if lock.try_lock().is_err() {
            println!(
                "    waiting for another guest to finish (lock {})",
                dir.join("lock").display()
            );
            lock.lock().context("lock the VM cache")?;
        }
        Ok(Cache {
            apt: Apt::new(&dir.join("apt")),
            dir,
            updated: Cell::new(false),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The unpacked kernel of `kernel`'s series, its modules decompressed and indexed
    /// for busybox's modprobe. `refresh` asks the archive for a newer one.
    pub fn kernel(&self, kernel: Kernel, refresh: bool) -> Result<Unpacked> {
        let dest = self.dir.join(format!("linux-{}", kernel.name()));
        let (suite, meta) = kernel.source();
        self.unpacked(&dest, refresh, |apt| {
            let package = apt.dependency(meta, suite)?;
            if !package.name.starts_with(kernel.package_prefix()) {
                bail!(
                    "{meta} in {suite} now depends on {}, not a {} kernel",
                    package.name,
                    kernel.name()
                );
            }
            Ok(package)
        })?;
        let unpacked = Unpacked::open(&dest)?;
        index_modules(&unpacked)?;
        Ok(unpacked)
    }

    /// The unpacked backports iproute2 (`sbin/ip` and friends).
    pub fn iproute2(&self, refresh: bool) -> Result<PathBuf> {
        let dest = self.dir.join("iproute2");
        self.unpacked(&dest, refresh, |apt| {
            let package = apt.show(IPROUTE2.1, IPROUTE2.0)?;
            let mut numbers = package
                .version
                .split(['.', '-'])
                .map(|n| n.parse().unwrap_or(0));
            let version: (u32, u32) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
            // netkit came with Linux 6.7, and with iproute2 6.7.
            if version < (6, 7) {
                bail!(
                    "iproute2 in {} is {}, too old to know netkit",
                    IPROUTE2.0,
                    package.version
                );
            }
            Ok(package)
        })?;
        Ok(dest)
    }

    /// The unpacked Prometheus package: `usr/bin/prometheus` and `usr/bin/promtool`;
    /// returns that `usr/bin`.
    pub fn prometheus(&self) -> Result<PathBuf> {
        let dest = self.dir.join("prometheus");
        self.unpacked(&dest, false, |apt| apt.show(PROMETHEUS.1, PROMETHEUS.0))?;
        Ok(dest.join("usr/bin"))
    }

    /// Makes `dest` the unpacked package that `resolve` names, unless it already is
    /// one and no `refresh` was asked for. `dest/PACKAGE` records which one it is.
    fn unpacked(
        &self,
        dest: &Path,
        refresh: bool,
        resolve: impl FnOnce(&Apt) -> Result<Package>,
    ) -> Result<()> {
        let stamp = dest.join("PACKAGE");
        let have = std::fs::read_to_string(&stamp).ok();
        if have.is_some() && !refresh {
            return Ok(());
        }
        if !self.updated.replace(true) {
            self.apt.update()?;
        }
        let package = resolve(&self.apt)?;
        let wanted = format!("{} {}\n", package.name, package.version);
        if have.as_deref() == Some(wanted.as_str()) {
            return Ok(());
        }
        let deb = self.apt.download(&package)?;
        let fresh = dest.with_extension("new");
        let _ = std::fs::remove_dir_all(&fresh);
        std::fs::create_dir_all(&fresh)?;
        println!(
            "    unpacking {} (dpkg-deb -x, not installed)",
            deb.display()
        );
        crate::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&fresh))?;
        std::fs::write(fresh.join("PACKAGE"), &wanted)?;
        let _ = std::fs::remove_dir_all(dest);
        std::fs::rename(&fresh, dest)?;
        // The unpacked tree is the cache; the package itself is not needed again.
        let _ = std::fs::remove_file(&deb);
        Ok(())
    }
}

fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NETLAB_VM_CACHE") {
        return dir.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
        });
    base.join("netlab-vm")
}

/// Decompresses the modules (busybox's modprobe loads plain `.ko` files) and writes
/// `modules.dep` and `modules.alias` with busybox's depmod, which the package leaves to
/// its postinst. Done once per unpacked kernel.
fn index_modules(kernel: &Unpacked) -> Result<()> {
    let modules = kernel.root.join(kernel.modules_rel());
    if modules.join("modules.dep").exists() {
        return Ok(());
    }
    println!("    indexing the modules of {}", kernel.release);
    // Each tool removes what it decompressed (xz by default, zstd with --rm).
    for (ext, tool) in [
        ("xz", &["xz", "-d", "-q"][..]),
        ("zst", &["zstd", "-d", "-q", "--rm"]),
    ] {
        let mut files = Vec::new();
        collect(&modules, &format!(".ko.{ext}"), &mut files)?;
        for chunk in files.chunks(200) {
            let status = Command::new(tool[0])
                .args(&tool[1..])
                .args(chunk)
                .status()
                .with_context(|| format!("run {}", tool[0]))?;
            if !status.success() {
                bail!(
                    "{} could not decompress the modules in {}",
                    tool[0],
                    modules.display()
                );
            }
        }
    }
    crate::run(
        Command::new("busybox")
            .args(["depmod", "-b"])
            .arg(&kernel.root)
            .arg(&kernel.release),
    )
}

fn collect(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let e = e?;
        let path = e.path();
        if e.file_type()?.is_dir() {
            collect(&path, suffix, out)?;
        } else if path.to_string_lossy().ends_with(suffix) {
            out.push(path);
        }
    }
    Ok(())
}
