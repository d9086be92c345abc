//! GC (spec 1.1): removes the network's attachments that are not in
//! `cni.dev/valid-attachments`, and when no container is left takes the lab down: no
//! programs, pins, cgroup or bridge stay behind.

use std::collections::HashSet;

use super::{attachment, config::NetConf, error::CniResult, network};
use crate::{
    error::Errors,
    ops::{self, Session},
};

pub fn run(conf: &NetConf) -> CniResult<()> {
    let lab = conf.lab()?;
    let keep: HashSet<String> = conf
        .valid_attachments()?
        .iter()
        .filter_map(|(id, ifname)| attachment::container_name(id, ifname).ok())
        .collect();
    let Some(mut s) = Session::open_if_up(lab)? else {
        return Ok(());
    };
    network::check_namespace(&s.state)?;
    let stale: Vec<String> = s
        .state
        .containers
        .iter()
        .filter(|c| c.runtime_netns.is_some() && !keep.contains(&c.name))
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
