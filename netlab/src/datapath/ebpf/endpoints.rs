//! The containers, as the fast path knows them: an entry in `ENDPOINTS` (address →
//! the host end of its veth and its MAC) and the endpoint program attached by tcx to
//! the host end of its veth, for every container on the bridge. `run` adds them, `rm`
//! takes them away.

use aya::{
    maps::{HashMap, MapData},
    programs::{SchedClassifier, TcAttachType},
};
use netlab_common::{endpoint::Endpoint, maps as names};

use super::{ENDPOINT_PROG_PIN, attach_tcx, parse_mac, pins};
use crate::{
    error::{Error, Result},
    lab::{Container, LabState, Network},
    netlink::{link, netns},
    topology,
};

fn table(lab: &str) -> Result<HashMap<MapData, u32, Endpoint>> {
    pins::typed(lab, names::ENDPOINTS)
}

/// Where the link of a container's endpoint program is pinned.
fn link_pin(state: &LabState, veth: &str) -> std::path::PathBuf {
    pins::links(&state.name).join(format!("endpoint-{veth}"))
}

pub fn attach(state: &LabState, c: &Container) -> Result<()> {
    let (Network::Bridge, Some(ip), Some(veth), Some(mac)) = (c.network, c.ip, &c.veth, &c.mac)
    else {
        return Ok(());
    };
    let host = topology::host_ns(state);
    let name = veth.clone();
    let ifindex = netns::netlink_in(&host, |h| async move { link::require(&h, &name).await })?;
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
    if !state.nat.fast_path {
        return Ok(());
    }
    let mut prog = SchedClassifier::from_pin(pins::dir(&state.name).join(ENDPOINT_PROG_PIN))
        .map_err(|e| Error::ebpf("open pinned program", e))?;
    attach_tcx(
        &mut prog,
        &host,
        veth,
        TcAttachType::Ingress,
        &link_pin(state, veth),
    )
}

/// Forgets a container; a container already half gone is not an error.
pub fn detach(state: &LabState, c: &Container) -> Result<()> {
    let Some(veth) = &c.veth else { return Ok(()) };
    match std::fs::remove_file(link_pin(state, veth)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove pin", link_pin(state, veth), e)),
    }
    if let Some(ip) = c.ip {
        match table(&state.name)?.remove(&u32::from(ip).to_be()) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(Error::ebpf("update ENDPOINTS", e)),
        }
    }
    Ok(())
}
