//! A private apt for the guests' packages: its own sources list, package lists and
//! download folder under the VM cache, so that fetching a Debian kernel never changes
//! the machine's apt configuration, and nothing is ever installed.
//!
//! Trust is apt's own: the sources are `signed-by` Debian's archive keyring, so
//! `apt-get update` accepts only Release files signed by Debian (apt refuses unsigned
//! or badly signed ones; nothing here allows insecure repositories), and the package
//! lists carry each package's SHA256. `apt-get download` checks the file against it,
//! and [`Apt::download`] checks it once more itself before the package is used.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// Debian's archive keys, as the machine's own Debian sources use them.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The suites the guests' packages come from: Debian 12 and its backports (6.12 and
/// iproute2 6.15, whose `ip` knows netkit).
const SUITES: &[&str] = &["bookworm", "bookworm-backports"];

/// One package version as the signed lists describe it.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: String,
    sha256: String,
    depends: String,
}

pub struct Apt {
    root: PathBuf,
}

impl Apt {
    /// The private apt rooted at `root` (created on first use).
    pub fn new(root: &Path) -> Apt {
        Apt {
            root: root.to_path_buf(),
        }
    }

    /// `-o` options that point apt at our files only: the sources list, no
    /// sources.list.d, our lists and cache, and no dpkg status (nothing is installed).
    fn options(&self) -> Vec<String> {
        let r = self.root.display();
        [
            format!("Dir::Etc::sourcelist={r}/sources.list"),
            "Dir::Etc::sourceparts=-".into(),
            format!("Dir::State::Lists={r}/lists"),
            format!("Dir::Cache={r}/cache"),
            "Dir::State::status=/dev/null".into(),
            // Downloads land in a root-only cache that apt's `_apt` user cannot
            // enter; apt would fall back to root anyway, with a warning.
            "APT::Sandbox::User=root".into(),
            // The machine's appstream hook adds DEP-11 metadata, which we never read.
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".into(),
            "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".into(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    fn command(&self, program: &str, release: Option<&str>) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(self.options());
        if let Some(release) = release {
            // Makes `release` the candidate where a package is in several suites.
            cmd.args(["-o", &format!("APT::Default-Release={release}")]);
        }
        cmd
    }

    /// Writes our sources list (the machine's Debian mirror, our suites) and fetches
    /// the signed package lists: `apt-get update`.
    pub fn update(&self) -> Result<()> {
        for dir in ["lists/partial", "cache/archives/partial", "debs"] {
            std::fs::create_dir_all(self.root.join(dir))
                .with_context(|| format!("create {}", self.root.join(dir).display()))?;
        }
        let mirror = machine_mirror()?;
        let sources: String = SUITES
            .iter()
            .map(|suite| format!("deb [signed-by={KEYRING}] {mirror} {suite} main\n"))
            .collect();
        std::fs::write(self.root.join("sources.list"), sources)?;
        println!(
            "    apt: updating the package lists of {}",
            SUITES.join(", ")
        );
        let out = self
            .command("apt-get", None)
            .args(["update", "-q"])
            .output()
            .context("run apt-get update")?;
        // apt-get update exits 0 on some failures but reports them as `W:`/`E:` lines.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let problems: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
            .collect();
        if !out.status.success() || !problems.is_empty() {
            bail!(
                "apt-get update (private lists in {}) failed: {}",
                self.root.display(),
                problems.join(" / ")
            );
        }
        Ok(())
    }

    /// The candidate version of `name` in `release`, from the signed lists.
    pub fn show(&self, name: &str, release: &str) -> Result<Package> {
        let out = self
            .command("apt-cache", Some(release))
            .args(["show", "--no-all-versions", name])
            .output()
            .context("run apt-cache show")?;
        if !out.status.success() {
            bail!(
                "apt-cache show {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
                .unwrap_or("")
                .to_string()
        };
        let package = Package {
            name: field("Package"),
            version: field("Version"),
            sha256: field("SHA256"),
            depends: field("Depends"),
        };
        if package.name != name || package.version.is_empty() || package.sha256.len() != 64 {
            bail!("apt-cache show {name} in {release}: no usable record");
        }
        Ok(package)
    }

    /// The one package a metapackage depends on, e.g. `linux-image-amd64` ->
    /// `linux-image-6.1.0-50-amd64`, in `release`.
    pub fn dependency(&self, meta: &str, release: &str) -> Result<Package> {
        let package = self.show(meta, release)?;
        let first = package
            .depends
            .split([',', '|'])
            .next()
            .unwrap_or("")
            .trim();
        let name = first.split_whitespace().next().unwrap_or("");
        if name.is_empty() {
            bail!("{meta} in {release} depends on nothing");
        }
        self.show(name, release)
    }

    /// Downloads `package` (`apt-get download NAME=VERSION`) into our cache and checks
    /// its SHA256 against the signed lists; returns the .deb's path.
    pub fn download(&self, package: &Package) -> Result<PathBuf> {
        let dir = self.root.join("debs");
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(format!(
            "{}_{}_amd64.deb",
            package.name,
            package.version.replace(':', "%3a")
        ));
        if !file.exists() {
            println!("    apt: downloading {} {}", package.name, package.version);
            crate::run(
                self.command("apt-get", None)
                    .args(["download", "-q"])
                    .arg(format!("{}={}", package.name, package.version))
                    .current_dir(&dir),
            )?;
        }
        let actual = sha256(&file)?;
        if actual != package.sha256 {
            // Gone, so that the next run downloads it again rather than trusting it.
            let _ = std::fs::remove_file(&file);
            bail!(
                "{}: SHA256 {actual}, but the signed package list says {}",
                file.display(),
                package.sha256
            );
        }
        Ok(file)
    }
}

fn sha256(file: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(file)
        .output()
        .context("run sha256sum")?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().next() {
        Some(sum) if out.status.success() => Ok(sum.to_string()),
        _ => bail!("sha256sum {} failed", file.display()),
    }
}

/// The machine's Debian mirror (not the security one), as its own apt sources name
/// it: the project reaches Debian only the way the machine is set up to.
fn machine_mirror() -> Result<String> {
    let out = Command::new("apt-get")
        .args(["indextargets", "--format", "$(REPO_URI) $(RELEASE)"])
        .output()
        .context("run apt-get indextargets")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(uri, release)| {
            !release.ends_with("-security") && !uri.contains("security") && uri.contains("debian")
        })
        .map(|(uri, _)| uri.to_string())
        .context(
            "the machine's apt sources have no Debian mirror to fetch the guests' kernels from",
        )
}
