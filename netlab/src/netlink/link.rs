//! Links: bridge, veth, up, master, namespace, name, MTU, alias, delete.

use std::os::fd::{AsRawFd, BorrowedFd};

use futures::TryStreamExt;
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkNetkit, LinkUnspec, LinkVeth,
    packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage, NetkitMode},
};

use super::{is_errno, nl};
use crate::error::{Error, Result};

async fn get(h: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(nl("get link", name)(e)),
    }
}

/// A link as `ip -o link show` lists it: what netlab needs to know of it.
#[derive(Clone, Debug)]
pub struct Listed {
    pub name: String,
    pub index: u32,
    /// The bridge (or bond) it is enslaved to.
    pub master: Option<u32>,
    /// Its MAC address, as `aa:bb:cc:dd:ee:ff` (none for `lo`-like links).
    pub mac: Option<String>,
    /// Whether its frames have an Ethernet header (not a tun, WireGuard or IP tunnel
    /// device, whose packets start with their IP header).
    pub ethernet: bool,
}

/// A MAC address as `ip link` shows it.
fn mac_text(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Equivalent to `ip -o link show`: every link of the namespace.
pub async fn all(h: &Handle) -> Result<Vec<Listed>> {
    let mut links = h.link().get().execute();
    let mut all = Vec::new();
    while let Some(l) = links.try_next().await.map_err(nl("get links", "*"))? {
        let mut listed = Listed {
            name: String::new(),
            index: l.header.index,
            master: None,
            mac: None,
            ethernet: l.header.link_layer_type == LinkLayerType::Ether,
        };
        for a in l.attributes {
            match a {
                LinkAttribute::IfName(n) => listed.name = n,
                LinkAttribute::Controller(m) => listed.master = Some(m),
                LinkAttribute::Address(m) if m.len() == 6 => listed.mac = Some(mac_text(&m)),
                _ => {}
            }
        }
        all.push(listed);
    }
    Ok(all)
}

/// Equivalent to `ip -o link show NAME` → its ifindex, if the link exists.
pub async fn index(h: &Handle, name: &str) -> Result<Option<u32>> {
    Ok(get(h, name).await?.map(|l| l.header.index))
}

/// Whether a link is up (administratively: `ip link set NAME up`); false when it does
/// not exist.
pub async fn is_up(h: &Handle, name: &str) -> Result<bool> {
    Ok(get(h, name)
        .await?
        .is_some_and(|l| l.header.flags.contains(LinkFlags::Up)))
}

/// The ifindex of a link that must exist.
pub async fn require(h: &Handle, name: &str) -> Result<u32> {
    index(h, name)
        .await?
        .ok_or_else(|| Error::Invalid(format!("link {name} does not exist")))
}

/// Whether link `name` frames its packets with an Ethernet header ([`Listed::ethernet`]).
pub async fn is_ethernet(h: &Handle, name: &str) -> Result<bool> {
    let link = get(h, name)
        .await?
        .ok_or_else(|| Error::Invalid(format!("link {name} does not exist")))?;
    Ok(link.header.link_layer_type == LinkLayerType::Ether)
}

/// [`require`] for a link netlab made and marked with `alias` ([`set_alias`]): one of
/// that name without the mark was made again behind netlab's back, and is not used.
pub async fn require_marked(h: &Handle, name: &str, alias: &str) -> Result<u32> {
    let index = require(h, name).await?;
    if self::alias(h, name).await?.as_deref() != Some(alias) {
        return Err(Error::Conflict(format!(
            "link {name} is not the one netlab made (it lacks the mark {alias}): it was made again behind netlab's back"
        )));
    }
    Ok(index)
}

/// Equivalent to `ip link show NAME` → its MTU.
pub async fn mtu(h: &Handle, name: &str) -> Result<u32> {
    let link = get(h, name)
        .await?
        .ok_or_else(|| Error::Invalid(format!("link {name} does not exist")))?;
    Ok(link
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
        .unwrap_or(1500))
}

/// Equivalent to `ip link show NAME` → the ifindex of its master (bridge), if any.
pub async fn master(h: &Handle, name: &str) -> Result<Option<u32>> {
    let link = get(h, name)
        .await?
        .ok_or_else(|| Error::Invalid(format!("link {name} does not exist")))?;
    Ok(link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(m) => Some(*m),
        _ => None,
    }))
}

