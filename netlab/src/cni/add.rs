//! ADD: the first ADD of a network brings its lab up; each attaches the container's
//! namespace with a veth named `CNI_IFNAME`, an address from netlab's IPAM (or the one
//! asked for: `CNI_ARGS IP=`, `runtimeConfig.ips`, `args.cni.ips`) and a default route,
//! and publishes
//! `runtimeConfig.portMappings` in one batch.

use std::path::Path;

use super::{
    attachment,
    config::{NetConf, in_config_words},
    env::Attachment,
    error::{CniError, CniResult, code},
    ips, network, ports, result,
};
use crate::{
    error::Error,
    lab::{Network, PortRequest, PortSpec},
    netlink::netns,
    ops::{self, AttachRequest, Session},
};

pub fn run(conf: &NetConf, a: &Attachment) -> CniResult<String> {
    conf.check_fields()?;
    conf.check_prev_result()?;
    let req = conf.up_request()?;
    let name = attachment::container_name(&a.container_id, &a.ifname)?;
    let specs = ports::specs(conf)?;
    let netns = a.netns.as_deref().expect("ADD has CNI_NETNS");
    if !netns::is_netns(netns) {
        return Err(CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("CNI_NETNS {} is not a network namespace", netns.display()),
        ));
    }
    check_own_namespace(netns)?;
    // What `up` refuses is the configuration's fault (an uplink that does not exist,
    // NAT ports the host uses itself); a conflict with what exists stays a conflict.
    let (mut s, brought_up) = Session::open_or_up(&req).map_err(|e| match e {
        Error::Invalid(msg) => CniError::new(code::INVALID_CONFIG, in_config_words(&msg)),
        Error::Conflict(msg) => Error::Conflict(in_config_words(&msg)).into(),
        other => other.into(),
    })?;
    let done = attach(&mut s, conf, a, &name, netns, &specs);
    if done.is_err() && brought_up && s.state.containers.is_empty() {
        // Nothing half-done: the network this ADD brought up goes again.
        let _ = s.down();
    }
    done
}

/// Removes the runtime's attachments whose namespace is gone: their container is gone
/// with it, and a runtime that could not enter the namespace never sends their DEL
/// (podman 4.3, which never sends GC either), so their addresses and ports would stay
/// taken for ever, and the same container could not be attached again. Said on stderr.
fn reap_stale(s: &mut Session) -> CniResult<()> {
    let stale: Vec<String> = s
        .state
        .containers
        .iter()
        .filter(|c| c.runtime_netns.is_some() && !crate::topology::netns_is_the_containers(c))
        .map(|c| c.name.clone())
        .collect();
    for name in stale {
        ops::detach(s, &name)?;
        eprintln!(
            "netlab-cni: {name} on network {} was removed: its namespace is gone",
            s.state.name
        );
    }
    Ok(())
}

/// Refuses to attach into the namespace the plugin runs in (the runtime's own: the
/// container's interface would be made there, and the lab's uplink could be taken for
/// it).
fn check_own_namespace(netns: &Path) -> CniResult<()> {
    if netns::cookie(netns)? == netns::cookie(&netns::current())? {
        return Err(CniError::new(
            code::INVALID_ENVIRONMENT,
            format!(
                "CNI_NETNS {} is the namespace the runtime runs the plugin in: a container needs a namespace of its own",
                netns.display()
            ),
        ));
    }
    Ok(())
}

/// Refuses an interface `CNI_IFNAME` that exists already in the container: ADD makes
/// the interface, and never touches one it did not make.
fn check_ifname_free(netns: &Path, ifname: &str) -> CniResult<()> {
    let env = |msg: String| CniError::new(code::INVALID_ENVIRONMENT, msg);
    let name = ifname.to_string();
    let exists = netns::netlink_in(netns, |h| async move {
        Ok(crate::netlink::link::index(&h, &name).await?.is_some())
    })?;
    if exists {
        return Err(env(format!(
            "CNI_IFNAME {ifname} already exists in CNI_NETNS {}: ADD makes the interface itself",
            netns.display()
        )));
    }
    Ok(())
}

