//! `attach` and `detach`: a container's interface on the lab's bridge (or its
//! namespace alone), for `netlab run`/`rm` and for CNI's ADD/DEL.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use super::{Session, journal::Entry, publish};
use crate::{
    error::{Error, Result},
    lab::{Container, Network, PortRequest, Published, names},
    netlink::cgroup,
    topology,
};

/// What `attach` is asked for.
#[derive(Clone, Debug)]
pub struct AttachRequest {
    pub name: String,
    pub network: Network,
    /// An address on the lab subnet (default: the lowest free one).
    pub ip: Option<Ipv4Addr>,
    /// An address on the lab's IPv6 subnet (default: the IPv4 host number's).
    pub ip6: Option<Ipv6Addr>,
    /// A namespace the container runtime made (CNI); netlab makes `<lab>-<name>` when
    /// there is none.
    pub runtime_netns: Option<PathBuf>,
    /// The runtime's id for the container (CNI's `CNI_CONTAINERID`).
    pub runtime_id: Option<String>,
    /// The interface inside the container.
    pub ifname: String,
    /// Its MAC (`run --mac-address`, CNI's `MAC=`; default: the kernel's random one).
    pub mac: Option<String>,
    /// Ports to publish with it (`run -p`), in the same operation: a container is never
    /// left without them, even by a crash.
    pub ports: Vec<PortRequest>,
}

impl AttachRequest {
    /// A container of netlab's own (`netlab run`).
    pub fn own(name: &str, network: Network, ip: Option<Ipv4Addr>) -> Self {
        Self {
            name: name.to_string(),
            network,
            ip,
            ip6: None,
            runtime_netns: None,
            runtime_id: None,
            ifname: "eth0".into(),
            mac: None,
            ports: Vec::new(),
        }
    }
}

/// The address a new bridge container gets: the one asked for, if free, or the lowest
/// free one.
fn address(s: &Session, req: &AttachRequest) -> Result<Option<Ipv4Addr>> {
    let state = &s.state;
    match (req.network, req.ip) {
        (Network::Bridge, Some(ip)) => {
            state.subnet.check_host(ip)?;
            if let Some(other) = state.containers.iter().find(|c| c.ip == Some(ip)) {
                return Err(Error::Conflict(format!(
                    "address {ip} is already used by container {}",
                    other.name
                )));
            }
            Ok(Some(ip))
        }
        (Network::Bridge, None) => {
            // A bad `--ip6` is said as itself, full lab or not.
            if let (Some(s6), Some(a)) = (state.subnet6, req.ip6) {
                s6.check_host(a)?;
            }
            let v4_taken: Vec<Ipv4Addr> = state.containers.iter().filter_map(|c| c.ip).collect();
            // With `--ip6` given, an IPv4 address whose IPv6 twin (the same host
            // number) a container holds is free for this one: the twin is not its.
            let taken = match req.ip6 {
                Some(_) => v4_taken.clone(),
                None => state.taken_ips(),
            };
            if let Some(ip) = state.subnet.next_free(&taken) {
                return Ok(Some(ip));
            }
            let subnet = state.subnet;
            Err(Error::Conflict(match state.subnet.next_free(&v4_taken) {
                Some(free) => format!(
                    "no free address left in {subnet} for a pick: the IPv6 address of each free one ({free}, ...) is a container's, given by --ip6: give --ip6"
                ),
                None => format!(
                    "no free address left in {subnet}: rm a container, or bring the lab up with a larger --subnet"
                ),
            }))
        }
        (_, Some(_)) => Err(Error::Invalid("--ip needs --network bridge".into())),
        (_, None) => Ok(None),
    }
}

/// The IPv6 address a new container is given (`--ip6`), checked; `None`: its IPv4 host
/// number's, checked free too (a container may have been given it).
fn address6(s: &Session, req: &AttachRequest, ip: Option<Ipv4Addr>) -> Result<Option<Ipv6Addr>> {
    let state = &s.state;
    if req.ip6.is_some() && req.network != Network::Bridge {
        return Err(Error::Invalid("--ip6 needs --network bridge".into()));
    }
    let Some(s6) = state.subnet6 else {
        return match req.ip6 {
            Some(_) => Err(Error::Invalid(format!(
                "--ip6 needs a lab with IPv6: lab {} was brought up without --ipv6",
                state.name
            ))),
            None => Ok(None),
        };
    };
    let Some(ip) = ip else { return Ok(None) };
    if let Some(a) = req.ip6 {
        s6.check_host(a)?;
    }
    let want = req.ip6.unwrap_or_else(|| s6.host(&state.subnet, ip));
    if let Some((_, other)) = state.taken_ip6s().into_iter().find(|(a, _)| *a == want) {
        return Err(Error::Conflict(match req.ip6 {
            Some(_) => format!("address {want} is already used by container {other}"),
            None => format!(
                "address {ip} would give the container IPv6 address {want}, which container {other} has: pick another --ip, or give --ip6"
            ),
        }));
    }
    Ok(req.ip6)
}

