//! A CNI network is the netlab lab of the same name, in the namespace the runtime runs
//! the plugin in. These checks refuse a lab that is not the one the configuration means.

use super::{
    config::NetConf,
    error::{CniError, CniResult, code},
};
use crate::{lab::LabState, netlink::netns};

fn describe(ns: &Option<String>) -> String {
    match ns {
        Some(name) => format!("namespace {name}"),
        None => "the machine's own namespace".into(),
    }
}

/// Refuses a lab whose host namespace is not the one the plugin runs in: the network's
/// name is taken by a lab of another runtime (or of the CLI).
pub fn check_namespace(state: &LabState) -> CniResult<()> {
    let here = netns::current_name()?;
    if here == state.host_netns {
        return Ok(());
    }
    Err(CniError::new(
        code::INVALID_CONFIG,
        format!(
            "network {} is netlab lab {} of {}, but the plugin runs in {}: give the network another name",
            state.name,
            state.name,
            describe(&state.host_netns),
            describe(&here)
        ),
    ))
}

/// Refuses a running lab with another datapath, device, subnet or bridge than the
/// configuration gives (those it leaves out are whatever the lab has).
pub fn check_matches(conf: &NetConf, state: &LabState) -> CniResult<()> {
    let mut differ = Vec::new();
    if let Some(d) = conf.datapath()?
        && d != state.datapath
    {
        differ.push(format!("datapath {}", state.datapath.name()));
    }
    if let Some(d) = conf.device()?
        && d != state.device
    {
        differ.push(format!("device {}", state.device.name()));
    }
    if let Some(s) = conf.subnet()?
        && s != state.subnet
    {
        differ.push(format!("subnet {}", state.subnet));
    }
    if let Some(s6) = conf.subnet6()?
        && Some(s6) != state.subnet6
    {
        differ.push(match state.subnet6 {
            Some(had) => format!("subnet6 {had}"),
            None => "no subnet6".into(),
        });
    }
    if let Some(b) = conf.bridge()?
        && b != state.bridge
    {
        differ.push(format!("bridge {}", state.bridge));
    }
    if differ.is_empty() {
        return Ok(());
    }
    Err(CniError::new(
        code::INVALID_CONFIG,
        format!(
            "network {} is up with {}, not as configured: remove its containers and run GC (or `netlab down --lab {}`) to change it",
            state.name,
            differ.join(", "),
            state.name
        ),
    ))
}
