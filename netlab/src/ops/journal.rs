//! The journal: an operation that changes the kernel writes what it is about to do
//! (`/run/netlab/<lab>/journal.json`) before it starts, and removes it once the lab's
//! state says what the kernel now holds. A command killed at any point between leaves
//! the journal behind, and the next command on the lab, whatever it is, settles it
//! before it does anything else ([`recover`]): an operation that adds something is
//! rolled back, one that removes something is carried through. So the state and the
//! kernel agree again, and `netlab ports` never hides a port that answers.
//!
//! Every step of the settling is idempotent: a crash during recovery is recovered the
//! same way by the command after.

use serde::{Deserialize, Serialize};

use super::{Session, containers};
use crate::{
    error::{Errors, Result},
    lab::{Container, Published},
    netlink::netns,
    topology,
};

/// An operation in progress.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Entry {
    /// Ports being published: rolled back unless the state lists them.
    Publish { ports: Vec<Published> },
    /// Ports being withdrawn: carried through.
    Unpublish { ports: Vec<Published> },
    /// A container being made (with its namespace's cookie once it is known): rolled
    /// back unless the state lists it.
    Attach { container: Container },
    /// A container being removed: carried through.
    Detach { container: String },
}

/// Settles the operation a crash interrupted on this lab, if any.
pub fn recover(s: &mut Session) -> Result<()> {
    let Some(entry) = s.lock.read_journal::<Entry>()? else {
        return Ok(());
    };
    match entry {
        Entry::Publish { ports } => {
            let unrecorded: Vec<Published> = ports
                .into_iter()
                .filter(|p| !s.state.ports.contains(p))
                .collect();
            if !unrecorded.is_empty() {
                s.datapath().withdraw_leftovers(&s.state, &unrecorded)?;
            }
        }
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
        Entry::Attach { container } => {
            if s.state.container(&container.name).is_none() {
                undo_attach(s, &container)?;
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
    errors.into_result()
}
