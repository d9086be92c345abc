//! CHECK: the attachment is still what ADD made, as `prevResult` describes it: the
//! interface with its MAC in the container's namespace, its address and gateway, the
//! default route, the host end of its veth on the bridge, and the published ports
//! `runtimeConfig.portMappings` asks for.

use std::{collections::HashSet, path::Path};

use serde_json::Value;

use super::{
    attachment,
    config::NetConf,
    env::Attachment,
    error::{CniError, CniResult, code},
    network, ports,
};
use crate::{
    lab::{Container, LabState, PortSpec},
    netlink::netns,
    ops::{self, Session},
};

fn differs(msg: String) -> CniError {
    CniError::new(code::CHECK_FAILED, msg)
}

pub fn run(conf: &NetConf, a: &Attachment) -> CniResult<()> {
    conf.check_fields()?;
    let lab = conf.lab()?;
    let prev = conf
        .prev_result()
        .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "CHECK needs prevResult"))?;
    let name = attachment::container_name(&a.container_id, &a.ifname)?;
    let specs = ports::specs(conf)?;
    let unknown = || {
        CniError::new(
            code::UNKNOWN_CONTAINER,
            format!(
                "container {} has no interface {} on network {lab}",
                a.container_id, a.ifname
            ),
        )
    };
    let s = Session::open_if_up(lab)?.ok_or_else(unknown)?;
    network::check_namespace(&s.state)?;
    let c = s
        .state
        .container(&name)
        .filter(|c| attachment::is(c, &a.container_id, &a.ifname))
        .ok_or_else(unknown)?;
    if !same_namespace(c.runtime_netns.as_deref(), a.netns.as_deref()) {
        return Err(differs(format!(
            "{name} was attached in {}, not in CNI_NETNS",
            c.runtime_netns.as_deref().unwrap_or("-".as_ref()).display()
        )));
    }
    against_prev_result(&s.state, c, prev)?;
    ops::check(&s, &name).map_err(|e| differs(e.to_string()))?;
    let specs = ports::not_held_elsewhere(&s.state, &a.container_id, specs);
    published(&s.state, &name, &specs)?;
    in_the_kernel(&s, &name)
}