/// Equivalent to `ip link show NAME` → its MAC address, as `aa:bb:cc:dd:ee:ff`.
pub async fn mac(h: &Handle, name: &str) -> Result<String> {
    let link = get(h, name)
        .await?
        .ok_or_else(|| Error::Invalid(format!("link {name} does not exist")))?;
    let bytes = link
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(m) => Some(m.clone()),
            _ => None,
        })
        .ok_or_else(|| Error::Invalid(format!("link {name} has no MAC address")))?;
    Ok(mac_text(&bytes))
}

/// Equivalent to `ip link add NAME address MAC mtu MTU type bridge && ip link set NAME
/// up`. The MAC is set, as Docker sets its bridge's: a bridge without one takes the
/// lowest of its ports' and changes it as they come and go, and containers that hold
/// the old one for their gateway lose it.
pub async fn add_bridge(h: &Handle, name: &str, mtu: u32, mac: [u8; 6]) -> Result<u32> {
    h.link()
        .add(
            LinkBridge::new(name)
                .mtu(mtu)
                .address(mac.to_vec())
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl("add bridge", name))?;
    require(h, name).await
}

/// Equivalent to `ip link add NAME mtu MTU type veth peer name PEER mtu MTU`.
pub async fn add_veth(h: &Handle, name: &str, peer: &str, mtu: u32) -> Result<u32> {
    let pair = LinkVeth::new(name, peer).mtu(mtu).build();
    add_pair(h, pair, "add veth", name, peer, mtu).await
}

/// Equivalent to `ip link add NAME mtu MTU type netkit mode l2 peer name PEER mtu MTU`:
/// an L2 pair (both ends with a MAC, ARP, a bridge port like a veth end) whose
/// default policy passes packets on.
pub async fn add_netkit(h: &Handle, name: &str, peer: &str, mtu: u32) -> Result<u32> {
    let pair = LinkNetkit::new(name, peer, NetkitMode::L2).mtu(mtu).build();
    add_pair(h, pair, "add netkit", name, peer, mtu).await
}

/// Adds a device pair (`pair`, made as `name` with peer `peer`), gives the peer the
/// same MTU, and returns `name`'s ifindex.
async fn add_pair(
    h: &Handle,
    pair: LinkMessage,
    what: &'static str,
    name: &str,
    peer: &str,
    mtu: u32,
) -> Result<u32> {
    h.link().add(pair).execute().await.map_err(nl(what, name))?;
    let peer_index = require(h, peer).await?;
    set(
        h,
        peer,
        LinkUnspec::new_with_index(peer_index).mtu(mtu).build(),
    )
    .await?;
    require(h, name).await
}

/// Whether this namespace's kernel makes netkit pairs (Linux 6.7+, `CONFIG_NETKIT`):
/// adds one and deletes it again. Meant for a throwaway namespace.
pub async fn can_add_netkit(h: &Handle) -> Result<bool> {
    const PROBE: &str = "nlprobe0";
    let add = LinkNetkit::new(PROBE, "nlprobe1", NetkitMode::L2).build();
    match h.link().add(add).execute().await {
        Ok(()) => {
            delete(h, PROBE).await?;
            Ok(true)
        }
        // "Unknown device type": no such link kind in this kernel.
        Err(e) if is_errno(&e, libc::EOPNOTSUPP) => Ok(false),
        Err(e) => Err(nl("add netkit", PROBE)(e)),
    }
}

async fn set(h: &Handle, name: &str, msg: LinkMessage) -> Result<()> {
    h.link()
        .set(msg)
        .execute()
        .await
        .map_err(nl("set link", name))
}

/// Equivalent to `ip link set NAME up`.
pub async fn up(h: &Handle, name: &str, index: u32) -> Result<()> {
    set(h, name, LinkUnspec::new_with_index(index).up().build()).await
}

