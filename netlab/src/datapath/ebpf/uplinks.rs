//! The lab host's interfaces the uplink programs run on: every interface by which the
//! host's IP layer sends or receives — all but `lo`, the lab's bridge, and links
//! enslaved to a bridge or bond (their master is the interface) — as iptables' rules
//! cover every interface but the bridge (`! -o BRIDGE` masquerade, `--dst-type LOCAL`
//! publishing, direct access dropped unless `-i BRIDGE`). Each gets the uplink programs
//! by tcx, and its addresses go in `UPLINKS` (the masquerade source of what leaves by
//! it) and `HOST_ADDRS` (local addresses published ports answer on, with those of `lo`
//! outside the loopback range); the uplink's in `UPLINK_NOW` too. Addresses that go
//! take the flows masqueraded behind them along ([`follow`]), as MASQUERADE's do.
//!
//! Interfaces come and go without telling netlab, which runs no daemon: `up`, `run`
//! and `publish` bring the set up to date ([`sync`]). Meanwhile the lab stays closed to
//! an interface netlab does not watch yet: nothing from it reaches a container (the
//! bridge's egress program drops it as direct access), and a container's new flow the
//! host would route out by it is dropped (`unwatched`) rather than sent unmasqueraded.

use std::{collections::HashSet, net::Ipv4Addr};

use aya::{
    maps::{Array, HashMap, MapData},
    programs::{SchedClassifier, TcAttachType},
};
use netlab_common::{addr::Addr6, config::FLAG_IPV6, endpoint::Uplink, maps as names};

use super::{hooks, pins};
use crate::{
    error::{Error, Result},
    lab::LabState,
    netlink::{addr, link, netns, route},
    topology,
};

/// Where the uplink programs are pinned, so that any later command can attach them to
/// an interface that appeared.
pub const INGRESS_PROG_PIN: &str = "uplink_ingress_prog";
pub const EGRESS_PROG_PIN: &str = "uplink_egress_prog";

/// The name of program `prog`'s attachment to the interface with `ifindex`.
fn attachment(prog: &str, ifindex: u32) -> String {
    format!("{prog}@{ifindex}")
}

fn be(a: Ipv4Addr) -> u32 {
    u32::from(a).to_be()
}

