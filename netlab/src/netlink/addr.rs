//! Addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::{
    Handle,
    packet_route::address::{AddressAttribute, AddressHeaderFlags},
};

use super::nl;
use crate::error::Result;

/// Equivalent to `ip addr add ADDR/PREFIX dev NAME`.
pub async fn add(h: &Handle, name: &str, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
    h.address()
        .add(index, IpAddr::V4(addr), prefix)
        .execute()
        .await
        .map_err(nl("add address", format!("{addr}/{prefix} on {name}")))
}

/// Equivalent to `ip addr add ADDR/PREFIX dev NAME nodad`: usable at once, without
/// the second of duplicate address detection (the lab chose every address it gives).
pub async fn add6(h: &Handle, name: &str, index: u32, addr: Ipv6Addr, prefix: u8) -> Result<()> {
    let mut req = h.address().add(index, IpAddr::V6(addr), prefix);
    req.message_mut().header.flags = AddressHeaderFlags::Nodad;
    req.execute()
        .await
        .map_err(nl("add address", format!("{addr}/{prefix} on {name}")))
}

/// Equivalent to `ip -4 addr show dev NAME` → the first IPv4 address.
pub async fn first_v4(h: &Handle, name: &str, index: u32) -> Result<Option<Ipv4Addr>> {
    let mut addrs = h.address().get().set_link_index_filter(index).execute();
    while let Some(msg) = addrs.try_next().await.map_err(nl("get address", name))? {
        for attr in msg.attributes {
            if let AddressAttribute::Address(IpAddr::V4(a)) = attr {
                return Ok(Some(a));
            }
        }
    }
    Ok(None)
}

/// Equivalent to `ip -6 addr show dev NAME scope global` → the first address.
pub async fn first_global_v6(h: &Handle, name: &str, index: u32) -> Result<Option<Ipv6Addr>> {
    let mut addrs = h.address().get().set_link_index_filter(index).execute();
    while let Some(msg) = addrs.try_next().await.map_err(nl("get address", name))? {
        for attr in msg.attributes {
            if let AddressAttribute::Address(IpAddr::V6(a)) = attr {
                let link_local = a.segments()[0] & 0xffc0 == 0xfe80;
                if !link_local && !a.is_loopback() {
                    return Ok(Some(a));
                }
            }
        }
    }
    Ok(None)
}

/// Equivalent to `ip -4 addr show dev NAME` → every IPv4 address with its prefix.
pub async fn all_v4(h: &Handle, name: &str, index: u32) -> Result<Vec<(Ipv4Addr, u8)>> {
    let mut all = Vec::new();
    let mut addrs = h.address().get().set_link_index_filter(index).execute();
    while let Some(msg) = addrs.try_next().await.map_err(nl("get address", name))? {
        for attr in &msg.attributes {
            if let AddressAttribute::Address(IpAddr::V4(a)) = attr {
                all.push((*a, msg.header.prefix_len));
            }
        }
    }
    Ok(all)
}

/// Equivalent to `ip -6 addr show dev NAME` → every IPv6 address with its prefix.
pub async fn all_v6(h: &Handle, name: &str, index: u32) -> Result<Vec<(Ipv6Addr, u8)>> {
    let mut all = Vec::new();
    let mut addrs = h.address().get().set_link_index_filter(index).execute();
    while let Some(msg) = addrs.try_next().await.map_err(nl("get address", name))? {
        for attr in &msg.attributes {
            if let AddressAttribute::Address(IpAddr::V6(a)) = attr {
                all.push((*a, msg.header.prefix_len));
            }
        }
    }
    Ok(all)
}

/// Equivalent to `ip addr show` → every address of the namespace with its prefix
/// length, both families.
pub async fn all_links_prefixed(h: &Handle) -> Result<Vec<(IpAddr, u8)>> {
    let mut all = Vec::new();
    let mut addrs = h.address().get().execute();
    while let Some(msg) = addrs.try_next().await.map_err(nl("get addresses", "*"))? {
        for attr in &msg.attributes {
            if let AddressAttribute::Address(a) = attr {
                all.push((*a, msg.header.prefix_len));
            }
        }
    }
    Ok(all)
}

/// Equivalent to `ip addr show` → every address of the namespace, both families.
pub async fn all_links(h: &Handle) -> Result<Vec<IpAddr>> {
    let mut all = Vec::new();
    let mut addrs = h.address().get().execute();
    while let Some(msg) = addrs.try_next().await.map_err(nl("get addresses", "*"))? {
        for attr in &msg.attributes {
            if let AddressAttribute::Address(a) = attr {
                all.push(*a);
            }
        }
    }
    Ok(all)
}

/// Every global IPv6 address of every link (not link-local, not loopback), with the
/// link's index.
pub async fn all_links_v6(h: &Handle) -> Result<Vec<(u32, Ipv6Addr)>> {
    let mut all = Vec::new();
    let mut addrs = h.address().get().execute();
    while let Some(msg) = addrs.try_next().await.map_err(nl("get addresses", "*"))? {
        for attr in &msg.attributes {
            if let AddressAttribute::Address(IpAddr::V6(a)) = attr
                && !a.is_loopback()
                && !a.is_unicast_link_local()
            {
                all.push((msg.header.index, *a));
            }
        }
    }
    Ok(all)
}

/// Equivalent to `ip -4 addr show` → every IPv4 address of the namespace, with the
/// ifindex of its link, in the kernel's order (a link's primary address first).
pub async fn all_links_v4(h: &Handle) -> Result<Vec<(u32, Ipv4Addr)>> {
    let mut all = Vec::new();
    let mut addrs = h.address().get().execute();
    while let Some(msg) = addrs.try_next().await.map_err(nl("get addresses", "*"))? {
        for attr in &msg.attributes {
            if let AddressAttribute::Address(IpAddr::V4(a)) = attr {
                all.push((msg.header.index, *a));
            }
        }
    }
    Ok(all)
}
