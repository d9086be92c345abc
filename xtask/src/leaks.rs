//! What the tests must not leave behind: processes, namespaces, lab state, pins, bpffs
//! mounts, cgroups, podman's directories, and netlab rules in the machine's own
//! namespace.

use std::process::Command;

use anyhow::{Result, bail};

/// Makes xtask the child subreaper of everything it starts: a process whose parent
/// exits comes back to xtask, not to init, so that [`kill_orphans`] finds it.
pub fn become_subreaper() -> Result<()> {
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        bail!(
            "prctl(PR_SET_CHILD_SUBREAPER): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// `(pid, parent pid, command line)` of every process.
fn processes() -> Vec<(i32, i32, String)> {
    let mut all = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .replace('\0', " ")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        all.push((pid, ppid, cmdline));
    }
    all
}

/// Kills every process that came back to xtask (its parent died while it lived on),
/// and their descendants, and reaps them; returns them as `pid command line`. Called
/// once the test run has exited, when xtask should have no children at all.
pub fn kill_orphans() -> Vec<String> {
    let me = std::process::id() as i32;
    let all = processes();
    let mut doomed: Vec<i32> = Vec::new();
    let mut names = Vec::new();
    for (pid, ppid, cmd) in &all {
        if *ppid == me && !cmd.is_empty() {
            doomed.push(*pid);
            names.push(format!("process {pid} ({cmd})"));
        }
    }
    // Their descendants, level by level.
    let mut i = 0;
    while i < doomed.len() {
        let parent = doomed[i];
        doomed.extend(all.iter().filter(|p| p.1 == parent).map(|p| p.0));
        i += 1;
    }
    for pid in &doomed {
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    // Reap what comes back to us: the killed ones (and their children, reparented to
    // us as their parents die), and zombies of orphans that had exited on their own.
    for _ in 0..200 {
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        if doomed
            .iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    names
}

/// What of ours is on the machine now (before the suite, so that what was there
/// already is not counted as the suite's): test and benchmark namespaces, lab state,
/// pins, bpffs mounts, cgroups, podman's directories, netlab rules in the machine's
/// own namespace.
pub fn snapshot() -> Vec<String> {
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
        ("ip6tables-nft-save", &[][..]),
        ("ip6tables-legacy-save", &[][..]),
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
    // The tests' private directories (`private_dir`: podman's among them), podman's
    // cgroups, and the cgroups of labs.
    for (dir, prefix) in [
        ("/tmp", "netlab-"),
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
    // Each lab's state and pins by name, so that one a user's lab keeps there does
    // not hide a leaked one.
    for dir in ["/run/netlab", "/sys/fs/bpf/netlab"] {
        let entries: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        if entries.is_empty() && std::path::Path::new(dir).exists() {
            left.push(dir.to_string());
        }
        for e in entries {
            let labs: Vec<_> = std::fs::read_dir(e.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|l| l.path().display().to_string())
                .collect();
            // The pins' layout version directories hold the labs.
            if dir == "/sys/fs/bpf/netlab" && !labs.is_empty() {
                left.extend(labs);
            } else {
                left.push(e.path().display().to_string());
            }
        }
    }
    if std::path::Path::new("/run/netlab.bpffs").exists() {
        left.push("/run/netlab.bpffs".to_string());
    }
    left.sort();
    left.dedup();
    left
}

/// After the suite: no process the tests started is alive (`orphans`, from
/// [`kill_orphans`]), and nothing of [`snapshot`]'s kinds is there that was not there
/// before (`before`). What was there before is named, as not the suite's.
pub fn check(before: &[String], orphans: &[String]) -> Result<()> {
    let now = snapshot();
    let older: Vec<&String> = now.iter().filter(|n| before.contains(n)).collect();
    if !older.is_empty() {
        let older: Vec<&str> = older.iter().map(|s| s.as_str()).collect();
        println!(
            "==> leak check: there before the suite, so not counted: {}",
            older.join(", ")
        );
    }
    let left: Vec<String> = orphans
        .iter()
        .map(|o| format!("{o}, killed now"))
        .chain(now.into_iter().filter(|n| !before.contains(n)))
        .collect();
    if !left.is_empty() {
        bail!("the tests left these behind: {}", left.join(", "));
    }
    println!("==> leak check: nothing left behind");
    Ok(())
}
