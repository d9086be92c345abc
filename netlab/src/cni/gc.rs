//! GC (spec 1.1): removes the network's attachments that are not in
//! `cni.dev/valid-attachments`, and when no container is left takes the lab down: no
//! programs, pins, cgroup or bridge stay behind.

use super::{attachment, config::NetConf, error::CniResult, network};
use crate::{
    error::Errors,
    lab::Container,
    ops::{self, Session},
};

pub fn run(conf: &NetConf) -> CniResult<()> {
    let lab = conf.lab()?;
    let valid = conf.valid_attachments()?;
    // An attachment is kept by its own id and interface, not by a name another pair
    // could make.
    let kept = |c: &Container| {
        valid.iter().any(|(id, ifname)| {
            attachment::container_name(id, ifname).is_ok_and(|n| n == c.name)
                && attachment::is(c, id, ifname)
        })
    };
    let Some(mut s) = Session::open_if_up(lab)? else {
        return Ok(());
    };
    network::check_namespace(&s.state)?;
    let stale: Vec<String> = s
        .state
        .containers
        .iter()
        .filter(|c| c.runtime_netns.is_some() && !kept(c))
        .map(|c| c.name.clone())
        .collect();
    let mut errors = Errors::default();
    for name in stale {
        errors.check(ops::detach(&mut s, &name));
    }
    errors.into_result()?;
    // A sandbox lab is the CLI's, whose namespaces the runtime may be running in.
    if s.state.containers.is_empty() && !s.state.sandbox {
        s.down()?;
    }
    Ok(())
}
