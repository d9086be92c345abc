//! `down`: remove everything a lab made, and only that, even when part of it is
//! already gone. What the lab made is what its state records (namespaces by their
//! cookies, links by their marks, the datapath's own pins, rules and cgroup); a lab
//! without state has nothing netlab could call its own, and `down` removes nothing.

use super::journal::Entry;
use crate::{
    datapath,
    error::{Error, Errors, Result},
    lab::LabState,
    netlink::{cgroup, netns},
    store::Locked,
    topology,
};

/// `netlab down`: refused, unless `force`, while a CNI runtime's container is attached
/// and running (its namespace still there), as `docker network rm` and `podman network
/// rm` refuse a network with endpoints: the container would be cut off without a word
/// while its runtime still shows it up, with its ports.
pub fn down(lab: &str, force: bool) -> Result<()> {
    let lock = Locked::acquire(lab)?;
    let state = lock.load()?;
    if let Some(state) = &state {
        super::mounts_visible(state)?;
        if !force {
            refuse_attached(state)?;
            refuse_hosting(state)?;
        }
    }
    take_down(lock, state)
}

/// A sandbox whose host namespace another lab lives in (a CNI network a runtime in
/// the sandbox made): taking the namespace away would leave that lab gone, its
/// runtime's containers cut off. Refused unless `--force`, as a network with
/// containers is.
fn refuse_hosting(state: &LabState) -> Result<()> {
    let Some(cookie) = state.cookies.host.filter(|_| state.sandbox) else {
        return Ok(());
    };
    // By the namespace's identity: a name is only one of the ways to reach it.
    let guests: Vec<String> = crate::store::other_labs(&state.name)?
        .into_iter()
        .filter(|o| o.cookies.host == Some(cookie))
        .map(|o| o.name)
        .collect();
    if guests.is_empty() {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "lab {} hosts lab {} in its namespace {} (a lab brought up there, or a CNI network of a runtime running there): take {} down first, or cut {} off with `netlab down --lab {} --force`",
        state.name,
        guests.join(", "),
        state.host_netns.as_deref().unwrap_or_default(),
        if guests.len() == 1 { "it" } else { "them" },
        if guests.len() == 1 { "it" } else { "them" },
        state.name
    )))
}

fn refuse_attached(state: &LabState) -> Result<()> {
    let running: Vec<&str> = state
        .containers
        .iter()
        .filter(|c| c.runtime_netns.is_some() && topology::netns_is_the_containers(c))
        .map(|c| {
            let id = c.runtime_id.as_deref().unwrap_or(&c.name);
            id.get(..12).unwrap_or(id)
        })
        .collect();
    if running.is_empty() {
        return Ok(());
    }
    let more = if running.len() > 3 { ", ..." } else { "" };
    Err(Error::Invalid(format!(
        "lab {} has {} container(s) a CNI runtime attached that still run ({}{more}): remove them with the runtime first (`podman rm -f ID`), or cut them off with `netlab down --lab {} --force`",
        state.name,
        running.len(),
        running[..running.len().min(3)].join(", "),
        state.name
    )))
}

/// Removes the lab `state` describes, under its lock, and then the lock.
pub(super) fn take_down(lock: Locked, state: Option<LabState>) -> Result<()> {
    let Some(state) = state else {
        return Err(Error::Invalid(format!("lab {} does not exist", lock.lab)));
    };
    // A signal (Ctrl-C) waits until the lab is gone: `down` never stops half-way but
    // by SIGKILL, after which the state says the lab is partly taken down.
    let (done, _) = crate::signals::hold(|| clean(&lock, &state));
    done
}

/// Removes what the lab made, as its state records it, and a container an
/// interrupted `run` was making (its journal); then the state. Every step runs and
/// errors are collected; when any failed, the state stays, so that `down` can be run
/// again.
pub(super) fn clean(lock: &Locked, state: &LabState) -> Result<()> {
    // Marked first: a lab cut short from here on can only be taken down.
    if !state.taking_down {
        lock.save(&LabState {
            taking_down: true,
            ..state.clone()
        })?;
    }
    let mut errors = Errors::default();
    let dp = datapath::for_kind(state.datapath);
    if let Ok(Some(Entry::Attach { container, .. })) = lock.read_journal::<Entry>()
        && state.container(&container.name).is_none()
    {
        // Its datapath entries go with the datapath's teardown below (which also
        // works when the datapath is gone already, as its entries then are).
        errors.check(topology::remove_container(state, &container));
        if let (None, Some(name)) = (&container.runtime_netns, &container.netns) {
            errors.check(netns::remove_placeholder(name));
        }
        // Before the datapath's teardown, which removes the lab's cgroup it may be in
        // (before, that then failed for good: "Device or resource busy", a review).
        topology::remove_unrecorded_cgroup(&container);
    }
    // Before the datapath's teardown: a host-network container's cgroup may be under
    // the lab's own, which that removes.
    for c in &state.containers {
        if let Some(cg) = &c.cgroup {
            errors.check(cgroup::remove(cg, c.cgroup_id));
        }
    }
    if state.datapath_made {
        errors.check(dp.teardown(state));
    }
    errors.check(topology::teardown(state));
    errors.into_result()?;
    lock.forget()
}