/// Brings the watched interfaces up to date with what the lab host has now: the uplink
/// programs attached to new ones, every address recorded, interfaces and addresses
/// that are gone forgotten (the link of a removed interface goes with its pin).
pub fn sync(state: &LabState) -> Result<()> {
    let lab = state.name.as_str();
    let host = topology::host_ns(state);
    let (links, addrs, addrs6, mtu_floors) = netns::netlink_in(&host, |h| async move {
        Ok((
            link::all(&h).await?,
            addr::all_links_v4(&h).await?,
            addr::all_links_v6(&h).await?,
            route::mtu_floors(&h).await?,
        ))
    })?;
    // An interface without an Ethernet header (tun, WireGuard, an IP tunnel) is never
    // watched: the programs read a frame's Ethernet header, and would take its packets
    // for something else and pass them, untranslated. Unwatched, it is closed: nothing
    // from it reaches a container, and no container's packet leaves by it.
    // Its addresses are still the lab host's (a port published on every address
    // answers on them, as iptables' `--dst-type LOCAL` does).
    let host_links: Vec<&link::Listed> = links
        .iter()
        .filter(|l| l.name != "lo" && l.name != state.bridge && l.master.is_none())
        .collect();
    let watched: Vec<&link::Listed> = host_links.iter().copied().filter(|l| l.ethernet).collect();
    if watched.len() > names::UPLINKS_MAX as usize {
        return Err(Error::Invalid(format!(
            "the lab host has {} interfaces besides the bridge; the eBPF datapath watches at most {}",
            watched.len(),
            names::UPLINKS_MAX
        )));
    }
    let indexes: HashSet<u32> = watched.iter().map(|l| l.index).collect();
    let cfg = super::read_config(lab)?;
    let kind = super::hooks_kind(&cfg);
    let mut uplinks: HashMap<MapData, u32, Uplink> = pins::typed(lab, names::UPLINKS)?;
    // What the watched interfaces had: flows masqueraded behind an address that is
    // gone end below.
    let before: Vec<Uplink> = uplinks.iter().flatten().map(|(_, u)| u).collect();
    let mut host_addrs: HashMap<MapData, u32, u32> = pins::typed(lab, names::HOST_ADDRS)?;
    let gone: Vec<u32> = uplinks
        .keys()
        .flatten()
        .filter(|i| !indexes.contains(i))
        .collect();
    for i in gone {
        let _ = uplinks.remove(&i);
        for prog in [names::PROG_UPLINK_INGRESS, names::PROG_UPLINK_EGRESS] {
            let _ = hooks::detach(kind, lab, &host, &attachment(prog, i));
        }
    }
    // The addresses published ports answer on: every interface's but the bridge's,
    // `lo`'s too (a service address on it is as local as `--dst-type LOCAL` says), but
    // not the loopback range's, which never comes in by an interface.
    let addressed: HashSet<u32> = links
        .iter()
        .filter(|l| l.name != state.bridge && l.master.is_none())
        .map(|l| l.index)
        .collect();
    let local = |i: &u32| addressed.contains(i);
    let current: HashSet<u32> = addrs
        .iter()
        .filter(|(i, a)| local(i) && !a.is_loopback())
        .map(|(_, a)| be(*a))
        .collect();
    let stale: Vec<u32> = host_addrs
        .keys()
        .flatten()
        .filter(|a| !current.contains(a))
        .collect();
    for a in stale {
        let _ = host_addrs.remove(&a);
    }
    let mut host_addrs6: HashMap<MapData, Addr6, u32> = pins::typed(lab, names::HOST_ADDRS6)?;
    let current6: HashSet<Addr6> = addrs6
        .iter()
        .filter(|(i, a)| local(i) && !a.is_loopback())
        .map(|(_, a)| super::addr6(*a))
        .collect();
    let stale6: Vec<Addr6> = host_addrs6
        .keys()
        .flatten()
        .filter(|a| !current6.contains(a))
        .collect();
    for a in stale6 {
        let _ = host_addrs6.remove(&a);
    }
    let index_of = |a: &u32| addrs.iter().find(|(_, x)| be(*x) == *a).map(|(i, _)| *i);
    for a in &current {
        host_addrs
            .insert(*a, index_of(a).unwrap_or(0), 0)
            .map_err(|e| Error::ebpf("update HOST_ADDRS", e))?;
    }
    let index_of6 = |a: &Addr6| {
        addrs6
            .iter()
            .find(|(_, x)| super::addr6(*x) == *a)
            .map(|(i, _)| *i)
    };
    for a in &current6 {
        host_addrs6
            .insert(*a, index_of6(a).unwrap_or(0), 0)
            .map_err(|e| Error::ebpf("update HOST_ADDRS6", e))?;
    }
    let mut uplink_now = None;
    for l in host_links {
        let mine: Vec<Ipv4Addr> = addrs
            .iter()
            .filter(|(i, _)| *i == l.index)
            .map(|(_, a)| *a)
            .collect();
        let mine6: Vec<Addr6> = addrs6
            .iter()
            .filter(|(i, _)| *i == l.index)
            .map(|(_, a)| super::addr6(*a))
            .collect();
        if !l.ethernet {
            continue;
        }
        let uplink = Uplink {
            addr: mine.first().copied().map(be).unwrap_or(0),
            addr6: mine6.first().copied().unwrap_or_default(),
        };
        uplinks
            .insert(l.index, uplink, 0)
            .map_err(|e| Error::ebpf("update UPLINKS", e))?;
        if l.index == cfg.uplink_ifindex {
            uplink_now = Some(Uplink {
                // A lab without IPv6 masquerades none.
                addr6: if cfg.flags & FLAG_IPV6 != 0 {
                    uplink.addr6
                } else {
                    [0; 4]
                },
                ..uplink
            });
        }
        attach(kind, state, &host, l)?;
    }
    follow(state, uplink_now, &before, &current, &current6)?;
    // The routes' own MTUs, which the fast path's route lookup does not answer.
    let mut floors: Array<MapData, u32> = pins::typed(lab, names::ROUTE_MTU)?;
    for (i, floor) in [mtu_floors.0, mtu_floors.1].into_iter().enumerate() {
        floors
            .set(i as u32, floor.unwrap_or(0), 0)
            .map_err(|e| Error::ebpf("write ROUTE_MTU", e))?;
    }
    Ok(())
}

