//! The operations on a lab — up, down, attach, detach, publish, unpublish — that every
//! front end shares: the CLI (`commands/`), the CNI plugin (`cni/`) and the benchmark.
//! Each either completes or leaves the lab as it found it, and saves the lab's state.

pub mod conflicts;
pub mod containers;
pub mod down;
pub mod exec;
pub mod publish;
pub mod up;

pub use containers::{AttachRequest, attach, check, detach, host_macs};
pub use down::down;
pub use publish::{publish, unpublish};
pub use up::{UpRequest, up};

use crate::{
    datapath::{self, Datapath},
    error::Result,
    lab::LabState,
    store::Locked,
};

/// A lab opened for operations: its lock held for as long as the session lives.
pub struct Session {
    lock: Locked,
    pub state: LabState,
}

impl Session {
    /// Opens a lab that is up, waiting for other commands on it.
    pub fn open(lab: &str) -> Result<Self> {
        let lock = Locked::acquire(lab)?;
        let state = lock.require()?;
        Ok(Self { lock, state })
    }

    /// Opens a lab if it is up; `Ok(None)` (and nothing left behind) if not.
    pub fn open_if_up(lab: &str) -> Result<Option<Self>> {
        let lock = Locked::acquire(lab)?;
        Ok(lock.load()?.map(|state| Self { lock, state }))
    }

    /// Opens the lab `req` names, bringing it up first if it is not (a CNI network on
    /// its first ADD); says whether it was brought up. Concurrent callers wait for each
    /// other: exactly one of them builds the lab.
    pub fn open_or_up(req: &UpRequest) -> Result<(Self, bool)> {
        let lock = Locked::acquire(&req.lab)?;
        match lock.load()? {
            Some(state) => Ok((Self { lock, state }, false)),
            None => {
                let state = up::build(&lock, req)?;
                Ok((Self { lock, state }, true))
            }
        }
    }

    /// Takes the lab down without letting go of its lock in between (`netlab down`).
    pub fn down(self) -> Result<()> {
        down::take_down(self.lock, Some(self.state))
    }

    /// Writes the state as it is now.
    pub fn save(&self) -> Result<()> {
        self.lock.save(&self.state)
    }

    /// The lab's datapath.
    pub fn datapath(&self) -> Box<dyn Datapath> {
        datapath::for_kind(self.state.datapath)
    }
}
