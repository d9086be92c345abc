//! ADD's result: the bridge, the host end of the veth and the container's interface,
//! its address with the gateway, and the default route (of each family, in a
//! dual-stack network).

use std::{net::Ipv4Addr, path::Path};

use serde_json::{Value, json};

use crate::lab::{Container, LabState};

/// Index of the container's interface in `interfaces` (after the bridge and the veth).
const SANDBOX_INTERFACE: u32 = 2;

/// The result of attaching `c` (whose namespace is `netns`), for spec `version`;
/// `bridge_mac` and `veth_mac` are the host side's.
pub fn add_result(
    version: &str,
    state: &LabState,
    c: &Container,
    netns: &Path,
    (bridge_mac, veth_mac): (String, String),
    dns: Option<&Value>,
) -> Value {
    let ip = c.ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mut address = json!({
        "address": format!("{ip}/{}", state.subnet.prefix),
        "gateway": state.bridge_addr,
        "interface": SANDBOX_INTERFACE,
    });
    if version == "0.4.0" {
        address["version"] = json!("4");
    }
    let mut ips = vec![address];
    let mut routes = vec![json!({"dst": "0.0.0.0/0", "gw": state.bridge_addr})];
    if let (Some(s6), Some(ip6)) = (state.subnet6, state.container_ip6(c)) {
        let mut address = json!({
            "address": format!("{ip6}/{}", s6.prefix),
            "gateway": s6.gateway(),
            "interface": SANDBOX_INTERFACE,
        });
        if version == "0.4.0" {
            address["version"] = json!("6");
        }
        ips.push(address);
        routes.push(json!({"dst": "::/0", "gw": s6.gateway()}));
    }
    let mut result = json!({
        "cniVersion": version,
        "interfaces": [
            {"name": state.bridge, "mac": bridge_mac},
            {"name": c.veth, "mac": veth_mac},
            {"name": c.ifname, "mac": c.mac, "sandbox": netns},
        ],
        "ips": ips,
        "routes": routes,
    });
    if let Some(d) = dns {
        result["dns"] = d.clone();
    }
    result
}
