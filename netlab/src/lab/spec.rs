//! Docker's `-p` syntax: `[HOST_IP:]HOST_PORT[-END]:CTR_PORT[-END][/tcp|/udp]`.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use serde::{Deserialize, Serialize};

use super::text::Text;
use crate::error::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }
}

/// One published range: host ports `host_port..=host_end` on `host_ip` (or every host
/// address) to container ports `ctr_port..` (the same length).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    pub host_ip: Option<Ipv4Addr>,
    pub proto: Proto,
    pub host_port: u16,
    pub host_end: u16,
    pub ctr_port: u16,
}

impl PortSpec {
    /// Number of ports in the range.
    pub fn len(&self) -> u32 {
        (self.host_end - self.host_port) as u32 + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The container port that host port `p` maps to.
    pub fn ctr_port_for(&self, p: u16) -> u16 {
        self.ctr_port + (p - self.host_port)
    }

    pub fn ctr_end(&self) -> u16 {
        self.ctr_port_for(self.host_end)
    }

    /// Whether two specs claim a common (address, protocol, port).
    pub fn overlaps(&self, other: &PortSpec) -> bool {
        let ips = match (self.host_ip, other.host_ip) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        ips && self.proto == other.proto
            && self.host_port <= other.host_end
            && other.host_port <= self.host_end
    }
}

fn port_range(s: &str, spec: &str) -> Result<(u16, u16), Error> {
    let bad = |what: &str| Error::Invalid(format!("invalid port spec {spec:?}: {what}"));
    let parse = |p: &str| -> Result<u16, Error> {
        // Digits only: `u32::from_str` would take a sign too.
        let n: u32 = p
            .parse()
            .ok()
            .filter(|_| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad(&format!("{p:?} is not a port number")))?;
        if !(1..=65535).contains(&n) {
            return Err(bad(&format!("port {n} is outside 1-65535")));
        }
        Ok(n as u16)
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            if a > b {
                return Err(bad(&format!("range {a}-{b} runs backwards")));
            }
            Ok((a, b))
        }
        None => {
            let p = parse(s)?;
            Ok((p, p))
        }
    }
}

impl FromStr for PortSpec {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self, Error> {
        let bad = |what: &str| Error::Invalid(format!("invalid port spec {spec:?}: {what}"));
        // As Docker: the protocol in any case, an empty one TCP.
        let (body, proto) = match spec.rsplit_once('/') {
            Some((b, p)) if p.is_empty() || p.eq_ignore_ascii_case("tcp") => (b, Proto::Tcp),
            Some((b, p)) if p.eq_ignore_ascii_case("udp") => (b, Proto::Udp),
            Some((_, p)) => return Err(bad(&format!("unknown protocol {p:?} (use tcp or udp)"))),
            None => (spec, Proto::Tcp),
        };
        if body.contains('/') {
            return Err(bad(
                "one protocol at most, after the ports, as in 8080:80/udp",
            ));
        }
        if body.starts_with('[') {
            return Err(bad(
                "IPv6 host addresses are not taken yet; without a host address the port answers on every address, IPv6 ones included",
            ));
        }
        // Taken apart without collecting: `state.json` holds thousands of specs.
        let mut parts = body.split(':');
        let (host_ip, host, ctr) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(host), Some(ctr), None, _) => (None, host, ctr),
            (Some(ip), Some(host), Some(ctr), None) => {
                let ip: Ipv4Addr = ip
                    .parse()
                    .map_err(|_| bad(&format!("{ip:?} is not an IPv4 address")))?;
                (if ip.is_unspecified() { None } else { Some(ip) }, host, ctr)
            }
            (Some(_), None, ..) => return Err(bad("a host port is required, as in 8080:80")),
            _ => {
                return Err(bad(
                    "expected [HOST_IP:]HOST_PORT[-END]:CTR_PORT[-END][/tcp|/udp]",
                ));
            }
        };
        if host.is_empty() {
            return Err(bad(
                "a host port is required (netlab does not pick one), as in 8080:80",
            ));
        }
        let (host_port, host_end) = port_range(host, spec)?;
        let (ctr_port, ctr_end) = port_range(ctr, spec)?;
        if host_end - host_port != ctr_end - ctr_port {
            return Err(bad("the host and container ranges have different lengths"));
        }
        Ok(PortSpec {
            host_ip,
            proto,
            host_port,
            host_end,
            ctr_port,
        })
    }
}

