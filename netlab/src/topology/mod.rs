//! The lab's topology: the sandbox world, the bridge, and containers.
//!
//! ```text
//!  netns <lab>-wan                      netns <lab>-host                          netns <lab>-<ctr>
//!  wan0 198.51.100.1/24  <-- veth -->   eth0 198.51.100.2/24 (uplink,           eth0 172.18.0.x/16
//!  lo   203.0.113.1/24 ("internet")          default via 198.51.100.1)           default via 172.18.0.1
//!                                       nl-<lab> 172.18.0.1/16 (bridge) <-- veth --
//! ```

use std::{
    net::{IpAddr, Ipv4Addr},
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use crate::{
    error::{Error, Errors, Result},
    lab::{Container, Device, LabState, Network, names},
    netlink::{addr, cgroup, link, neigh, netns, route, sysctl},
    store,
};

/// Sandbox addresses (TEST-NET-2 for the uplink LAN, TEST-NET-3 for "the internet").
pub mod sandbox {
    use std::net::Ipv4Addr;

    pub const UPLINK: &str = "eth0";
    pub const WAN_IF: &str = "wan0";
    pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    pub const WAN_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    pub const LAN_PREFIX: u8 = 24;
    pub const INTERNET_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    pub const INTERNET_PREFIX: u8 = 24;

    use std::net::Ipv6Addr;

    /// IPv6 (`up --ipv6`), in the documentation range 2001:db8::/32.
    pub const HOST_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2);
    pub const WAN_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
    pub const INTERNET_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 1);
    pub const PREFIX6: u8 = 64;
}

/// Refuses a device this kernel cannot make (netkit: Linux 6.7 and later), probed in a
/// throwaway namespace rather than read from the kernel's version.
pub fn require_device(device: Device) -> Result<()> {
    if device == Device::Veth
        || netns::netlink_in_throwaway(|h| async move { link::can_add_netkit(&h).await })?
    {
        return Ok(());
    }
    Err(Error::Invalid(
        "--device netkit needs netkit devices (Linux 6.7 and later, CONFIG_NETKIT), which this kernel does not have: use --device veth".into(),
    ))
}

/// The path of the lab's host namespace: the named one, or the machine's own (that of
/// pid 1, whichever namespace netlab is run from).
pub fn host_ns(state: &LabState) -> PathBuf {
    match &state.host_netns {
        Some(name) => netns::path(name),
        None => PathBuf::from("/proc/1/ns/net"),
    }
}

/// The lock `up` holds on the lab host's namespace while it picks its subnet and
/// records the namespace's settings ([`lock_ns`]): held too while a lab checks other
/// labs' ports and publishes, and while `down` decides whether the settings go back, so
/// that two labs of one namespace never act on each other's half-written state. None
/// when the namespace is gone: what needs it refuses on its own. Any other failure to
/// take the lock is an error (before, it let the command go on without the lock, a
/// review).
pub fn lock_host(state: &LabState) -> Result<Option<store::SharedLock>> {
    let ns = host_ns(state);
    if !netns::is_netns(&ns) {
        return Ok(None);
    }
    lock_ns(&ns).map(Some)
}

/// Takes the lock of the namespace at `ns` (the same under every path to it: by its
/// cookie), waiting for another netlab command that holds it.
pub fn lock_ns(ns: &Path) -> Result<store::SharedLock> {
    store::lock_namespace(netns::cookie(ns)?)
}

/// Whether the lab's host namespace is still the one it came up in (its cookie): one
/// that is gone, or that was made again under the same name, is not the lab's, and
/// nothing in it is touched. A state without a cookie (an `up` that never made its
/// namespace, or a state written before netlab kept them) trusts a namespace of the
/// name, never an empty file.
pub fn host_is_the_labs(state: &LabState) -> bool {
    let ns = host_ns(state);
    netns::is_netns(&ns)
        && match state.cookies.host {
            Some(c) => netns::cookie(&ns).is_ok_and(|now| now == c),
            None => true,
        }
}

/// The path of a container's own namespace: the one netlab made, or the runtime's.
pub fn container_ns(c: &Container) -> Option<PathBuf> {
    match (&c.runtime_netns, &c.netns) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(name)) => Some(netns::path(name)),
        (None, None) => None,
    }
}

/// Creates `<lab>-host` and `<lab>-wan` joined by the uplink veth, with their addresses
/// and routes (a runtime's world, in the tests). Returns the uplink's name and address.
pub fn build_sandbox(lab: &str, ipv6: bool) -> Result<(String, Ipv4Addr)> {
    netns::create(&names::host_netns(lab))?;
    netns::create(&names::wan_netns(lab))?;
    wire_sandbox(lab, ipv6)
}

