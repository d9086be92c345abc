//! The kernels users have, as Debian ships them: which package each one is, and what
//! its unpacked tree holds.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kernel {
    /// Debian 12's own kernel (bookworm): no tcx, no netkit.
    #[value(name = "6.1")]
    V6_1,
    /// Debian 13's kernel, as bookworm-backports builds it (the cloud flavour: netkit
    /// built in, flowtables as modules, no 9p).
    #[value(name = "6.12")]
    V6_12,
}

impl Kernel {
    pub const ALL: [Kernel; 2] = [Kernel::V6_1, Kernel::V6_12];

    pub fn name(self) -> &'static str {
        match self {
            Kernel::V6_1 => "6.1",
            Kernel::V6_12 => "6.12",
        }
    }

    /// The suite and metapackage that name the current kernel of this series.
    pub fn source(self) -> (&'static str, &'static str) {
        match self {
            Kernel::V6_1 => ("bookworm", "linux-image-amd64"),
            Kernel::V6_12 => ("bookworm-backports", "linux-image-cloud-amd64"),
        }
    }

    /// What the metapackage's dependency must be called, so that a metapackage that
    /// moved on to another series is noticed rather than booted.
    pub fn package_prefix(self) -> &'static str {
        match self {
            Kernel::V6_1 => "linux-image-6.1.0-",
            Kernel::V6_12 => "linux-image-6.12.",
        }
    }
}

/// An unpacked kernel package: `boot/vmlinuz-R` and `lib/modules/R/`.
pub struct Unpacked {
    pub root: PathBuf,
    /// The kernel release (`uname -r`).
    pub release: String,
}

impl Unpacked {
    /// Finds the one kernel image in `root`.
    pub fn open(root: &Path) -> Result<Unpacked> {
        let boot = root.join("boot");
        let release = std::fs::read_dir(&boot)
            .with_context(|| format!("read {}", boot.display()))?
            .flatten()
            .find_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_prefix("vmlinuz-").map(str::to_string)
            });
        match release {
            Some(release) => Ok(Unpacked {
                root: root.to_path_buf(),
                release,
            }),
            None => bail!("no boot/vmlinuz-* in {}", root.display()),
        }
    }

    pub fn image(&self) -> PathBuf {
        self.root
            .join("boot")
            .join(format!("vmlinuz-{}", self.release))
    }

    /// `lib/modules/R`, relative to the package root (as in the guest).
    pub fn modules_rel(&self) -> PathBuf {
        PathBuf::from("lib/modules").join(&self.release)
    }

    pub fn config(&self) -> PathBuf {
        self.root
            .join("boot")
            .join(format!("config-{}", self.release))
    }
}
