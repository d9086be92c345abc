//! Host ports netlab picks, as Docker does: for a `-p` without one (`-p 80`,
//! `-p 127.0.0.1::80`, `-p 0:80`), and for one container port given a range of host
//! ports (`-p 9000-9005:80`).

use std::hash::BuildHasher;

use crate::{
    error::{Error, Result},
    lab::{DatapathKind, LabState, PortRequest, PortSpec, Proto},
    topology,
};

/// The host ports a pick tries, in order, and the words that name them in an error
/// (`of 9000-9005`: "every port of 9000-9005 is published or in use").
#[derive(Debug, PartialEq, Eq)]
pub struct Candidates {
    pub ports: Vec<u16>,
    pub what: String,
}

/// Why a candidate host port cannot be picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Busy {
    /// Published (by this lab or another of the namespace), or held by a socket of the
    /// lab host.
    Taken,
    /// Claimed by another spec of the same command.
    Claimed,
}

/// The host ports `req` (a [`PortRequest::Pick`]'s spec) may get, in the order they are
/// tried.
///
/// - A range (`9000-9005:80`): its ports, lowest first, as Docker tries them; they may
///   be NAT ports of the lab, as a port given outright may.
/// - None: the lab host's ephemeral ports (`net.ipv4.ip_local_port_range`), where
///   Docker and Podman pick, from a random one on (wrapping), so that a port just
///   unpublished is not handed out again at once. Except a UDP port on eBPF: that is
///   picked outside the ephemeral range (above it, or below it from 1024), because
///   there a published UDP port inside the range takes the replies to the host's own
///   sockets on it (see `publish`'s warning). The lab's NAT ports are never picked.
pub fn candidates(state: &LabState, req: &PortRequest, spec: &PortSpec) -> Result<Candidates> {
    if spec.host_port != 0 {
        return Ok(Candidates {
            ports: (spec.host_port..=spec.host_end).collect(),
            what: format!("of {}-{}", spec.host_port, spec.host_end),
        });
    }
    let ephemeral = topology::ephemeral_ports(&topology::host_ns(state))?;
    let ebpf_udp = state.datapath == DatapathKind::Ebpf && spec.proto == Proto::Udp;
    let nat = (state.nat.port_min, state.nat.port_max);
    let seed = std::collections::hash_map::RandomState::new().hash_one(0u8);
    without_host_port(ebpf_udp, ephemeral, nat, seed)
        .map_err(|why| Error::Conflict(format!("no host port to pick for {req}: {why}")))
}

/// The ports a pick without host ports tries: the ephemeral ports `lo-hi` (or, for
/// `ebpf_udp`, those from 1024 outside them), less the NAT ports, turned to start at
/// the one `seed` chooses. Or why there is none.
fn without_host_port(
    ebpf_udp: bool,
    (lo, hi): (u16, u16),
    (nat_min, nat_max): (u16, u16),
    seed: u64,
) -> std::result::Result<Candidates, String> {
    let nat = nat_min..=nat_max;
    let mut ports: Vec<u16> = if ebpf_udp {
        let above = hi.checked_add(1).map(|a| a..=u16::MAX);
        above.into_iter().flatten().chain(1024..lo).collect()
    } else {
        (lo..=hi).collect()
    };
    if ports.is_empty() {
        return Err(if ebpf_udp {
            format!(
                "on eBPF a UDP port is picked outside the lab host's ephemeral ports ({lo}-{hi}), and none is left"
            )
        } else {
            format!("the lab host has no ephemeral ports ({lo}-{hi})")
        });
    }
    let before = ports.len();
    ports.retain(|p| !nat.contains(p));
    let nat_note = if ports.len() < before {
        format!(" and the lab's NAT ports {nat_min}-{nat_max}")
    } else {
        String::new()
    };
    if ports.is_empty() {
        return Err(if ebpf_udp {
            format!(
                "on eBPF a UDP port is picked outside the lab host's ephemeral ports ({lo}-{hi}), and the ports left are all NAT ports of the lab (--nat-ports {nat_min}-{nat_max})"
            )
        } else {
            format!(
                "the lab host's ephemeral ports {lo}-{hi} are all NAT ports of the lab (--nat-ports {nat_min}-{nat_max})"
            )
        });
    }
    let start = (seed % ports.len() as u64) as usize;
    ports.rotate_left(start);
    let what = if ebpf_udp {
        format!("from 1024 up outside the lab host's ephemeral ports {lo}-{hi}{nat_note}")
    } else if nat_note.is_empty() {
        format!("of the lab host's ephemeral ports {lo}-{hi}")
    } else {
        format!(
            "of the lab host's ephemeral ports {lo}-{hi} outside the lab's NAT ports {nat_min}-{nat_max}"
        )
    };
    Ok(Candidates { ports, what })
}