fn attach(
    s: &mut Session,
    conf: &NetConf,
    a: &Attachment,
    name: &str,
    netns: &Path,
    specs: &[PortSpec],
) -> CniResult<String> {
    network::check_namespace(&s.state)?;
    network::check_matches(conf, &s.state)?;
    reap_stale(s)?;
    if let Some(c) = s.state.container(name) {
        let msg = match attachment::is(c, &a.container_id, &a.ifname) {
            true => format!(
                "container {} already has interface {} on network {}",
                a.container_id, a.ifname, s.state.name
            ),
            false => format!(
                "container {} with interface {} would be {name} on network {}, which is taken by {}",
                a.container_id,
                a.ifname,
                s.state.name,
                attachment::describe(c)
            ),
        };
        return Err(CniError::new(code::CONFLICT, msg));
    }
    check_ifname_free(netns, &a.ifname)?;
    let (from_conf, conf_keys) = ips::asked(conf)?;
    let asked = ips::merge((&from_conf, conf_keys), (&a.ip, ["CNI_ARGS IP="; 2]))?;
    // Where it came from: the runtime's environment, or the configuration's key.
    let refused = |ip: String, from_env: bool, conf_key: &str, e: String| {
        let (code, from) = match from_env {
            true => (code::INVALID_ENVIRONMENT, "CNI_ARGS IP=".to_string()),
            false => (code::INVALID_CONFIG, format!("{conf_key} ")),
        };
        CniError::new(code, format!("{from}{ip}: {e}"))
    };
    let [v4_key, v6_key] = conf_keys;
    if let Some(ip) = asked.v4 {
        s.state
            .subnet
            .check_host(ip)
            .map_err(|e| refused(ip.to_string(), a.ip.v4.is_some(), v4_key, e.to_string()))?;
    }
    if let Some(ip6) = asked.v6 {
        let from_env = a.ip.v6.is_some();
        let s6 = s.state.subnet6.ok_or_else(|| {
            let e = format!("network {} has no subnet6", s.state.name);
            refused(ip6.to_string(), from_env, v6_key, e)
        })?;
        s6.check_host(ip6)
            .map_err(|e| refused(ip6.to_string(), from_env, v6_key, e.to_string()))?;
    }
    let c = ops::attach(
        s,
        &AttachRequest {
            name: name.to_string(),
            network: Network::Bridge,
            ip: asked.v4,
            ip6: asked.v6,
            runtime_netns: Some(netns.to_path_buf()),
            runtime_id: Some(a.container_id.clone()),
            ifname: a.ifname.clone(),
            mac: a.mac.clone(),
            // Published below, apart: a failed ADD is followed by the runtime's DEL.
            ports: Vec::new(),
        },
    )?;
    let specs: Vec<PortRequest> =
        ports::not_held_elsewhere(&s.state, &a.container_id, specs.to_vec())
            .into_iter()
            .map(PortRequest::Given)
            .collect();
    let published = ops::publish(s, name, &specs)
        .map(drop)
        .and_then(|()| ops::host_macs(s, name));
    let macs = match published {
        Ok(macs) => macs,
        Err(e) => {
            // No container without the ports it was asked to publish.
            let _ = ops::detach(s, name);
            // A mapping publish refuses (a hostIP that is not the host's) is the
            // configuration's fault, as the mappings refused while parsing it are.
            return Err(match e {
                crate::error::Error::Invalid(msg) => CniError::new(code::INVALID_CONFIG, msg),
                e => e.into(),
            });
        }
    };
    let (version, dns, prev) = (&conf.version, conf.dns(), conf.prev_result());
    Ok(result::add_result(version, &s.state, &c, netns, macs, dns, prev).to_string())
}