/// Joins the sandbox's two namespaces, which exist, by the uplink veth, with their
/// addresses and routes (IPv6 ones too with `ipv6`). Returns the uplink's name and
/// address.
pub fn wire_sandbox(lab: &str, ipv6: bool) -> Result<(String, Ipv4Addr)> {
    use sandbox::*;
    let host = netns::path(&names::host_netns(lab));
    let wan = netns::path(&names::wan_netns(lab));
    let wan_file = netns::open(&wan)?;
    netns::netlink_in(&host, |h| async move {
        let lo = link::require(&h, "lo").await?;
        link::up(&h, "lo", lo).await?;
        let up = link::add_veth(&h, UPLINK, WAN_IF, 1500).await?;
        let peer = link::require(&h, WAN_IF).await?;
        link::move_to_netns(&h, WAN_IF, peer, wan_file.as_fd()).await?;
        addr::add(&h, UPLINK, up, HOST_ADDR, LAN_PREFIX).await?;
        if ipv6 {
            sysctl::ipv6_no_dad(UPLINK)?;
            addr::add6(&h, UPLINK, up, HOST_ADDR6, PREFIX6).await?;
        }
        link::up(&h, UPLINK, up).await?;
        route::add_default(&h, UPLINK, up, WAN_ADDR, 0).await
    })?;
    netns::netlink_in(&wan, |h| async move {
        let lo = link::require(&h, "lo").await?;
        addr::add(&h, "lo", lo, INTERNET_ADDR, INTERNET_PREFIX).await?;
        link::up(&h, "lo", lo).await?;
        let w = link::require(&h, WAN_IF).await?;
        addr::add(&h, WAN_IF, w, WAN_ADDR, LAN_PREFIX).await?;
        if ipv6 {
            sysctl::ipv6_no_dad(WAN_IF)?;
            addr::add6(&h, "lo", lo, INTERNET_ADDR6, PREFIX6).await?;
            addr::add6(&h, WAN_IF, w, WAN_ADDR6, PREFIX6).await?;
        }
        link::up(&h, WAN_IF, w).await
    })?;
    if ipv6 {
        // Once the link has its carrier (the wan end up), which IPv6 waits for.
        netns::netlink_in(&host, |h| async move {
            let up = link::require(&h, UPLINK).await?;
            route::add_default6(&h, UPLINK, up, WAN_ADDR6, 0).await
        })?;
    }
    Ok((UPLINK.to_string(), HOST_ADDR))
}

/// Finds the uplink of a non-sandbox lab: `--uplink`, or the default route's interface.
pub fn find_uplink(requested: Option<&str>) -> Result<(String, Ipv4Addr)> {
    let requested = requested.map(str::to_string);
    netns::netlink_in(&netns::current(), |h| async move {
        let (name, index) = match requested {
            Some(name) => {
                let i = link::require(&h, &name).await?;
                (name, i)
            }
            None => {
                let i = route::default_oif(&h).await?.ok_or_else(|| {
                    Error::Invalid("no default route to take the uplink from: pass --uplink IF or use --sandbox".into())
                })?;
                let mut links = h.link().get().match_index(i).execute();
                let msg = futures::TryStreamExt::try_next(&mut links)
                    .await
                    .map_err(crate::netlink::nl("get link", i.to_string()))?
                    .ok_or_else(|| {
                        Error::Invalid(format!("default route interface {i} vanished"))
                    })?;
                let name = msg
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        rtnetlink::packet_route::link::LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                (name, i)
            }
        };
        let a = addr::first_v4(&h, &name, index)
            .await?
            .ok_or_else(|| Error::Invalid(format!("uplink {name} has no IPv4 address")))?;
        Ok((name, a))
    })
}

/// Refuses a link name that is taken in namespace `ns`.
pub fn check_link_free(ns: &Path, name: &str) -> Result<()> {
    let name = name.to_string();
    netns::netlink_in(ns, |h| async move {
        match link::index(&h, &name).await? {
            Some(_) => Err(Error::Conflict(format!(
                "a link named {name} already exists in the lab's namespace: pick another bridge name"
            ))),
            None => Ok(()),
        }
    })
}

