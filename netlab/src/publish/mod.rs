//! Port publishing: Docker's `-p` specs, and the mappings a lab keeps in its state.

pub mod conflicts;
pub mod spec;

pub use spec::{PortSpec, Proto};

use crate::{
    datapath,
    error::{Error, Result},
    state::{LabState, Network, Published},
    topology,
};

/// The lowest mapping id not in use (ids start at 1).
fn free_id(state: &LabState, taken: &[u32]) -> u32 {
    (1..)
        .find(|i| !state.ports.iter().any(|p| p.id == *i) && !taken.contains(i))
        .expect("an id")
}

/// Validates `specs` for `container` and publishes them all, or none.
pub fn publish(
    state: &mut LabState,
    container: &str,
    specs: &[PortSpec],
) -> Result<Vec<Published>> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let c = state
        .container(container)
        .ok_or_else(|| Error::Invalid(format!("no container {container} in lab {}", state.name)))?;
    let ctr_ip = match (c.network, c.ip) {
        (Network::Bridge, Some(ip)) => ip,
        _ => {
            return Err(Error::Invalid(format!(
                "container {container} is not on the bridge network: only bridge containers can publish ports"
            )));
        }
    };
    let bound = conflicts::bound_sockets(&topology::host_ns(state))?;
    let mut new: Vec<Published> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        conflicts::check_host_ip(state, spec)?;
        conflicts::check_published(state, spec, &specs[..i])?;
        conflicts::check_sockets(&bound, spec)?;
        let taken: Vec<u32> = new.iter().map(|p| p.id).collect();
        new.push(Published {
            container: container.to_string(),
            spec: *spec,
            ctr_ip,
            id: free_id(state, &taken),
        });
    }
    let dp = datapath::for_kind(state.datapath);
    for (i, p) in new.iter().enumerate() {
        if let Err(e) = dp.publish(state, p) {
            for done in &new[..i] {
                let _ = dp.unpublish(state, done);
            }
            return Err(e);
        }
    }
    state.ports.extend(new.iter().cloned());
    Ok(new)
}

/// Withdraws `specs` from `container`: each must be published exactly so.
pub fn unpublish(
    state: &mut LabState,
    container: &str,
    specs: &[PortSpec],
) -> Result<Vec<Published>> {
    if state.container(container).is_none() {
        return Err(Error::Invalid(format!(
            "no container {container} in lab {}",
            state.name
        )));
    }
    let mut gone = Vec::new();
    for spec in specs {
        let p = state
            .ports
            .iter()
            .find(|p| p.container == container && p.spec == *spec)
            .ok_or_else(|| {
                Error::Invalid(format!("{spec} is not published on container {container}"))
            })?;
        gone.push(p.clone());
    }
    let dp = datapath::for_kind(state.datapath);
    for p in &gone {
        dp.unpublish(state, p)?;
        state.ports.retain(|q| q != p);
    }
    Ok(gone)
}
