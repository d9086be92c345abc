//! `up`: build a lab — its topology and its datapath — or nothing at all.

use std::net::Ipv4Addr;

use netlab_common::maps::{CONNTRACK_MAX_DEFAULT, CONNTRACK_MAX_MAX, CONNTRACK_MAX_MIN};

use crate::{
    datapath::{self, Datapath},
    error::{Error, Result},
    lab::{
        Cookies, DatapathKind, Device, Fault, LabState, NatOptions, STATE_VERSION, Subnet, Subnet6,
        names,
    },
    netlink::netns,
    signals,
    store::Locked,
    topology::{self, sandbox},
};

/// The longest conntrack timeout `up` takes (a week), well inside the datapath's
/// 32-bit seconds.
const MAX_TIMEOUT: u32 = 7 * 24 * 3600;

/// What `up` is asked for.
#[derive(Clone, Debug)]
pub struct UpRequest {
    pub lab: String,
    /// Build the lab in its own `<lab>-host` and `<lab>-wan` namespaces; otherwise in
    /// the namespace netlab runs in (the machine's, or a runtime's named one).
    pub sandbox: bool,
    pub datapath: DatapathKind,
    /// The containers' interfaces: veth or netkit pairs.
    pub device: Device,
    pub subnet: Subnet,
    /// The containers' IPv6 subnet (`--ipv6`): dual-stack containers.
    pub subnet6: Option<Subnet6>,
    /// Not with `sandbox`: the interface to masquerade behind (default: the default
    /// route's).
    pub uplink: Option<String>,
    /// The bridge's name (default `nl-<lab>`): a CNI network's `"bridge"`.
    pub bridge: Option<String>,
    pub nat: NatOptions,
    /// The flags of `nat` given on the command line (`--nat-ports`, a timeout,
    /// `--conntrack-max`, `--gc-interval`): a datapath they do not apply to refuses them
    /// even at their default values.
    pub given: Vec<&'static str>,
    pub debug: bool,
    /// The tests' fault point (`up --fault`; eBPF only).
    pub fault: Option<Fault>,
}