/// Follows the uplink's addresses as MASQUERADE does: `UPLINK_NOW` takes what the
/// uplink has now (`now`; unchanged if it is gone), and the flows through an address
/// the lab host no longer has (`current`, `current6`) — the uplink's or another
/// watched interface's (`before`) — end, so that a container's next packet opens a new
/// flow behind the address the interface has now. Says on stderr what changed and
/// what ended.
fn follow(
    state: &LabState,
    now: Option<Uplink>,
    before: &[Uplink],
    current: &HashSet<u32>,
    current6: &HashSet<Addr6>,
) -> Result<()> {
    let lab = state.name.as_str();
    let mut uplink_now: Array<MapData, Uplink> = pins::typed(lab, names::UPLINK_NOW)?;
    let was = uplink_now
        .get(&0, 0)
        .map_err(|e| Error::ebpf("read UPLINK_NOW", e))?;
    // A gone uplink's flows ended with its entry in `before`, in the sync that found
    // it gone; its last addresses stay in `UPLINK_NOW`, and are not looked for again.
    let present = now.is_some();
    let now = now.unwrap_or(was);
    if now != was {
        uplink_now
            .set(0, now, 0)
            .map_err(|e| Error::ebpf("write UPLINK_NOW", e))?;
    }
    let had = || before.iter().chain(present.then_some(&was));
    let mut gone: Vec<u32> = had()
        .map(|u| u.addr)
        .filter(|a| *a != 0 && !current.contains(a))
        .collect();
    let mut gone6: Vec<Addr6> = had()
        .map(|u| u.addr6)
        .filter(|a| *a != [0; 4] && !current6.contains(a))
        .collect();
    gone.sort_unstable();
    gone.dedup();
    gone6.sort_unstable();
    gone6.dedup();
    let ended = if gone.is_empty() && gone6.is_empty() {
        0
    } else {
        super::flows::end_masqueraded(lab, &gone, &gone6)?
    };
    let mut changed = Vec::new();
    if now.addr != was.addr {
        changed.push(format!("{} (was {})", show(now.addr), show(was.addr)));
    }
    if now.addr6 != was.addr6 {
        changed.push(format!("{} (was {})", show6(now.addr6), show6(was.addr6)));
    }
    if !changed.is_empty() {
        eprintln!(
            "netlab: the uplink {} has {} now: containers' new flows leave behind the addresses it has (where it has none they are dropped, `no_address`)",
            state.uplink,
            changed.join(" and "),
        );
    }
    if ended > 0 {
        let addrs: Vec<String> = gone
            .iter()
            .map(|a| show(*a))
            .chain(gone6.iter().map(|a| show6(*a)))
            .collect();
        eprintln!(
            "netlab: {ended} flows through {}, which the lab host no longer has, ended (masqueraded behind it, or to a port published on it)",
            addrs.join(", ")
        );
    }
    Ok(())
}

fn show(a: u32) -> String {
    if a == 0 {
        "no IPv4 address".into()
    } else {
        Ipv4Addr::from(u32::from_be(a)).to_string()
    }
}

fn show6(a: Addr6) -> String {
    if a == [0; 4] {
        "no IPv6 address".into()
    } else {
        super::ipv6_of(&a).to_string()
    }
}

/// Attaches both uplink programs to interface `l`, unless they are attached already.
fn attach(
    kind: hooks::Kind,
    state: &LabState,
    host: &std::path::Path,
    l: &link::Listed,
) -> Result<()> {
    for (prog, pin, direction) in [
        (
            names::PROG_UPLINK_INGRESS,
            INGRESS_PROG_PIN,
            TcAttachType::Ingress,
        ),
        (
            names::PROG_UPLINK_EGRESS,
            EGRESS_PROG_PIN,
            TcAttachType::Egress,
        ),
    ] {
        let name = attachment(prog, l.index);
        if hooks::attached(kind, &state.name, &name) {
            continue;
        }
        let mut p = SchedClassifier::from_pin(pins::dir(&state.name).join(pin))
            .map_err(|e| Error::ebpf("open pinned program", format!("{pin}: {e}")))?;
        hooks::attach(kind, &state.name, &mut p, host, &l.name, direction, &name)?;
    }
    Ok(())
}
