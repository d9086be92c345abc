//! Library errors. `anyhow` appears only at the edges (main, xtask).

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the user: the message names the thing and what to do.
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// A netlink request failed.
    #[error("{op} {name}: {source}")]
    Netlink {
        /// The operation, as `ip` would name it ("add veth").
        op: &'static str,
        /// The object it was applied to.
        name: String,
        source: rtnetlink::Error,
    },
    /// A system call or file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Loading, attaching or pinning the eBPF datapath failed.
    #[error("eBPF {op}: {detail}")]
    Ebpf { op: &'static str, detail: String },
    /// An external command (iptables, nft) failed.
    #[error("{command}: {detail}")]
    Command { command: String, detail: String },
    /// `exec` could not start the command (exit 127 when it is not found, 126 when it
    /// cannot be run, as a shell and `docker exec` do).
    #[error("cannot run {program}: {source}")]
    CannotRun {
        program: String,
        source: std::io::Error,
    },
    /// Stopped by a signal (SIGINT, SIGTERM, SIGHUP, SIGPIPE), after cleaning up; the
    /// exit code is the shell's for a death by that signal, 128 + its number.
    #[error("interrupted")]
    Interrupted(i32),
    /// Several teardown steps failed; all were attempted.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Many(Vec<Error>),
}

impl Error {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub fn ebpf(op: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Ebpf {
            op,
            detail: detail.to_string(),
        }
    }

    /// Exit code for the CLI: 2 for bad input and conflicts, 127/126 for a command
    /// `exec` cannot start, 128 + the signal when interrupted (130 for Ctrl-C, 143 for
    /// SIGTERM, 141 for a closed pipe), 1 for failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Invalid(_) | Self::Conflict(_) => 2,
            Self::CannotRun { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => 127,
                _ => 126,
            },
            Self::Interrupted(signal) => 128 + signal,
            _ => 1,
        }
    }
}

/// Collects errors from teardown steps that must all run.
#[derive(Default)]
pub struct Errors(Vec<Error>);

impl Errors {
    pub fn check<T>(&mut self, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> Result<()> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.into_iter().next().expect("one error")),
            _ => Err(Error::Many(self.0)),
        }
    }
}