/// Equivalent to `ip link set NAME master BRIDGE up`.
pub async fn enslave_up(h: &Handle, name: &str, index: u32, bridge: u32) -> Result<()> {
    set(
        h,
        name,
        LinkUnspec::new_with_index(index)
            .controller(bridge)
            .up()
            .build(),
    )
    .await
}

/// Equivalent to `ip link set NAME alias TEXT`: marks a link as the lab's.
pub async fn set_alias(h: &Handle, name: &str, index: u32, alias: &str) -> Result<()> {
    set(
        h,
        name,
        LinkUnspec::new_with_index(index).alias(alias).build(),
    )
    .await
}

/// Equivalent to `ip link set NAME address MAC`.
pub async fn set_mac(h: &Handle, name: &str, index: u32, mac: [u8; 6]) -> Result<()> {
    set(
        h,
        name,
        LinkUnspec::new_with_index(index)
            .address(mac.to_vec())
            .build(),
    )
    .await
}

/// Equivalent to `ip link set NAME netns NS` (NS given as an open namespace file).
pub async fn move_to_netns(h: &Handle, name: &str, index: u32, ns: BorrowedFd<'_>) -> Result<()> {
    set(
        h,
        name,
        LinkUnspec::new_with_index(index)
            .setns_by_fd(ns.as_raw_fd())
            .build(),
    )
    .await
}

/// Equivalent to `ip link set NAME type bridge_slave hairpin on|off`: lets the bridge
/// send a frame back out of the port it came in on (a container reaching itself
/// through a published port, when bridge netfilter DNATs the frame on the bridge).
pub async fn set_hairpin(h: &Handle, name: &str, index: u32, on: bool) -> Result<()> {
    // Bridge port settings need RTM_NEWLINK; RTM_SETLINK ignores them.
    h.link()
        .set_port(LinkBridgePort::new(index).hairpin(on).build())
        .execute()
        .await
        .map_err(nl("set bridge port hairpin on", name))
}

/// Equivalent to `ip link set NAME name NEW` (the link must be down).
pub async fn rename(h: &Handle, name: &str, index: u32, new: &str) -> Result<()> {
    set(h, name, LinkUnspec::new_with_index(index).name(new).build()).await
}

/// Equivalent to `ip link delete NAME`; a link that is already gone is not an error.
pub async fn delete(h: &Handle, name: &str) -> Result<()> {
    let Some(index) = index(h, name).await? else {
        return Ok(());
    };
    match h.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
        Err(e) => Err(nl("delete link", name)(e)),
    }
}

/// Equivalent to `ip link show NAME` → its alias, if it has one.
pub async fn alias(h: &Handle, name: &str) -> Result<Option<String>> {
    Ok(get(h, name).await?.and_then(|l| {
        l.attributes.into_iter().find_map(|a| match a {
            LinkAttribute::IfAlias(s) => Some(s),
            _ => None,
        })
    }))
}

/// Equivalent to `ip link delete NAME` for a link that carries `alias` (netlab's mark,
/// [`set_alias`]): a link of that name without the mark is someone else's and stays.
/// Returns whether a link was deleted.
pub async fn delete_marked(h: &Handle, name: &str, alias: &str) -> Result<bool> {
    if self::alias(h, name).await?.as_deref() != Some(alias) {
        return Ok(false);
    }
    delete(h, name).await.map(|()| true)
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(Error::Invalid(format!("bad MAC address {s:?}")));
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16)
            .map_err(|_| Error::Invalid(format!("bad MAC address {s:?}")))?;
    }
    Ok(mac)
}

/// A random locally administered unicast MAC (what `ip link` gives a new bridge).
pub fn random_mac() -> Result<[u8; 6]> {
    use std::io::Read;
    let mut mac = [0u8; 6];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut mac))
        .map_err(|e| Error::io("read", "/dev/urandom", e))?;
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}

#[cfg(test)]
mod tests {
    #[test]
    fn macs() {
        assert_eq!(
            super::parse_mac("02:42:ac:12:00:02").unwrap(),
            [2, 0x42, 0xac, 0x12, 0, 2]
        );
        for bad in ["02:42", "02:42:ac:12:00:zz", "02:42:ac:12:00:02:01"] {
            assert!(super::parse_mac(bad).is_err(), "{bad}");
        }
    }
}
