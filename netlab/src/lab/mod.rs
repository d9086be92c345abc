//! The plain data of a lab: what `state.json` holds, and the pure rules about it (names,
//! subnets, `-p` specs, NAT options). Nothing here touches the system; every other
//! module of the library builds on these types.

pub mod mounts;
pub mod names;
pub mod options;
pub mod published;
pub mod spec;
pub mod subnet;
pub mod subnet6;
pub mod text;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use serde::{Deserialize, Serialize};

pub use options::{DatapathKind, Device, Fault, NatOptions};
pub use published::Published;
pub use spec::{PortRequest, PortSpec, Proto};
pub use subnet::Subnet;
pub use subnet6::Subnet6;

pub const STATE_VERSION: u32 = 2;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabState {
    pub version: u32,
    pub name: String,
    pub sandbox: bool,
    pub datapath: DatapathKind,
    /// The containers' interfaces (`up --device`); veth for a state written before it.
    #[serde(default)]
    pub device: Device,
    pub subnet: Subnet,
    /// The containers' IPv6 subnet (`up --ipv6`); `None` for an IPv4-only lab.
    #[serde(default)]
    pub subnet6: Option<Subnet6>,
    pub bridge: String,
    pub bridge_addr: Ipv4Addr,
    pub uplink: String,
    pub uplink_addr: Ipv4Addr,
    /// The uplink's IPv6 address in a lab with IPv6 (`None` where it has none: the
    /// containers' IPv6 then goes nowhere, as Docker's would).
    #[serde(default)]
    pub uplink_addr6: Option<Ipv6Addr>,
    /// The lab's host namespace; `None` for a lab on the machine's own namespace.
    pub host_netns: Option<String>,
    /// The sandbox's `wan` namespace.
    pub wan_netns: Option<String>,
    /// `ip_forward` before `up` changed it, restored by `down` (non-sandbox labs only)
    /// when no other lab is up in the namespace; a lab that came up beside another one
    /// keeps that one's (what the namespace had before either).
    pub ip_forward_was: Option<String>,
    /// The interfaces (and `default`) whose own IPv4 forwarding was on before `up`
    /// while `ip_forward` was 0, recorded and kept as `ip_forward_was`: putting
    /// `ip_forward` back to 0 turns them all off, and `down` turns these on again.
    #[serde(default)]
    pub forwarding_on_was: Vec<String>,
    /// `net.bridge.bridge-nf-call-iptables` before `up` (non-sandbox labs; `None` when
    /// the namespace has no such setting, or for a state written before netlab kept
    /// it), restored as `ip_forward_was`.
    #[serde(default)]
    pub bridge_nf_was: Option<String>,
    /// `net.bridge.bridge-nf-call-ip6tables` before `up` (non-sandbox labs), restored as
    /// `bridge_nf_was` (a lab with IPv6 turns it on).
    #[serde(default)]
    pub bridge_nf6_was: Option<String>,
    /// NAT tunables the datapath was set up with.
    pub nat: NatOptions,
    /// Whether the datapath was loaded with its debug logs on (`up --debug`).
    #[serde(default)]
    pub debug: bool,
    /// The tests' fault point the datapath was loaded with (`up --fault`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    pub containers: Vec<Container>,
    /// Published ports, in the order they were published.
    #[serde(default)]
    pub ports: Vec<Published>,
    /// The identities (netns cookies) of the lab's namespaces when it came up: its host
    /// namespace (a lab whose namespace is gone, or was made again under its name, is
    /// gone with it) and, in a sandbox, the `wan` namespace netlab made.
    #[serde(default)]
    pub cookies: Cookies,
    /// Set from the moment `up` starts making things until it is done: the state is
    /// written first, so that whatever an interrupted `up` made is recorded and
    /// `down` removes it.
    #[serde(default)]
    pub building: bool,
    /// Set when `down` (or the rollback of a failed `up`) starts removing the lab: a
    /// state left with it is of a lab partly taken down, which only `down` can finish.
    #[serde(default)]
    pub taking_down: bool,
    /// Whether the datapath's setup began (after its checks that the namespace, bpffs
    /// and cgroups hold nothing of its kind): only then does `down` tear it down, so a
    /// refused `up` never removes what it was refused over. A state written before
    /// netlab kept this is of a lab whose datapath was set up.
    #[serde(default = "set_up_before")]
    pub datapath_made: bool,
    /// The mounts the lab's namespaces, pins and cgroups are in, as `up` saw them: a
    /// command where one is another mount is refused (see [`mounts`]).
    #[serde(default)]
    pub mounts: mounts::Mounts,
}

