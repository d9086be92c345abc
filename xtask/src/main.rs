//! `cargo xtask setup | test | fuzz | demo | vm`: orchestration only (the eBPF object is
//! built by netlab/build.rs). Needs root, as netlab does.

mod demo;
mod leaks;
mod setup;
mod suite;
mod tmp;
mod vm;

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
    /// Set up, build, and run every test (unit, packet and end-to-end), then the guest
    /// suite in a 6.1 and a 6.12 qemu guest.
    Test {
        /// Skip the guests (the host's suites only).
        #[arg(long)]
        no_vm: bool,
        /// Extra arguments for the test binaries (a filter, --nocapture, ...).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build, and fuzz the TC programs against the reference model: random
    /// valid flows and malformed frames, every output checked (the suite runs 10,000
    /// of each family).
    Fuzz {
        /// How many cases of each family (each a lab configuration and up to 40 steps).
        #[arg(long, default_value_t = 1_000_000,
              value_parser = clap::value_parser!(u32).range(1..))]
        cases: u32,
        /// The address family: 4, 6, or both.
        #[arg(long, default_value = "4,6", value_parser = ["4", "6", "4,6"])]
        family: String,
    },
    /// Set up, build, and walk through a sandbox lab.
    Demo,
    /// Set up, build, and run a command as root in a qemu guest booting a Debian kernel
    /// (6.1 or 6.12), with netlab and its tools: `cargo xtask vm --kernel 6.12 -- e2e`.
    Vm(vm::Args),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    require_root()?;
    match cli.command {
        Task::Setup => setup::run(),
        Task::Test { no_vm, args } => {
            setup::run()?;
            let bin = build_netlab()?;
            suite::run(&bin, &args, !no_vm)
        }
        Task::Fuzz { cases, family } => {
            setup::run()?;
            fuzz(cases, &family)
        }
        Task::Demo => {
            setup::run()?;
            let bin = build_netlab()?;
            demo::run(&bin)
        }
        Task::Vm(args) => {
            setup::run()?;
            let code = vm::run(&args)?;
            std::process::exit(code)
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

pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn build_netlab() -> Result<std::path::PathBuf> {
    Ok(build_netlab_bins(false)?.remove(0))
}

/// Builds netlab and netlab-cni (debug, or release); returns their paths.
fn build_netlab_bins(release: bool) -> Result<Vec<std::path::PathBuf>> {
    println!(
        "==> building netlab{}",
        if release { " (release)" } else { "" }
    );
    let mut cmd = cargo();
    cmd.args(["build", "--package", "netlab"]);
    if release {
        cmd.arg("--release");
    }
    run(cmd.current_dir(workspace_root()))?;
    let dir = workspace_root().join(if release {
        "target/release"
    } else {
        "target/debug"
    });
    Ok(vec![dir.join("netlab"), dir.join("netlab-cni")])
}

/// Runs the fuzz tests of `family` ("4", "6" or "4,6") with `cases` cases each, one
/// after the other; they print the outcomes they saw.
fn fuzz(cases: u32, family: &str) -> Result<()> {
    let bin = build_netlab()?;
    println!(
        "==> fuzzing the TC programs against the model: {cases} cases of each family ({family})"
    );
    let before = leaks::snapshot();
    let mut cmd = cargo();
    // Optimised: the kernel's work per frame is the same, the harness's (generating
    // cases, the model, dumping the tables) several times smaller.
    cmd.args([
        "test",
        "--release",
        "--package",
        "netlab-tests",
        "--test",
        "fuzz",
        "--",
        "--nocapture",
        "--test-threads",
        "1",
    ]);
    match family {
        "4" => cmd.arg("the_datapath_does_what_the_model_says"),
        "6" => cmd.arg("the_ipv6_datapath_does_what_the_model_says"),
        _ => cmd.args(["--skip", "a_withdrawn"]),
    };
    cmd.env("NETLAB_BIN", &bin)
        .env("NETLAB_FUZZ_CASES", cases.to_string())
        .current_dir(workspace_root());
    let result = run(&mut cmd);
    let leaks = leaks::check(&before, &[]);
    result?;
    leaks
}
