//! What may be published: host addresses of the lab, ports nobody else holds.

use std::{collections::HashMap, net::IpAddr, path::Path};

use super::pick::Busy;
use crate::{
    error::{Error, Result},
    lab::{LabState, PortSpec, Proto, Published, spec::host_ips_overlap},
    netlink::{
        netns,
        sockdiag::{self, BoundSocket},
    },
};

/// Refuses a host address that is not the lab host's: the uplink's, the bridge's,
/// 127.0.0.1, or an address of another of its interfaces (read once, when a spec names
/// one, into `others`); in a lab with IPv6 also `::`, the uplink's and the bridge's IPv6
/// addresses or another of the host's. `::1` is refused: the kernel never routes it off
/// the host, so no container can be reached there without a proxy.
pub fn check_host_ip(
    state: &LabState,
    spec: &PortSpec,
    others: &mut Option<Vec<IpAddr>>,
) -> Result<()> {
    let Some(ip) = spec.host_ip else {
        return Ok(());
    };
    match ip {
        IpAddr::V4(a) => {
            // Not the uplink's address of `up`: the uplink may have another now, which
            // the lab host's addresses below hold.
            if a.is_unspecified()
                || a == state.bridge_addr
                // All of 127.0.0.0/8 is the host's own, as Docker takes it.
                || a.is_loopback()
            {
                return Ok(());
            }
        }
        IpAddr::V6(a) => {
            if state.subnet6.is_none() {
                return Err(Error::Invalid(format!(
                    "lab {} has no IPv6 (`up --ipv6`): {a} cannot be published on",
                    state.name
                )));
            }
            if a.is_loopback() {
                return Err(Error::Invalid(
                    "::1 is never routed off the host, so a port on [::1] cannot lead to a container (Docker needs its userland proxy for it): publish on [::] or a host's IPv6 address".into(),
                ));
            }
            if a.is_unicast_link_local() {
                return Err(Error::Invalid(format!(
                    "{a} is link-local: the host never forwards packets from or to such an address, so a port on it cannot lead to a container: publish on [::] or a host's IPv6 address"
                )));
            }
            if a.is_unspecified() || Some(a) == state.bridge_addr6() {
                return Ok(());
            }
        }
    }
    if others.is_none() {
        let all = netns::netlink_in(&crate::topology::host_ns(state), |h| async move {
            crate::netlink::addr::all_links(&h).await
        })?;
        *others = Some(all);
    }
    if others.as_ref().is_some_and(|o| o.contains(&ip)) {
        return Ok(());
    }
    let mut usable = vec![
        state.uplink_addr.to_string(),
        state.bridge_addr.to_string(),
        "127.0.0.1".into(),
    ];
    if let Some(gw6) = state.bridge_addr6() {
        usable.extend(state.uplink_addr6.map(|a| format!("[{a}]")));
        usable.push(format!("[{gw6}]"));
        usable.push("[::]".into());
        usable.push("0.0.0.0".into());
    }
    Err(Error::Invalid(format!(
        "{ip} is not an address of lab {}'s host: use {}, another address of the lab host, or no address for all of them",
        state.name,
        usable.join(", ")
    )))
}

/// Every host port the lab's mappings claim, so that a batch of thousands of specs is
/// checked in time proportional to its ports, not to the square of their number. A
/// request of a few specs is checked against the mappings one by one instead, which is
/// cheaper than indexing tens of thousands of them.
pub struct Claims<'a> {
    published: &'a [Published],
    asked: Vec<PortSpec>,
    /// (protocol, host port) → who claims it, on which host address; only for a large
    /// request.
    taken: Option<HashMap<(Proto, u16), Vec<Claim<'a>>>>,
}

/// Requests up to this many specs are checked without an index.
pub const SMALL_REQUEST: usize = 16;

/// A host address (or every address) and what claims a port on it.
type Claim<'a> = (Option<IpAddr>, Claimant<'a>);

#[derive(Clone, Copy)]
enum Claimant<'a> {
    Published(&'a Published),
    Asked(PortSpec),
}

impl<'a> Claims<'a> {
    /// The claims of `state`'s mappings, for a request of `request_len` specs.
    pub fn of(state: &'a LabState, request_len: usize) -> Self {
        let mut claims = Self {
            published: &state.ports,
            asked: Vec::new(),
            taken: None,
        };
        if request_len > SMALL_REQUEST {
            let mut taken = HashMap::new();
            for p in &state.ports {
                Self::add(&mut taken, &p.spec, Claimant::Published(p));
            }
            claims.taken = Some(taken);
        }
        claims
    }

    fn add(taken: &mut HashMap<(Proto, u16), Vec<Claim<'a>>>, spec: &PortSpec, who: Claimant<'a>) {
        for port in spec.host_port..=spec.host_end {
            taken
                .entry((spec.proto, port))
                .or_default()
                .push((spec.host_ip, who));
        }
    }

