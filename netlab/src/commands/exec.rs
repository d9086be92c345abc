//! `netlab exec NAME -- CMD`: run a command in a container's namespace, or in the lab's
//! `host` or `wan` namespace. The command replaces netlab (its exit code is the result).

use std::{os::unix::process::CommandExt, path::PathBuf, process::Command};

use crate::{
    datapath::{DatapathKind, ebpf},
    error::{Error, Result},
    netlink::netns,
    state::{LabState, Locked, Network},
};

#[derive(clap::Args)]
pub struct Args {
    /// A container, `host` or `wan`.
    pub name: String,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// The namespace a name refers to; `None` means the namespace netlab runs in.
pub fn namespace_of(state: &LabState, name: &str) -> Result<Option<PathBuf>> {
    match name {
        "host" => Ok(state.host_netns.as_deref().map(netns::path)),
        "wan" => state
            .wan_netns
            .as_deref()
            .map(|n| Some(netns::path(n)))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "lab {} has no wan namespace: it was not started with --sandbox",
                    state.name
                ))
            }),
        _ => {
            let c = state.container(name).ok_or_else(|| {
                Error::Invalid(format!("no container {name} in lab {}", state.name))
            })?;
            Ok(match (c.network, &c.netns) {
                (Network::Host, _) | (_, None) => state.host_netns.as_deref().map(netns::path),
                (_, Some(ns)) => Some(netns::path(ns)),
            })
        }
    }
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    let (ns, state) = {
        let lock = Locked::acquire(lab)?;
        let state = lock.require()?;
        (namespace_of(&state, &args.name)?, state)
    };
    if args.name == "host" && state.datapath == DatapathKind::Ebpf {
        // Host-local publishing works on the sockets of the lab's cgroup.
        ebpf::cgroup::join(&state)?;
    }
    if let Some(ns) = ns {
        // netlab is single-threaded here: the exec'd command inherits this namespace.
        netns::enter(&ns)?;
    }
    let err = Command::new(&args.command[0])
        .args(&args.command[1..])
        .exec();
    Err(Error::Invalid(format!(
        "cannot run {}: {err}",
        args.command[0]
    )))
}
