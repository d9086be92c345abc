//! The CNI front end: `netlab-cni`, a plugin for any CNI runtime (podman, containerd,
//! CRI-O) over the same operations as the CLI. It speaks the CNI specification 1.0.0
//! (ADD, DEL, CHECK, VERSION; 0.4.0 too) and answers 1.1's STATUS and GC.
//!
//! A CNI network is the netlab lab of the same name, in the namespace the runtime runs
//! the plugin in: `netlab status/ports/conntrack/stats --lab <network>` show it. Its
//! first ADD brings the lab up; each attachment is a lab container `<id>-<ifname>`
//! whose namespace is the runtime's. The verb comes from `CNI_COMMAND`, the network
//! configuration from stdin; the result, or an error object, goes to stdout.

mod add;
mod attachment;
mod check;
mod config;
mod del;
mod env;
mod error;
mod gc;
mod ips;
mod network;
mod ports;
mod result;
mod status;
mod version;

use std::io::Read;

use config::NetConf;
use env::Command;
use error::{CniError, CniResult, code};

/// Runs one CNI verb from the process's environment and stdin, and exits.
pub fn main() -> ! {
    crate::files::own_umask();
    let var = |k: &str| std::env::var(k).ok();
    let (version, outcome) = run(&var);
    match outcome {
        Ok(Some(out)) => {
            println!("{out}");
            std::process::exit(0)
        }
        Ok(None) => std::process::exit(0),
        Err(e) => {
            println!("{}", e.to_json(&version));
            std::process::exit(1)
        }
    }
}

/// The verb's output (none for DEL, CHECK, STATUS and GC), and the version to answer in.
fn run(var: &dyn Fn(&str) -> Option<String>) -> (String, CniResult<Option<String>>) {
    let mut stdin = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut stdin) {
        let e = CniError::new(
            code::IO_FAILURE,
            format!("cannot read the network configuration: {e}"),
        );
        return (version::LATEST.into(), Err(e));
    }
    let answer_in = version::answer_in(&stdin);
    let command = match env::command(var) {
        Ok(c) => c,
        Err(e) => return (answer_in, Err(e)),
    };
    if command == Command::Version {
        return (answer_in, Ok(Some(version::run(&stdin))));
    }
    let outcome = NetConf::parse(&stdin).and_then(|conf| {
        match command {
            Command::Status => version::allows_status_and_gc(&conf.version, "STATUS")?,
            Command::Gc => version::allows_status_and_gc(&conf.version, "GC")?,
            _ => {}
        }
        if command != Command::Status && !nix::unistd::geteuid().is_root() {
            return Err(CniError::new(
                code::FAILED,
                "netlab-cni needs root (it creates links and loads eBPF programs)",
            ));
        }
        let attachment = || env::attachment(command, var);
        match command {
            Command::Add => attachment().and_then(|a| add::run(&conf, &a)).map(Some),
            Command::Del => attachment()
                .and_then(|a| del::run(&conf, &a))
                .map(|()| None),
            Command::Check => attachment()
                .and_then(|a| check::run(&conf, &a))
                .map(|()| None),
            Command::Status => status::run(&conf).map(|()| None),
            Command::Gc => gc::run(&conf).map(|()| None),
            Command::Version => unreachable!("answered above"),
        }
    });
    (answer_in, outcome)
}
