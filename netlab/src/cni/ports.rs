//! `runtimeConfig.portMappings` (the `portMappings` capability) as netlab's port specs.
//! Runtimes send one entry per port (podman: 10,000 entries for a 10,000-port range);
//! each becomes a single-port spec, which the eBPF datapath keeps in its hash table (one
//! update each), rather than a range, of which it holds only 32.

use std::{collections::HashSet, net::IpAddr};

use serde::Deserialize;

use super::{
    config::NetConf,
    error::{CniError, CniResult, code},
};
use crate::lab::{LabState, PortSpec, Proto};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PortMapping {
    host_port: i64,
    container_port: i64,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default, rename = "hostIP")]
    host_ip: Option<String>,
}

fn invalid(msg: String) -> CniError {
    CniError::new(code::INVALID_CONFIG, msg)
}

fn port(what: &str, n: i64) -> CniResult<u16> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| invalid(format!("portMappings: {what} {n} is outside 1-65535")))
}

fn spec(m: &PortMapping) -> CniResult<PortSpec> {
    let host_port = port("hostPort", m.host_port)?;
    let ctr_port = port("containerPort", m.container_port)?;
    let proto = match m
        .protocol
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("") | Some("tcp") => Proto::Tcp,
        Some("udp") => Proto::Udp,
        Some(other) => {
            return Err(invalid(format!(
                "portMappings: protocol {other:?} is not supported: use tcp or udp"
            )));
        }
    };
    // As `-p`: none every address, 0.0.0.0 every IPv4 one, `::` every IPv6 one.
    let host_ip =
        match m.host_ip.as_deref() {
            None | Some("") => None,
            Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| {
                invalid(format!("portMappings: hostIP {ip:?} is not an IP address"))
            })?),
        };
    Ok(PortSpec {
        host_ip,
        proto,
        host_port,
        host_end: host_port,
        ctr_port,
    })
}

/// The port specs the runtime asks for (none without the capability's key); an entry
/// given twice counts once.
pub fn specs(conf: &NetConf) -> CniResult<Vec<PortSpec>> {
    let Some(value) = conf.runtime_config("portMappings") else {
        return Ok(Vec::new());
    };
    let mappings: Vec<PortMapping> = serde_json::from_value(value.clone()).map_err(|e| {
        CniError::new(
            code::DECODING_FAILURE,
            format!("cannot decode runtimeConfig.portMappings: {e}"),
        )
    })?;
    let mut seen = std::collections::HashSet::with_capacity(mappings.len());
    let mut specs = Vec::with_capacity(mappings.len());
    for m in &mappings {
        let s = spec(m)?;
        if seen.insert(s) {
            specs.push(s);
        }
    }
    Ok(specs)
}

/// What of `specs` this network is to publish for the runtime's container `id`: all but
/// what another network of the same namespace publishes already for that same
/// container. A runtime sends a container's `-p` to every network it joins (podman
/// does), and a host port is published by one network of a namespace: the first that
/// published it answers for the container, as the first of CNI portmap's rules would,
/// until the container leaves it.
pub fn not_held_elsewhere(state: &LabState, id: &str, specs: Vec<PortSpec>) -> Vec<PortSpec> {
    // Each other network's mappings of this container, as that network wrote them.
    let held: Vec<(LabState, HashSet<PortSpec>)> = crate::store::other_labs(&state.name)
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o.host_netns == state.host_netns)
        .map(|o| {
            let ours = |name: &str| {
                o.container(name)
                    .is_some_and(|c| c.runtime_id.as_deref() == Some(id))
            };
            let specs = o
                .ports
                .iter()
                .filter(|p| ours(&p.container))
                .map(|p| p.spec)
                .collect();
            (o, specs)
        })
        .filter(|(_, specs): &(LabState, HashSet<PortSpec>)| !specs.is_empty())
        .collect();
    if held.is_empty() {
        return specs;
    }
    specs
        .into_iter()
        .filter(|s| {
            !held
                .iter()
                .any(|(o, theirs)| theirs.contains(&o.normalize(*s)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(mappings: &str) -> NetConf {
        NetConf::parse(&format!(
            r#"{{"cniVersion":"1.0.0","name":"nl","runtimeConfig":{{"portMappings":{mappings}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn mappings_become_single_port_specs() {
        let s = specs(&conf(
            r#"[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},
                {"hostPort":8080,"containerPort":80,"protocol":"tcp"},
                {"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"},
                {"hostPort":9000,"containerPort":90,"hostIP":"0.0.0.0"}]"#,
        ))
        .unwrap();
        let text: Vec<String> = s.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            text,
            [
                "8080:80/tcp",
                "127.0.0.1:5353:53/udp",
                "0.0.0.0:9000:90/tcp"
            ]
        );
        let none = NetConf::parse(r#"{"cniVersion":"1.0.0","name":"nl"}"#).unwrap();
        assert!(specs(&none).unwrap().is_empty());
    }

    #[test]
    fn bad_mappings() {
        for (m, code) in [
            (r#"[{"hostPort":0,"containerPort":80}]"#, 7),
            (r#"[{"hostPort":70000,"containerPort":80}]"#, 7),
            (
                r#"[{"hostPort":80,"containerPort":80,"protocol":"sctp"}]"#,
                7,
            ),
            (
                r#"[{"hostPort":80,"containerPort":80,"hostIP":"::1:x"}]"#,
                7,
            ),
            (r#"[{"hostPort":"80","containerPort":80}]"#, 6),
            (r#"{"hostPort":80}"#, 6),
        ] {
            assert_eq!(specs(&conf(m)).unwrap_err().code, code, "{m}");
        }
    }
}
