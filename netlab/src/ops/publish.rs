//! `publish` and `unpublish`: a running container's ports, Docker's `-p`, edited while
//! the lab runs. A batch is checked whole and applied all or none.

use std::collections::{HashMap, HashSet};

use super::{Session, conflicts, journal::Entry, pick};
use crate::{
    error::{Error, Result},
    lab::{LabState, Network, PortRequest, PortSpec, Published},
    topology,
};

/// Validates `specs` for `container` (picking the host ports left to netlab) and
/// publishes them all, or none.
pub fn publish(s: &mut Session, container: &str, specs: &[PortRequest]) -> Result<Vec<Published>> {
    // Another lab of the namespace checks its ports against this one's saved state:
    // one lab at a time from the check until the state says what was published.
    let _namespace = match specs.is_empty() {
        true => None,
        false => topology::lock_host(&s.state)?,
    };
    let new = prepare(s, container, specs)?;
    if new.is_empty() {
        return Ok(new);
    }
    // Journal first: a crash from here on is rolled back by the next command.
    s.begin(&Entry::Publish { ports: new.clone() })?;
    match apply(s, &new) {
        Ok(()) => s.commit()?,
        Err((e, settled)) => {
            if settled {
                let _ = s.commit();
            }
            return Err(e);
        }
    }
    Ok(new)
}

/// The mappings `specs` would be for `container`, checked against the lab (nothing
/// changes yet).
pub fn prepare(s: &Session, container: &str, specs: &[PortRequest]) -> Result<Vec<Published>> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let state = &s.state;
    let specs: Vec<PortRequest> = specs
        .iter()
        .map(|p| p.map(|p| state.normalize(p)))
        .collect();
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
    topology::check_present(state, c)?;
    topology::check_bridge(state)?;
    prepare_for(s, container, ctr_ip, &specs)
}

/// The mappings `specs` (normalized) would be for `container` at `ctr_ip`, checked
/// against the lab, with the host ports left to netlab picked; the container need not
/// be made yet (`run -p` checks before it makes it).
pub fn prepare_for(
    s: &Session,
    container: &str,
    ctr_ip: std::net::Ipv4Addr,
    specs: &[PortRequest],
) -> Result<Vec<Published>> {
    let state = &s.state;
    // A datapath that publishes nothing says so before any other check.
    s.datapath().check_room(state, &[])?;
    let bound = conflicts::bound_sockets(&topology::host_ns(state))?;
    let mut other_addrs = None;
    for req in specs {
        let (PortRequest::Given(spec) | PortRequest::Pick(spec)) = req;
        conflicts::check_host_ip(state, spec, &mut other_addrs)?;
    }
    let other_labs = conflicts::OtherLabs::of(state)?;
    let specs = host_ports(state, specs, |spec| {
        other_labs.check(spec)?;
        conflicts::check_sockets(state, &bound, spec)
    })?;
    let ids = free_ids(&state.ports, specs.len());
    let new: Vec<Published> = specs
        .into_iter()
        .zip(ids)
        .map(|(spec, id)| Published {
            container: container.to_string(),
            spec,
            ctr_ip,
            id,
        })
        .collect();
    s.datapath().check_room(state, &new)?;
    let specs: Vec<PortSpec> = new.iter().map(|p| p.spec).collect();
    warn_ephemeral_udp(state, &specs);
    Ok(new)
}

/// The specs of `specs`, host ports picked, in the order written. The given ones claim
/// their ports first, and the picks then take what is left, so that a batch does not
/// depend on the order of its specs: in `9060-9061:80 9060:81` the pick gets 9061, as
/// in `9060:81 9060-9061:80`. `check` refuses a spec for what is outside the lab's
/// mappings (another lab's, a socket of the lab host).
fn host_ports(
    state: &LabState,
    specs: &[PortRequest],
    mut check: impl FnMut(&PortSpec) -> Result<()>,
) -> Result<Vec<PortSpec>> {
    let mut claims = conflicts::Claims::of(state, specs.len());
    for req in specs {
        if let PortRequest::Given(spec) = req {
            claims.claim(spec)?;
            check(spec)?;
        }
    }
    specs
        .iter()
        .map(|req| match req {
            PortRequest::Given(spec) => Ok(*spec),
            PortRequest::Pick(asked) => {
                let candidates = pick::candidates(state, req, asked)?;
                let spec = pick::first_free(req, asked, candidates, |c| {
                    claims
                        .busy(c)
                        .or_else(|| check(c).is_err().then_some(pick::Busy::Taken))
                })?;
                claims.claim(&spec)?;
                Ok(spec)
            }
        })
        .collect()
}

