//! The journal: an operation that changes the kernel writes what it is about to do
//! (`/run/netlab/<lab>/journal.json`) before it starts, and removes it once the lab's
//! state says what the kernel now holds. A command killed at any point between leaves
//! the journal behind, and the next command on the lab, whatever it is, settles it
//! before it does anything else (`super::recover`): an operation that adds something
//! is rolled back, one that removes something is carried through. So the state and the
//! kernel agree again, and `netlab ports` never hides a port that answers.
//!
//! This module is only the record; the operations write it and `recover` reads it.

use serde::{Deserialize, Serialize};

use crate::lab::{Container, Published};

/// An operation in progress.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Entry {
    /// Ports being published: rolled back unless the state lists them.
    Publish { ports: Vec<Published> },
    /// Ports being withdrawn: carried through.
    Unpublish { ports: Vec<Published> },
    /// A container being made (with its namespace's cookie once it is known), and the
    /// ports being published with it (`run -p`): rolled back, all of it, the
    /// container too once the state lists it.
    Attach {
        container: Box<Container>,
        #[serde(default)]
        ports: Vec<Published>,
    },
    /// A container being removed: carried through.
    Detach { container: String },
}
