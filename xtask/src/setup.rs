//! `cargo xtask setup`: make a fresh Debian machine ready, skipping what is there.

use std::process::Command;

use anyhow::{Context as _, Result};

use crate::run as sh;

/// Debian packages: LLVM 22 for bpf-linker, the tools the tests and demo drive, and qemu
/// for the guests.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "iproute2",
    "iputils-ping",
    "iptables",
    "nftables",
    "conntrack",
    "iperf3",
    // `netlab bench --tool sockperf`: an independent request/response client for b.
    "sockperf",
    "ethtool",
    "traceroute",
    "socat",
    "curl",
    "python3",
    "bpftool",
    // `netlab metrics`' tests: hping3 floods a lab with SYNs and UDP (Prometheus and
    // promtool are unpacked into the VM cache instead: `prometheus_bin`).
    "hping3",
    // The crash tests kill a command at an exact system call (`strace -e inject`).
    "strace",
    // netlab-cni's tests drive podman (CNI backend), which runs busybox roots with runc.
    "podman",
    "runc",
    "conmon",
    "busybox-static",
    // `cargo xtask vm`: qemu runs the guests; busybox-static above is their init and
    // shell, and indexes their kernel's modules. The kernels themselves are fetched
    // into a cache, never installed.
    "qemu-system-x86",
];

const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";

/// PATH with LLVM 22 first (an older llvm-config on PATH breaks the bpf-linker build)
/// and cargo's bin directory present.
pub fn path_with_tools() -> String {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{LLVM_PREFIX}/bin:{home}/.cargo/bin:{path}")
}

pub fn run() -> Result<()> {
    println!("==> setup: checking packages, nightly rust-src and bpf-linker");
    packages()?;
    rust_src()?;
    bpf_linker()?;
    let bin = prometheus_bin()?;
    println!("    prometheus and promtool: {}", bin.display());
    println!("==> setup: ready");
    Ok(())
}

/// Where Prometheus and promtool are: Debian's package unpacked (never installed: the
/// package would start and enable a Prometheus service on the machine) into the VM
/// cache on first use. `cargo xtask test` hands it to the tests as `NETLAB_PROMETHEUS`.
pub fn prometheus_bin() -> Result<std::path::PathBuf> {
    crate::vm::fetch::Cache::open()?.prometheus()
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        println!("    packages: all {} present", PACKAGES.len());
        return Ok(());
    }
    println!("    packages: installing {}", missing.join(" "));
    sh(Command::new("apt-get").arg("update").arg("-q"))?;
    sh(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn rust_src() -> Result<()> {
    let out = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("run rustup (is rustup installed?)")?;
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        println!("    nightly rust-src: present");
        return Ok(());
    }
    println!("    nightly rust-src: installing");
    sh(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn bpf_linker() -> Result<()> {
    let have = Command::new("bpf-linker")
        .arg("--version")
        .env("PATH", path_with_tools())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
        .unwrap_or(false);
    if have {
        println!("    bpf-linker {BPF_LINKER_VERSION}: present");
        return Ok(());
    }
    println!("    bpf-linker {BPF_LINKER_VERSION}: building against LLVM 22 (a few minutes)");
    sh(crate::cargo()
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
        ])
        .args(["--no-default-features", "--features", "llvm-22"])
        .env("LLVM_PREFIX", LLVM_PREFIX))
}