/// On eBPF, a UDP host port inside the lab host's ephemeral range is taken for a
/// published flow when a reply reaches one of the host's own sockets on it (UDP has no
/// SYN to tell a reply from a new flow): said on stderr, as it is allowed.
fn warn_ephemeral_udp(state: &LabState, specs: &[PortSpec]) {
    if state.datapath != crate::lab::DatapathKind::Ebpf {
        return;
    }
    let udp = specs.iter().filter(|p| p.proto == crate::lab::Proto::Udp);
    // A warning only: a range that cannot be read holds nothing up.
    let Ok((lo, hi)) = topology::ephemeral_ports(&topology::host_ns(state)) else {
        return;
    };
    if let Some(p) = udp
        .into_iter()
        .find(|p| p.host_port <= hi && lo <= p.host_end)
    {
        eprintln!(
            "warning: {p} publishes UDP ports in the lab host's ephemeral range {lo}-{hi} (net.ipv4.ip_local_port_range): on eBPF a reply to one of the host's own UDP sockets on such a port goes to the container"
        );
    }
}

/// Publishes mappings `prepare` made and records them, under the journal entry of the
/// operation it is part of (`publish`'s, or `run`'s). On failure, whether the kernel
/// was left without any of them (`true`), or the entry must stay for the next command
/// to take them back.
pub fn apply(s: &mut Session, new: &[Published]) -> std::result::Result<(), (Error, bool)> {
    let dp = s.datapath();
    if let Err(e) = dp.publish(&s.state, new) {
        // Part of it may be in the kernel (rules in, a later step failed): take back
        // whatever is, or leave the journal for the next command to do it.
        let settled = dp.withdraw_leftovers(&s.state, new).is_ok();
        return Err((e, settled));
    }
    s.state.ports.extend(new.iter().cloned());
    if let Err(e) = s.save() {
        let _ = dp.unpublish(&s.state, new);
        s.state.ports.truncate(s.state.ports.len() - new.len());
        return Err((e, true));
    }
    Ok(())
}

/// The `n` lowest mapping numbers (from 1) that no mapping holds. Only numbers up to
/// `ports.len() + n` can be among them, so a table of that many flags finds them.
fn free_ids(ports: &[Published], n: usize) -> impl Iterator<Item = u32> + use<> {
    let mut used = vec![false; ports.len() + n + 1];
    for p in ports {
        if let Some(u) = used.get_mut(p.id as usize) {
            *u = true;
        }
    }
    (1..used.len()).filter(move |&i| !used[i]).map(|i| i as u32)
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
    let specs: Vec<PortSpec> = specs.iter().map(|p| s.state.normalize(*p)).collect();
    let gone = mappings_of(&s.state.ports, container, &specs)?;
    // Journal first: a crash from here on is carried through by the next command.
    s.begin(&Entry::Unpublish {
        ports: gone.clone(),
    })?;
    withdraw(s, &gone)?;
    s.commit()?;
    Ok(gone)
}

/// Takes back whatever of `ports` the kernel holds but the state does not record: a
/// publish cut short (by a crash, or by an error after some of it went in).
pub fn withdraw_unrecorded(s: &Session, ports: &[Published]) -> Result<()> {
    let unrecorded: Vec<Published> = ports
        .iter()
        .filter(|p| !s.state.ports.contains(p))
        .cloned()
        .collect();
    if unrecorded.is_empty() {
        return Ok(());
    }
    s.datapath().withdraw_leftovers(&s.state, &unrecorded)
}

/// Withdraws mappings and forgets them, under the journal entry of the operation it is
/// part of (`unpublish`'s, or `rm`'s, which carries the whole removal through).
pub fn withdraw(s: &mut Session, gone: &[Published]) -> Result<()> {
    if gone.is_empty() {
        return Ok(());
    }
    s.datapath().unpublish(&s.state, gone)?;
    let ids: HashSet<u32> = gone.iter().map(|p| p.id).collect();
    s.state.ports.retain(|p| !ids.contains(&p.id));
    s.save()
}

/// `container`'s mapping of each spec, or an error naming the first that is not
/// published. A request of a few specs scans the mappings; a larger one indexes them
/// once (hashing 10,000 mappings costs more than scanning them for one spec).
fn mappings_of(ports: &[Published], container: &str, specs: &[PortSpec]) -> Result<Vec<Published>> {
    // A spec named twice is refused, as `publish` refuses it.
    let mut seen = HashSet::with_capacity(specs.len());
    if let Some(twice) = specs.iter().find(|s| !seen.insert(**s)) {
        return Err(Error::Invalid(format!("{twice} is named twice")));
    }
    let ours = |p: &&Published| p.container == container;
    let index: Option<HashMap<&PortSpec, &Published>> = (specs.len() > conflicts::SMALL_REQUEST)
        .then(|| ports.iter().filter(ours).map(|p| (&p.spec, p)).collect());
    specs
        .iter()
        .map(|spec| {
            let found = match &index {
                Some(index) => index.get(spec).copied(),
                None => ports.iter().filter(ours).find(|p| p.spec == *spec),
            };
            found
                .cloned()
                .ok_or_else(|| not_published(ports, container, spec))
        })
        .collect()
}

