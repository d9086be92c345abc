//! The operations on a lab — up, down, attach, detach, publish, unpublish — that every
//! front end shares: the CLI (`commands/`), the CNI plugin (`cni/`) and the benchmark.
//! Each either completes or leaves the lab as it found it, and saves the lab's state.

pub mod conflicts;
pub mod containers;
pub mod down;
pub mod exec;
pub mod journal;
mod pick;
pub mod publish;
mod recover;
pub mod up;

pub use containers::{AttachRequest, attach, check, detach, host_macs};
pub use down::down;
pub use publish::{publish, unpublish};
pub use up::{UpRequest, up};

use crate::{
    datapath::{self, Datapath},
    error::{Error, Result},
    lab::{DatapathKind, LabState, Network},
    store::Locked,
    topology,
};

/// A lab opened for operations: its lock held for as long as the session lives.
pub struct Session {
    lock: Locked,
    pub state: LabState,
}

/// Refuses a lab whose eBPF datapath is pinned where the pins cannot be seen (see
/// [`crate::datapath::ebpf::pins::require_visible`]), or whose namespaces, pins or
/// cgroups are in mounts other than this process sees (see [`crate::lab::mounts`]),
/// before anything reads or changes it.
pub(crate) fn mounts_visible(state: &LabState) -> Result<()> {
    visible(state, true)
}

/// The same for reading the lab's figures (`metrics`): its own namespaces, pins and
/// cgroups, not its containers' (a runtime's container that died without a DEL leaves
/// a namespace of its record behind until the next ADD; the lab's figures are whole
/// without it).
pub(crate) fn figures_visible(state: &LabState) -> Result<()> {
    visible(state, false)
}

fn visible(state: &LabState, containers: bool) -> Result<()> {
    if state.datapath == DatapathKind::Ebpf && state.datapath_made {
        crate::datapath::ebpf::pins::require_visible(&state.name)?;
    }
    if !state.mounts.elsewhere() {
        return Ok(());
    }
    if let Some(ns) = unseen_namespace(state, containers) {
        return Err(crate::lab::mounts::elsewhere(
            &state.name,
            &format!("its namespace {} is", ns.display()),
        ));
    }
    let cgroups = state.datapath == DatapathKind::Ebpf
        || state.containers.iter().any(|c| c.network == Network::Host);
    state.mounts.require_same(&state.name, cgroups)
}

/// The first of the lab's namespaces (its host's, wan's, and with `containers` its
/// containers') that is no namespace file here.
fn unseen_namespace(state: &LabState, containers: bool) -> Option<std::path::PathBuf> {
    let ctrs = || state.containers.iter().filter(|_| containers);
    let named = [&state.host_netns, &state.wan_netns]
        .into_iter()
        .chain(ctrs().map(|c| &c.netns))
        .flatten()
        .map(|n| crate::netlink::netns::path(n));
    let runtime = ctrs().filter_map(|c| c.runtime_netns.clone());
    named
        .chain(runtime)
        .find(|p| !crate::netlink::netns::is_netns(p))
}

/// Why a lab whose state exists cannot be used as it is.
enum Unusable {
    /// `up` was interrupted: the state records what it made.
    Unfinished,
    /// `down` was interrupted: the state records what may be left.
    TakenDownPartly,
    /// Its host namespace is gone, or was made again under its name.
    Gone,
}

