//! Docker's `-p` syntax: `[HOST_IP:][HOST_PORT[-END]:]CTR_PORT[-END][/tcp|/udp]`, an
//! IPv6 HOST_IP in brackets (`[2001:db8::1]:8080:80`), an empty one every address
//! (`:8080:80`, `::80`). A [`PortSpec`] names its host
//! ports; a [`PortRequest`] (`run -p`, `publish`) may leave them to netlab to pick.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

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
/// address) to container ports `ctr_port..` (the same length). `host_ip` `None` is
/// every address of both families (`8080:80`); as Docker has it, `0.0.0.0` every IPv4
/// address (`0.0.0.0:8080:80`) and `::` every IPv6 one (`[::]:8080:80`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortSpec {
    pub host_ip: Option<IpAddr>,
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

    /// Whether the spec answers on IPv4 (on every address, or on one IPv4 address).
    pub fn on_ipv4(&self) -> bool {
        !matches!(self.host_ip, Some(IpAddr::V6(_)))
    }

    /// Whether the spec answers on IPv6 (on every address, every IPv6 address, or one).
    pub fn on_ipv6(&self) -> bool {
        !matches!(self.host_ip, Some(IpAddr::V4(_)))
    }

    /// The one IPv4 address the spec answers on, if it names one (not `0.0.0.0`).
    pub fn host_ip4(&self) -> Option<Ipv4Addr> {
        match self.host_ip {
            Some(IpAddr::V4(a)) if !a.is_unspecified() => Some(a),
            _ => None,
        }
    }

    /// The one IPv6 address the spec answers on, if it names one (not `::`).
    pub fn host_ip6(&self) -> Option<Ipv6Addr> {
        match self.host_ip {
            Some(IpAddr::V6(a)) if !a.is_unspecified() => Some(a),
            _ => None,
        }
    }

    /// Whether two specs claim a common (address, protocol, port).
    pub fn overlaps(&self, other: &PortSpec) -> bool {
        host_ips_overlap(self.host_ip, other.host_ip)
            && self.proto == other.proto
            && self.host_port <= other.host_end
            && other.host_port <= self.host_end
    }
}

/// Whether two host addresses of specs (`None` every address, `0.0.0.0` every IPv4
/// one, `::` every IPv6 one) have an address in common.
pub fn host_ips_overlap(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => true,
        (Some(a), Some(b)) => {
            a.is_ipv4() == b.is_ipv4() && (a == b || a.is_unspecified() || b.is_unspecified())
        }
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

/// A `-p` taken apart: the host address, the host port(s) as written (`None` when left
/// out: `80`, `127.0.0.1::80`), the container port(s), the protocol.
struct Parts<'a> {
    host_ip: Option<IpAddr>,
    host: Option<&'a str>,
    ctr: &'a str,
    proto: Proto,
}

fn parts(spec: &str) -> Result<Parts<'_>, Error> {
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
    // An IPv6 host address, in brackets as Docker writes it.
    let (ip6, body) = match body.strip_prefix('[') {
        Some(rest) => {
            let (ip, rest) = rest.split_once("]:").ok_or_else(|| {
                bad("an IPv6 host address goes in brackets, as in [2001:db8::1]:8080:80")
            })?;
            let ip: Ipv6Addr = ip
                .parse()
                .map_err(|_| bad(&format!("{ip:?} is not an IPv6 address")))?;
            (Some(ip), rest)
        }
        None => (None, body),
    };
    // Taken apart without collecting: `state.json` holds thousands of specs.
    let mut it = body.split(':');
    let (host_ip, host, ctr) = match (it.next(), it.next(), it.next(), it.next()) {
        (Some(ctr), None, ..) if ip6.is_none() => (None, None, ctr),
        (Some(host), Some(ctr), None, _) => (ip6.map(IpAddr::V6), Some(host), ctr),
        // As Docker: an empty host address is every address (`::80`, `:8080:80`); an
        // IPv6 one is always in brackets, so `::80` is not one.
        (Some(""), Some(host), Some(ctr), None) if ip6.is_none() => (None, Some(host), ctr),
        (Some(ip), Some(host), Some(ctr), None) if ip6.is_none() => {
            let ip: Ipv4Addr = ip.parse().map_err(|_| {
                bad(&format!(
                    "{ip:?} is not an IPv4 address (an IPv6 one goes in brackets)"
                ))
            })?;
            (Some(IpAddr::V4(ip)), Some(host), ctr)
        }
        _ => {
            return Err(bad(
                "expected [HOST_IP:][HOST_PORT[-END]:]CTR_PORT[-END][/tcp|/udp]",
            ));
        }
    };
    Ok(Parts {
        host_ip,
        host: host.filter(|h| !h.is_empty()),
        ctr,
        proto,
    })
}