/// Whether `CNI_NETNS` is the namespace ADD attached in: the same path, or another
/// that names the same namespace (`/var/run/netns/...` through its link,
/// `/proc/PID/ns/net`), as its cookie tells.
fn same_namespace(attached: Option<&Path>, given: Option<&Path>) -> bool {
    let (Some(attached), Some(given)) = (attached, given) else {
        return false;
    };
    attached == given
        || matches!(
            (netns::cookie(attached), netns::cookie(given)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// The container's ports are in the kernel as the state records them: rules, elements
/// or map entries removed behind netlab's back fail the CHECK.
fn in_the_kernel(s: &Session, name: &str) -> CniResult<()> {
    if let Some(what) = s.datapath().missing_setup(&s.state)? {
        return Err(differs(format!(
            "the {} datapath's {what} is gone (removed behind netlab's back): the network no longer translates as it should",
            s.state.datapath.name()
        )));
    }
    let ports: Vec<_> = s.state.ports_of(name).cloned().collect();
    let absent = s.datapath().absent(&s.state, &ports)?;
    match absent.first() {
        None => Ok(()),
        Some(p) => Err(differs(format!(
            "port {} is published but the {} datapath no longer has it (removed behind netlab's back): DEL and ADD the container again",
            p.spec,
            s.state.datapath.name()
        ))),
    }
}

/// The interface, addresses and routes `prevResult` lists are the container's.
fn against_prev_result(state: &LabState, c: &Container, prev: &Value) -> CniResult<()> {
    let empty = Vec::new();
    let interfaces = prev["interfaces"].as_array().unwrap_or(&empty);
    let index = interfaces
        .iter()
        .position(|i| i["name"] == c.ifname.as_str() && i["sandbox"].is_string())
        .ok_or_else(|| {
            differs(format!(
                "prevResult lists no interface {} in a sandbox",
                c.ifname
            ))
        })?;
    let mac = interfaces[index]["mac"].as_str().unwrap_or_default();
    if !c
        .mac
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case(mac))
    {
        return Err(differs(format!(
            "interface {} has MAC {}, prevResult says {mac:?}",
            c.ifname,
            c.mac.as_deref().unwrap_or("-")
        )));
    }
    // The interface's address and gateway in each family the network has.
    let mut families = vec![(
        c.ip.map(|ip| format!("{ip}/{}", state.subnet.prefix))
            .unwrap_or_default(),
        state.bridge_addr.to_string(),
    )];
    if let (Some(s6), Some(ip6)) = (state.subnet6, state.container_ip6(c)) {
        families.push((format!("{ip6}/{}", s6.prefix), s6.gateway().to_string()));
    }
    let mut seen = vec![false; families.len()];
    for entry in prev["ips"].as_array().unwrap_or(&empty) {
        // `interface` is optional: an address without one is the container's when it
        // is one of its own, else another plugin's of a chain.
        let ours = families.iter().any(|(a, _)| entry["address"] == a.as_str());
        match entry["interface"].as_u64() {
            Some(i) if i != index as u64 => continue,
            None if !ours => continue,
            _ => {}
        }
        if let Some(i) = families
            .iter()
            .position(|(a, _)| entry["address"] == a.as_str())
        {
            seen[i] = true;
        }
        let Some((_, gateway)) = families
            .iter()
            .find(|(a, _)| entry["address"] == a.as_str())
        else {
            let ours: Vec<&str> = families.iter().map(|(a, _)| a.as_str()).collect();
            return Err(differs(format!(
                "prevResult's address {} is not {}'s, {}",
                entry["address"],
                c.ifname,
                ours.join(" or ")
            )));
        };
        if !entry["gateway"].is_null() && entry["gateway"] != gateway.as_str() {
            return Err(differs(format!(
                "prevResult's gateway {} is not the bridge's, {gateway}",
                entry["gateway"]
            )));
        }
    }
    // Every family's address: a dual-stack attachment has two.
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(differs(format!(
            "prevResult gives {} no address {}",
            c.ifname, families[i].0
        )));
    }
    // A default route (any /0, however written) of a family the network has is the
    // one netlab made, via the bridge; a route via another address of the network's
    // subnet is none netlab made; any other is an earlier plugin's of a chain, its own
    // to check.
    for route in prev["routes"].as_array().unwrap_or(&empty) {
        if let Some(why) = not_ours(state, route) {
            return Err(differs(format!(
                "prevResult's route {route} is not one netlab made: {why}"
            )));
        }
    }
    Ok(())
}

/// Why `route` of a `prevResult` cannot be netlab's, if it cannot.
fn not_ours(state: &LabState, route: &Value) -> Option<String> {
    use std::net::IpAddr;
    let Some((dst, len)) = route["dst"]
        .as_str()
        .and_then(|d| d.split_once('/'))
        .and_then(|(a, l)| Some((a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?)))
    else {
        return Some("its dst is no ADDR/PREFIX".into());
    };
    let gw = match &route["gw"] {
        Value::Null => None,
        g => match g.as_str().and_then(|g| g.parse::<IpAddr>().ok()) {
            Some(g) => Some(g),
            None => return Some("its gw is no address".into()),
        },
    };
    let bridge: Option<IpAddr> = match dst {
        IpAddr::V4(_) => Some(state.bridge_addr.into()),
        IpAddr::V6(_) => state.subnet6.map(|s6| s6.gateway().into()),
    };
    let in_subnet = |g: IpAddr| match g {
        IpAddr::V4(a) => state.subnet.contains(a),
        IpAddr::V6(a) => state.subnet6.is_some_and(|s6| s6.contains(a)),
    };
    match (len, bridge, gw) {
        // A default route of a family the network has: via the bridge.
        (0, Some(b), Some(g)) if g != b => Some(format!("the default route goes via {b}")),
        // Via an address of the network that is not the bridge's.
        (_, Some(b), Some(g)) if in_subnet(g) && g != b => {
            Some(format!("{g} is in the network, whose gateway is {b}"))
        }
        _ => None,
    }
}

/// The container's published ports are exactly those asked for.
fn published(state: &LabState, name: &str, specs: &[PortSpec]) -> CniResult<()> {
    let have: HashSet<PortSpec> = state.ports_of(name).map(|p| p.spec).collect();
    let want: HashSet<PortSpec> = specs.iter().map(|p| state.normalize(*p)).collect();
    if let Some(missing) = want.difference(&have).next() {
        return Err(differs(format!("port {missing} is not published")));
    }
    if let Some(extra) = have.difference(&want).next() {
        return Err(differs(format!(
            "port {extra} is published but not in portMappings"
        )));
    }
    Ok(())
}
