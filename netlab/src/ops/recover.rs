//! Settling what a crash interrupted (see [`super::journal`]): an operation that adds
//! something is rolled back, one that removes something is carried through. Every step
//! is idempotent: a crash during recovery is recovered the same way by the command
//! after.

use super::{Session, containers, journal::Entry, publish};
use crate::{
    error::{Errors, Result},
    lab::{Container, Published},
    netlink::netns,
    topology,
};

/// Settles the operation a crash interrupted on this lab, if any.
pub fn recover(s: &mut Session) -> Result<()> {
    let Some(entry) = s.lock.read_journal::<Entry>()? else {
        return Ok(());
    };
    match entry {
        Entry::Publish { ports } => publish::withdraw_unrecorded(s, &ports)?,
        Entry::Unpublish { ports } => {
            let recorded: Vec<Published> = ports
                .into_iter()
                .filter(|p| s.state.ports.contains(p))
                .collect();
            if !recorded.is_empty() {
                s.datapath().withdraw_leftovers(&s.state, &recorded)?;
                s.state.ports.retain(|p| !recorded.contains(p));
                s.save()?;
            }
        }
        Entry::Attach { container, ports } => {
            if s.state.container(&container.name).is_none() {
                undo_attach(s, &container)?;
            } else {
                // Made and recorded, but the operation (its ports with it) not done.
                containers::undo_run(s, &container.name, &ports)?;
            }
        }
        Entry::Detach { container } => {
            if s.state.container(&container).is_some() {
                containers::detach(s, &container)?;
            }
        }
    }
    s.lock.clear_journal()
}

/// Removes what an interrupted `attach` of `c` made: its datapath entries, its
/// interfaces and namespace (only what is provably its own: see
/// `topology::remove_container`), and the empty file its namespace would have been
/// mounted on.
fn undo_attach(s: &Session, c: &Container) -> Result<()> {
    let mut errors = Errors::default();
    errors.check(s.datapath().detach(&s.state, c));
    errors.check(topology::remove_container(&s.state, c));
    if c.runtime_netns.is_none()
        && let Some(name) = &c.netns
    {
        errors.check(netns::remove_placeholder(name));
    }
    topology::remove_unrecorded_cgroup(c);
    errors.into_result()
}