/// The spec of `parts` with its host ports `host` as written.
fn given(spec: &str, p: &Parts, host: &str) -> Result<PortSpec, Error> {
    let (host_port, host_end) = port_range(host, spec)?;
    let (ctr_port, ctr_end) = port_range(p.ctr, spec)?;
    if host_end - host_port != ctr_end - ctr_port {
        return Err(Error::Invalid(format!(
            "invalid port spec {spec:?}: the host and container ranges have different lengths"
        )));
    }
    Ok(PortSpec {
        host_ip: p.host_ip,
        proto: p.proto,
        host_port,
        host_end,
        ctr_port,
    })
}

impl FromStr for PortSpec {
    type Err = Error;

    /// A spec with its host port(s): what `unpublish`, CNI and `state.json` name.
    fn from_str(spec: &str) -> Result<Self, Error> {
        let p = parts(spec)?;
        match p.host {
            Some(host) if host != "0" => given(spec, &p, host),
            _ => Err(Error::Invalid(format!(
                "invalid port spec {spec:?}: a host port is required here, as in 8080:80 (`netlab ports` shows the one picked for a -p without it)"
            ))),
        }
    }
}

/// A `-p` as `run` and `publish` take it: its host port given, or left to netlab to
/// pick, as Docker picks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortRequest {
    /// `[HOST_IP:]HOST_PORT[-END]:CTR_PORT[-END]`: these host ports.
    Given(PortSpec),
    /// One host port for `spec.ctr_port`, the first free one of
    /// `spec.host_port..=spec.host_end` (`9000-9005:80`), or any free one when
    /// `host_port` is 0 (`80`, `127.0.0.1::80`, `0:80`).
    Pick(PortSpec),
}

impl PortRequest {
    /// The requests one `-p` makes: one, or one picked host port per container port
    /// of a range without host ports (`80-85`, as Docker has it).
    pub fn parse(spec: &str) -> Result<Vec<Self>, Error> {
        let bad = |what: &str| Error::Invalid(format!("invalid port spec {spec:?}: {what}"));
        let p = parts(spec)?;
        let pick = |host_port, host_end, ctr_port| {
            Self::Pick(PortSpec {
                host_ip: p.host_ip,
                proto: p.proto,
                host_port,
                host_end,
                ctr_port,
            })
        };
        let Some(host) = p.host.filter(|&h| h != "0") else {
            let (lo, hi) = port_range(p.ctr, spec)?;
            if p.host.is_some() && lo != hi {
                return Err(bad(
                    "host port 0 picks one port, for one container port: leave the host port out to pick one for each port of a range",
                ));
            }
            return Ok((lo..=hi).map(|c| pick(0, 0, c)).collect());
        };
        let (host_port, host_end) = port_range(host, spec)?;
        let (ctr_port, ctr_end) = port_range(p.ctr, spec)?;
        if ctr_port == ctr_end && host_port != host_end {
            return Ok(vec![pick(host_port, host_end, ctr_port)]);
        }
        Ok(vec![Self::Given(given(spec, &p, host)?)])
    }

    /// The spec, with its host address made what the lab takes it for.
    pub fn map(self, f: impl Fn(PortSpec) -> PortSpec) -> Self {
        match self {
            Self::Given(s) => Self::Given(f(s)),
            Self::Pick(s) => Self::Pick(f(s)),
        }
    }
}

