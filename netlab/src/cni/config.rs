//! The network configuration on stdin: parsed once, each field checked where a verb
//! needs it, so that DEL of a half-made attachment never fails on a field it ignores.
//!
//! `{"cniVersion":"1.0.0","name":"nl","type":"netlab-cni","bridge":"nl0",
//!   "subnet":"10.77.0.0/24","datapath":"ebpf","capabilities":{"portMappings":true}}`

use serde_json::{Map, Value};

use super::{
    error::{CniError, CniResult, code},
    version,
};
use crate::{
    lab::{DatapathKind, Device, NatOptions, Subnet, Subnet6, names, options::parse_port_range},
    ops::UpRequest,
};

/// The subnet of a network whose configuration names none (netlab's default).
pub const DEFAULT_SUBNET: &str = "172.18.0.0/16";

/// Fields netlab-cni reads, and the well-known ones a runtime may add; `cni.dev/*`
/// keys are the runtime's too.
const KNOWN: [&str; 19] = [
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "bridge",
    "subnet",
    "subnet6",
    "datapath",
    "uplink",
    "natPorts",
    "device",
    "capabilities",
    "runtimeConfig",
    "prevResult",
    "args",
    "dns",
    "disableCheck",
    "disableGC",
    "ipMasq",
];

#[derive(Debug)]
pub struct NetConf {
    pub version: String,
    raw: Map<String, Value>,
}

fn invalid(msg: String) -> CniError {
    CniError::new(code::INVALID_CONFIG, msg)
}

/// A message of `netlab up`'s with its flags named as the configuration names them
/// (`--nat-ports` is `"natPorts"`): what the runtime's user can change.
pub fn in_config_words(msg: &str) -> String {
    [
        ("--nat-ports", "natPorts"),
        ("--subnet6", "subnet6"),
        ("--subnet", "subnet"),
        ("--uplink", "uplink"),
        ("--datapath", "datapath"),
        ("--device", "device"),
    ]
    .iter()
    .fold(msg.to_string(), |m, (flag, field)| {
        m.replace(flag, &format!("\"{field}\""))
    })
}