/// The cgroup of a `--network host` container, checked free: under the lab host's own
/// cgroup when the host-local publishing hooks sit on one (so that they see its
/// processes), otherwise under the cgroup root.
fn host_cgroup(s: &Session, name: &str) -> Result<PathBuf> {
    let leaf = names::container_cgroup(&s.state.name, name);
    let cg = match s.datapath().host_cgroup(&s.state)? {
        Some(lab) => lab.join(leaf),
        None => cgroup::root()?.join(leaf),
    };
    cgroup::check_free(&cg)?;
    Ok(cg)
}

/// Creates a container on the lab and records it; nothing is left when it fails.
pub fn attach(s: &mut Session, req: &AttachRequest) -> Result<Container> {
    names::check_container(&req.name)?;
    let lab = s.state.name.clone();
    if s.state.container(&req.name).is_some() {
        return Err(Error::Conflict(format!(
            "container {} already exists in lab {lab}",
            req.name
        )));
    }
    if req.runtime_netns.is_some() && req.network == Network::Host {
        return Err(Error::Invalid(
            "a runtime's namespace cannot join the host network".into(),
        ));
    }
    if req.network == Network::Bridge {
        topology::check_bridge(&s.state)?;
    }
    let own_ns = (req.network != Network::Host && req.runtime_netns.is_none())
        .then(|| names::container_netns(&lab, &req.name));
    if let Some(ns) = &own_ns
        && crate::netlink::netns::exists(ns)
    {
        return Err(Error::Conflict(format!(
            "network namespace {ns} already exists and is not one of the lab's containers: remove it (`ip netns delete {ns}`) or pick another name"
        )));
    }
    let ip = address(s, req)?;
    let ip6 = address6(s, req, ip)?;
    // Its ports are checked before anything is made: a refused one makes nothing. Held
    // until they are published: another lab of the namespace checks against them.
    let _namespace = match req.ports.is_empty() {
        true => None,
        false => topology::lock_host(&s.state)?,
    };
    let ports = match (req.network, ip) {
        _ if req.ports.is_empty() => Vec::new(),
        (Network::Bridge, Some(ip)) => {
            let specs: Vec<PortRequest> = req
                .ports
                .iter()
                .map(|p| p.map(|p| s.state.normalize(p)))
                .collect();
            publish::prepare_for(s, &req.name, ip, &specs)?
        }
        _ => {
            return Err(Error::Invalid(format!(
                "container {} is not on the bridge network: only bridge containers can publish ports",
                req.name
            )));
        }
    };
    let cgroup = match req.network {
        Network::Host => Some(host_cgroup(s, &req.name)?),
        _ => None,
    };
    // The lab host's links, read once for a bridge container: its MAC may not be one of
    // theirs, nor its veth's name.
    let host_links = match req.network {
        Network::Bridge => {
            crate::netlink::netns::netlink_in(&topology::host_ns(&s.state), |h| async move {
                crate::netlink::link::all(&h).await
            })?
        }
        _ => Vec::new(),
    };
    if let Some(mac) = &req.mac {
        if req.network != Network::Bridge {
            return Err(Error::Invalid(
                "a MAC address needs --network bridge".into(),
            ));
        }
        if let Some(other) = s
            .state
            .containers
            .iter()
            .find(|c| c.mac.as_ref() == Some(mac))
        {
            return Err(Error::Conflict(format!(
                "MAC address {mac} is already used by container {}",
                other.name
            )));
        }
        // The bridge's, the uplink's: the container would answer for the host.
        if let Some(l) = host_links
            .iter()
            .find(|l| l.mac.as_deref() == Some(mac.as_str()))
        {
            return Err(Error::Conflict(format!(
                "MAC address {mac} is the lab host's interface {}'s",
                l.name
            )));
        }
    }
    let mut c = Container {
        name: req.name.clone(),
        network: req.network,
        netns: own_ns,
        netns_cookie: None,
        runtime_netns: req.runtime_netns.clone(),
        runtime_id: req.runtime_id.clone(),
        ifname: req.ifname.clone(),
        ip,
        ip6,
        // Nor a name a link of the lab host's holds (a foreign link of that name would
        // make the container's name unusable for ever).
        veth: (req.network == Network::Bridge).then(|| {
            names::veth_among(&lab, &req.name, |v| {
                host_links.iter().any(|l| l.name == v)
                    || s.state
                        .containers
                        .iter()
                        .any(|c| c.veth.as_deref() == Some(v))
            })
        }),
        // The one asked for is given to the interface; the kernel's is read back.
        mac: req.mac.clone(),
        cgroup,
        cgroup_id: None,
    };
    // Journal first, and again with the namespace's cookie before it is mounted at
    // its name (with the cgroup's id once it is made): a crash at any point is undone
    // by the next command (see `journal`).
    s.begin(&Entry::Attach {
        container: Box::new(c.clone()),
        ports: Vec::new(),
    })?;
    let made = topology::add_container(&s.state, &mut c, |known| {
        s.begin(&Entry::Attach {
            container: Box::new(known.clone()),
            ports: Vec::new(),
        })
    });
    if let Err(e) = made {
        let _ = s.commit();
        return Err(e);
    }
    s.state.containers.push(c.clone());
    let done = s.datapath().attach(&s.state, &c).and_then(|()| s.save());
    if let Err(e) = done {
        let _ = s.datapath().detach(&s.state, &c);
        s.state.containers.pop();
        let _ = topology::remove_container(&s.state, &c);
        let _ = s.commit();
        return Err(e);
    }
    publish_with(s, &c, ports)?;
    s.commit()?;
    Ok(c)
}