/// `net.ipv4.ip_forward` in the lab's host namespace, as it is, and the interfaces
/// whose own forwarding is on (see [`sysctl::ipv4_forwarding_on`]).
pub fn ip_forward(state: &LabState) -> Result<(String, Vec<String>)> {
    netns::run_in(&host_ns(state), || {
        let all = std::fs::read_to_string(sysctl::IP_FORWARD)
            .map(|v| v.trim().to_string())
            .map_err(|e| Error::io("read", sysctl::IP_FORWARD, e))?;
        // Only turning `ip_forward` on from 0 (and back) changes the interfaces'.
        let on = match all.as_str() {
            "0" => sysctl::ipv4_forwarding_on()?,
            _ => Vec::new(),
        };
        Ok((all, on))
    })
}

/// The bridge netfilter setting the lab's datapath turns on, if it does.
pub fn uses_bridge_nf(state: &LabState) -> Option<&'static str> {
    state
        .datapath
        .uses_bridge_netfilter()
        .then_some(sysctl::BRIDGE_NF_CALL_IPTABLES)
}

/// Its IPv6 half, turned on in a lab with IPv6.
pub fn uses_bridge_nf6(state: &LabState) -> Option<&'static str> {
    (state.datapath.uses_bridge_netfilter() && state.subnet6.is_some())
        .then_some(sysctl::BRIDGE_NF_CALL_IP6TABLES)
}

