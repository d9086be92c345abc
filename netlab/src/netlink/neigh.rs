//! Neighbour (ARP) entries.

use std::net::IpAddr;

use rtnetlink::{Handle, packet_route::neighbour::NeighbourState};

use super::nl;
use crate::error::Result;

/// Equivalent to `ip neigh replace IP lladdr MAC dev NAME nud stale`: the entry holds
/// `mac` from now on (a stale one, which the kernel confirms on first use), whatever MAC
/// an earlier holder of the address had.
pub async fn replace_stale(
    h: &Handle,
    name: &str,
    index: u32,
    ip: IpAddr,
    mac: &str,
) -> Result<()> {
    let bytes = super::link::parse_mac(mac)?;
    h.neighbours()
        .add(index, ip)
        .link_layer_address(&bytes)
        .state(NeighbourState::Stale)
        .replace()
        .execute()
        .await
        .map_err(nl("replace neighbour", format!("{ip} dev {name}")))
}
