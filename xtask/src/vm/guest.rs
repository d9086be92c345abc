//! What a guest's initramfs holds: busybox as init and shell, the freshly built netlab
//! binaries, the tools netlab and the guest suite drive (from the host's Debian
//! packages, `ip` from the backports iproute2), their libraries, and the kernel's
//! networking modules with busybox's modprobe, which the kernel calls to load them
//! on demand as it would on a Debian system.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use super::{kernel::Unpacked, tree::Tree};

/// The guest's init: mounts, runs the command, reports its exit code, powers off.
const INIT: &str = include_str!("init.sh");

/// Host programs copied in at their own paths, with their libraries.
const HOST_PROGRAMS: &[&str] = &[
    "/usr/sbin/nft",
    "/usr/sbin/xtables-nft-multi",
    "/usr/sbin/xtables-legacy-multi",
    "/usr/sbin/conntrack",
    "/usr/sbin/ethtool",
    "/usr/sbin/bpftool",
    "/usr/bin/iperf3",
    "/usr/bin/curl",
    "/usr/bin/ping",
    "/usr/bin/socat",
];

/// iptables' names, as Debian 12 sets them up: plain `iptables` is the nft variant.
const IPTABLES_LINKS: &[(&str, &str)] = &[
    ("iptables", "xtables-nft-multi"),
    ("iptables-save", "xtables-nft-multi"),
    ("iptables-restore", "xtables-nft-multi"),
    ("iptables-nft", "xtables-nft-multi"),
    ("iptables-nft-save", "xtables-nft-multi"),
    ("iptables-nft-restore", "xtables-nft-multi"),
    ("ip6tables", "xtables-nft-multi"),
    ("ip6tables-save", "xtables-nft-multi"),
    ("ip6tables-restore", "xtables-nft-multi"),
    ("ip6tables-nft", "xtables-nft-multi"),
    ("ip6tables-nft-save", "xtables-nft-multi"),
    ("ip6tables-nft-restore", "xtables-nft-multi"),
    ("iptables-legacy", "xtables-legacy-multi"),
    ("iptables-legacy-save", "xtables-legacy-multi"),
    ("iptables-legacy-restore", "xtables-legacy-multi"),
    ("ip6tables-legacy", "xtables-legacy-multi"),
    ("ip6tables-legacy-save", "xtables-legacy-multi"),
    ("ip6tables-legacy-restore", "xtables-legacy-multi"),
];

/// iptables loads its matches and targets with dlopen, which ldd cannot see.
const XTABLES_EXTENSIONS: &str = "/usr/lib/x86_64-linux-gnu/xtables";

/// The backports iproute2's programs: package path -> guest path.
const IPROUTE2_PROGRAMS: &[(&str, &str)] = &[
    ("bin/ip", "/usr/bin/ip"),
    ("bin/ss", "/usr/bin/ss"),
    ("sbin/tc", "/usr/sbin/tc"),
    ("sbin/bridge", "/usr/sbin/bridge"),
];

/// Host files the tools read: protocol and service names.
const HOST_ETC: &[&str] = &["/etc/protocols", "/etc/services"];

/// Where the modules the guest may load come from, with whatever they depend on: all
/// of `net/`, the libraries and crypto that the kernel asks for by name rather than
/// by symbol (libcrc32c, which conntrack needs, loads `crypto-crc32c` at init), and
/// the virtual network devices (`drivers/net/*.ko`, not the hardware drivers below).
const MODULE_TREES: &[&str] = &[
    "kernel/net/",
    "kernel/lib/",
    "kernel/crypto/",
    "kernel/arch/x86/crypto/",
];
const MODULE_DIRS: &[&str] = &["kernel/drivers/net/"];

pub struct Inputs<'a> {
    pub kernel: &'a Unpacked,
    pub iproute2: &'a Path,
    /// netlab and netlab-cni, as built (they are stripped on the way in).
    pub netlab_bins: &'a [PathBuf],
    /// Scripts for /usr/local/bin: guest name -> host file.
    pub scripts: &'a [(&'a str, PathBuf)],
    /// Where stripped copies go.
    pub scratch: &'a Path,
    /// The command, as one shell line, and the nonce of its exit line.
    pub command: &'a str,
    pub nonce: &'a str,
}

pub fn build(inputs: &Inputs) -> Result<Tree> {
    let mut tree = Tree::new();
    for dir in [
        "proc", "sys", "dev", "run", "tmp", "root", "etc", "var/tmp", "mnt",
    ] {
        tree.dir(dir);
    }
    tree.bytes("init", INIT, true);
    tree.bytes(
        "vm/cmd.sh",
        format!(
            "# the command given to cargo xtask vm\n{}\n",
            inputs.command
        ),
        false,
    );
    tree.bytes("vm/nonce", format!("{}\n", inputs.nonce), false);
    etc(&mut tree)?;
    tools(&mut tree)?;
    iproute2(&mut tree, inputs.iproute2)?;
    netlab(&mut tree, inputs)?;
    modules(&mut tree, inputs.kernel)?;
    // The suite reads what the kernel was built with (flowtables, netkit).
    let config = inputs.kernel.config();
    let name = config.file_name().context("config name")?.to_string_lossy();
    tree.host_file(&format!("/boot/{name}"), &config, false);
    // Last: busybox fills in every command no real tool provides.
    busybox(&mut tree)?;
    Ok(tree)
}

/// The smallest guest that runs a command: busybox and the init. The KVM probe.
pub fn minimal(command: &str, nonce: &str) -> Result<Tree> {
    let mut tree = Tree::new();
    for dir in ["proc", "sys", "dev", "run", "tmp", "root", "etc"] {
        tree.dir(dir);
    }
    tree.bytes("init", INIT, true);
    tree.bytes("vm/cmd.sh", format!("{command}\n"), false);
    tree.bytes("vm/nonce", format!("{nonce}\n"), false);
    etc(&mut tree)?;
    busybox(&mut tree)?;
    Ok(tree)
}

