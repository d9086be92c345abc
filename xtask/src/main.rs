//! `cargo xtask setup | test | fuzz | demo`: orchestration only (the eBPF object is built by
//! netlab/build.rs). Needs root, as netlab does.

mod demo;
mod setup;

use std::process::Command;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing netlab needs (idempotent).
    Setup,
    /// Set up, build, and run every test (unit, packet and end-to-end).
    Test {
        /// Extra arguments for the test binaries (a filter, --nocapture, ...).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build, and fuzz the TC programs against the reference model: random
    /// valid flows and malformed frames, every output checked (the suite runs 10,000).
    Fuzz {
        /// How many cases (each a lab configuration and up to 40 steps).
        #[arg(long, default_value_t = 1_000_000,
              value_parser = clap::value_parser!(u32).range(1..))]
        cases: u32,
    },
    /// Set up, build, and walk through a sandbox lab.
    Demo,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    require_root()?;
    match cli.command {
        Task::Setup => setup::run(),
        Task::Test { args } => {
            setup::run()?;
            test(&args)
        }
        Task::Fuzz { cases } => {
            setup::run()?;
            fuzz(cases)
        }
        Task::Demo => {
            setup::run()?;
            let bin = build_netlab()?;
            demo::run(&bin)
        }
    }
}

fn require_root() -> Result<()> {
    let out = Command::new("id").arg("-u").output().context("run id -u")?;
    if String::from_utf8_lossy(&out.stdout).trim() != "0" {
        bail!(
            "netlab needs root: it creates network namespaces and loads eBPF programs. Run this as root."
        );
    }
    Ok(())
}

/// A `cargo` command with LLVM 22 first on PATH (bpf-linker links against it).
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.env("PATH", setup::path_with_tools());
    c
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn build_netlab() -> Result<std::path::PathBuf> {
    println!("==> building netlab");
    run(cargo()
        .args(["build", "--package", "netlab"])
        .current_dir(workspace_root()))?;
    Ok(workspace_root().join("target/debug/netlab"))
}

fn test(args: &[String]) -> Result<()> {
    let bin = build_netlab()?;
    println!("==> running every test (unit, packet, end-to-end) as root");
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--workspace",
        "--exclude",
        "netlab-ebpf",
        "--all-targets",
        "--",
    ])
    .args(args)
    .env("NETLAB_BIN", &bin)
    .env("NETLAB_CNI_BIN", bin.with_file_name("netlab-cni"))
    .current_dir(workspace_root());
    let result = run_counting(&mut cmd);
    let leaks = leak_check();
    let (passed, failed) = result?;
    leaks?;
    // One closing line for the whole suite, whatever cargo printed last.
    println!("{passed} passed, {failed} failed");
    Ok(())
}

/// Runs the fuzz test with `cases` cases; it prints the outcomes it saw.
fn fuzz(cases: u32) -> Result<()> {
    let bin = build_netlab()?;
    println!("==> fuzzing the TC programs against the model: {cases} cases");
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--package",
        "netlab-tests",
        "--test",
        "fuzz",
        "--",
        "--nocapture",
    ])
    .env("NETLAB_BIN", &bin)
    .env("NETLAB_FUZZ_CASES", cases.to_string())
    .current_dir(workspace_root());
    let result = run(&mut cmd);
    let leaks = leak_check();
    result?;
    leaks
}

/// Runs `cargo test`, echoing its output, and adds up its `test result:` lines.
fn run_counting(cmd: &mut Command) -> Result<(u64, u64)> {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("run {cmd:?}"))?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |what: &str| -> u64 {
                rest.split("; ")
                    .find_map(|part| {
                        part.trim_start_matches("ok. ")
                            .trim_start_matches("FAILED. ")
                            .strip_suffix(what)
                    })
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0)
            };
            passed += count(" passed");
            failed += count(" failed");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        println!("{passed} passed, {failed} failed");
        bail!("{cmd:?} failed with {status}");
    }
    Ok((passed, failed))
}

/// After the suite: no test or benchmark namespace, lab state, pin or bpffs mount of
/// ours is left, and no netlab rule reached the machine's own namespace.
fn leak_check() -> Result<()> {
    let mut left = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if (name.starts_with('t') || name.starts_with("bench_")) && name.contains('_') {
                left.push(format!("netns {name}"));
            }
        }
    }
    // Read-only listings of the machine's own rules.
    for (tool, args) in [
        ("iptables-nft-save", &[][..]),
        ("iptables-legacy-save", &[][..]),
        ("nft", &["list", "ruleset"][..]),
    ] {
        if let Ok(out) = Command::new(tool).args(args).output()
            && String::from_utf8_lossy(&out.stdout)
                .to_lowercase()
                .contains("netlab")
        {
            left.push(format!("netlab rules in the machine's namespace ({tool})"));
        }
    }
    // The podman tests' private directories and cgroups, and the cgroups of labs.
    for (dir, prefix) in [
        ("/tmp", "netlab-podman-"),
        ("/sys/fs/cgroup", "netlab-"),
        ("/sys/fs/cgroup/unified", "netlab-"),
    ] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(prefix) {
                left.push(format!("{dir}/{name}"));
            }
        }
    }
    for e in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        for c in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
            let name = c.file_name().to_string_lossy().to_string();
            if name.starts_with("netlab-podman-") {
                left.push(c.path().display().to_string());
            }
        }
    }
    for p in ["/run/netlab", "/sys/fs/bpf/netlab", "/run/netlab.bpffs"] {
        if std::path::Path::new(p).exists() {
            left.push(p.to_string());
        }
    }
    left.sort();
    left.dedup();
    if !left.is_empty() {
        bail!("the tests left these behind: {}", left.join(", "));
    }
    println!("==> leak check: nothing left behind");
    Ok(())
}
