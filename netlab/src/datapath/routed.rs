//! The routed pseudo-datapath: no NAT and no filtering, only routing. `wan` gets a
//! route to the lab subnet (and one to its IPv6 subnet, with `--ipv6`) through the lab
//! host, so containers are reached at their own addresses and their traffic leaves
//! with its own source (Docker's `gateway_mode_ipv4=routed`, without its firewall).
//! It is the benchmark's baseline: the same topology, nothing of any datapath.
//! Sandbox labs only; publishes nothing.

use super::Datapath;
use crate::{
    error::{Error, Result},
    lab::{LabState, Published},
    netlink::{netns, route, sysctl},
};

pub struct Routed;

fn no_ports() -> Error {
    Error::Invalid(
        "the routed datapath publishes no ports: reach a container at its own address".into(),
    )
}

impl Datapath for Routed {
    fn setup(&self, state: &LabState) -> Result<()> {
        let Some(wan) = &state.wan_netns else {
            return Err(Error::Invalid(
                "the routed datapath needs --sandbox: it routes the lab subnet from the sandbox's wan"
                    .into(),
            ));
        };
        let (net, prefix, via) = (state.subnet.network, state.subnet.prefix, state.uplink_addr);
        // A dual-stack lab's IPv6 subnet is routed the same way (the sandbox gives the
        // uplink an IPv6 address whenever the lab has an IPv6 subnet).
        let v6 = state.subnet6.zip(state.uplink_addr6);
        netns::run_in(
            &crate::topology::host_ns(state),
            sysctl::bridge_netfilter_off,
        )?;
        netns::netlink_in(&netns::path(wan), |h| async move {
            route::add_via(&h, net, prefix, via).await?;
            if let Some((s6, via6)) = v6 {
                route::add_via6(&h, s6.network, s6.prefix, via6).await?;
            }
            Ok(())
        })
    }

    /// The route goes with the wan namespace.
    fn teardown(&self, _state: &LabState) -> Result<()> {
        Ok(())
    }

    /// Refused first of all, before anything is checked, made or journaled (asked with
    /// no ports at the start of every publishing request).
    fn check_room(&self, _state: &LabState, _ports: &[Published]) -> Result<()> {
        Err(no_ports())
    }

    fn publish(&self, _state: &LabState, _ports: &[Published]) -> Result<()> {
        Err(no_ports())
    }

    /// Nothing was ever published: a rollback or a recovery has nothing to withdraw.
    /// (A refusal here left a journal entry no command could clear: every command on
    /// the lab then failed with it, a review.)
    fn unpublish(&self, _state: &LabState, _ports: &[Published]) -> Result<()> {
        Ok(())
    }
}