/// Checks a container's MAC as asked for (`run --mac-address`, CNI's `MAC=`): six hex octets
/// separated by `:`, unicast and not all zero; returned in lowercase, as the kernel
/// prints it.
pub fn check_mac(s: &str) -> Result<String, crate::error::Error> {
    let bad = |why: &str| crate::error::Error::Invalid(format!("MAC address {s:?}: {why}"));
    let octets: Vec<u8> = s
        .split(':')
        .map(|o| {
            (o.len() == 2)
                .then(|| u8::from_str_radix(o, 16).ok())
                .flatten()
        })
        .collect::<Option<_>>()
        .filter(|o: &Vec<u8>| o.len() == 6)
        .ok_or_else(|| bad("give six hex octets, as in 02:42:ac:12:00:02"))?;
    if octets[0] & 1 != 0 {
        return Err(bad("a multicast address cannot be an interface's"));
    }
    if octets.iter().all(|&o| o == 0) {
        return Err(bad("the zero address cannot be an interface's"));
    }
    Ok(s.to_ascii_lowercase())
}

fn set_up_before() -> bool {
    true
}

/// Netns cookies of a lab's namespaces (`SO_NETNS_COOKIE`): a namespace's identity for
/// as long as the kernel runs, never given to another one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cookies {
    pub host: Option<u64>,
    pub wan: Option<u64>,
}

/// How a container is attached, as Docker's `--network`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Own namespace, veth on the lab bridge (Docker's default).
    Bridge,
    /// Own namespace with only `lo`.
    None,
    /// The lab host's namespace, shared.
    Host,
}

impl Network {
    pub fn name(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::None => "none",
            Self::Host => "host",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        [Self::Bridge, Self::None, Self::Host]
            .into_iter()
            .find(|n| n.name() == s)
    }
}

