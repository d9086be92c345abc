//! A published port range in `state.json`: one short string, `CONTAINER SPEC CTR_IP ID`
//! (`web 8080:80/tcp 172.18.0.2 1`). A lab may hold tens of thousands, and every
//! command reads and writes them all, so both directions are written by hand: a line is
//! formatted into a stack buffer and parsed from the borrowed JSON string, with one
//! allocation (the container's name) per entry. `core::fmt` and a `String` per entry
//! were most of `netlab unpublish`'s time at 10,000 ports.

use std::{fmt, net::Ipv4Addr};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use super::spec::{PortSpec, Proto};
use crate::error::Error;

/// A published port range and the container it leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub container: String,
    pub spec: PortSpec,
    /// The container's address when it was published.
    pub ctr_ip: Ipv4Addr,
    /// The mapping's number, unique in the lab (the eBPF datapath's counter slot).
    pub id: u32,
}

/// The longest line: a 128-character container name, the longest spec
/// (`255.255.255.255:65535-65535:65535-65535/udp`), an address and an id.
const LINE_MAX: usize = 128 + 1 + 43 + 1 + 15 + 1 + 10;

/// A line being formatted, on the stack.
struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Line {
    fn new() -> Self {
        Self {
            buf: [0; LINE_MAX],
            len: 0,
        }
    }

    fn push(&mut self, s: &[u8]) {
        self.buf[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
    }

    fn num(&mut self, mut n: u32) {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    fn ip(&mut self, ip: Ipv4Addr) {
        for (i, o) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                self.push(b".");
            }
            self.num(o as u32);
        }
    }

    /// `[HOST_IP:]HOST_PORT[-END]:CTR_PORT[-END]/PROTO`, as `PortSpec`'s `Display`.
    fn spec(&mut self, s: &PortSpec) {
        if let Some(ip) = s.host_ip {
            self.ip(ip);
            self.push(b":");
        }
        self.num(s.host_port as u32);
        if s.host_end != s.host_port {
            self.push(b"-");
            self.num(s.host_end as u32);
        }
        self.push(b":");
        self.num(s.ctr_port as u32);
        if s.host_end != s.host_port {
            self.push(b"-");
            self.num(s.ctr_end() as u32);
        }
        self.push(b"/");
        self.push(s.proto.name().as_bytes());
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("ASCII")
    }
}

impl Published {
    /// The line on the stack; `None` for a name longer than `run` allows (a state edited
    /// by hand), which is then formatted the slow way.
    fn line(&self) -> Option<Line> {
        if self.container.len() > 128 {
            return None;
        }
        let mut l = Line::new();
        l.push(self.container.as_bytes());
        l.push(b" ");
        l.spec(&self.spec);
        l.push(b" ");
        l.ip(self.ctr_ip);
        l.push(b" ");
        l.num(self.id);
        Some(l)
    }

    /// Parses one line of the state.
    fn parse(s: &str) -> Result<Self, Error> {
        let bad = || Error::Invalid(format!("bad published port in state: {s:?}"));
        let mut w = s.split(' ');
        let (Some(container), Some(spec), Some(ip), Some(id), None) =
            (w.next(), w.next(), w.next(), w.next(), w.next())
        else {
            return Err(bad());
        };
        Ok(Published {
            container: container.to_string(),
            spec: parse_spec(spec).ok_or_else(bad)?,
            ctr_ip: ip.parse().map_err(|_| bad())?,
            id: id.parse().map_err(|_| bad())?,
        })
    }
}

/// A spec as the state writes it (always with its protocol); `None` for anything else.
/// User input goes through `PortSpec::from_str`, whose errors explain themselves.
fn parse_spec(s: &str) -> Option<PortSpec> {
    let (body, proto) = match s.rsplit_once('/')? {
        (b, "tcp") => (b, Proto::Tcp),
        (b, "udp") => (b, Proto::Udp),
        _ => return None,
    };
    let (rest, ctr) = body.rsplit_once(':')?;
    let (host_ip, host) = match rest.rsplit_once(':') {
        Some((ip, host)) => {
            let ip: Ipv4Addr = ip.parse().ok()?;
            ((!ip.is_unspecified()).then_some(ip), host)
        }
        None => (None, rest),
    };
    let range = |r: &str| -> Option<(u16, u16)> {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
        (a >= 1 && a <= b).then_some((a, b))
    };
    let (host_port, host_end) = range(host)?;
    let (ctr_port, ctr_end) = range(ctr)?;
    (host_end - host_port == ctr_end - ctr_port).then_some(PortSpec {
        host_ip,
        proto,
        host_port,
        host_end,
        ctr_port,
    })
}

impl Serialize for Published {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.line() {
            Some(l) => s.serialize_str(l.as_str()),
            None => s.collect_str(&format_args!(
                "{} {} {} {}",
                self.container, self.spec, self.ctr_ip, self.id
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Published {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Published;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a published port, \"CONTAINER SPEC CTR_IP ID\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Published, E> {
                Published::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(spec: &str) -> Published {
        Published {
            container: "web-1".into(),
            spec: spec.parse().unwrap(),
            ctr_ip: "172.18.0.2".parse().unwrap(),
            id: 7,
        }
    }

    #[test]
    fn published_ports_are_one_string_each_in_the_state() {
        let p = published("127.0.0.1:8000-8001:90-91/udp");
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, "\"web-1 127.0.0.1:8000-8001:90-91/udp 172.18.0.2 7\"");
        assert_eq!(serde_json::from_str::<Published>(&json).unwrap(), p);
        assert!(serde_json::from_str::<Published>("\"web 8080:80 nope 1\"").is_err());
        assert!(serde_json::from_str::<Published>("\"web 8080:80/tcp 1.2.3.4\"").is_err());
    }

    #[test]
    fn the_line_is_the_spec_as_users_write_it() {
        for spec in [
            "8080:80",
            "1:65535/udp",
            "65535:1",
            "198.51.100.2:8000-8099:9000-9099",
            "255.255.255.255:65434-65535:1-102/udp",
        ] {
            let p = published(spec);
            let line = p.line().unwrap();
            assert_eq!(
                line.as_str(),
                format!("web-1 {} 172.18.0.2 7", p.spec),
                "{spec}"
            );
            assert_eq!(Published::parse(line.as_str()).unwrap(), p, "{spec}");
        }
        let mut long = published("255.255.255.255:65534-65535:65534-65535/udp");
        long.container = "c".repeat(128);
        long.ctr_ip = Ipv4Addr::BROADCAST;
        long.id = u32::MAX;
        let line = long.line().unwrap();
        assert_eq!(line.len, LINE_MAX);
        assert_eq!(Published::parse(line.as_str()).unwrap(), long);
        long.container.push('c');
        let json = serde_json::to_string(&long).unwrap();
        assert_eq!(serde_json::from_str::<Published>(&json).unwrap(), long);
    }

    #[test]
    fn lines_that_are_not_specs_are_refused() {
        for bad in [
            "web 8080:80/sctp 172.18.0.2 1",
            "web 8080:80 172.18.0.2 1",
            "web 0:80/tcp 172.18.0.2 1",
            "web 8081-8080:80-79/tcp 172.18.0.2 1",
            "web 8080-8081:80/tcp 172.18.0.2 1",
            "web 1.2.3:8080:80/tcp 172.18.0.2 1",
            "web 8080:65536/tcp 172.18.0.2 1",
            "web 8080:80/tcp 172.18.0.2 1 2",
            "web 8080:80/tcp 172.18.0.2 x",
        ] {
            assert!(Published::parse(bad).is_err(), "{bad}");
        }
    }
}
