//! Neighbour (ARP) entries.

use std::net::{IpAddr, Ipv4Addr};

use rtnetlink::{Handle, packet_route::neighbour::NeighbourState};

use super::nl;
use crate::error::{Error, Result};

/// Equivalent to `ip neigh replace IP lladdr MAC dev NAME nud stale`: the entry holds
/// `mac` from now on (a stale one, which the kernel confirms on first use), whatever MAC
/// an earlier holder of the address had.
pub async fn replace_stale(
    h: &Handle,
    name: &str,
    index: u32,
    ip: Ipv4Addr,
    mac: &str,
) -> Result<()> {
    let bytes = parse_mac(mac)?;
    h.neighbours()
        .add(index, IpAddr::V4(ip))
        .link_layer_address(&bytes)
        .state(NeighbourState::Stale)
        .replace()
        .execute()
        .await
        .map_err(nl("replace neighbour", format!("{ip} dev {name}")))
}

fn parse_mac(mac: &str) -> Result<Vec<u8>> {
    let bytes: Vec<u8> = mac
        .split(':')
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect();
    if bytes.len() != 6 {
        return Err(Error::Invalid(format!("bad MAC address {mac}")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn macs() {
        assert_eq!(
            super::parse_mac("02:42:ac:12:00:02").unwrap(),
            [2, 0x42, 0xac, 0x12, 0, 2]
        );
        assert!(super::parse_mac("02:42").is_err());
    }
}
