//! `netlab exec NAME [--] CMD`: run a command in a container's namespace, or in the lab's
//! `host` or `wan` namespace. The command replaces netlab (its exit code is the result).

use std::{os::unix::process::CommandExt, process::Command};

use crate::{
    error::{Error, Result},
    netlink::netns,
    ops::{Session, exec},
};

#[derive(clap::Args)]
pub struct Args {
    /// Docker's `exec -i`/`-t`/`-it`, taken as Docker users type them: stdin and the
    /// terminal are the command's already.
    #[arg(short = 'i', long = "interactive", hide = true)]
    pub _interactive: bool,
    #[arg(short = 't', long = "tty", hide = true)]
    pub _tty: bool,
    /// A container, `host` or `wan`.
    pub name: String,
    /// The command and its arguments, after `--` or, as in `docker exec`, without it.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    // The cgroup and the namespace are entered under the lab's lock, where they were
    // checked: an `rm` or `down` then comes before (and the name is refused) or after
    // (and finds this process in them, and ends it). Entered after the lock, an `rm`
    // in between had this command run on in a namespace removed and out of reach.
    let s = Session::open(lab)?;
    let target = exec::target(&s.state, &args.name)?;
    if let Some(cg) = &target.cgroup {
        crate::netlink::cgroup::join(cg)?;
    }
    if let Some(ns) = &target.netns {
        // netlab is single-threaded here: the exec'd command inherits this namespace.
        netns::enter(ns)?;
    }
    // Not held by the command, which runs with the user's umask.
    drop(s);
    crate::files::user_umask();
    let source = Command::new(&args.command[0])
        .args(&args.command[1..])
        .exec();
    Err(Error::CannotRun {
        program: args.command[0].clone(),
        source,
    })
}