/// Publishes `new` (prepared before `c` was made) for `c`, just made, under its
/// attach's journal entry (which then names the ports); when that fails, the container
/// is removed again, as the next command would remove it after a crash (`undo_run`).
fn publish_with(s: &mut Session, c: &Container, new: Vec<Published>) -> Result<()> {
    if new.is_empty() {
        return Ok(());
    }
    s.begin(&Entry::Attach {
        container: Box::new(c.clone()),
        ports: new.clone(),
    })?;
    let Err((e, _)) = publish::apply(s, &new) else {
        return Ok(());
    };
    // Left to the next command when it cannot be done now (the journal says what).
    if undo_run(s, &c.name, &new).is_ok() {
        let _ = s.commit();
    }
    Err(e)
}

/// Takes back a `run` that did not finish: whatever of `ports` the state does not
/// record (a publish cut short), then the container, if the state lists it, with the
/// ports it records.
pub fn undo_run(s: &mut Session, name: &str, ports: &[Published]) -> Result<()> {
    publish::withdraw_unrecorded(s, ports)?;
    if s.state.container(name).is_some() {
        detach(s, name)?;
    }
    Ok(())
}

/// Removes a container: withdraws its ports, detaches it from the datapath, removes its
/// interface (and its namespace, when netlab made it), and forgets it. The state never
/// claims less or more than the kernel has: when the interface cannot be removed, the
/// container stays listed (without its ports) so that `rm` can be tried again.
pub fn detach(s: &mut Session, name: &str) -> Result<()> {
    let Some(c) = s.state.container(name).cloned() else {
        return Err(Error::Invalid(format!(
            "no container {name} in lab {}",
            s.state.name
        )));
    };
    // Journal first, the ports' withdrawal included: a crash from here on is carried
    // through by the next command, which removes the container (not only its ports).
    s.begin(&Entry::Detach {
        container: name.to_string(),
    })?;
    let ports: Vec<_> = s.state.ports_of(name).cloned().collect();
    publish::withdraw(s, &ports)?;
    let dp = s.datapath();
    let gone = dp
        .detach(&s.state, &c)
        .and_then(|()| topology::remove_container(&s.state, &c));
    if gone.is_ok() {
        s.state.containers.retain(|x| x.name != name);
    }
    s.save()?;
    s.commit()?;
    gone
}

/// Checks that a container's interfaces are still as `attach` made them (CNI's CHECK).
pub fn check(s: &Session, name: &str) -> Result<()> {
    let c = s
        .state
        .container(name)
        .ok_or_else(|| Error::Invalid(format!("no container {name} in lab {}", s.state.name)))?;
    topology::check_container(&s.state, c)
}

/// The MACs of a bridge container's host side: the bridge's and its veth's (CNI's
/// result lists them).
pub fn host_macs(s: &Session, name: &str) -> Result<(String, String)> {
    let c = s
        .state
        .container(name)
        .ok_or_else(|| Error::Invalid(format!("no container {name} in lab {}", s.state.name)))?;
    topology::host_macs(&s.state, c)
}