/// The longest spec: `255.255.255.255:65535-65535:65535-65535/udp`.
pub const SPEC_MAX: usize = 43;

impl PortSpec {
    /// Appends `[HOST_IP:]HOST_PORT[-END]:CTR_PORT[-END]/PROTO`: what `Display` shows,
    /// and how `state.json` stores it.
    pub fn write_to<const N: usize>(&self, t: &mut Text<N>) {
        if let Some(ip) = self.host_ip {
            t.ip(ip);
            t.push(b":");
        }
        t.num(self.host_port as u32);
        if self.host_end != self.host_port {
            t.push(b"-");
            t.num(self.host_end as u32);
        }
        t.push(b":");
        t.num(self.ctr_port as u32);
        if self.host_end != self.host_port {
            t.push(b"-");
            t.num(self.ctr_end() as u32);
        }
        t.push(b"/");
        t.push(self.proto.name().as_bytes());
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut t = Text::<SPEC_MAX>::new();
        self.write_to(&mut t);
        f.pad(t.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PortSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_forms() {
        assert_eq!(
            p("8080:80"),
            PortSpec {
                host_ip: None,
                proto: Proto::Tcp,
                host_port: 8080,
                host_end: 8080,
                ctr_port: 80
            }
        );
        assert_eq!(p("8080:80/udp").proto, Proto::Udp);
        // As Docker: the protocol in any case, none after the slash TCP.
        assert_eq!(p("8080:80/UDP").proto, Proto::Udp);
        assert_eq!(p("8080:80/Tcp").proto, Proto::Tcp);
        assert_eq!(p("8080:80/").proto, Proto::Tcp);
        assert_eq!(p("127.0.0.1:8080:80").host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p("0.0.0.0:8080:80").host_ip, None);
        let r = p("198.51.100.2:8000-8099:9000-9099/tcp");
        assert_eq!(
            (r.host_port, r.host_end, r.ctr_port, r.ctr_end()),
            (8000, 8099, 9000, 9099)
        );
        assert_eq!(r.len(), 100);
        assert_eq!(r.ctr_port_for(8005), 9005);
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "8080:80/tcp",
            "127.0.0.1:53:53/udp",
            "8000-8099:8000-8099/tcp",
        ] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
    }

    #[test]
    fn rejects_bad_specs() {
        for s in [
            "80",
            "0:80",
            "8080:0",
            "8080:65536",
            "70000:80",
            "8080:80/sctp",
            "a:80",
            "+8080:80",
            "8080:-80",
            "127.0.0.1::80",
            "1.2.3:8080:80",
            "8000-7999:80-81",
            "8000-8001:80",
            "1:2:3:4",
            "",
            ":80",
            "8080:",
            "8080:80/udp/",
            "8080:80/tcp/udp",
        ] {
            assert!(s.parse::<PortSpec>().is_err(), "{s} should be rejected");
        }
        let err = "86:80/tcp/udp".parse::<PortSpec>().unwrap_err().to_string();
        assert!(err.contains("one protocol at most"), "{err}");
    }

    #[test]
    fn overlap() {
        assert!(p("8080:80").overlaps(&p("127.0.0.1:8080:81")));
        assert!(!p("8080:80").overlaps(&p("8080:80/udp")));
        assert!(!p("127.0.0.1:8080:80").overlaps(&p("198.51.100.2:8080:80")));
        assert!(p("8000-8010:8000-8010").overlaps(&p("8010:1")));
        assert!(!p("8000-8010:8000-8010").overlaps(&p("8011:1")));
    }
}
