//! `publish` and `unpublish`: a running container's ports, Docker's `-p`, edited while
//! the lab runs. A batch is checked whole and applied all or none.

use std::collections::{HashMap, HashSet};

use super::{Session, conflicts};
use crate::{
    error::{Error, Result},
    lab::{Network, PortSpec, Published},
    topology,
};

/// Validates `specs` for `container` and publishes them all, or none.
pub fn publish(s: &mut Session, container: &str, specs: &[PortSpec]) -> Result<Vec<Published>> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let state = &s.state;
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
    let mut claims = conflicts::Claims::of(state, specs.len());
    let used: HashSet<u32> = state.ports.iter().map(|p| p.id).collect();
    let mut ids = (1u32..).filter(|i| !used.contains(i));
    let mut new: Vec<Published> = Vec::with_capacity(specs.len());
    for spec in specs {
        conflicts::check_host_ip(state, spec)?;
        claims.claim(spec)?;
        conflicts::check_sockets(&bound, spec)?;
        new.push(Published {
            container: container.to_string(),
            spec: *spec,
            ctr_ip,
            id: ids.next().expect("an id"),
        });
    }
    let dp = s.datapath();
    dp.publish(&s.state, &new)?;
    s.state.ports.extend(new.iter().cloned());
    if let Err(e) = s.save() {
        let _ = dp.unpublish(&s.state, &new);
        s.state.ports.truncate(s.state.ports.len() - new.len());
        return Err(e);
    }
    Ok(new)
}

/// Withdraws `specs` from `container`: each must be published exactly so.
pub fn unpublish(s: &mut Session, container: &str, specs: &[PortSpec]) -> Result<Vec<Published>> {
    if s.state.container(container).is_none() {
        return Err(Error::Invalid(format!(
            "no container {container} in lab {}",
            s.state.name
        )));
    }
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let index: HashMap<&PortSpec, &Published> =
        s.state.ports_of(container).map(|p| (&p.spec, p)).collect();
    let mut gone = Vec::with_capacity(specs.len());
    for spec in specs {
        let p = index.get(spec).ok_or_else(|| {
            Error::Invalid(format!("{spec} is not published on container {container}"))
        })?;
        gone.push((*p).clone());
    }
    s.datapath().unpublish(&s.state, &gone)?;
    let ids: HashSet<u32> = gone.iter().map(|p| p.id).collect();
    s.state.ports.retain(|p| !ids.contains(&p.id));
    s.save()?;
    Ok(gone)
}
