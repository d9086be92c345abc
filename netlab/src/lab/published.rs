//! A published port range in `state.json`: one short string, `CONTAINER SPEC CTR_IP ID`
//! (`web 8080:80/tcp 172.18.0.2 1`). A lab may hold tens of thousands, and every
//! command reads and writes them all: a line is formatted on the stack ([`Text`]) and
//! parsed from the borrowed JSON string, with one allocation (the container's name)
//! per entry. `core::fmt` and a `String` per entry were most of `netlab unpublish`'s
//! time at 10,000 ports.

use std::{fmt, net::Ipv4Addr};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use super::{
    spec::{PortSpec, SPEC_MAX},
    text::Text,
};
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

/// The longest line: a 128-character container name, the longest spec, an address
/// and an id.
const LINE_MAX: usize = 128 + 1 + SPEC_MAX + 1 + 15 + 1 + 10;

impl Published {
    /// The line on the stack; `None` for a name longer than `run` allows (a state edited
    /// by hand), which is then formatted the slow way.
    fn line(&self) -> Option<Text<LINE_MAX>> {
        if self.container.len() > 128 {
            return None;
        }
        let mut l = Text::new();
        l.push(self.container.as_bytes());
        l.push(b" ");
        self.spec.write_to(&mut l);
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
            spec: spec.parse()?,
            ctr_ip: ip.parse().map_err(|_| bad())?,
            id: id.parse().map_err(|_| bad())?,
        })
    }
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
        assert!(serde_json::from_str::<Published>("\"web 8080:80 1.2.3.4\"").is_err());
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
        let mut long =
            published("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65534-65535:65534-65535/udp");
        long.container = "c".repeat(128);
        long.ctr_ip = Ipv4Addr::BROADCAST;
        long.id = u32::MAX;
        let line = long.line().unwrap();
        assert_eq!(line.len(), LINE_MAX);
        assert_eq!(Published::parse(line.as_str()).unwrap(), long);
        long.container.push('c');
        let json = serde_json::to_string(&long).unwrap();
        assert_eq!(serde_json::from_str::<Published>(&json).unwrap(), long);
    }

    #[test]
    fn lines_that_are_not_specs_are_refused() {
        for bad in [
            "web 8080:80/sctp 172.18.0.2 1",
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
