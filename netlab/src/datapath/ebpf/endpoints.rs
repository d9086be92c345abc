//! The containers, as the datapath knows them: an entry in `SOURCES` (the host end of
//! its veth → the address and MAC it may send from), one in `ENDPOINTS` (address → the
//! host end of its veth and its MAC, for the fast path into it) and in a dual-stack lab
//! one in `ENDPOINTS6` (the same by its IPv6 address), and the endpoint
//! program attached by tcx to the host end of its veth (or as the peer program of its
//! netkit pair, [`netkit`]), which checks every packet's
//! source and, with the fast path on, forwards it. `run` adds them, `rm` takes them
//! away; the source is there before the program is, and stays until it is gone.

use aya::{
    maps::{HashMap, MapData},
    programs::{SchedClassifier, TcAttachType},
};
use netlab_common::{
    addr::Addr6,
    endpoint::{Endpoint, Source},
    maps as names,
};

use super::{ENDPOINT_PROG_PIN, hooks, netkit, parse_mac, pins};
use crate::{
    error::{Error, Result},
    lab::{Container, Device, LabState, Network},
    netlink::{link, netns},
    topology,
};

fn table(lab: &str) -> Result<HashMap<MapData, u32, Endpoint>> {
    pins::typed(lab, names::ENDPOINTS)
}

fn table6(lab: &str) -> Result<HashMap<MapData, Addr6, Endpoint>> {
    pins::typed(lab, names::ENDPOINTS6)
}

/// The name of a container's endpoint program attachment.
fn attachment(veth: &str) -> String {
    format!("endpoint-{veth}")
}

pub fn attach(state: &LabState, c: &Container) -> Result<()> {
    let (Network::Bridge, Some(ip), Some(veth), Some(mac)) = (c.network, c.ip, &c.veth, &c.mac)
    else {
        return Ok(());
    };
    let host = topology::host_ns(state);
    let name = veth.clone();
    let ifindex = netns::netlink_in(&host, |h| async move { link::require(&h, &name).await })?;
    let mut sources: HashMap<MapData, u32, Source> = pins::typed(&state.name, names::SOURCES)?;
    sources
        .insert(
            ifindex,
            Source {
                addr: u32::from(ip).to_be(),
                mac: parse_mac(mac)?,
                _pad: [0; 2],
                addr6: state.container_ip6(c).map(super::addr6).unwrap_or_default(),
            },
            0,
        )
        .map_err(|e| Error::ebpf("update SOURCES", e))?;
    table(&state.name)?
        .insert(
            u32::from(ip).to_be(),
            Endpoint {
                ifindex,
                mac: parse_mac(mac)?,
                _pad: [0; 2],
            },
            0,
        )
        .map_err(|e| Error::ebpf("update ENDPOINTS", e))?;
    if let Some(ip6) = state.container_ip6(c) {
        let ep = Endpoint {
            ifindex,
            mac: parse_mac(mac)?,
            _pad: [0; 2],
        };
        table6(&state.name)?
            .insert(super::addr6(ip6), ep, 0)
            .map_err(|e| Error::ebpf("update ENDPOINTS6", e))?;
    }
    let mut prog = SchedClassifier::from_pin(pins::dir(&state.name).join(ENDPOINT_PROG_PIN))
        .map_err(|e| Error::ebpf("open pinned program", e))?;
    match state.device {
        Device::Veth => hooks::attach(
            super::hooks_of(&state.name)?,
            &state.name,
            &mut prog,
            &host,
            veth,
            TcAttachType::Ingress,
            &attachment(veth),
        ),
        Device::Netkit => netkit::attach_peer(
            &prog,
            &host,
            veth,
            &pins::links(&state.name).join(attachment(veth)),
        ),
    }
}

/// Forgets a container; a container already half gone is not an error.
pub fn detach(state: &LabState, c: &Container) -> Result<()> {
    let Some(veth) = &c.veth else { return Ok(()) };
    let host = topology::host_ns(state);
    // A netkit link is pinned as a tcx link is (netkit came after tcx).
    let kind = match state.device {
        Device::Veth => super::hooks_of(&state.name)?,
        Device::Netkit => hooks::Kind::Tcx,
    };
    hooks::detach(kind, &state.name, &host, &attachment(veth))?;
    let name = veth.clone();
    let ifindex = netns::netlink_in(&host, |h| async move { link::index(&h, &name).await })
        .ok()
        .flatten();
    let mut sources: HashMap<MapData, u32, Source> = pins::typed(&state.name, names::SOURCES)?;
    match ifindex {
        Some(i) => {
            let _ = sources.remove(&i);
        }
        // The veth is gone already: its entry is found by the container's address.
        None => {
            let stale: Vec<u32> = sources
                .iter()
                .flatten()
                .filter(|(_, s)| c.ip.is_some_and(|ip| s.addr == u32::from(ip).to_be()))
                .map(|(i, _)| i)
                .collect();
            for i in stale {
                let _ = sources.remove(&i);
            }
        }
    }
    // Both tables, whatever the first says: an error there leaves nothing in the other.
    let v4 = c.ip.map_or(Ok(()), |ip| {
        pins::gone_already(table(&state.name)?.remove(&u32::from(ip).to_be()))
            .map_err(|e| Error::ebpf("update ENDPOINTS", e))
    });
    let v6 = state.container_ip6(c).map_or(Ok(()), |ip6| {
        pins::gone_already(table6(&state.name)?.remove(&super::addr6(ip6)))
            .map_err(|e| Error::ebpf("update ENDPOINTS6", e))
    });
    v4.and(v6)
}
