//! What may be published: host addresses of the lab, ports nobody else holds.

use std::{collections::HashMap, fs, net::Ipv4Addr, path::Path};

use crate::{
    error::{Error, Result},
    lab::{LabState, PortSpec, Proto, Published},
    netlink::netns,
};

/// Refuses a host address that is not the lab host's (uplink, bridge or 127.0.0.1).
pub fn check_host_ip(state: &LabState, spec: &PortSpec) -> Result<()> {
    let Some(ip) = spec.host_ip else {
        return Ok(());
    };
    if ip == state.uplink_addr || ip == state.bridge_addr || ip == Ipv4Addr::LOCALHOST {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "{ip} is not an address of lab {}'s host: use {}, {}, 127.0.0.1, or no address for all of them",
        state.name, state.uplink_addr, state.bridge_addr
    )))
}

/// Every host port the lab's mappings claim, so that a batch of thousands of specs is
/// checked in time proportional to its ports, not to the square of their number.
pub struct Claims<'a> {
    /// (protocol, host port) → who claims it, on which host address.
    taken: HashMap<(Proto, u16), Vec<Claim<'a>>>,
}

/// A host address (or every address) and what claims a port on it.
type Claim<'a> = (Option<Ipv4Addr>, Claimant<'a>);

#[derive(Clone, Copy)]
enum Claimant<'a> {
    Published(&'a Published),
    Asked(PortSpec),
}

impl<'a> Claims<'a> {
    pub fn of(state: &'a LabState) -> Self {
        let mut claims = Self {
            taken: HashMap::new(),
        };
        for p in &state.ports {
            claims.add(&p.spec, Claimant::Published(p));
        }
        claims
    }

    fn add(&mut self, spec: &PortSpec, who: Claimant<'a>) {
        for port in spec.host_port..=spec.host_end {
            self.taken
                .entry((spec.proto, port))
                .or_default()
                .push((spec.host_ip, who));
        }
    }

    /// Refuses a spec that claims a port another mapping, or an earlier spec of the
    /// same request, already has; otherwise claims its ports.
    pub fn claim(&mut self, spec: &PortSpec) -> Result<()> {
        for port in spec.host_port..=spec.host_end {
            let Some(holders) = self.taken.get(&(spec.proto, port)) else {
                continue;
            };
            let clash = holders.iter().find(|(ip, _)| match (ip, spec.host_ip) {
                (Some(a), Some(b)) => *a == b,
                _ => true,
            });
            match clash {
                Some((_, Claimant::Published(p))) => {
                    return Err(Error::Conflict(format!(
                        "host port {} is already published ({} on container {}): unpublish it first",
                        spec, p.spec, p.container
                    )));
                }
                Some((_, Claimant::Asked(o))) => {
                    return Err(Error::Conflict(format!(
                        "port specs {o} and {spec} overlap"
                    )));
                }
                None => {}
            }
        }
        self.add(spec, Claimant::Asked(*spec));
        Ok(())
    }
}

/// A socket bound in the host namespace: a TCP listener or a bound UDP socket.
#[derive(Debug, PartialEq)]
pub struct Bound {
    udp: bool,
    addr: Option<Ipv4Addr>,
    port: u16,
}

fn parse(text: &str, udp: bool, v6: bool) -> Vec<Bound> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (f.get(1)?, f.get(3)?);
            // TCP: only listeners; UDP: every bound socket (state 07, "closed").
            if !udp && *state != "0A" {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let addr = if v6 {
                // Only the wildcard (::) and v4-mapped wildcard also take IPv4 ports.
                if addr.chars().all(|c| c == '0') {
                    None
                } else {
                    return None;
                }
            } else {
                let raw = u32::from_str_radix(addr, 16).ok()?;
                let a = Ipv4Addr::from(raw.to_ne_bytes());
                (!a.is_unspecified()).then_some(a)
            };
            Some(Bound { udp, addr, port })
        })
        .collect()
}

/// The sockets bound in the lab host's namespace, read once per command.
pub fn bound_sockets(host_ns: &Path) -> Result<Vec<Bound>> {
    netns::run_in(host_ns, || {
        let mut all = Vec::new();
        for (file, udp, v6) in [
            ("tcp", false, false),
            ("udp", true, false),
            ("tcp6", false, true),
            ("udp6", true, true),
        ] {
            let path = format!("/proc/thread-self/net/{file}");
            if let Ok(text) = fs::read_to_string(&path) {
                all.extend(parse(&text, udp, v6));
            }
        }
        Ok(all)
    })
}

/// Refuses a host port held by a socket in the lab host's namespace (a TCP listener or a
/// bound UDP socket), which the published port would silently take over.
pub fn check_sockets(bound: &[Bound], spec: &PortSpec) -> Result<()> {
    let udp = spec.proto == Proto::Udp;
    for b in bound {
        let addr_clash = match (b.addr, spec.host_ip) {
            (None, _) | (_, None) => true,
            (Some(a), Some(h)) => a == h,
        };
        if b.udp == udp && addr_clash && (spec.host_port..=spec.host_end).contains(&b.port) {
            return Err(Error::Conflict(format!(
                "host port {}/{} is in use by a socket in the lab host ({}:{}): stop it or pick another port",
                b.port,
                spec.proto.name(),
                b.addr.map(|a| a.to_string()).unwrap_or_else(|| "*".into()),
                b.port
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n\
   2: 0100007F:A000 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0\n";
        let b = parse(tcp, false, false);
        assert_eq!(
            b,
            vec![
                Bound {
                    udp: false,
                    addr: Some(Ipv4Addr::LOCALHOST),
                    port: 8080
                },
                Bound {
                    udp: false,
                    addr: None,
                    port: 80
                },
            ]
        );
        let tcp6 = "  sl  local_address                         remote_address                        st\n\
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 0\n";
        assert_eq!(
            parse(tcp6, false, true),
            vec![Bound {
                udp: false,
                addr: None,
                port: 22
            }]
        );
    }
}
