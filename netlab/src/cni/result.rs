//! ADD's result: the bridge, the host end of the veth and the container's interface,
//! its address with the gateway, and the default route (of each family, in a
//! dual-stack network); after what an earlier plugin of a chain returned
//! (`prevResult`), which the spec has ADD pass on.

use std::{net::Ipv4Addr, path::Path};

use serde_json::{Value, json};

use crate::lab::{Container, LabState};

/// Index of the container's interface among netlab's `interfaces` (after the bridge and
/// the veth).
const SANDBOX_INTERFACE: usize = 2;

/// The result of attaching `c` (whose namespace is `netns`), for spec `version`;
/// `bridge_mac` and `veth_mac` are the host side's. An earlier plugin's result `prev`
/// comes first: its interfaces, addresses and routes kept, netlab's after them (its
/// addresses' `interface` indices moved past the earlier ones), and its `dns` unless
/// the configuration gives one.
pub fn add_result(
    version: &str,
    state: &LabState,
    c: &Container,
    netns: &Path,
    (bridge_mac, veth_mac): (String, String),
    dns: Option<&Value>,
    prev: Option<&Value>,
) -> Value {
    let earlier = |key: &str| {
        prev.and_then(|p| p[key].as_array())
            .cloned()
            .unwrap_or_default()
    };
    let mut interfaces = earlier("interfaces");
    let sandbox_interface = interfaces.len() + SANDBOX_INTERFACE;
    let ip = c.ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mut address = json!({
        "address": format!("{ip}/{}", state.subnet.prefix),
        "gateway": state.bridge_addr,
        "interface": sandbox_interface,
    });
    if version == "0.4.0" {
        address["version"] = json!("4");
    }
    let mut ips = earlier("ips");
    ips.push(address);
    let mut routes = earlier("routes");
    routes.push(json!({"dst": "0.0.0.0/0", "gw": state.bridge_addr}));
    if let (Some(s6), Some(ip6)) = (state.subnet6, state.container_ip6(c)) {
        let mut address = json!({
            "address": format!("{ip6}/{}", s6.prefix),
            "gateway": s6.gateway(),
            "interface": sandbox_interface,
        });
        if version == "0.4.0" {
            address["version"] = json!("6");
        }
        ips.push(address);
        routes.push(json!({"dst": "::/0", "gw": s6.gateway()}));
    }
    interfaces.extend([
        json!({"name": state.bridge, "mac": bridge_mac}),
        json!({"name": c.veth, "mac": veth_mac}),
        json!({"name": c.ifname, "mac": c.mac, "sandbox": netns}),
    ]);
    let mut result = json!({
        "cniVersion": version,
        "interfaces": interfaces,
        "ips": ips,
        "routes": routes,
    });
    if let Some(d) = dns.or_else(|| prev.map(|p| &p["dns"]).filter(|d| d.is_object())) {
        result["dns"] = d.clone();
    }
    result
}