fn etc(tree: &mut Tree) -> Result<()> {
    tree.bytes("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", false);
    tree.bytes("etc/group", "root:x:0:\n", false);
    tree.bytes("etc/hosts", "127.0.0.1 localhost\n::1 localhost\n", false);
    tree.bytes("etc/nsswitch.conf", "hosts: files\n", false);
    tree.bytes("etc/hostname", "netlab-vm\n", false);
    for file in HOST_ETC {
        tree.host_file(file, Path::new(file), false);
    }
    Ok(())
}

fn tools(tree: &mut Tree) -> Result<()> {
    for program in HOST_PROGRAMS {
        let path = Path::new(program);
        if !path.exists() {
            bail!("{program} is missing on this machine: run `cargo xtask setup`");
        }
        tree.program(program, path)?;
    }
    // Debian's traceroute is an alternative (`/usr/bin/traceroute.db`).
    let traceroute = Path::new("/usr/bin/traceroute.db");
    if !traceroute.exists() {
        bail!(
            "{} is missing on this machine: run `cargo xtask setup`",
            traceroute.display()
        );
    }
    tree.program("/usr/bin/traceroute", traceroute)?;
    for (name, target) in IPTABLES_LINKS {
        tree.symlink(&format!("/usr/sbin/{name}"), target);
    }
    for e in std::fs::read_dir(XTABLES_EXTENSIONS)
        .with_context(|| format!("read {XTABLES_EXTENSIONS}"))?
    {
        let path = e?.path();
        tree.host_file(&path.to_string_lossy(), &path, false);
        tree.libraries(&path)?;
    }
    Ok(())
}

fn iproute2(tree: &mut Tree, root: &Path) -> Result<()> {
    for (from, to) in IPROUTE2_PROGRAMS {
        tree.program(to, &root.join(from))?;
    }
    let data = root.join("usr/share/iproute2");
    for e in std::fs::read_dir(&data).with_context(|| format!("read {}", data.display()))? {
        let path = e?.path();
        if path.is_file() {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            tree.host_file(&format!("/usr/share/iproute2/{name}"), &path, false);
        }
    }
    Ok(())
}

/// netlab's binaries without their debug information (a debug build is ~100 MB of
/// it), under /usr/local/bin, and the scripts beside them.
fn netlab(tree: &mut Tree, inputs: &Inputs) -> Result<()> {
    std::fs::create_dir_all(inputs.scratch)?;
    for bin in inputs.netlab_bins {
        let name = bin.file_name().context("binary name")?.to_string_lossy();
        let stripped = inputs.scratch.join(name.as_ref());
        crate::run(
            std::process::Command::new("strip")
                .arg("--strip-debug")
                .arg("-o")
                .arg(&stripped)
                .arg(bin),
        )?;
        tree.program(&format!("/usr/local/bin/{name}"), &stripped)?;
    }
    for (name, source) in inputs.scripts {
        tree.host_file(&format!("/usr/local/bin/{name}"), source, true);
    }
    Ok(())
}

/// The seeds' modules and their dependencies (modules.dep), and the index files, at
/// /lib/modules/R.
fn modules(tree: &mut Tree, kernel: &Unpacked) -> Result<()> {
    let rel = kernel.modules_rel();
    let dir = kernel.root.join(&rel);
    let dep = std::fs::read_to_string(dir.join("modules.dep"))
        .with_context(|| format!("read {}/modules.dep", dir.display()))?;
    let mut wanted = BTreeSet::new();
    for line in dep.lines() {
        let Some((module, deps)) = line.split_once(':') else {
            continue;
        };
        let in_dir = |d: &&str| module.strip_prefix(d).is_some_and(|m| !m.contains('/'));
        if MODULE_TREES.iter().any(|t| module.starts_with(t)) || MODULE_DIRS.iter().any(in_dir) {
            wanted.insert(module.to_string());
            wanted.extend(deps.split_whitespace().map(str::to_string));
        }
    }
    // modules.dep lists every dependency of a module, not only its direct ones.
    for module in &wanted {
        let path = dir.join(module);
        tree.host_file(&format!("/{}/{module}", rel.display()), &path, false);
    }
    for index in [
        "modules.dep",
        "modules.alias",
        "modules.symbols",
        "modules.order",
        "modules.builtin",
    ] {
        let path = dir.join(index);
        if path.exists() {
            tree.host_file(&format!("/{}/{index}", rel.display()), &path, false);
        }
    }
    Ok(())
}

/// dash as the shell, and busybox for every other command no real tool provides, and as
/// modprobe, which the kernel runs. Not busybox's sh: Debian builds it to prefer its
/// own applets, so its scripts would run busybox's `ip` and `ping`, not the real ones.
fn busybox(tree: &mut Tree) -> Result<()> {
    tree.program("/usr/bin/dash", Path::new("/usr/bin/dash"))?;
    tree.symlink("/usr/bin/sh", "dash");
    let busybox = Path::new("/usr/bin/busybox");
    tree.program("/usr/bin/busybox", busybox)?;
    let out = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .context("run busybox --list (is busybox-static installed?)")?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let taken = ["/usr/bin/", "/usr/sbin/", "/usr/local/bin/"]
            .iter()
            .any(|d| tree.contains(&format!("{d}{applet}")));
        if !taken && applet != "busybox" {
            tree.symlink(&format!("/usr/bin/{applet}"), "busybox");
        }
    }
    // The kernel's request_module runs /sbin/modprobe.
    tree.symlink("/usr/sbin/modprobe", "../bin/busybox");
    Ok(())
}
