//! Host ports netlab picks, as Docker does: for a `-p` without one (`-p 80`,
//! `-p 127.0.0.1::80`, `-p 0:80`), and for one container port given a range of host
//! ports (`-p 9000-9005:80`).

use std::hash::BuildHasher;

use super::up::ephemeral_ports;
use crate::{
    error::{Error, Result},
    lab::{DatapathKind, LabState, PortRequest, PortSpec, Proto},
    topology,
};

/// The host ports `req` (a [`PortRequest::Pick`]'s spec) may get, in the order they are
/// tried, and what they are, for an error naming them.
///
/// - A range (`9000-9005:80`): its ports, lowest first, as Docker tries them.
/// - None: the lab host's ephemeral ports (`net.ipv4.ip_local_port_range`), where
///   Docker and Podman pick, from a random one on (wrapping), so that a port just
///   unpublished is not handed out again at once. Except a UDP port on eBPF: that is
///   picked above the ephemeral range (else below it, from 1024), because there a
///   published UDP port inside the range takes the replies to the host's own sockets
///   on it (see `publish`'s warning). The lab's NAT ports are never picked.
pub fn candidates(state: &LabState, spec: &PortSpec) -> Result<(Vec<u16>, String)> {
    if spec.host_port != 0 {
        let what = format!("of {}-{}", spec.host_port, spec.host_end);
        return Ok(((spec.host_port..=spec.host_end).collect(), what));
    }
    let (lo, hi) = ephemeral_ports(&topology::host_ns(state))?;
    let nat = state.nat.port_min..=state.nat.port_max;
    let (mut ports, what): (Vec<u16>, String) =
        if state.datapath == DatapathKind::Ebpf && spec.proto == Proto::Udp {
            let above = hi.checked_add(1).map(|a| a..=u16::MAX);
            let below = 1024..lo;
            (
                above.into_iter().flatten().chain(below).collect(),
                format!("outside the lab host's ephemeral ports {lo}-{hi}, for UDP on eBPF"),
            )
        } else {
            let all: Vec<u16> = (lo..=hi).collect();
            let start = random_below(all.len());
            (
                all[start..].iter().chain(&all[..start]).copied().collect(),
                format!("in the lab host's ephemeral ports {lo}-{hi}"),
            )
        };
    ports.retain(|p| !nat.contains(p));
    Ok((ports, what))
}

/// The first host port of `candidates` that `free` finds free, as the spec it makes.
pub fn first_free(
    req: &PortRequest,
    spec: &PortSpec,
    (candidates, what): (Vec<u16>, String),
    mut free: impl FnMut(&PortSpec) -> bool,
) -> Result<PortSpec> {
    candidates
        .into_iter()
        .map(|p| PortSpec {
            host_port: p,
            host_end: p,
            ..*spec
        })
        .find(|s| free(s))
        .ok_or_else(|| {
            Error::Conflict(format!(
                "no free host port for {req}: every port {what} is published or in use"
            ))
        })
}

/// A number in `0..n` (0 for `n` 0), from the random keys std seeds its hash maps with.
fn random_below(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    (std::collections::hash_map::RandomState::new().hash_one(0u8) % n as u64) as usize
}