/// Refuses `spec`, not published on `container`; names the mapping of its host port
/// that is there, if any: on another host address, or another container.
fn not_published(ports: &[Published], container: &str, spec: &PortSpec) -> Error {
    let overlaps = |p: &&Published| {
        p.spec.proto == spec.proto
            && p.spec.host_port <= spec.host_end
            && spec.host_port <= p.spec.host_end
    };
    // This container's mapping first (on another host address), then another's.
    let found = (ports.iter().filter(overlaps)).min_by_key(|p| p.container != container);
    let hint = match found {
        Some(p) if p.container == container => format!(": it is published as {}", p.spec),
        Some(p) => format!(": {} is published on container {}", p.spec, p.container),
        None => String::new(),
    };
    Error::Invalid(format!(
        "{spec} is not published on container {container}{hint}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(id: u32) -> Published {
        Published {
            container: "web".into(),
            spec: format!("{}:80", 1000 + id).parse().unwrap(),
            ctr_ip: "172.18.0.2".parse().unwrap(),
            id,
        }
    }

    #[test]
    fn new_mappings_take_the_lowest_free_numbers() {
        let ports: Vec<Published> = [1, 2, 4, 7, 100].into_iter().map(mapping).collect();
        assert_eq!(
            free_ids(&ports, 4).take(4).collect::<Vec<_>>(),
            [3, 5, 6, 8]
        );
        assert_eq!(free_ids(&[], 2).take(2).collect::<Vec<_>>(), [1, 2]);
        let full: Vec<Published> = (1..=5).map(mapping).collect();
        assert_eq!(free_ids(&full, 1).collect::<Vec<_>>(), [6]);
    }

    /// A batch's given specs claim their ports before its picks take theirs, whatever
    /// their order, and the specs come back in the order written.
    #[test]
    fn given_ports_are_claimed_before_picks_whatever_the_order() {
        let mut state = LabState::sample("t", crate::lab::DatapathKind::Iptables);
        state.ports.push(Published {
            spec: "9062:80".parse().unwrap(),
            ..mapping(1)
        });
        let reqs = |specs: &[&str]| -> Vec<PortRequest> {
            specs
                .iter()
                .flat_map(|s| PortRequest::parse(s).unwrap())
                .collect()
        };
        // 9063 is held by a socket of the lab host.
        let resolve = |specs: &[&str]| {
            host_ports(&state, &reqs(specs), |s| {
                if (s.host_port..=s.host_end).contains(&9063) {
                    Err(Error::Conflict("in use by a socket".into()))
                } else {
                    Ok(())
                }
            })
            .map(|got| got.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            resolve(&["9060-9063:80", "9060:81"]).unwrap(),
            ["9061:80/tcp", "9060:81/tcp"]
        );
        assert_eq!(
            resolve(&["9060:81", "9060-9063:80"]).unwrap(),
            ["9060:81/tcp", "9061:80/tcp"]
        );
        let err = resolve(&["9060-9063:80", "9060:81", "9061:82"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "no free host port for 9060-9063:80/tcp: every port of 9060-9063 is published, in use, or taken by another spec of this command"
        );
        let err = resolve(&["9062-9063:80"]).unwrap_err().to_string();
        assert_eq!(
            err,
            "no free host port for 9062-9063:80/tcp: every port of 9062-9063 is published or in use"
        );
        // Two picks of one range take one port each, in the order written.
        assert_eq!(
            resolve(&["9060-9061:80", "9060-9061:81"]).unwrap(),
            ["9060:80/tcp", "9061:81/tcp"]
        );
    }

    #[test]
    fn unpublish_finds_each_spec_on_its_container_only() {
        let mut ports: Vec<Published> = (1..=40).map(mapping).collect();
        ports[3].container = "db".into();
        for n in [1, 30] {
            let specs: Vec<PortSpec> = ports[4..4 + n].iter().map(|p| p.spec).collect();
            let found = mappings_of(&ports, "web", &specs).unwrap();
            assert_eq!(found, ports[4..4 + n]);
            let mut theirs = specs.clone();
            theirs.push(ports[3].spec);
            let err = mappings_of(&ports, "web", &theirs).unwrap_err().to_string();
            assert_eq!(
                err,
                "1004:80/tcp is not published on container web: 1004:80/tcp is published on container db"
            );
        }
        // The same host port on another address of the same container is named.
        ports[5].spec = "[2001:db8:100::2]:1006:80".parse().unwrap();
        let spec = "1006:80".parse().unwrap();
        let err = mappings_of(&ports, "web", &[spec]).unwrap_err().to_string();
        assert_eq!(
            err,
            "1006:80/tcp is not published on container web: it is published as [2001:db8:100::2]:1006:80/tcp"
        );
        let spec = "1099:80".parse().unwrap();
        let err = mappings_of(&ports, "web", &[spec]).unwrap_err().to_string();
        assert_eq!(err, "1099:80/tcp is not published on container web");
    }
}