impl NetConf {
    /// Decodes the configuration and checks its version.
    pub fn parse(text: &str) -> CniResult<Self> {
        let raw = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(CniError::new(
                    code::DECODING_FAILURE,
                    "the network configuration is not a JSON object",
                ));
            }
            Err(e) => {
                return Err(CniError::new(
                    code::DECODING_FAILURE,
                    format!("cannot decode the network configuration: {e}"),
                ));
            }
        };
        let version = match raw.get("cniVersion") {
            Some(Value::String(v)) => v.clone(),
            Some(other) => return Err(invalid(format!("cniVersion {other} is not a string"))),
            None => {
                return Err(invalid(
                    "the network configuration has no cniVersion".into(),
                ));
            }
        };
        version::check(&version)?;
        Ok(Self { version, raw })
    }

    /// Refuses fields netlab-cni does not know (a typo would otherwise be ignored), an
    /// IPAM section (netlab allocates addresses itself) and `ipMasq: false`.
    pub fn check_fields(&self) -> CniResult<()> {
        for (key, value) in &self.raw {
            let why = if key == "ipam" {
                "netlab-cni allocates addresses itself: drop ipam and give \"subnet\""
            } else if key == "ipMasq" && value != &Value::Bool(true) {
                "netlab always masquerades the network's traffic"
            } else if KNOWN.contains(&key.as_str()) || key.starts_with("cni.dev/") {
                continue;
            } else {
                "netlab-cni takes bridge, subnet, subnet6, datapath, device, uplink and natPorts"
            };
            return Err(CniError::new(
                code::UNSUPPORTED_FIELD,
                format!("unsupported field {key:?}: {value}: {why}"),
            ));
        }
        for (key, e_g) in [
            ("capabilities", r#"{"portMappings": true}"#),
            ("runtimeConfig", r#"{"portMappings": [...]}"#),
            ("dns", r#"{"nameservers": ["10.77.0.1"]}"#),
            ("args", r#"{"cni": {"ips": ["10.77.0.50"]}}"#),
            ("prevResult", r#"{"interfaces": [...], "ips": [...]}"#),
        ] {
            match self.raw.get(key) {
                None | Some(Value::Object(_)) => {}
                Some(other) => {
                    return Err(invalid(format!(
                        "{key} {other} is not an object (e.g. {e_g})"
                    )));
                }
            }
        }
        if let Some(cni) = self.raw.get("args").and_then(|a| a.get("cni"))
            && !cni.is_object()
        {
            return Err(invalid(format!(
                "args.cni {cni} is not an object (e.g. {{\"ips\": [\"10.77.0.50\"]}})"
            )));
        }
        if let Some(Value::Object(caps)) = self.raw.get("capabilities")
            && let Some((k, v)) = caps.iter().find(|(_, v)| !v.is_boolean())
        {
            return Err(invalid(format!(
                "capabilities.{k} {v} is not true or false"
            )));
        }
        Ok(())
    }

    /// The network's name, which is its lab's.
    pub fn lab(&self) -> CniResult<&str> {
        let name = self
            .string("name")?
            .ok_or_else(|| invalid("the network configuration has no name".into()))?;
        names::check_lab(name).map_err(|_| {
            invalid(format!(
                "network name {name:?} cannot be a netlab lab name: use 1-12 letters, digits or '_'"
            ))
        })?;
        Ok(name)
    }

    fn string(&self, key: &str) -> CniResult<Option<&str>> {
        match self.raw.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(invalid(format!("{key} {other} is not a string"))),
        }
    }

    pub fn datapath(&self) -> CniResult<Option<DatapathKind>> {
        let Some(name) = self.string("datapath")? else {
            return Ok(None);
        };
        match DatapathKind::from_name(name) {
            Some(DatapathKind::Routed) | None => Err(invalid(format!(
                "datapath {name:?}: use ebpf, iptables, iptables-legacy, nftables or nftables-flowtable"
            ))),
            Some(kind) => Ok(Some(kind)),
        }
    }

    /// `"device"`: `veth` or `netkit`, the containers' interfaces.
    pub fn device(&self) -> CniResult<Option<Device>> {
        self.string("device")?
            .map(|d| Device::parse(d).map_err(|e| invalid(e.to_string())))
            .transpose()
    }

    /// `"subnet6"`: the containers' IPv6 subnet, for a dual-stack network.
    pub fn subnet6(&self) -> CniResult<Option<Subnet6>> {
        self.string("subnet6")?
            .map(|s| {
                s.parse()
                    .map_err(|e: crate::error::Error| invalid(e.to_string()))
            })
            .transpose()
    }

    pub fn subnet(&self) -> CniResult<Option<Subnet>> {
        self.string("subnet")?
            .map(|s| {
                s.parse()
                    .map_err(|e: crate::error::Error| invalid(e.to_string()))
            })
            .transpose()
    }

    pub fn bridge(&self) -> CniResult<Option<&str>> {
        let bridge = self.string("bridge")?;
        if let Some(b) = bridge {
            names::check_bridge(b).map_err(|e| invalid(e.to_string()))?;
        }
        Ok(bridge)
    }

    /// The masquerade's source ports, `MIN-MAX` (two eBPF networks in one namespace
    /// need ranges apart).
    pub fn nat(&self) -> CniResult<NatOptions> {
        let mut nat = NatOptions::default();
        if let Some(range) = self.string("natPorts")? {
            (nat.port_min, nat.port_max) =
                parse_port_range(range).map_err(|e| invalid(format!("natPorts: {e}")))?;
        }
        Ok(nat)
    }

    /// What `up` is asked for when the first ADD brings the network up: a lab in the
    /// namespace the plugin runs in (the runtime's).
    pub fn up_request(&self) -> CniResult<UpRequest> {
        let default_subnet = || DEFAULT_SUBNET.parse().expect("the default subnet parses");
        Ok(UpRequest {
            lab: self.lab()?.to_string(),
            sandbox: false,
            datapath: self.datapath()?.unwrap_or(DatapathKind::Ebpf),
            device: self.device()?.unwrap_or_default(),
            subnet: self.subnet()?.unwrap_or_else(default_subnet),
            subnet6: self.subnet6()?,
            uplink: self.string("uplink")?.map(str::to_string),
            bridge: self.bridge()?.map(str::to_string),
            nat: self.nat()?,
            given: Vec::new(),
            debug: false,
            fault: None,
        })
    }

    /// A capability's value in `runtimeConfig` (`portMappings`).
    pub fn runtime_config(&self, capability: &str) -> Option<&Value> {
        self.raw.get("runtimeConfig")?.get(capability)
    }

    /// A key of `args.cni`, the CNI conventions' arguments in the configuration
    /// (`ips`); the rest of `args` is the runtime's.
    pub fn cni_arg(&self, key: &str) -> Option<&Value> {
        self.raw.get("args")?.get("cni")?.get(key)
    }

    /// The result of the ADD that a CHECK (or DEL) is about.
    pub fn prev_result(&self) -> Option<&Value> {
        self.raw.get("prevResult").filter(|v| v.is_object())
    }

    /// Refuses an earlier plugin's result that ADD cannot pass on as it is: an
    /// `interfaces`, `ips` or `routes` that is not a list, or an address whose
    /// `interface` is not one of the earlier interfaces (netlab's come after them).
    pub fn check_prev_result(&self) -> CniResult<()> {
        let Some(prev) = self.prev_result() else {
            return Ok(());
        };
        for key in ["interfaces", "ips", "routes"] {
            if !(prev[key].is_null() || prev[key].is_array()) {
                return Err(invalid(format!(
                    "prevResult.{key} {} is not a list",
                    prev[key]
                )));
            }
        }
        let earlier = prev["interfaces"].as_array().map_or(0, Vec::len);
        let empty = Vec::new();
        for ip in prev["ips"].as_array().unwrap_or(&empty) {
            match &ip["interface"] {
                Value::Null => {}
                i if i.as_u64().is_some_and(|i| (i as usize) < earlier) => {}
                i => {
                    return Err(invalid(format!(
                        "prevResult's address {} names interface {i}, not one of its {earlier} interfaces",
                        ip["address"]
                    )));
                }
            }
        }
        Ok(())
    }

    /// The `dns` section, returned in ADD's result as it is.
    pub fn dns(&self) -> Option<&Value> {
        self.raw.get("dns").filter(|v| v.is_object())
    }

    /// GC's `cni.dev/valid-attachments` (libcni also sends it as `cni.dev/attachments`):
    /// (container id, interface name) pairs. `null` is none, as libcni sends an empty
    /// list (a nil Go slice).
    pub fn valid_attachments(&self) -> CniResult<Vec<(String, String)>> {
        let list = self
            .raw
            .get("cni.dev/valid-attachments")
            .or_else(|| self.raw.get("cni.dev/attachments"))
            .ok_or_else(|| invalid("GC needs cni.dev/valid-attachments".into()))?;
        if list.is_null() {
            return Ok(Vec::new());
        }
        let bad = || {
            CniError::new(
                code::DECODING_FAILURE,
                format!(
                    "cni.dev/valid-attachments {list}: expected [{{\"containerID\": ..., \"ifname\": ...}}, ...]"
                ),
            )
        };
        list.as_array()
            .ok_or_else(bad)?
            .iter()
            .map(
                |a| match (a["containerID"].as_str(), a["ifname"].as_str()) {
                    (Some(id), Some(ifname)) => Ok((id.to_string(), ifname.to_string())),
                    _ => Err(bad()),
                },
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"cniVersion":"1.0.0","name":"nl","type":"netlab-cni","bridge":"nl0","subnet":"10.77.0.0/24","datapath":"iptables","capabilities":{"portMappings":true},"runtimeConfig":{"portMappings":[]}}"#;

    #[test]
    fn a_good_configuration() {
        let c = NetConf::parse(GOOD).unwrap();
        c.check_fields().unwrap();
        let req = c.up_request().unwrap();
        assert_eq!(req.lab, "nl");
        assert_eq!(req.bridge.as_deref(), Some("nl0"));
        assert_eq!(req.datapath, DatapathKind::Iptables);
        assert_eq!(req.subnet.to_string(), "10.77.0.0/24");
        assert!(!req.sandbox);
        let c = NetConf::parse(r#"{"cniVersion":"1.0.0","name":"nl","natPorts":"30000-30999"}"#)
            .unwrap();
        let nat = c.up_request().unwrap().nat;
        assert_eq!((nat.port_min, nat.port_max), (30000, 30999));
        let c = NetConf::parse(r#"{"cniVersion":"1.0.0","name":"nl","device":"netkit"}"#).unwrap();
        c.check_fields().unwrap();
        assert_eq!(c.up_request().unwrap().device, Device::Netkit);
    }

    #[test]
    fn defaults() {
        let c =
            NetConf::parse(r#"{"cniVersion":"0.4.0","name":"nl","type":"netlab-cni"}"#).unwrap();
        let req = c.up_request().unwrap();
        assert_eq!(req.datapath, DatapathKind::Ebpf);
        assert_eq!(req.subnet.to_string(), DEFAULT_SUBNET);
        assert_eq!(req.bridge, None);
        assert_eq!(req.device, Device::Veth);
    }

    #[test]
    fn bad_configurations() {
        let code_of = |text: &str| -> u32 {
            match NetConf::parse(text) {
                Err(e) => e.code,
                Ok(c) => c
                    .check_fields()
                    .and_then(|()| c.up_request().map(drop))
                    .err()
                    .map_or(0, |e| e.code),
            }
        };
        assert_eq!(code_of("{"), 6);
        assert_eq!(code_of("[]"), 6);
        assert_eq!(code_of(r#"{"name":"nl"}"#), 7);
        assert_eq!(code_of(r#"{"cniVersion":"0.3.1","name":"nl"}"#), 1);
        assert_eq!(code_of(r#"{"cniVersion":"1.0.0","name":"a-b"}"#), 7);
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"thirteen_char"}"#),
            7
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"nl","subnet":"10.77.0.1/24"}"#),
            7
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"nl","datapath":"pf"}"#),
            7
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"nl","datapath":"routed"}"#),
            7
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"nl","device":"tap"}"#),
            7
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"nl","bridge":"a/b"}"#),
            7
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"nl","subnett":"10.0.0.0/8"}"#),
            2
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"nl","ipam":{"type":"host-local"}}"#),
            2
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"nl","ipMasq":false}"#),
            2
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"nl","ipMasq":true,"cni.dev/x":1}"#),
            0
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"nl","capabilities":"yes"}"#),
            7
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"nl","capabilities":{"portMappings":"yes"}}"#),
            7
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"nl","runtimeConfig":[]}"#),
            7
        );
        assert_eq!(
            code_of(r#"{"cniVersion":"1.0.0","name":"nl","subnet":"127.0.0.0/24"}"#),
            7
        );
    }

    #[test]
    fn gc_attachments() {
        let c = NetConf::parse(
            r#"{"cniVersion":"1.1.0","name":"nl","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(
            c.valid_attachments().unwrap(),
            vec![("a".into(), "eth0".into())]
        );
        let c = NetConf::parse(
            r#"{"cniVersion":"1.1.0","name":"nl","cni.dev/valid-attachments":[{"id":"a"}]}"#,
        )
        .unwrap();
        assert_eq!(c.valid_attachments().unwrap_err().code, 6);
        let c = NetConf::parse(
            r#"{"cniVersion":"1.1.0","name":"nl","cni.dev/valid-attachments":null}"#,
        )
        .unwrap();
        assert_eq!(c.valid_attachments().unwrap(), vec![], "libcni's nil slice");
    }
}