impl UpRequest {
    /// Checks what can be checked before anything is made.
    fn check(&self) -> Result<()> {
        names::check_lab(&self.lab)?;
        if let Some(b) = &self.bridge {
            names::check_bridge(b)?;
        }
        let n = &self.nat;
        for (name, v) in [
            ("--tcp-timeout", n.tcp_established_secs),
            ("--tcp-syn-timeout", n.tcp_syn_secs),
            ("--tcp-transitory-timeout", n.tcp_transitory_secs),
            ("--tcp-time-wait-timeout", n.tcp_time_wait_secs),
            ("--tcp-close-timeout", n.tcp_close_secs),
            ("--udp-timeout", n.udp_secs),
            ("--udp-stream-timeout", n.udp_stream_secs),
            ("--icmp-timeout", n.icmp_secs),
        ] {
            if v == 0 || v > MAX_TIMEOUT {
                return Err(Error::Invalid(format!(
                    "{name} must be from 1 to {MAX_TIMEOUT} seconds"
                )));
            }
        }
        let (lo, hi) = (CONNTRACK_MAX_MIN, CONNTRACK_MAX_MAX);
        if !(lo..=hi).contains(&n.conntrack_max) {
            return Err(Error::Invalid(format!(
                "--conntrack-max {} is out of range: give {lo} to {hi} flows",
                n.conntrack_max
            )));
        }
        let given = |flag: &str| self.given.contains(&flag);
        if self.datapath != DatapathKind::Ebpf
            && (n.conntrack_max != CONNTRACK_MAX_DEFAULT || given("--conntrack-max"))
        {
            return Err(Error::Invalid(format!(
                "--conntrack-max applies to the ebpf datapath only, not to {} (the kernel's table is net.netfilter.nf_conntrack_max)",
                self.datapath.name()
            )));
        }
        if !(10..=600_000).contains(&n.gc_interval_ms) {
            return Err(Error::Invalid(format!(
                "--gc-interval {} is out of range: give 10 to 600000 milliseconds",
                n.gc_interval_ms
            )));
        }
        let gc_default = netlab_common::config::GC_INTERVAL_MS_DEFAULT;
        if self.datapath != DatapathKind::Ebpf
            && (!n.fast_path
                || self.debug
                || self.fault.is_some()
                || n.gc_interval_ms != gc_default
                || given("--gc-interval"))
        {
            let flag = if self.debug {
                "--debug"
            } else if self.fault.is_some() {
                "--fault"
            } else if !n.fast_path {
                "--no-fast-path"
            } else {
                "--gc-interval"
            };
            return Err(Error::Invalid(format!(
                "{flag} applies to the ebpf datapath only, not to {}",
                self.datapath.name()
            )));
        }
        if self.sandbox && self.uplink.is_some() {
            return Err(Error::Invalid(
                "--uplink cannot be used with --sandbox: the sandbox has its own uplink".into(),
            ));
        }
        if self.datapath == DatapathKind::Routed
            && ((n.port_min, n.port_max)
                != (
                    NatOptions::default().port_min,
                    NatOptions::default().port_max,
                )
                || given("--nat-ports"))
        {
            return Err(Error::Invalid(
                "--nat-ports applies to the datapaths that translate, not to routed (no NAT)"
                    .into(),
            ));
        }
        // The routed baseline tracks no connection: a timeout given would not apply.
        let d = NatOptions::default();
        let timeouts = [
            (
                "--tcp-timeout",
                n.tcp_established_secs,
                d.tcp_established_secs,
            ),
            ("--tcp-syn-timeout", n.tcp_syn_secs, d.tcp_syn_secs),
            (
                "--tcp-transitory-timeout",
                n.tcp_transitory_secs,
                d.tcp_transitory_secs,
            ),
            (
                "--tcp-time-wait-timeout",
                n.tcp_time_wait_secs,
                d.tcp_time_wait_secs,
            ),
            ("--tcp-close-timeout", n.tcp_close_secs, d.tcp_close_secs),
            ("--udp-timeout", n.udp_secs, d.udp_secs),
            ("--udp-stream-timeout", n.udp_stream_secs, d.udp_stream_secs),
            ("--icmp-timeout", n.icmp_secs, d.icmp_secs),
        ];
        if self.datapath == DatapathKind::Routed
            && let Some((flag, _, _)) = timeouts
                .iter()
                .find(|(flag, v, default)| v != default || given(flag))
        {
            return Err(Error::Invalid(format!(
                "{flag} applies to the datapaths that track connections, not to routed (no NAT, no conntrack)"
            )));
        }
        if self.datapath == DatapathKind::Routed && !self.sandbox {
            return Err(Error::Invalid(
                "--datapath routed (no NAT, the benchmark's baseline) needs --sandbox".into(),
            ));
        }
        if let Some(s6) = self.subnet6 {
            self.check_ipv6(s6)?;
        }
        if self.sandbox {
            for (what, net, prefix) in [
                (
                    "the sandbox's uplink network",
                    sandbox::HOST_ADDR,
                    sandbox::LAN_PREFIX,
                ),
                (
                    "the sandbox's \"internet\"",
                    sandbox::INTERNET_ADDR,
                    sandbox::INTERNET_PREFIX,
                ),
            ] {
                if self.subnet.overlaps(net, prefix) {
                    return Err(Error::Invalid(format!(
                        "subnet {} overlaps {what} ({}): pick another --subnet",
                        self.subnet,
                        Subnet::containing(net, prefix)
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The sandbox's own IPv6 networks, which a sandbox lab's subnet may not overlap.
const SANDBOX6: [(&str, std::net::Ipv6Addr); 2] = [
    ("the sandbox's uplink network", sandbox::HOST_ADDR6),
    ("the sandbox's \"internet\"", sandbox::INTERNET_ADDR6),
];

impl UpRequest {
    /// What `--ipv6` needs before anything is looked at (every datapath has it): a
    /// subnet with room for every IPv4 host number, apart from the sandbox's networks.
    /// (Outside a sandbox, IPv6 forwarding must be on already:
    /// [`require_ipv6_forwarding`].)
    fn check_ipv6(&self, s6: Subnet6) -> Result<()> {
        s6.check_room(&self.subnet)?;
        let sandbox_nets = if self.sandbox { &SANDBOX6[..] } else { &[] };
        for (what, net) in sandbox_nets.iter().copied() {
            if s6.overlaps(net, sandbox::PREFIX6) {
                return Err(Error::Invalid(format!(
                    "IPv6 subnet {s6} overlaps {what} ({net}/{}): pick another --subnet6",
                    sandbox::PREFIX6
                )));
            }
        }
        Ok(())
    }
}

/// Outside a sandbox, `--ipv6` takes IPv6 forwarding as the namespace has it, and needs
/// it on: netlab does not turn it on, as turning it on stops every interface there that
/// takes router advertisements (`accept_ra=1`) from taking them, which can cut the
/// machine off its IPv6 network.
fn require_ipv6_forwarding(state: &LabState) -> Result<()> {
    if topology::sysctl_in_host(state, crate::netlink::sysctl::IP6_FORWARD)?.as_deref() == Some("1")
    {
        return Ok(());
    }
    Err(Error::Invalid(
        "--ipv6 needs IPv6 forwarding on in this namespace, which netlab does not turn on (it stops interfaces taking router advertisements): `sysctl -w net.ipv6.conf.all.forwarding=1` (and accept_ra=2 on an interface that takes them), then up again".into(),
    ))
}

/// The mounts a lab is made in (see [`crate::lab::mounts`]); `/run/netns` made first
/// where it is not yet (as `ip netns add` makes it), so that a lab on the machine's own
/// namespace, whose containers come later, records it too.
fn made_in(state: &LabState) -> crate::lab::mounts::Mounts {
    let _ = std::fs::create_dir_all(crate::netlink::netns::NETNS_DIR);
    crate::lab::mounts::Mounts::now(state.datapath == DatapathKind::Ebpf)
}

/// Refuses a NAT port range that shares ports with the host's own connections, or with
/// another lab masquerading behind the same uplink when either is an eBPF lab: eBPF's
/// NAT and netfilter's each pick ports apart from the other's flows, and a reply to a
/// port both picked reaches the wrong lab's container (a review: an iptables lab's
/// replies delivered into an eBPF lab's). Two netfilter labs share nf_conntrack's NAT,
/// which keeps their flows apart itself.
fn check_nat_ports(state: &LabState) -> Result<()> {
    let (min, max) = (state.nat.port_min, state.nat.port_max);
    let (lo, hi) = topology::ephemeral_ports(&topology::host_ns(state))?;
    if min <= hi && lo <= max {
        return Err(Error::Invalid(format!(
            "--nat-ports {min}-{max} overlaps the lab host's ephemeral ports {lo}-{hi} (net.ipv4.ip_local_port_range): the NAT and the host's own connections would share ports; pick a range outside it, e.g. 20000-29999"
        )));
    }
    let masquerades = |dp: DatapathKind| dp != DatapathKind::Routed;
    if !masquerades(state.datapath) {
        return Ok(());
    }
    for other in crate::store::other_labs(&state.name)? {
        if other.name == state.name
            || !masquerades(other.datapath)
            || (state.datapath != DatapathKind::Ebpf && other.datapath != DatapathKind::Ebpf)
            || other.host_netns != state.host_netns
            || other.uplink != state.uplink
        {
            continue;
        }
        if min <= other.nat.port_max && other.nat.port_min <= max {
            return Err(Error::Conflict(format!(
                "lab {} already masquerades behind {} with NAT ports {}-{}: give this lab other --nat-ports",
                other.name, state.uplink, other.nat.port_min, other.nat.port_max
            )));
        }
    }
    Ok(())
}

/// Builds the lab: sandbox namespaces (or the uplink of the current namespace), bridge,
/// forwarding, datapath; saves its state. On any failure, removes what it made.
pub fn up(req: &UpRequest) -> Result<LabState> {
    req.check()?;
    let lab = req.lab.as_str();
    let lock = Locked::acquire(lab)?;
    if let Some(state) = lock.load()? {
        super::mounts_visible(&state)?;
        if matches!(super::unusable(&state), Some(super::Unusable::Gone)) {
            // Gone behind netlab's back: what is left is removed, as every command
            // does, and the lab is brought up anew, as asked.
            let host = super::describe_host(&state);
            super::down::clean(&lock, &state)?;
            eprintln!(
                "netlab: lab {lab} was gone (its host namespace {host} was removed behind netlab's back); what was left of it is removed, and it is brought up anew"
            );
            return build(&lock, req);
        }
        let what = if state.taking_down {
            "was partly taken down (a `netlab down`, or the cleanup of a failed command, was cut short)"
        } else if state.building {
            "was not brought up completely (`netlab up` was interrupted)"
        } else {
            "is already up"
        };
        return Err(Error::Conflict(format!(
            "lab {lab} {what}: run `netlab down --lab {lab}` first"
        )));
    }
    build(&lock, req)
}

/// Builds the lab `req` asks for, under its lock (the lab is not up).
///
/// The state is written first, and again as each namespace is made (with its cookie,
/// known before the namespace is mounted at its name): a crash at any point leaves a
/// state that records what was made, which `down` removes. On an error, exactly that
/// is removed again, and the state with it.
pub(super) fn build(lock: &Locked, req: &UpRequest) -> Result<LabState> {
    req.check()?;
    if req.datapath == DatapathKind::Ebpf {
        datapath::ebpf::probe::require()?;
    }
    topology::require_device(req.device)?;
    let lab = req.lab.as_str();
    if req.sandbox {
        for ns in [names::host_netns(lab), names::wan_netns(lab)] {
            if netns::exists(&ns) {
                return Err(Error::Conflict(format!(
                    "network namespace {ns} exists and is not one netlab made for lab {lab}: remove it (`ip netns delete {ns}`) or pick another lab name"
                )));
            }
        }
    }
    let host_netns = if req.sandbox {
        Some(names::host_netns(lab))
    } else {
        netns::current_name()?
    };
    let mut state = LabState {
        version: STATE_VERSION,
        name: lab.to_string(),
        sandbox: req.sandbox,
        datapath: req.datapath,
        device: req.device,
        subnet: req.subnet,
        subnet6: req.subnet6,
        bridge: req.bridge.clone().unwrap_or_else(|| names::bridge(lab)),
        bridge_addr: req.subnet.gateway(),
        uplink: String::new(),
        uplink_addr: Ipv4Addr::UNSPECIFIED,
        uplink_addr6: None,
        host_netns,
        wan_netns: req.sandbox.then(|| names::wan_netns(lab)),
        ip_forward_was: None,
        forwarding_on_was: Vec::new(),
        bridge_nf_was: None,
        bridge_nf6_was: None,
        nat: req.nat,
        debug: req.debug,
        fault: req.fault,
        containers: Vec::new(),
        ports: Vec::new(),
        cookies: Cookies::default(),
        building: true,
        taking_down: false,
        datapath_made: false,
        mounts: Default::default(),
    };
    if !req.sandbox {
        // A bridge of someone else's must not be taken over, nor removed on failure.
        topology::check_link_free(&topology::host_ns(&state), &state.bridge)?;
    }
    let dp = datapath::for_kind(req.datapath);
    // A signal (Ctrl-C) waits until the lab is made, then takes it away: `up` never
    // stops half-way but by SIGKILL (whose leftovers the state records, for `down`).
    // Recorded before anything is made, for a command after an interrupted `up`; again
    // once it is made (with the bpffs it pinned into).
    state.mounts = made_in(&state);
    let (made, signal) = signals::hold(|| {
        lock.save(&state)?;
        make(lock, &mut state, req, &*dp).and_then(|()| {
            state.mounts = made_in(&state);
            state.building = false;
            lock.save(&state)
        })
    });
    let made = match signal {
        Some(sig) => made.and(Err(Error::Interrupted(sig))),
        None => made,
    };
    if let Err(e) = made {
        // Nothing half-done: what this `up` made goes, and its state (which stays, for
        // `down`, only if something could not be removed).
        let _ = signals::hold(|| super::down::clean(lock, &state));
        return Err(e);
    }
    datapath::forward_policy::warn(&state);
    Ok(state)
}

/// Makes the lab `state` describes, recording in it (and in the saved state) what is
/// made as it is made.
fn make(lock: &Locked, state: &mut LabState, req: &UpRequest, dp: &dyn Datapath) -> Result<()> {
    let lab = req.lab.as_str();
    let (uplink, addr) = if req.sandbox {
        for wan in [false, true] {
            let name = if wan {
                names::wan_netns(lab)
            } else {
                names::host_netns(lab)
            };
            let record = |cookie: u64, s: &mut LabState| {
                if wan {
                    s.cookies.wan = Some(cookie);
                } else {
                    s.cookies.host = Some(cookie);
                }
            };
            let snapshot = state.clone();
            let (_, cookie) = netns::create_recorded(&name, |cookie| {
                let mut s = snapshot;
                record(cookie, &mut s);
                lock.save(&s)
            })?;
            record(cookie, state);
        }
        topology::wire_sandbox(lab, req.subnet6.is_some())?
    } else {
        state.cookies.host = Some(netns::cookie(&topology::host_ns(state))?);
        topology::find_uplink(req.uplink.as_deref())?
    };
    state.uplink = uplink;
    state.uplink_addr = addr;
    if state.subnet6.is_some() {
        topology::check_ipv6_on(state)?;
        state.uplink_addr6 = if req.sandbox {
            Some(sandbox::HOST_ADDR6)
        } else {
            require_ipv6_forwarding(state)?;
            topology::uplink_addr6(state)?
        };
    }
    // Two `up`s in one namespace at once would each find the other's subnet free: one
    // at a time from here until its bridge exists and its state says so (the end of
    // `make`).
    let _namespace = match req.sandbox {
        true => None,
        // The namespace netlab runs in, which is the lab's.
        false => Some(topology::lock_ns(&netns::current())?),
    };
    if !req.sandbox {
        topology::check_subnets_free(state)?;
    }
    if req.subnet.contains(addr) {
        return Err(Error::Invalid(format!(
            "subnet {} contains the uplink address {addr}: pick another --subnet",
            req.subnet
        )));
    }
    check_nat_ports(state)?;
    // Forwarding and bridge netfilter as they were, recorded before the bridge and the
    // datapath change them; beside another lab, as that one found them.
    let neighbours = crate::store::neighbours(state);
    (state.ip_forward_was, state.forwarding_on_was) = match neighbours.first() {
        Some(other) => (
            other.ip_forward_was.clone(),
            other.forwarding_on_was.clone(),
        ),
        None => {
            let (all, on) = topology::ip_forward(state)?;
            (Some(all), on)
        }
    };
    // Bridge netfilter only by the labs that change it (a lab that leaves it alone
    // never writes it back: someone else may have set it meanwhile), as the first of
    // them found it.
    state.bridge_nf_was = setting_was(state, &neighbours, topology::uses_bridge_nf, |n| {
        n.bridge_nf_was.clone()
    })?;
    state.bridge_nf6_was = setting_was(state, &neighbours, topology::uses_bridge_nf6, |n| {
        n.bridge_nf6_was.clone()
    })?;
    // Before anything is made or changed: a refused `up` changes nothing, forwarding
    // included (a review found a refusal here had turned it on and back off, and with
    // it every interface's own).
    dp.check_free(state)?;
    lock.save(state)?;
    topology::build_bridge(state)?;
    // From here on what the datapath finds of its kind is its own, and `down` removes it
    // (another netlab command makes nothing of its kind meanwhile: the namespace is
    // locked).
    state.datapath_made = true;
    lock.save(state)?;
    dp.setup(state)
}

/// A namespace setting that only some labs change (`uses`), as the first of them in the
/// namespace found it: a neighbour's record if one of them is up, else the value now;
/// none for a lab that leaves it alone.
fn setting_was(
    state: &LabState,
    neighbours: &[LabState],
    uses: fn(&LabState) -> Option<&'static str>,
    was: fn(&LabState) -> Option<String>,
) -> Result<Option<String>> {
    let Some(key) = uses(state) else {
        return Ok(None);
    };
    match neighbours.iter().find(|n| uses(n).is_some()) {
        Some(other) => Ok(was(other)),
        None => topology::sysctl_in_host(state, key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(sandbox: bool, datapath: DatapathKind) -> UpRequest {
        UpRequest {
            lab: "x".into(),
            sandbox,
            datapath,
            device: Device::Veth,
            subnet: "172.18.0.0/16".parse().unwrap(),
            subnet6: Some(crate::lab::subnet6::DEFAULT.parse().unwrap()),
            uplink: None,
            bridge: None,
            nat: NatOptions::default(),
            given: Vec::new(),
            debug: false,
            fault: None,
        }
    }

    #[test]
    fn ipv6_runs_on_every_datapath() {
        for dp in DatapathKind::ALL {
            assert!(request(true, dp).check().is_ok(), "{}", dp.name());
        }
        assert!(request(false, DatapathKind::Iptables).check().is_ok());
    }

    #[test]
    fn routed_takes_no_nat_ports() {
        let mut req = request(true, DatapathKind::Routed);
        assert!(req.check().is_ok());
        req.nat.port_min = 1;
        req.nat.port_max = 2;
        let e = req.check().unwrap_err().to_string();
        assert!(e.contains("not to routed"), "{e}");
    }

    #[test]
    fn a_flag_given_at_its_default_is_refused_where_it_does_not_apply() {
        for (dp, flag, says) in [
            (
                DatapathKind::Routed,
                "--nat-ports",
                "--nat-ports applies to",
            ),
            (
                DatapathKind::Routed,
                "--tcp-timeout",
                "--tcp-timeout applies to",
            ),
            (
                DatapathKind::Routed,
                "--icmp-timeout",
                "--icmp-timeout applies to",
            ),
            (
                DatapathKind::Iptables,
                "--conntrack-max",
                "--conntrack-max applies",
            ),
            (
                DatapathKind::Nftables,
                "--gc-interval",
                "--gc-interval applies",
            ),
        ] {
            let mut req = request(true, dp);
            assert!(req.check().is_ok());
            req.given = vec![flag];
            let e = req.check().unwrap_err().to_string();
            assert!(e.contains(says), "{flag} on {}: {e}", dp.name());
        }
        let mut req = request(true, DatapathKind::Ebpf);
        req.given = vec![
            "--nat-ports",
            "--conntrack-max",
            "--gc-interval",
            "--tcp-timeout",
        ];
        assert!(req.check().is_ok());
    }

    #[test]
    fn the_fault_point_is_the_ebpf_datapaths_only() {
        let mut req = request(true, DatapathKind::Ebpf);
        req.fault = Some(Fault::RewriteFailed);
        assert!(req.check().is_ok());
        req.datapath = DatapathKind::Iptables;
        let e = req.check().unwrap_err().to_string();
        assert!(
            e.contains("--fault applies to the ebpf datapath only"),
            "{e}"
        );
    }
}
