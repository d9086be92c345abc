//! Boots a guest under qemu with no network device (`-nic none`: nothing in it can
//! reach the machine's network), its console on the serial port, and reads the
//! console line by line until the init's exit line, a crash or the timeout.

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

/// How qemu runs the guest's CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    /// Emulation: about 12 times slower than the host, but it boots anything.
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Accel::Kvm => &["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg => &["-accel", "tcg,thread=multi", "-cpu", "max,cx16=off"],
        }
    }
}

pub struct Boot<'a> {
    pub kernel: &'a Path,
    pub initramfs: &'a Path,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    pub timeout: Duration,
    /// The exit line's nonce.
    pub nonce: &'a str,
}

/// How a boot ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran and exited with this code.
    Exited(i32),
    /// The guest stopped without the exit line: a kernel panic, init dying, qemu
    /// failing. The text is what qemu said, if anything.
    Crashed(String),
    /// Still running at the timeout; qemu was killed.
    TimedOut,
}

/// Boots `boot`, handing each console line to `line` (CR stripped, the exit line
/// kept back), and returns how it ended. qemu is never left running.
pub fn run(boot: &Boot, mut line: impl FnMut(&str)) -> Result<Outcome> {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-nodefaults", "-no-user-config", "-nic", "none"])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .args(["-machine", "q35", "-no-reboot"])
        .args(boot.accel.args())
        .args(["-smp", &boot.cpus.to_string()])
        .args(["-m", &format!("{}M", boot.memory_mib)])
        .arg("-kernel")
        .arg(boot.kernel)
        .arg("-initrd")
        .arg(boot.initramfs)
        // quiet: only kernel errors on the console; panic=-1: a panic reboots at
        // once, and -no-reboot turns that into qemu exiting. netlab.accel tells the
        // guest's `netlab bench` what kind of machine it measures.
        .arg("-append")
        .arg(format!(
            "console=ttyS0 quiet panic=-1 oops=panic netlab.accel={}",
            boot.accel.name()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: prctl is async-signal-safe and touches nothing of the parent's.
    unsafe {
        // qemu dies with us, even when we are killed and no Drop runs.
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .context("start qemu-system-x86_64 (cargo xtask setup installs it)")?;
    let guard = Kill(&mut child);

    let (tx, rx) = mpsc::channel();
    let stdout = guard.0.stdout.take().expect("piped stdout");
    let stderr = guard.0.stderr.take().expect("piped stderr");
    let console = std::thread::spawn(move || {
        for l in BufReader::new(stdout).split(b'\n') {
            let Ok(l) = l else { break };
            let text = String::from_utf8_lossy(&l)
                .trim_end_matches('\r')
                .to_string();
            if tx.send(text).is_err() {
                break;
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&l);
            text.push('\n');
        }
        text
    });

    let deadline = Instant::now() + boot.timeout;
    let exit_prefix = format!("netlab-vm-exit {} ", boot.nonce);
    let mut code = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(text) => match text.strip_prefix(&exit_prefix) {
                Some(rc) => code = rc.trim().parse().ok(),
                None => line(&text),
            },
            // The console closed: qemu is gone.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                drop(guard);
                let _ = console.join();
                return Ok(Outcome::TimedOut);
            }
        }
    }
    let status = guard.0.wait()?;
    drop(guard);
    let _ = console.join();
    let said = errors.join().unwrap_or_default();
    Ok(match code {
        Some(code) if status.success() => Outcome::Exited(code),
        _ => Outcome::Crashed(said.trim().to_string()),
    })
}

/// Kills and reaps qemu when dropped (a timeout, an error, a panic).
struct Kill<'a>(&'a mut std::process::Child);

impl Drop for Kill<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// KVM if it can boot this kernel, else TCG. This machine's /dev/kvm (a PVM module)
/// cannot boot a stock kernel, and only a boot tells: `probe` boots the real kernel
/// with a tiny initramfs under KVM once, and the answer is kept in `memo` for this
/// host kernel and qemu.
pub fn choose_accel(memo: &Path, probe: impl FnOnce() -> Result<Outcome>) -> Result<Accel> {
    if let Ok(forced) = std::env::var("NETLAB_VM_ACCEL") {
        return match forced.as_str() {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => anyhow::bail!("NETLAB_VM_ACCEL={other}: use kvm or tcg"),
        };
    }
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Ok(Accel::Tcg);
    }
    let key = host_key();
    if let Ok(text) = std::fs::read_to_string(memo)
        && let Some((k, v)) = text.trim().rsplit_once(' ')
        && k == key
    {
        return Ok(if v == "kvm" { Accel::Kvm } else { Accel::Tcg });
    }
    println!("    /dev/kvm is there: checking that it boots a stock kernel (once)");
    let accel = match probe()? {
        Outcome::Exited(0) => Accel::Kvm,
        outcome => {
            let why = match outcome {
                Outcome::Crashed(said) if !said.is_empty() => {
                    said.lines().next().unwrap_or("").to_string()
                }
                Outcome::TimedOut => "no answer in time".into(),
                _ => "the guest did not come up".into(),
            };
            println!("    KVM cannot boot it ({why}): using TCG");
            Accel::Tcg
        }
    };
    std::fs::write(memo, format!("{key} {}\n", accel.name()))?;
    Ok(accel)
}

/// The host kernel and the qemu binary: what decides whether KVM works.
fn host_key() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let qemu = which("qemu-system-x86_64")
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .unwrap_or(0);
    format!("{}/qemu-{qemu}", release.trim())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