fn eth0() -> String {
    "eth0".into()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Container {
    pub name: String,
    pub network: Network,
    /// Namespace name under /run/netns that netlab made (none for `--network host`, and
    /// none for a namespace a container runtime owns).
    pub netns: Option<String>,
    /// The cookie of the namespace netlab made, known before it was mounted at its
    /// name: only that namespace is ever removed under the name.
    #[serde(default)]
    pub netns_cookie: Option<u64>,
    /// A namespace a container runtime made and owns (CNI's `CNI_NETNS`): netlab puts
    /// an interface in it, and never deletes it.
    #[serde(default)]
    pub runtime_netns: Option<PathBuf>,
    /// The runtime's container id (CNI's `CNI_CONTAINERID`): with `ifname`, which
    /// attachment this is. Its name `<id>-<ifname>` can be another attachment's too
    /// (`ab`, `c-d` and `ab-c`, `d`); a verb about that other one never touches it.
    #[serde(default)]
    pub runtime_id: Option<String>,
    /// The interface inside the container (CNI's `CNI_IFNAME`).
    #[serde(default = "eth0")]
    pub ifname: String,
    pub ip: Option<Ipv4Addr>,
    /// The IPv6 address `run --ip6` gave it; `None`: its IPv4 host number in the
    /// lab's IPv6 subnet (see [`LabState::container_ip6`]).
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
    /// Host end of the veth, or netkit primary (bridge network only).
    pub veth: Option<String>,
    /// MAC address of the interface inside the container (bridge network only).
    #[serde(default)]
    pub mac: Option<String>,
    /// The cgroup netlab made for a `--network host` container: `exec` puts its
    /// processes there, and `rm` ends them and removes it.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    /// That cgroup's id, recorded once it is made: only that cgroup is ever joined,
    /// emptied or removed as this container's.
    #[serde(default)]
    pub cgroup_id: Option<u64>,
}

impl LabState {
    /// A sandbox lab on the seed's addressing, with nothing run or published yet (for
    /// unit tests of what the datapaths write).
    #[cfg(test)]
    pub(crate) fn sample(name: &str, datapath: DatapathKind) -> LabState {
        LabState {
            version: STATE_VERSION,
            name: name.into(),
            sandbox: true,
            datapath,
            device: Device::Veth,
            subnet: "172.18.0.0/16".parse().unwrap(),
            subnet6: None,
            bridge: format!("nl-{name}"),
            bridge_addr: "172.18.0.1".parse().unwrap(),
            uplink: "eth0".into(),
            uplink_addr: "198.51.100.2".parse().unwrap(),
            uplink_addr6: None,
            host_netns: Some(format!("{name}-host")),
            wan_netns: Some(format!("{name}-wan")),
            ip_forward_was: None,
            forwarding_on_was: Vec::new(),
            bridge_nf_was: None,
            bridge_nf6_was: None,
            nat: NatOptions::default(),
            debug: false,
            fault: None,
            containers: Vec::new(),
            ports: Vec::new(),
            cookies: Default::default(),
            building: false,
            taking_down: false,
            datapath_made: true,
            mounts: Default::default(),
        }
    }

    pub fn container(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The IPv6 address of the container at `ip` (a lab with IPv6): the one it was
    /// given (`run --ip6`), or its IPv4 host number in the IPv6 subnet.
    pub fn ip6_of(&self, ip: Ipv4Addr) -> Option<Ipv6Addr> {
        match self.containers.iter().find(|c| c.ip == Some(ip)) {
            Some(c) => self.container_ip6(c),
            None => self.subnet6.map(|s6| s6.host(&self.subnet, ip)),
        }
    }

    /// A bridge container's IPv6 address in a lab with IPv6: the one it was given
    /// (`run --ip6`), or its IPv4 host number in the IPv6 subnet.
    pub fn container_ip6(&self, c: &Container) -> Option<Ipv6Addr> {
        let s6 = self.subnet6?;
        c.ip6.or_else(|| c.ip.map(|ip| s6.host(&self.subnet, ip)))
    }

    /// The IPv6 addresses the containers hold, with whose.
    pub fn taken_ip6s(&self) -> Vec<(Ipv6Addr, &str)> {
        self.containers
            .iter()
            .filter_map(|c| Some((self.container_ip6(c)?, c.name.as_str())))
            .collect()
    }

    /// The bridge, its address and prefix, and its IPv6 one in a lab with IPv6, as `up`
    /// and `status` show them: `nl-x 172.18.0.1/16 fd00:ac12::1/64`.
    pub fn bridge_text(&self) -> String {
        let v6 = self
            .subnet6
            .map(|s6| format!(" {}", s6.gateway_cidr()))
            .unwrap_or_default();
        format!(
            "{} {}/{}{v6}",
            self.bridge, self.bridge_addr, self.subnet.prefix
        )
    }

    /// A spec as this lab keeps it: in a lab without IPv6, `0.0.0.0` (every IPv4
    /// address) is every address, and is kept as no address, as netlab always kept it;
    /// only a dual-stack lab tells them apart.
    pub fn normalize(&self, mut spec: PortSpec) -> PortSpec {
        if self.subnet6.is_none()
            && spec
                .host_ip
                .is_some_and(|a| a.is_ipv4() && a.is_unspecified())
        {
            spec.host_ip = None;
        }
        spec
    }

    /// Where a published port leads, as `publish` and `ports` show it: the container's
    /// address of each family the port answers on, with the container port (range):
    /// `172.18.0.2:80`, `[fd00:ac12::2]:80`, or both, space-separated.
    pub fn targets(&self, p: &Published) -> String {
        let ports = if p.spec.host_port == p.spec.host_end {
            p.spec.ctr_port.to_string()
        } else {
            format!("{}-{}", p.spec.ctr_port, p.spec.ctr_end())
        };
        let mut to = Vec::new();
        if p.spec.on_ipv4() {
            to.push(format!("{}:{ports}", p.ctr_ip));
        }
        if let Some(ip6) = self.ip6_of(p.ctr_ip).filter(|_| p.spec.on_ipv6()) {
            to.push(format!("[{ip6}]:{ports}"));
        }
        to.join(" ")
    }

    /// The bridge's IPv6 address (a lab with IPv6).
    pub fn bridge_addr6(&self) -> Option<Ipv6Addr> {
        self.subnet6.map(|s6| s6.gateway())
    }

    /// The IPv4 addresses a new container cannot get: the containers', and those whose
    /// IPv6 address (the same host number) a container was given with `--ip6`.
    pub fn taken_ips(&self) -> Vec<Ipv4Addr> {
        let given6 = self.containers.iter().filter_map(|c| {
            let (s6, a) = (self.subnet6?, c.ip6?);
            s6.v4_of(&self.subnet, a)
        });
        self.containers
            .iter()
            .filter_map(|c| c.ip)
            .chain(given6)
            .collect()
    }

    /// The ports published on one container.
    pub fn ports_of<'a>(&'a self, container: &'a str) -> impl Iterator<Item = &'a Published> {
        self.ports.iter().filter(move |p| p.container == container)
    }

    /// The published ports other than `ports`: what a withdrawal of `ports` must leave
    /// as it is.
    pub fn other_ports(&self, ports: &[Published]) -> Vec<Published> {
        self.ports
            .iter()
            .filter(|p| !ports.contains(p))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::check_mac;

    #[test]
    fn macs_as_docker_takes_them() {
        assert_eq!(check_mac("02:42:AC:12:00:02").unwrap(), "02:42:ac:12:00:02");
        for bad in [
            "",
            "02:42:ac:12:00",
            "02:42:ac:12:00:02:03",
            "02-42-ac-12-00-02",
            "2:42:ac:12:00:02",
            "0g:42:ac:12:00:02",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
        ] {
            assert!(check_mac(bad).is_err(), "{bad}");
        }
    }
}
