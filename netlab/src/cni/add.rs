//! ADD: the first ADD of a network brings its lab up; each attaches the container's
//! namespace with a veth named `CNI_IFNAME`, an address from netlab's IPAM and a
//! default route, and publishes `runtimeConfig.portMappings` in one batch.

use std::path::Path;

use super::{
    attachment,
    config::NetConf,
    env::Attachment,
    error::{CniError, CniResult, code},
    network, ports, result,
};
use crate::{
    lab::{Network, PortSpec},
    netlink::netns,
    ops::{self, AttachRequest, Session},
};

pub fn run(conf: &NetConf, a: &Attachment) -> CniResult<String> {
    conf.check_fields()?;
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
    let (mut s, brought_up) = Session::open_or_up(&req)?;
    let done = attach(&mut s, conf, a, &name, netns, &specs);
    if done.is_err() && brought_up && s.state.containers.is_empty() {
        // Nothing half-done: the network this ADD brought up goes again.
        let _ = s.down();
    }
    done
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
    if s.state.container(name).is_some() {
        return Err(CniError::new(
            code::CONFLICT,
            format!(
                "container {} already has interface {} on network {}",
                a.container_id, a.ifname, s.state.name
            ),
        ));
    }
    let c = ops::attach(
        s,
        &AttachRequest {
            name: name.to_string(),
            network: Network::Bridge,
            ip: a.ip,
            runtime_netns: Some(netns.to_path_buf()),
            ifname: a.ifname.clone(),
        },
    )?;
    let published = ops::publish(s, name, specs)
        .map(drop)
        .and_then(|()| ops::host_macs(s, name));
    let macs = match published {
        Ok(macs) => macs,
        Err(e) => {
            // No container without the ports it was asked to publish.
            let _ = ops::detach(s, name);
            return Err(e.into());
        }
    };
    Ok(result::add_result(&conf.version, &s.state, &c, netns, macs, conf.dns()).to_string())
}
