//! What `exec` needs to run a command as part of a lab: the namespace a name refers to
//! (a container, `host` or `wan`), and for `host` and a `--network host` container the
//! cgroup that sees host-local publishing.

use std::path::PathBuf;

use crate::{
    datapath,
    error::{Error, Result},
    lab::{LabState, Network},
    netlink::netns,
    topology,
};

/// Where a command of a lab runs.
pub struct Target {
    /// `None`: the namespace netlab runs in (the machine's, for such a lab).
    pub netns: Option<PathBuf>,
    /// A cgroup to join first.
    pub cgroup: Option<PathBuf>,
}

/// The namespace and cgroup a name refers to.
pub fn target(state: &LabState, name: &str) -> Result<Target> {
    let host = || state.host_netns.as_deref().map(netns::path);
    let netns = match name {
        "host" => host(),
        "wan" => {
            let wan = state.wan_netns.as_deref().map(netns::path).ok_or_else(|| {
                Error::Invalid(format!(
                    "lab {} has no wan namespace: it was not started with --sandbox",
                    state.name
                ))
            })?;
            let same = match state.cookies.wan {
                Some(c) => netns::is_netns(&wan) && netns::cookie(&wan).is_ok_and(|n| n == c),
                None => netns::is_netns(&wan),
            };
            if !same {
                return Err(Error::Invalid(format!(
                    "lab {}'s wan namespace is gone (removed behind netlab's back): `netlab down --lab {}`, then bring it up again",
                    state.name, state.name
                )));
            }
            Some(wan)
        }
        _ => {
            let c = state.container(name).ok_or_else(|| {
                Error::Invalid(format!("no container {name} in lab {}", state.name))
            })?;
            // Never a namespace made again under the container's name: someone else's.
            if !topology::netns_is_the_containers(c) {
                return Err(Error::Invalid(format!(
                    "container {name}'s namespace is gone (removed behind netlab's back): `netlab rm --lab {} {name}`, then run it again",
                    state.name
                )));
            }
            match c.network {
                Network::Host => host(),
                _ => topology::container_ns(c).or_else(host),
            }
        }
    };
    // A `--network host` container's processes go in its own cgroup, so that `rm`
    // finds and ends them; it is under the lab host's when the host-local publishing
    // hooks sit on one, so they see them as the lab host's processes do.
    let host_cgroup = || datapath::for_kind(state.datapath).host_cgroup(state);
    let cgroup = match state.container(name) {
        Some(c) => match &c.cgroup {
            Some(cg) if crate::netlink::cgroup::is_the_one(cg, c.cgroup_id) => Some(cg.clone()),
            Some(cg) => {
                return Err(Error::Invalid(format!(
                    "container {name}'s cgroup {} is gone (removed behind netlab's back): `netlab rm --lab {} {name}`, then run it again",
                    cg.display(),
                    state.name
                )));
            }
            // A host-network container made before containers had cgroups of their own.
            None if c.network == Network::Host => host_cgroup()?,
            None => None,
        },
        None if name == "host" => host_cgroup()?,
        None => None,
    };
    Ok(Target { netns, cgroup })
}