/// A sysctl (a /proc/sys path) in the lab's host namespace, as it is; `None` where the
/// kernel has no such setting (bridge netfilter without br_netfilter).
pub fn sysctl_in_host(state: &LabState, path: &'static str) -> Result<Option<String>> {
    netns::run_in(&host_ns(state), || match std::fs::read_to_string(path) {
        Ok(v) => Ok(Some(v.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    })
}

/// Refuses a subnet (or IPv6 subnet) that another lab of the namespace overlaps
/// (Docker refuses overlapping networks), or that holds an address of the lab's host
/// namespace or the next hop of one of its routes (the uplink's address, its router's):
/// the bridge would take the router's address, or the kernel route the lab's traffic,
/// or the host's, to one of the two. A subnet inside a larger network of the host
/// (10.77.0.0/24 in an uplink's 10.0.0.0/8) is taken, as Docker takes it. Loopback and
/// link-local addresses do not count.
pub fn check_subnets_free(state: &LabState) -> Result<()> {
    let refuse = |which: String, flag: &str, what: String| {
        Err(Error::Invalid(format!(
            "subnet {which} {what}: pick another {flag}"
        )))
    };
    for other in crate::store::neighbours(state) {
        if state
            .subnet
            .overlaps(other.subnet.network, other.subnet.prefix)
        {
            return refuse(
                state.subnet.to_string(),
                "--subnet",
                format!("overlaps lab {}'s {}", other.name, other.subnet),
            );
        }
        if let (Some(mine), Some(theirs)) = (state.subnet6, other.subnet6)
            && mine.overlaps(theirs.network, theirs.prefix)
        {
            return refuse(
                mine.to_string(),
                "--subnet6",
                format!("overlaps lab {}'s {theirs}", other.name),
            );
        }
    }
    let (addrs, gateways) = netns::netlink_in(&host_ns(state), |h| async move {
        Ok((
            addr::all_links_prefixed(&h).await?,
            route::gateways(&h).await?,
        ))
    })?;
    let held = addrs
        .into_iter()
        .map(|(a, prefix)| (a, format!("{a}/{prefix}, an address")))
        .chain(
            gateways
                .into_iter()
                .map(|g| (g, format!("{g}, a route's next hop"))),
        );
    for (a, what) in held {
        let (taken, which, flag) = match a {
            IpAddr::V4(a) => (
                !a.is_loopback() && state.subnet.contains(a),
                state.subnet.to_string(),
                "--subnet",
            ),
            IpAddr::V6(a) => {
                let link_local = a.segments()[0] & 0xffc0 == 0xfe80;
                (
                    !a.is_loopback()
                        && !link_local
                        && state.subnet6.is_some_and(|s6| s6.contains(a)),
                    state.subnet6.map(|s| s.to_string()).unwrap_or_default(),
                    "--subnet6",
                )
            }
        };
        if taken {
            return refuse(
                which,
                flag,
                format!("holds {what} in lab {}'s host namespace", state.name),
            );
        }
    }
    Ok(())
}

/// Refuses `--ipv6` where the lab's host namespace has IPv6 turned off.
pub fn check_ipv6_on(state: &LabState) -> Result<()> {
    // `default` is what the bridge gets, `all` overrides every interface.
    let all = sysctl_in_host(state, "/proc/sys/net/ipv6/conf/all/disable_ipv6")?;
    let default = sysctl_in_host(state, "/proc/sys/net/ipv6/conf/default/disable_ipv6")?;
    match (all.as_deref(), default.as_deref()) {
        (Some("0"), Some("0")) => Ok(()),
        (Some(_), Some(_)) => Err(Error::Invalid(format!(
            "--ipv6: IPv6 is disabled in lab {}'s host namespace (net.ipv6.conf.all.disable_ipv6 or default.disable_ipv6 is 1)",
            state.name
        ))),
        _ => Err(Error::Invalid(
            "--ipv6: this kernel runs without IPv6 (ipv6.disable=1, or built without it)".into(),
        )),
    }
}

/// The uplink's first global IPv6 address, if it has one.
pub fn uplink_addr6(state: &LabState) -> Result<Option<std::net::Ipv6Addr>> {
    let uplink = state.uplink.clone();
    netns::netlink_in(&host_ns(state), |h| async move {
        let index = link::require(&h, &uplink).await?;
        addr::first_global_v6(&h, &uplink, index).await
    })
}

/// The uplink's addresses now, its first IPv4 and first global IPv6 (a lease renewed
/// may have given it others than at `up`, `None` for a family it has none of), or
/// `None` when the uplink itself is gone.
pub fn uplink_addrs_now(state: &LabState) -> Result<Option<UplinkAddrs>> {
    let uplink = state.uplink.clone();
    netns::netlink_in(&host_ns(state), |h| async move {
        let Some(index) = link::index(&h, &uplink).await? else {
            return Ok(None);
        };
        Ok(Some((
            addr::first_v4(&h, &uplink, index).await?,
            addr::first_global_v6(&h, &uplink, index).await?,
        )))
    })
}

/// The uplink's first IPv4 and first global IPv6 address, if it has them.
pub type UplinkAddrs = (Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>);

/// Creates the bridge, marked as the lab's, with a MAC of its own, its address in the
/// host namespace, MTU from the uplink, and turns on forwarding there.
pub fn build_bridge(state: &LabState) -> Result<()> {
    let (bridge, uplink, lab) = (
        state.bridge.clone(),
        state.uplink.clone(),
        state.name.clone(),
    );
    let (gw, prefix) = (state.bridge_addr, state.subnet.prefix);
    let v6 = state.subnet6.map(|s6| (s6.gateway(), s6.prefix));
    let mac = link::random_mac()?;
    netns::netlink_in(&host_ns(state), |h| async move {
        let mtu = link::mtu(&h, &uplink).await?;
        let br = link::add_bridge(&h, &bridge, mtu, mac).await?;
        link::set_alias(&h, &bridge, br, &names::alias(&lab, "bridge")).await?;
        addr::add(&h, &bridge, br, gw, prefix).await?;
        if v6.is_none() {
            sysctl::ipv6_off(&bridge)?;
        }
        if let Some((gw6, prefix6)) = v6 {
            sysctl::ipv6_no_dad(&bridge)?;
            addr::add6(&h, &bridge, br, gw6, prefix6).await?;
            // On already outside a sandbox (`up` requires it there).
            sysctl::set(sysctl::IP6_FORWARD, "1")?;
        }
        sysctl::set(sysctl::IP_FORWARD, "1")
    })
}

/// Creates a container's namespace (unless a runtime made it) and, on the bridge
/// network, its veth, address and default route; records the MAC of the interface
/// inside. `record` gets the new namespace's cookie before the namespace is mounted at
/// its name (see [`netns::create_recorded`]). On error, removes what it made.
pub fn add_container(
    state: &LabState,
    c: &mut Container,
    record: impl Fn(&Container) -> Result<()> + Sync,
) -> Result<()> {
    let result = build_container(state, c, record);
    if result.is_err() {
        let _ = remove_container(state, c);
    }
    result
}

fn build_container(
    state: &LabState,
    c: &mut Container,
    record: impl Fn(&Container) -> Result<()> + Sync,
) -> Result<()> {
    if let Some(cg) = c.cgroup.clone() {
        // A crash before its id is recorded leaves it, empty: without the id, nothing
        // at the path is known to be this container's (the next `run` of the name
        // says so).
        c.cgroup_id = Some(cgroup::create(&cg)?);
        record(c)?;
    }
    if c.runtime_netns.is_none()
        && let Some(name) = c.netns.clone()
    {
        let known = c.clone();
        let (_, cookie) = netns::create_recorded(&name, |cookie| {
            record(&Container {
                netns_cookie: Some(cookie),
                ..known
            })
        })?;
        c.netns_cookie = Some(cookie);
    }
    let Some(ns) = container_ns(c) else {
        return Ok(());
    };
    // `lo` of a namespace netlab made; a runtime's `lo` is the runtime's (podman brings
    // it up itself, CNI's `loopback` plugin for others), and a refused ADD must leave
    // its namespace as it found it.
    if c.runtime_netns.is_none() {
        netns::netlink_in(&ns, |h| async move {
            let lo = link::require(&h, "lo").await?;
            link::up(&h, "lo", lo).await
        })?;
    }
    if c.network != Network::Bridge {
        return Ok(());
    }
    let veth = c.veth.clone().expect("bridge containers have a veth");
    let peer = names::veth_peer(&state.name, &c.name);
    let (bridge, alias) = (state.bridge.clone(), names::alias(&state.name, &c.name));
    let host_file = netns::open(&host_ns(state))?;
    let (bridge_for_mtu, bridge_mark) = (bridge.clone(), names::alias(&state.name, "bridge"));
    // Checked before anything is made: a bridge of its name made again is not the lab's.
    let mtu = netns::netlink_in(&host_ns(state), |h| async move {
        link::require_marked(&h, &bridge_for_mtu, &bridge_mark).await?;
        link::mtu(&h, &bridge_for_mtu).await
    })?;
    // The pair is made in the container's namespace and both ends are marked there
    // before the host end moves to the lab host: a `run` killed at any point leaves
    // nothing unmarked in the lab host (what is left in the container's namespace goes
    // with it). Only a link with the mark is ever removed as this container's.
    let (veth_in_ctr, peer_in_ctr) = (veth.clone(), peer.clone());
    let device = state.device;
    netns::netlink_in(&ns, |h| async move {
        let v = match device {
            Device::Veth => link::add_veth(&h, &veth_in_ctr, &peer_in_ctr, mtu).await?,
            Device::Netkit => link::add_netkit(&h, &veth_in_ctr, &peer_in_ctr, mtu).await?,
        };
        let p = link::require(&h, &peer_in_ctr).await?;
        link::set_alias(&h, &peer_in_ctr, p, &alias).await?;
        link::set_alias(&h, &veth_in_ctr, v, &alias).await?;
        link::move_to_netns(&h, &veth_in_ctr, v, host_file.as_fd()).await
    })?;
    let veth_in_host = veth.clone();
    let v4_only = state.subnet6.is_none();
    netns::netlink_in(&host_ns(state), |h| async move {
        let br = link::require(&h, &bridge).await?;
        let v = link::require(&h, &veth_in_host).await?;
        // A bridge port takes no IPv6 link-local address in a lab without IPv6.
        if v4_only {
            sysctl::ipv6_off(&veth_in_host)?;
        }
        link::enslave_up(&h, &veth_in_host, v, br).await
    })?;
    let (ip, prefix, gw) = (
        c.ip.expect("bridge containers have an address"),
        state.subnet.prefix,
        state.bridge_addr,
    );
    let ifname = c.ifname.clone();
    let v6 = state.subnet6.map(|s6| {
        let ip6 = state
            .container_ip6(c)
            .expect("a lab with IPv6 gives an address");
        (ip6, s6.prefix, s6.gateway())
    });
    let asked = match &c.mac {
        Some(m) => Some(link::parse_mac(m)?),
        None => None,
    };
    c.mac = Some(netns::netlink_in(&ns, |h| async move {
        let p = link::require(&h, &peer).await?;
        link::rename(&h, &peer, p, &ifname).await?;
        if let Some(mac) = asked {
            link::set_mac(&h, &ifname, p, mac).await?;
        }
        addr::add(&h, &ifname, p, ip, prefix).await?;
        // Announce the MAC when the link comes up (gratuitous ARP), as Docker does: a
        // neighbour still holding the MAC of an earlier container with this address
        // learns the new one at once.
        sysctl::set(&format!("/proc/sys/net/ipv4/conf/{ifname}/arp_notify"), "1")?;
        match v6 {
            Some(_) => {
                sysctl::ipv6_no_dad(&ifname)?;
                // IPv6's announcement: an unsolicited neighbour advertisement on link up.
                sysctl::set(
                    &format!("/proc/sys/net/ipv6/conf/{ifname}/ndisc_notify"),
                    "1",
                )?;
                // No router advertisement is taken: another container's would give it
                // an address and a default route through that container (Docker's
                // CVE-2020-13401). Its route is netlab's, via the bridge.
                sysctl::set(&format!("/proc/sys/net/ipv6/conf/{ifname}/accept_ra"), "0")?;
            }
            None => sysctl::ipv6_off(&ifname)?,
        }
        link::up(&h, &ifname, p).await?;
        // A runtime's namespace may have a default route already (the container's
        // interface on another network, or on this one under another name): this one
        // goes after it, with a higher metric, as a second network's gateway does.
        let metric = route::defaults(&h).await?.len() as u32 * 100;
        route::add_default(&h, &ifname, p, gw, metric).await?;
        if let Some((ip6, prefix6, gw6)) = v6 {
            addr::add6(&h, &ifname, p, ip6, prefix6).await?;
            route::add_default6(&h, &ifname, p, gw6, metric).await?;
        }
        link::mac(&h, &ifname).await
    })?);
    // The announcement above leaves before the bridge forwards on the new port (the
    // carrier change reaches the bridge just after), so the lab host's entry for the
    // address is replaced too: it may still hold the MAC of a container removed a
    // moment ago, which would blackhole the address for up to a minute.
    let (bridge, mac) = (state.bridge.clone(), c.mac.clone().unwrap_or_default());
    let ip6 = v6.map(|(a, _, _)| a);
    netns::netlink_in(&host_ns(state), |h| async move {
        let br = link::require(&h, &bridge).await?;
        neigh::replace_stale(&h, &bridge, br, IpAddr::V4(ip), &mac).await?;
        if let Some(ip6) = ip6 {
            neigh::replace_stale(&h, &bridge, br, IpAddr::V6(ip6), &mac).await?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Removes what netlab made for a container, and nothing else: its namespace when
/// netlab made it and it is still that one (its cookie; the veth pair goes with it),
/// the interface netlab put inside a runtime's namespace (by its mark, under its name
/// or the temporary one it had before the rename), and the host end of its veth (by
/// its mark) in case either was already gone.
pub fn remove_container(state: &LabState, c: &Container) -> Result<()> {
    let mut errors = Errors::default();
    let alias = names::alias(&state.name, &c.name);
    if let Some(cg) = &c.cgroup {
        errors.check(cgroup::remove(cg, c.cgroup_id));
    }
    if let Some(ns) = &c.runtime_netns {
        // A namespace the runtime already removed took the interface with it.
        if c.veth.is_some() && netns::is_netns(ns) {
            let names = [c.ifname.clone(), names::veth_peer(&state.name, &c.name)];
            let alias = alias.clone();
            errors.check(netns::netlink_in(ns, |h| async move {
                for name in &names {
                    link::delete_marked(&h, name, &alias).await?;
                }
                Ok(())
            }));
        }
    } else if let (Some(ns), Some(cookie)) = (&c.netns, c.netns_cookie) {
        errors.check(netns::delete_if_same(ns, cookie));
    }
    if let Some(veth) = c.veth.clone()
        && host_is_the_labs(state)
    {
        errors.check(netns::netlink_in(&host_ns(state), |h| async move {
            link::delete_marked(&h, &veth, &alias).await.map(drop)
        }));
    }
    errors.into_result()
}

/// Refuses a bridge container whose namespace or veth is gone (removed behind
/// netlab's back): ports published to it would answer nowhere.
pub fn check_present(state: &LabState, c: &Container) -> Result<()> {
    match missing_part(state, c)? {
        Some(what) => Err(Error::Invalid(format!(
            "container {}'s {what} is gone (removed behind netlab's back): `netlab rm --lab {} {}`, then run it again",
            c.name, state.name, c.name
        ))),
        None => Ok(()),
    }
}

/// What of a container is gone (removed behind netlab's back): its namespace, or its
/// veth (netkit) pair; `None` when it is all there.
pub fn missing_part(state: &LabState, c: &Container) -> Result<Option<String>> {
    if !netns_is_the_containers(c) {
        return Ok(Some("namespace".into()));
    }
    let Some(veth) = c.veth.clone() else {
        return Ok(None);
    };
    let there = netns::netlink_in(&host_ns(state), |h| async move {
        Ok(link::index(&h, &veth).await?.is_some())
    })?;
    Ok((!there).then(|| format!("{} pair", state.device.name())))
}

/// The lab's bridge is there, or an error saying it is gone and what to do (`run` on
/// the bridge network, `publish`).
pub fn check_bridge(state: &LabState) -> Result<()> {
    if bridge_present(state)? {
        return Ok(());
    }
    let lab = &state.name;
    Err(Error::Invalid(format!(
        "lab {lab}'s bridge {} is gone (removed, or made again, behind netlab's back): `netlab down --lab {lab}`, then `up` again",
        state.bridge
    )))
}

/// Whether the lab's bridge is still there (it may be deleted behind netlab's back, and
/// one of its name made again: that one is not the lab's).
pub fn bridge_present(state: &LabState) -> Result<bool> {
    let bridge = state.bridge.clone();
    let mark = names::alias(&state.name, "bridge");
    netns::netlink_in(&host_ns(state), |h| async move {
        Ok(link::alias(&h, &bridge).await?.as_deref() == Some(mark.as_str()))
    })
}

/// Whether a container's namespace is still the one it was made with (its cookie; a
/// runtime's namespace, whose identity netlab does not keep, by being one); true for a
/// container without a namespace of its own.
pub fn netns_is_the_containers(c: &Container) -> bool {
    let Some(ns) = container_ns(c) else {
        return true;
    };
    match (c.runtime_netns.is_none(), c.netns_cookie) {
        (true, Some(cookie)) => {
            netns::is_netns(&ns) && netns::cookie(&ns).is_ok_and(|n| n == cookie)
        }
        _ => netns::is_netns(&ns),
    }
}

/// The MACs of the host side of a bridge container: the bridge's and its veth's.
pub fn host_macs(state: &LabState, c: &Container) -> Result<(String, String)> {
    let bridge = state.bridge.clone();
    let veth = c.veth.clone().unwrap_or_default();
    netns::netlink_in(&host_ns(state), |h| async move {
        Ok((link::mac(&h, &bridge).await?, link::mac(&h, &veth).await?))
    })
}

/// Checks that a bridge container's interfaces are as `add_container` made them: the
/// host end of its veth on the bridge, and inside its namespace the interface with its
/// MAC, its address and its default route via the bridge. The error names the first
/// difference.
pub fn check_container(state: &LabState, c: &Container) -> Result<()> {
    let differs = |what: String| Err(Error::Invalid(what));
    let (Some(ns), Some(veth), Some(ip)) = (container_ns(c), c.veth.clone(), c.ip) else {
        return differs(format!("container {} is not on the bridge", c.name));
    };
    if !netns::is_netns(&ns) {
        return differs(format!("namespace {} is gone", ns.display()));
    }
    let bridge = state.bridge.clone();
    let on_bridge = netns::netlink_in(&host_ns(state), |h| async move {
        let Some(br) = link::index(&h, &bridge).await? else {
            return Ok(false);
        };
        match link::index(&h, &veth).await? {
            Some(_) => {
                Ok(link::master(&h, &veth).await? == Some(br) && link::is_up(&h, &veth).await?)
            }
            None => Ok(false),
        }
    })?;
    if !on_bridge {
        return differs(format!(
            "the host end of {}'s veth is not up on bridge {}",
            c.name, state.bridge
        ));
    }
    let (ifname, prefix, gw) = (c.ifname.clone(), state.subnet.prefix, state.bridge_addr);
    let found = netns::netlink_in(&ns, |h| async move {
        let Some(index) = link::index(&h, &ifname).await? else {
            return Ok(None);
        };
        let mac = link::mac(&h, &ifname).await?;
        let addrs = addr::all_v4(&h, &ifname, index).await?;
        let routes = route::defaults(&h).await?;
        let v6 = (
            addr::all_v6(&h, &ifname, index).await?,
            route::defaults6(&h).await?,
        );
        Ok(Some((index, mac, addrs, routes, v6)))
    })?;
    let Some((index, mac, addrs, routes, (addrs6, routes6))) = found else {
        return differs(format!(
            "interface {} is gone from {}",
            c.ifname,
            ns.display()
        ));
    };
    if c.mac.as_deref() != Some(mac.as_str()) {
        return differs(format!(
            "interface {} has MAC {mac}, not {}",
            c.ifname,
            c.mac.as_deref().unwrap_or("-")
        ));
    }
    if !addrs.contains(&(ip, prefix)) {
        return differs(format!(
            "interface {} lacks address {ip}/{prefix}",
            c.ifname
        ));
    }
    if !routes.contains(&(Some(index), Some(gw))) {
        return differs(format!(
            "{} has no default route via {gw} on {}",
            ns.display(),
            c.ifname
        ));
    }
    if let (Some(s6), Some(ip6)) = (state.subnet6, state.container_ip6(c)) {
        if !addrs6.contains(&(ip6, s6.prefix)) {
            return differs(format!(
                "interface {} lacks address {ip6}/{}",
                c.ifname, s6.prefix
            ));
        }
        if !routes6.contains(&(Some(index), Some(s6.gateway()))) {
            return differs(format!(
                "{} has no IPv6 default route via {} on {}",
                ns.display(),
                s6.gateway(),
                c.ifname
            ));
        }
    }
    Ok(())
}

/// The lab host's ephemeral port range (`net.ipv4.ip_local_port_range`).
pub fn ephemeral_ports(host: &Path) -> Result<(u16, u16)> {
    const KEY: &str = "/proc/sys/net/ipv4/ip_local_port_range";
    let text = netns::run_in(host, || {
        std::fs::read_to_string(KEY).map_err(|e| Error::io("read", KEY, e))
    })?;
    let mut it = text
        .split_whitespace()
        .filter_map(|w| w.parse::<u16>().ok());
    match (it.next(), it.next()) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(Error::Invalid(format!("cannot read {KEY}: {text:?}"))),
    }
}

/// The cgroup of a container an interrupted `run` was making, made before its id was
/// recorded: one at the journaled path is this `run`'s, the path having been free when
/// it checked. Removed only empty (rmdir refuses a cgroup holding a process or a
/// cgroup: someone else's, with its processes, stays). Both the recovery of a journal
/// and `down` take it back.
pub fn remove_unrecorded_cgroup(c: &Container) {
    if c.cgroup_id.is_none()
        && let Some(cg) = &c.cgroup
    {
        let _ = std::fs::remove_dir(cg);
    }
}

/// Removes the lab's topology, exactly what netlab made of it: containers, the bridge
/// (by its mark), forwarding as it was (non-sandbox), and the sandbox's namespaces
/// when they are still the ones `up` made (their cookies). Nothing is touched in a
/// host namespace that is no longer the lab's. Every step runs; errors are collected.
pub fn teardown(state: &LabState) -> Result<()> {
    let mut errors = Errors::default();
    for c in &state.containers {
        errors.check(remove_container(state, c));
    }
    if host_is_the_labs(state) {
        let bridge = state.bridge.clone();
        let alias = names::alias(&state.name, "bridge");
        // The namespace's settings go back as the first lab found them, by the last
        // lab of the namespace to go (another still up needs them as they are): an
        // `up` beside it waits until this one has decided, or this one sees it.
        let _namespace = match state.sandbox {
            true => None,
            false => lock_host(state)?,
        };
        // A lab going down beside this one needs nothing kept: two `down`s at once
        // would each see the other and leave the settings changed.
        let neighbours: Vec<LabState> = crate::store::neighbours(state)
            .into_iter()
            .filter(|n| !n.taking_down)
            .collect();
        let restore = !state.sandbox && neighbours.is_empty();
        // Bridge netfilter (and its IPv6 half) is only the netfilter datapaths' need: it
        // goes back with the last of the labs that turned it on, and never with a lab
        // that left it alone (a lab left of a version that did not record it cannot).
        let last_of = |uses: fn(&LabState) -> Option<&'static str>| {
            !state.sandbox && uses(state).is_some() && neighbours.iter().all(|n| uses(n).is_none())
        };
        let forwarding_on = match restore {
            true => state.forwarding_on_was.clone(),
            false => Vec::new(),
        };
        let sysctls = [
            (restore, sysctl::IP_FORWARD, state.ip_forward_was.clone()),
            (
                last_of(uses_bridge_nf),
                sysctl::BRIDGE_NF_CALL_IPTABLES,
                state.bridge_nf_was.clone(),
            ),
            (
                last_of(uses_bridge_nf6),
                sysctl::BRIDGE_NF_CALL_IP6TABLES,
                state.bridge_nf6_was.clone(),
            ),
        ];
        errors.check(netns::netlink_in(&host_ns(state), |h| async move {
            // Every step runs, the first error is returned: a setting that cannot be
            // written keeps none of the others from going back.
            let mut first = link::delete_marked(&h, &bridge, &alias).await.map(drop);
            let mut keep = |done: Result<()>| {
                if first.is_ok() {
                    first = done;
                }
            };
            let mut forwarding_off = false;
            for (restore, key, was) in sysctls {
                if let (true, Some(v)) = (restore, was) {
                    match sysctl::set_changed(key, &v) {
                        Ok(changed) => forwarding_off |= changed && key == sysctl::IP_FORWARD,
                        Err(e) => keep(Err(e)),
                    }
                }
            }
            // `ip_forward` put back to 0 turned every interface's off; not written (set
            // to 0 meanwhile by someone else), it turned none off here.
            if forwarding_off {
                keep(sysctl::ipv4_forwarding_back_on(&forwarding_on));
            }
            first
        }));
    }
    // Only a sandbox owns its namespaces; a lab in someone else's keeps them.
    if state.sandbox {
        for (ns, cookie) in [
            (&state.wan_netns, state.cookies.wan),
            (&state.host_netns, state.cookies.host),
        ] {
            // Without a cookie nothing at the name is the lab's: its cookie is
            // recorded before anything is made there.
            if let (Some(ns), Some(cookie)) = (ns, cookie) {
                errors.check(netns::delete_if_same(ns, cookie));
            }
        }
    }
    errors.into_result()
}
