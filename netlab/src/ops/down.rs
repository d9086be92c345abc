//! `down`: remove everything a lab made, even when part of it is already gone.

use crate::{
    datapath,
    error::{Error, Errors, Result},
    lab::LabState,
    netlink::netns,
    store::Locked,
    topology,
};

pub fn down(lab: &str) -> Result<()> {
    let lock = Locked::acquire(lab)?;
    let state = lock.load()?;
    take_down(lock, state)
}

/// Removes the lab `state` describes (or, without state, what is left of it by name),
/// under its lock, and then the lock.
pub(super) fn take_down(lock: Locked, state: Option<LabState>) -> Result<()> {
    let lab = lock.lab.clone();
    let lab = lab.as_str();
    let mut errors = Errors::default();
    match state {
        Some(state) => {
            errors.check(datapath::for_kind(state.datapath).teardown(&state));
            errors.check(topology::teardown(&state));
        }
        None => {
            // No state: sweep what a crashed `up` may have left, by name.
            let leftovers: Vec<String> = std::fs::read_dir(netns::NETNS_DIR)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&format!("{lab}-")))
                .collect();
            let swept = errors.check(datapath::sweep(lab)).unwrap_or(false);
            if leftovers.is_empty() && !swept {
                errors.into_result()?;
                return Err(Error::Invalid(format!("lab {lab} does not exist")));
            }
            for ns in leftovers {
                errors.check(netns::delete(&ns));
            }
        }
    }
    errors.check(datapath::sweep(lab));
    errors.check(lock.remove());
    errors.into_result()
}