impl fmt::Display for PortRequest {
    /// As written: `8080:80/tcp`, `80/tcp`, `127.0.0.1::80/tcp`, `9000-9005:80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Given(s) => return s.fmt(f),
            Self::Pick(s) => s,
        };
        let ip = match s.host_ip {
            Some(IpAddr::V4(ip)) => format!("{ip}:"),
            Some(IpAddr::V6(ip)) => format!("[{ip}]:"),
            None => String::new(),
        };
        let host = match (s.host_port, s.host_ip) {
            (0, None) => String::new(),
            (0, Some(_)) => ":".into(),
            _ => format!("{}-{}:", s.host_port, s.host_end),
        };
        write!(f, "{ip}{host}{}/{}", s.ctr_port, s.proto.name())
    }
}

/// The longest spec: `[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65534-65535:65534-65535/udp`.
pub const SPEC_MAX: usize = 69;

impl PortSpec {
    /// Appends `[HOST_IP:]HOST_PORT[-END]:CTR_PORT[-END]/PROTO`: what `Display` shows,
    /// and how `state.json` stores it.
    pub fn write_to<const N: usize>(&self, t: &mut Text<N>) {
        match self.host_ip {
            Some(IpAddr::V4(ip)) => {
                t.ip(ip);
                t.push(b":");
            }
            Some(IpAddr::V6(ip)) => {
                t.push(b"[");
                t.push(ip.to_string().as_bytes());
                t.push(b"]:");
            }
            None => {}
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
        assert_eq!(
            p("127.0.0.1:8080:80").host_ip,
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        assert_eq!(
            p("[2001:db8::1]:8080:80").host_ip,
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(p("[::]:8080:80").host_ip, Some("::".parse().unwrap()));
        assert_eq!(
            p("0.0.0.0:8080:80").host_ip,
            Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        );
        assert_eq!(p("0.0.0.0:8080:80").host_ip4(), None);
        // An empty host address is every address, as Docker takes it.
        assert_eq!(p(":8080:80"), p("8080:80"));
        assert_eq!(p(":8080:80/udp"), p("8080:80/udp"));
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
            "[2001:db8:100::2]:8080:80/tcp",
            "[::]:53:53/udp",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65534-65535:65534-65535/udp",
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
            "[::1:8080:80",
            "[1.2.3.4]:8080:80",
            "::1:8080:80",
            "[::1]:8080",
            "[::1]:1.2.3.4:8080:80",
        ] {
            assert!(s.parse::<PortSpec>().is_err(), "{s} should be rejected");
        }
        let err = "86:80/tcp/udp".parse::<PortSpec>().unwrap_err().to_string();
        assert!(err.contains("one protocol at most"), "{err}");
    }

    fn req(s: &str) -> Vec<PortRequest> {
        PortRequest::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn pick(host_ip: Option<&str>, proto: Proto, range: (u16, u16), ctr: u16) -> PortRequest {
        PortRequest::Pick(PortSpec {
            host_ip: host_ip.map(|a| a.parse().unwrap()),
            proto,
            host_port: range.0,
            host_end: range.1,
            ctr_port: ctr,
        })
    }

    #[test]
    fn docker_picks() {
        // A host port left out, empty or 0: netlab picks one, as Docker does.
        // An empty host address is every address: `::80` is `80`, not IPv6 (an IPv6
        // host address is always in brackets).
        for s in ["80", ":80", "0:80", "80/tcp", "::80", ":0:80", "::80/tcp"] {
            assert_eq!(req(s), vec![pick(None, Proto::Tcp, (0, 0), 80)], "{s}");
        }
        assert_eq!(
            req("::80-81/udp"),
            vec![
                pick(None, Proto::Udp, (0, 0), 80),
                pick(None, Proto::Udp, (0, 0), 81)
            ]
        );
        assert_eq!(req(":8080:80"), vec![PortRequest::Given(p("8080:80"))]);
        assert_eq!(
            req(":9000-9005:80"),
            vec![pick(None, Proto::Tcp, (9000, 9005), 80)]
        );
        assert_eq!(
            req("127.0.0.1::53/udp"),
            vec![pick(Some("127.0.0.1"), Proto::Udp, (0, 0), 53)]
        );
        assert_eq!(
            req("[2001:db8::1]::80"),
            vec![pick(Some("2001:db8::1"), Proto::Tcp, (0, 0), 80)]
        );
        assert_eq!(
            req("127.0.0.1:0:80"),
            vec![pick(Some("127.0.0.1"), Proto::Tcp, (0, 0), 80)]
        );
        // A range of container ports: one picked host port each.
        assert_eq!(
            req("80-82"),
            (80..=82)
                .map(|c| pick(None, Proto::Tcp, (0, 0), c))
                .collect::<Vec<_>>()
        );
        // A range of host ports for one container port: one of them.
        assert_eq!(
            req("9000-9005:80"),
            vec![pick(None, Proto::Tcp, (9000, 9005), 80)]
        );
        // Everything else as the spec says.
        assert_eq!(req("8080:80"), vec![PortRequest::Given(p("8080:80"))]);
        assert_eq!(
            req("8000-8001:80-81"),
            vec![PortRequest::Given(p("8000-8001:80-81"))]
        );
        for (s, shown) in [
            ("80", "80/tcp"),
            ("127.0.0.1::53/udp", "127.0.0.1::53/udp"),
            ("[::]::80", "[::]::80/tcp"),
            ("9000-9005:80", "9000-9005:80/tcp"),
            ("8080:80", "8080:80/tcp"),
        ] {
            assert_eq!(req(s)[0].to_string(), shown);
        }
        for s in [
            "0:80-81",
            "0-5:80",
            "8000-8001:80-82",
            "[::1]:80",
            "80:",
            "1:2:3:4",
            "80/sctp",
            "",
            "::",
            ":::80",
            "::1:80",
            "::ffff:1.2.3.4::80",
        ] {
            assert!(PortRequest::parse(s).is_err(), "{s} should be rejected");
        }
        // A spec as stored and unpublished names its host port.
        for s in ["80", "::80"] {
            let err = s.parse::<PortSpec>().unwrap_err().to_string();
            assert!(err.contains("a host port is required here"), "{err}");
        }
    }

    #[test]
    fn overlap() {
        assert!(p("8080:80").overlaps(&p("127.0.0.1:8080:81")));
        assert!(!p("8080:80").overlaps(&p("8080:80/udp")));
        assert!(!p("127.0.0.1:8080:80").overlaps(&p("198.51.100.2:8080:80")));
        assert!(p("8000-8010:8000-8010").overlaps(&p("8010:1")));
        assert!(!p("8000-8010:8000-8010").overlaps(&p("8011:1")));
        // IPv6: `::` is every IPv6 address, and no IPv4 one.
        assert!(p("[::]:8080:80").overlaps(&p("[2001:db8::1]:8080:80")));
        assert!(p("[::]:8080:80").overlaps(&p("8080:80")));
        assert!(!p("[::]:8080:80").overlaps(&p("198.51.100.2:8080:80")));
        assert!(!p("[2001:db8::1]:8080:80").overlaps(&p("[2001:db8::2]:8080:80")));
        assert!(p("[::]:8080:80").on_ipv6() && !p("[::]:8080:80").on_ipv4());
        assert!(p("8080:80").on_ipv6() && p("8080:80").on_ipv4());
        assert!(!p("127.0.0.1:8080:80").on_ipv6());
        // `0.0.0.0` is every IPv4 address, and no IPv6 one.
        assert!(p("0.0.0.0:8080:80").overlaps(&p("127.0.0.1:8080:80")));
        assert!(p("0.0.0.0:8080:80").overlaps(&p("8080:80")));
        assert!(!p("0.0.0.0:8080:80").overlaps(&p("[::]:8080:80")));
        assert!(p("0.0.0.0:8080:80").on_ipv4() && !p("0.0.0.0:8080:80").on_ipv6());
    }
}
