//! `cargo xtask test`: every test of the workspace as root, then the leak check, then the
//! guest suite in a 6.1 and a 6.12 qemu guest (`cargo xtask vm`), and one closing line
//! for all of it: `N passed, N failed, N skipped`.
//!
//! A test that cannot run on this machine (a kernel feature it is about is missing)
//! writes one line to the file named by [`SKIP_LOG_ENV`] and returns; libtest prints it
//! as "ok", so it is taken out of the passed count here and listed with its reason.
//!
//! xtask makes itself the child subreaper of everything the tests start, so that a
//! process a test leaked (a daemon that outlived its test, a background server whose
//! guard never ran) comes back to it instead of to init: after the suite, any such
//! process still alive is named, killed, and fails the run. Without that a leaked
//! process holding the tests' stdout would also keep the pipe below open forever.

use std::{
    fs,
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, leaks, vm, workspace_root};

/// The variable that tells the tests where to record a skip (see `netlab_tests::skip`).
pub const SKIP_LOG_ENV: &str = "NETLAB_SKIP_LOG";

/// What the suite came to.
#[derive(Default)]
struct Counts {
    passed: u64,
    failed: u64,
    skipped: Vec<String>,
}

pub fn run(bin: &Path, args: &[String], guests: bool) -> Result<()> {
    println!("==> running every test (unit, packet, end-to-end) as root");
    let skip_dir = crate::tmp::private_dir("skipped")?;
    let skip_log = skip_dir.join("skipped");
    leaks::become_subreaper()?;
    let before = leaks::snapshot();
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--workspace",
        "--exclude",
        "netlab-ebpf",
        "--all-targets",
        // Every test binary runs, so that every failure is reported, not just the first
        // binary's.
        "--no-fail-fast",
        "--",
    ])
    .args(args)
    .env("NETLAB_BIN", bin)
    .env("NETLAB_CNI_BIN", bin.with_file_name("netlab-cni"))
    .env("NETLAB_PROMETHEUS", crate::setup::prometheus_bin()?)
    .env(SKIP_LOG_ENV, &skip_log)
    .current_dir(workspace_root());
    let (mut counts, status, orphans) = run_counting(&mut cmd)?;
    counts.skipped = fs::read_to_string(&skip_log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let _ = fs::remove_dir_all(&skip_dir);
    // A skipped test returned early and was printed as passed.
    counts.passed = counts.passed.saturating_sub(counts.skipped.len() as u64);
    for s in &counts.skipped {
        println!("skipped: {s}");
    }
    let leaks = leaks::check(&before, &orphans);
    let mut guests_failed = 0;
    if guests {
        let bins = [bin.to_path_buf(), bin.with_file_name("netlab-cni")];
        for kernel in vm::Kernel::ALL {
            // The guest printed its own lines, skips with their reasons among them.
            let guest = vm::suite(kernel, &bins).unwrap_or_else(|e| {
                println!(
                    "FAILED  {}: the guest suite did not run: {e:#}",
                    kernel.name()
                );
                vm::SuiteCounts {
                    failed: 1,
                    ..Default::default()
                }
            });
            counts.passed += guest.passed;
            counts.failed += guest.failed;
            guests_failed += guest.failed;
            counts.skipped.extend(guest.skipped);
        }
    }
    println!(
        "{} passed, {} failed, {} skipped",
        counts.passed,
        counts.failed,
        counts.skipped.len()
    );
    // Every problem named, none hiding another.
    let mut problems = Vec::new();
    if !status.success() {
        problems.push(format!("the tests failed ({status})"));
    }
    if guests_failed > 0 {
        problems.push(format!("{guests_failed} checks failed in the guests"));
    }
    if let Err(e) = leaks {
        problems.push(format!("{e:#}"));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}

/// Runs `cargo test`, echoing its output and adding up its `test result:` lines. Once
/// cargo has exited, every process that came back to xtask (see the module doc) is
/// killed with its descendants and returned by name.
fn run_counting(cmd: &mut Command) -> Result<(Counts, std::process::ExitStatus, Vec<String>)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {cmd:?}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut counts = Counts::default();
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                counts.passed += count(rest, " passed");
                counts.failed += count(rest, " failed");
            }
        }
        counts
    });
    let status = child.wait()?;
    let orphans = leaks::kill_orphans();
    let counts = reader
        .join()
        .map_err(|_| anyhow::anyhow!("output reader panicked"))?;
    Ok((counts, status, orphans))
}

/// The number before `what` in a `test result:` line (`ok. 12 passed; 0 failed; ...`).
fn count(rest: &str, what: &str) -> u64 {
    rest.split("; ")
        .find_map(|part| {
            part.trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(what)
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn result_lines_are_counted() {
        let line = "FAILED. 8 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(count(line, " passed"), 8);
        assert_eq!(count(line, " failed"), 2);
        assert_eq!(count("ok. 53 passed; 0 failed; 1 ignored", " passed"), 53);
    }
}