    /// What claims a port of `spec` already: a mapping, or an earlier spec of the
    /// request.
    fn clash(&self, spec: &PortSpec) -> Option<Claimant<'a>> {
        match &self.taken {
            None => self
                .published
                .iter()
                .find(|p| p.spec.overlaps(spec))
                .map(Claimant::Published)
                .or_else(|| {
                    self.asked
                        .iter()
                        .find(|o| o.overlaps(spec))
                        .map(|o| Claimant::Asked(*o))
                }),
            Some(taken) => (spec.host_port..=spec.host_end).find_map(|port| {
                taken
                    .get(&(spec.proto, port))?
                    .iter()
                    .find_map(|(ip, who)| host_ips_overlap(*ip, spec.host_ip).then_some(*who))
            }),
        }
    }

    /// What claims a port of `spec`, for a pick: a mapping (the port is taken), or
    /// another spec of the request (claimed).
    pub fn busy(&self, spec: &PortSpec) -> Option<Busy> {
        self.clash(spec).map(|who| match who {
            Claimant::Published(_) => Busy::Taken,
            Claimant::Asked(_) => Busy::Claimed,
        })
    }

    /// Refuses a spec that claims a port another mapping, or an earlier spec of the
    /// same request, already has; otherwise claims its ports.
    pub fn claim(&mut self, spec: &PortSpec) -> Result<()> {
        match self.clash(spec) {
            Some(Claimant::Published(p)) => Err(Error::Conflict(format!(
                "host port {} is already published ({} on container {}): unpublish it first",
                spec, p.spec, p.container
            ))),
            Some(Claimant::Asked(o)) => Err(Error::Conflict(format!(
                "port specs {o} and {spec} overlap"
            ))),
            None => {
                match &mut self.taken {
                    Some(taken) => Self::add(taken, spec, Claimant::Asked(*spec)),
                    None => self.asked.push(*spec),
                }
                Ok(())
            }
        }
    }
}

/// The ports the other labs of the lab host's namespace publish: a host port goes to
/// one of them only (their programs, or rules, see the same packets).
pub struct OtherLabs {
    taken: HashMap<(Proto, u16), Vec<TheirClaim>>,
}

/// A host address (or every one), the lab that publishes there, and its spec.
type TheirClaim = (Option<IpAddr>, String, PortSpec);

impl OtherLabs {
    pub fn of(state: &LabState) -> Result<Self> {
        let mut taken: HashMap<_, Vec<_>> = HashMap::new();
        for other in crate::store::other_labs(&state.name)? {
            if other.name == state.name || other.host_netns != state.host_netns {
                continue;
            }
            for p in &other.ports {
                for port in p.spec.host_port..=p.spec.host_end {
                    taken.entry((p.spec.proto, port)).or_default().push((
                        p.spec.host_ip,
                        other.name.clone(),
                        p.spec,
                    ));
                }
            }
        }
        Ok(Self { taken })
    }

    /// Refuses a spec whose host port another lab publishes on the same address.
    pub fn check(&self, spec: &PortSpec) -> Result<()> {
        if self.taken.is_empty() {
            return Ok(());
        }
        for port in spec.host_port..=spec.host_end {
            for (ip, lab, theirs) in self.taken.get(&(spec.proto, port)).into_iter().flatten() {
                if host_ips_overlap(*ip, spec.host_ip) {
                    return Err(Error::Conflict(format!(
                        "host port {spec} is already published by lab {lab} ({theirs}) in the same namespace: pick another host port"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The sockets that hold a port in the lab host's namespace (TCP listeners, UDP
/// sockets, connected or not), read once per command.
pub fn bound_sockets(host_ns: &Path) -> Result<Vec<BoundSocket>> {
    netns::run_in(host_ns, sockdiag::bound)
}

/// Refuses a host port held by a socket in the lab host's namespace (a TCP listener or a
/// UDP socket, connected or not), which the published port would silently take over;
/// Docker's own bind of the port would fail there too.
pub fn check_sockets(state: &LabState, bound: &[BoundSocket], spec: &PortSpec) -> Result<()> {
    let udp = spec.proto == Proto::Udp;
    for b in bound {
        // A socket on one IPv6 address is in the way only where the datapath
        // translates IPv6 (a dual-stack lab), and never on ::1, which none translates.
        let untranslated =
            matches!(b.addr, Some(IpAddr::V6(a)) if state.subnet6.is_none() || a.is_loopback());
        let addr_clash = !untranslated && host_ips_overlap(b.addr, spec.host_ip);
        if b.udp == udp && addr_clash && (spec.host_port..=spec.host_end).contains(&b.port) {
            return Err(Error::Conflict(format!(
                "host port {}/{} is in use by a socket in the lab host ({}:{}): stop it or pick another port",
                b.port,
                spec.proto.name(),
                match b.addr {
                    Some(IpAddr::V6(a)) => format!("[{a}]"),
                    Some(a) => a.to_string(),
                    None => "*".into(),
                },
                b.port
            )));
        }
    }
    Ok(())
}