/// The first host port of `candidates` that `busy` finds free, as the spec it makes;
/// when none is, an error that says what holds them.
pub fn first_free(
    req: &PortRequest,
    spec: &PortSpec,
    candidates: Candidates,
    mut busy: impl FnMut(&PortSpec) -> Option<Busy>,
) -> Result<PortSpec> {
    let mut claimed = false;
    for p in candidates.ports {
        let s = PortSpec {
            host_port: p,
            host_end: p,
            ..*spec
        };
        match busy(&s) {
            None => return Ok(s),
            Some(Busy::Claimed) => claimed = true,
            Some(Busy::Taken) => {}
        }
    }
    let held = if claimed {
        "published, in use, or taken by another spec of this command"
    } else {
        "published or in use"
    };
    Err(Error::Conflict(format!(
        "no free host port for {req}: every port {} is {held}",
        candidates.what
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAT: (u16, u16) = (20000, 29999);

    #[test]
    fn ephemeral_picks_start_at_a_random_port_and_wrap() {
        let c = without_host_port(false, (32768, 60999), NAT, 5).unwrap();
        assert_eq!(c.ports.len(), 60999 - 32768 + 1);
        assert_eq!(&c.ports[..2], [32773, 32774]);
        assert_eq!(c.ports.last(), Some(&32772));
        assert_eq!(c.what, "of the lab host's ephemeral ports 32768-60999");
        // Every seed gives every port once.
        let mut sorted = without_host_port(false, (32768, 60999), NAT, 12345)
            .unwrap()
            .ports;
        sorted.sort_unstable();
        assert_eq!(sorted, (32768..=60999).collect::<Vec<_>>());
    }

    #[test]
    fn ebpf_udp_picks_outside_the_ephemeral_ports_and_nat_ports_from_a_random_one() {
        let c = without_host_port(true, (32768, 60999), NAT, 0).unwrap();
        assert_eq!(c.ports[0], 61000, "seed 0 starts above the range");
        let mut expect: Vec<u16> = (61000..=65535).chain(1024..20000).collect();
        expect.extend(30000..32768);
        assert_eq!(c.ports, expect);
        assert_eq!(
            c.what,
            "from 1024 up outside the lab host's ephemeral ports 32768-60999 and the lab's NAT ports 20000-29999"
        );
        // Not in order: a port just unpublished is not the next one picked.
        let other = without_host_port(true, (32768, 60999), NAT, 1000).unwrap();
        assert_eq!(other.ports[0], expect[1000]);
        assert_eq!(other.ports.last(), Some(&expect[999]));
    }

    #[test]
    fn nothing_to_pick_from_says_why() {
        let none = without_host_port(true, (1024, 65535), NAT, 7).unwrap_err();
        assert_eq!(
            none,
            "on eBPF a UDP port is picked outside the lab host's ephemeral ports (1024-65535), and none is left"
        );
        let nat = without_host_port(true, (1024, 60999), (61000, 65535), 7).unwrap_err();
        assert_eq!(
            nat,
            "on eBPF a UDP port is picked outside the lab host's ephemeral ports (1024-60999), and the ports left are all NAT ports of the lab (--nat-ports 61000-65535)"
        );
        let tcp = without_host_port(false, (25000, 25010), NAT, 7).unwrap_err();
        assert_eq!(
            tcp,
            "the lab host's ephemeral ports 25000-25010 are all NAT ports of the lab (--nat-ports 20000-29999)"
        );
        let part = without_host_port(false, (29990, 30009), NAT, 0).unwrap();
        assert_eq!(part.ports, (30000..=30009).collect::<Vec<_>>());
        assert_eq!(
            part.what,
            "of the lab host's ephemeral ports 29990-30009 outside the lab's NAT ports 20000-29999"
        );
    }

    #[test]
    fn a_failed_pick_says_what_holds_the_ports() {
        let req = PortRequest::parse("9000-9002:80").unwrap()[0];
        let PortRequest::Pick(spec) = req else {
            panic!("a pick")
        };
        let range = || Candidates {
            ports: vec![9000, 9001, 9002],
            what: "of 9000-9002".into(),
        };
        let got = first_free(&req, &spec, range(), |s| {
            (s.host_port < 9002).then_some(Busy::Taken)
        })
        .unwrap();
        assert_eq!(got.to_string(), "9002:80/tcp");
        let err = first_free(&req, &spec, range(), |_| Some(Busy::Taken)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no free host port for 9000-9002:80/tcp: every port of 9000-9002 is published or in use"
        );
        let err = first_free(&req, &spec, range(), |s| {
            Some(if s.host_port == 9001 {
                Busy::Claimed
            } else {
                Busy::Taken
            })
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no free host port for 9000-9002:80/tcp: every port of 9000-9002 is published, in use, or taken by another spec of this command"
        );
    }
}
