//! `cargo xtask vm --kernel 6.1|6.12 -- CMD...`: runs CMD as root in a qemu guest
//! booting one of the Debian kernels users have, with the freshly built netlab and
//! the tools its tests use, and returns CMD's exit code.
//!
//! Kernel and iproute2 come from Debian's archive through a private apt (fetch, apt);
//! the guest's root is an initramfs assembled here (guest, tree, cpio); qemu runs it
//! with no network device, under KVM where KVM can boot a stock kernel, else TCG.

mod apt;
mod cpio;
pub mod fetch;
mod guest;
pub mod kernel;
mod outfiles;
mod qemu;
mod tree;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

pub use kernel::Kernel;
use qemu::Outcome;

/// Exit codes of `cargo xtask vm` when the command never finished (as timeout(1)).
pub const EXIT_TIMEOUT: i32 = 124;
pub const EXIT_CRASH: i32 = 125;

#[derive(clap::Args)]
pub struct Args {
    /// The guest kernel: Debian 12's 6.1, or 6.12 from bookworm-backports.
    #[arg(long)]
    pub kernel: Kernel,
    /// Put the release build of netlab in the guest (default: the debug build).
    #[arg(long)]
    pub release: bool,
    /// The guest's memory, in MiB.
    #[arg(long, default_value_t = 2048)]
    pub memory: u32,
    /// The guest's CPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Kill the guest after this many seconds.
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
    /// Ask Debian's archive for a newer kernel and iproute2 than the cached ones.
    #[arg(long)]
    pub refresh: bool,
    /// Copy the files the command leaves in the guest's /root/out (e.g. `netlab bench
    /// --json out/bench.json`) into this directory; they come out over the console.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The command, run by the guest's shell as root in /root (`e2e` is the guest
    /// suite).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `cargo xtask vm`: builds netlab, boots, streams the console, returns the command's
/// exit code (124 on a timeout, 125 when the guest crashed).
pub fn run(args: &Args) -> Result<i32> {
    let bins = crate::build_netlab_bins(args.release)?;
    let outcome = boot(args, &bins, |l| println!("{l}"))?;
    Ok(report(&outcome))
}

/// Prints how the guest ended, if it did not end by itself; returns the exit code.
pub fn report(outcome: &Outcome) -> i32 {
    match outcome {
        Outcome::Exited(code) => *code,
        Outcome::TimedOut => {
            eprintln!("netlab-vm: the guest did not finish in time and was killed");
            EXIT_TIMEOUT
        }
        Outcome::Crashed(said) => {
            eprintln!(
                "netlab-vm: the guest stopped without reporting an exit code (kernel panic, init died or qemu failed){}{said}",
                if said.is_empty() { "" } else { ": " }
            );
            EXIT_CRASH
        }
    }
}

/// Fetches what the guest needs (cached), builds its initramfs and boots it, handing
/// each console line to `line`.
pub fn boot(args: &Args, netlab_bins: &[PathBuf], mut line: impl FnMut(&str)) -> Result<Outcome> {
    // Before anything else: a directory that cannot be made fails now, not after the
    // guest ran.
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let started = Instant::now();
    println!("==> VM: Linux {} guest", args.kernel.name());
    let cache = fetch::Cache::open()?;
    let kernel = cache.kernel(args.kernel, args.refresh)?;
    let iproute2 = cache.iproute2(args.refresh)?;
    let fetched = started.elapsed();

    let work = crate::workspace_root()
        .join("target/vm")
        .join(args.kernel.name());
    std::fs::create_dir_all(&work)?;
    let nonce = nonce()?;
    let command = shell_line(&args.command);
    let suite = crate::workspace_root().join("tests/vm/e2e.sh");
    let tree = guest::build(&guest::Inputs {
        kernel: &kernel,
        iproute2: &iproute2,
        netlab_bins,
        scripts: &[("e2e", suite)],
        scratch: &work.join("bin"),
        command: &command,
        nonce: &nonce,
    })?;
    let initramfs = work.join("initramfs.cpio");
    let (files, bytes) = tree.write(&initramfs)?;

    let accel = qemu::choose_accel(&cache.dir().join("accel"), || {
        probe(&kernel.image(), &work.join("probe.cpio"))
    })?;
    println!(
        "    kernel {} ({}); qemu {}, {} CPUs, {} MiB; initramfs {files} files, {} MiB; prepared in {:.1} s (fetch {:.1} s)",
        kernel.release,
        package_of(&kernel.root),
        match accel {
            qemu::Accel::Kvm => "KVM",
            qemu::Accel::Tcg => "TCG (emulated: about 12x slower than the host)",
        },
        args.cpus,
        args.memory,
        bytes >> 20,
        started.elapsed().as_secs_f64(),
        fetched.as_secs_f64(),
    );
    println!("    $ {command}");
    let booted = Instant::now();
    let mut files = outfiles::Collector::new(&nonce);
    let outcome = qemu::run(
        &qemu::Boot {
            kernel: &kernel.image(),
            initramfs: &initramfs,
            accel,
            memory_mib: args.memory,
            cpus: args.cpus,
            timeout: Duration::from_secs(args.timeout),
            nonce: &nonce,
        },
        |l| {
            if !files.take(l) {
                line(l)
            }
        },
    )?;
    match &args.out {
        Some(dir) => files.write(dir)?,
        None if !files.files.is_empty() => println!(
            "    the guest left {} file(s) in /root/out: --out DIR copies them",
            files.files.len()
        ),
        None => {}
    }
    println!(
        "==> VM: Linux {} guest done in {:.1} s: {}",
        args.kernel.name(),
        booted.elapsed().as_secs_f64(),
        match &outcome {
            Outcome::Exited(code) => format!("exit {code}"),
            Outcome::TimedOut => format!("killed after {} s", args.timeout),
            Outcome::Crashed(_) => "crashed".into(),
        }
    );
    Ok(outcome)
}

/// A KVM boot of `image` with busybox alone, running `true`.
fn probe(image: &Path, archive: &Path) -> Result<Outcome> {
    let nonce = nonce()?;
    guest::minimal("true", &nonce)?.write(archive)?;
    qemu::run(
        &qemu::Boot {
            kernel: image,
            initramfs: archive,
            accel: qemu::Accel::Kvm,
            memory_mib: 512,
            cpus: 1,
            timeout: Duration::from_secs(60),
            nonce: &nonce,
        },
        |_| {},
    )
}

/// The package an unpacked tree came from (its stamp).
fn package_of(root: &Path) -> String {
    std::fs::read_to_string(root.join("PACKAGE"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Random hex, so that no output of the command can pose as the exit line.
fn nonce() -> Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The command as one shell line, each word quoted unless it is plainly safe.
fn shell_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c));
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the guest suite counted; `skipped` holds its skip lines, reasons included.
#[derive(Default)]
pub struct SuiteCounts {
    pub passed: u64,
    pub failed: u64,
    pub skipped: Vec<String>,
}

/// The guest suite's closing line, `e2e: N passed, N failed, N skipped`.
fn suite_counts(line: &str) -> Option<(u64, u64, u64)> {
    let rest = line.strip_prefix("e2e: ")?;
    let mut n = rest.split(", ").map(|part| {
        part.split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
    });
    Some((n.next()??, n.next()??, n.next()??))
}

/// Runs the guest suite on `kernel` for `cargo xtask test`. A crash, a timeout, or an
/// exit code or skip count that disagrees with the summary counts as one failure.
pub fn suite(kernel: Kernel, netlab_bins: &[PathBuf]) -> Result<SuiteCounts> {
    let args = Args {
        kernel,
        release: false,
        memory: 2048,
        cpus: 2,
        timeout: 1200,
        refresh: false,
        out: None,
        command: vec!["e2e".into()],
    };
    let mut summary = None;
    let mut skipped = Vec::new();
    let outcome = boot(&args, netlab_bins, |l| {
        println!("{l}");
        if l.starts_with("skipped ") {
            skipped.push(l.to_string());
        }
        if let Some(c) = suite_counts(l) {
            summary = Some(c);
        }
    })?;
    let code = report(&outcome);
    let Some((passed, failed, skips)) = summary else {
        println!(
            "FAILED  {}: the guest suite gave no summary (exit {code})",
            kernel.name()
        );
        return Ok(SuiteCounts {
            failed: 1,
            skipped,
            ..Default::default()
        });
    };
    let consistent = (code == 0) == (failed == 0) && skips == skipped.len() as u64;
    if !consistent {
        println!(
            "FAILED  {}: the guest suite exited {code} after {failed} failed and {skips} skipped ({} skip lines)",
            kernel.name(),
            skipped.len()
        );
    }
    Ok(SuiteCounts {
        passed,
        failed: failed + u64::from(!consistent),
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_guest_shell() {
        let words = [
            "netlab",
            "bench",
            "--datapath",
            "ebpf,nftables",
            "it's",
            "a b",
            "",
        ];
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            shell_line(&words),
            r"netlab bench --datapath ebpf,nftables 'it'\''s' 'a b' ''"
        );
    }

    #[test]
    fn the_suite_summary_is_read() {
        assert_eq!(
            suite_counts("e2e: 40 passed, 1 failed, 5 skipped"),
            Some((40, 1, 5))
        );
        assert_eq!(suite_counts("ok e2e: x"), None);
    }
}