impl Session {
    /// Opens a lab that is up, waiting for other commands on it, and settles an
    /// operation a crash interrupted (see [`journal`]). A lab whose namespace is gone
    /// is gone: what is left of it is removed, and the error says so.
    pub fn open(lab: &str) -> Result<Self> {
        let lock = Locked::acquire(lab)?;
        let state = lock.require()?;
        mounts_visible(&state)?;
        match unusable(&state) {
            None => Self::settled(lock, state),
            Some(Unusable::Unfinished) => Err(Error::Invalid(format!(
                "lab {lab} was not brought up completely (`netlab up` was interrupted): run `netlab down --lab {lab}`"
            ))),
            Some(Unusable::TakenDownPartly) => Err(Error::Invalid(format!(
                "lab {lab} was partly taken down (a `netlab down`, or the cleanup of a failed command, was cut short): run `netlab down --lab {lab}`"
            ))),
            Some(Unusable::Gone) => {
                let host = describe_host(&state);
                down::clean(&lock, &state)?;
                Err(Error::Invalid(format!(
                    "lab {lab} is gone: its host namespace {host} was removed (or made again) behind netlab's back; what was left of the lab is removed now: run `netlab up --lab {lab}`"
                )))
            }
        }
    }

    /// Opens a lab if it is up; `Ok(None)` (and nothing left behind) if not. What is
    /// left of a lab that is gone, or whose `up` was interrupted, is removed.
    pub fn open_if_up(lab: &str) -> Result<Option<Self>> {
        let lock = Locked::acquire(lab)?;
        let Some(state) = lock.load()? else {
            return Ok(None);
        };
        mounts_visible(&state)?;
        if unusable(&state).is_some() {
            down::clean(&lock, &state)?;
            return Ok(None);
        }
        Self::settled(lock, state).map(Some)
    }

    /// Opens the lab `req` names, bringing it up first if it is not (a CNI network on
    /// its first ADD); says whether it was brought up. Concurrent callers wait for each
    /// other: exactly one of them builds the lab. A lab that is gone (its namespace
    /// removed and made again, as a runtime does) or half made is cleaned away and
    /// brought up anew, which is said on stderr.
    pub fn open_or_up(req: &UpRequest) -> Result<(Self, bool)> {
        let lock = Locked::acquire(&req.lab)?;
        if let Some(state) = lock.load()? {
            mounts_visible(&state)?;
            let Some(why) = unusable(&state) else {
                return Ok((Self::settled(lock, state)?, false));
            };
            down::clean(&lock, &state)?;
            let why = match why {
                Unusable::Gone => format!("its namespace {} is gone", describe_host(&state)),
                Unusable::Unfinished => "an earlier `up` of it was interrupted".to_string(),
                Unusable::TakenDownPartly => {
                    "an earlier `down` or cleanup of it was cut short".to_string()
                }
            };
            eprintln!(
                "netlab: lab {} was cleaned away ({why}) and is brought up anew",
                req.lab
            );
        }
        let state = up::build(&lock, req)?;
        Ok((Self { lock, state }, true))
    }

    /// A usable lab, with an interrupted operation settled.
    fn settled(lock: Locked, state: LabState) -> Result<Self> {
        let mut s = Self { lock, state };
        recover::recover(&mut s)?;
        Ok(s)
    }

    /// Takes the lab down without letting go of its lock in between (`netlab down`).
    pub fn down(self) -> Result<()> {
        down::take_down(self.lock, Some(self.state))
    }

    /// Writes the state as it is now.
    pub fn save(&self) -> Result<()> {
        self.lock.save(&self.state)
    }

    /// Records an operation before it changes the kernel (see [`journal`]).
    fn begin(&self, entry: &journal::Entry) -> Result<()> {
        self.lock.write_journal(entry)
    }

    /// The operation is recorded in the state: its journal goes.
    fn commit(&self) -> Result<()> {
        self.lock.clear_journal()
    }

    /// The lab's datapath.
    pub fn datapath(&self) -> Box<dyn Datapath> {
        datapath::for_kind(self.state.datapath)
    }
}

fn unusable(state: &LabState) -> Option<Unusable> {
    if state.taking_down {
        Some(Unusable::TakenDownPartly)
    } else if state.building {
        Some(Unusable::Unfinished)
    } else if !topology::host_is_the_labs(state) {
        Some(Unusable::Gone)
    } else {
        None
    }
}

fn describe_host(state: &LabState) -> String {
    match &state.host_netns {
        Some(name) => name.clone(),
        None => "(the machine's own)".into(),
    }
}
