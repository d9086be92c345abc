//! IPv4 subnets and address allocation for a lab.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// An IPv4 network, `ADDR/PREFIX`, stored with host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == u32::from(self.network)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !self.mask())
    }

    /// The network of `prefix` bits that holds `a`.
    pub fn containing(a: Ipv4Addr, prefix: u8) -> Subnet {
        let probe = Subnet { network: a, prefix };
        Subnet {
            network: Ipv4Addr::from(u32::from(a) & probe.mask()),
            prefix,
        }
    }

    /// Whether this subnet shares any address with the network of `prefix` bits that
    /// holds `a`.
    pub fn overlaps(&self, a: Ipv4Addr, prefix: u8) -> bool {
        let other = Subnet::containing(a, prefix);
        let shorter = self.prefix.min(other.prefix);
        let mask = Subnet::containing(Ipv4Addr::UNSPECIFIED, shorter).mask();
        u32::from(self.network) & mask == u32::from(other.network) & mask
    }

    /// The gateway (bridge) address: the first host address, as Docker uses.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Whether `a` may be given to a container: inside, not the network, broadcast or gateway.
    pub fn check_host(&self, a: Ipv4Addr) -> Result<(), Error> {
        if !self.contains(a) {
            return Err(Error::Invalid(format!(
                "address {a} is outside the lab subnet {self}"
            )));
        }
        if a == self.network || a == self.broadcast() {
            return Err(Error::Invalid(format!(
                "address {a} is the network or broadcast address of {self}"
            )));
        }
        if a == self.gateway() {
            return Err(Error::Invalid(format!(
                "address {a} is the bridge's own address"
            )));
        }
        Ok(())
    }

    /// The lowest free host address after the gateway.
    pub fn next_free(&self, taken: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        let first = u32::from(self.gateway()) + 1;
        let last = u32::from(self.broadcast());
        (first..last)
            .map(Ipv4Addr::from)
            .find(|a| !taken.contains(a))
    }
}

impl FromStr for Subnet {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || {
            Error::Invalid(format!(
                "invalid subnet {s:?}: expected IPv4 CIDR such as 172.18.0.0/16"
            ))
        };
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(Error::Invalid(format!(
                "subnet {s}: prefix must be between /8 and /30"
            )));
        }
        let subnet = Subnet {
            network: addr,
            prefix,
        };
        let network = Ipv4Addr::from(u32::from(addr) & subnet.mask());
        if network != addr {
            return Err(Error::Invalid(format!(
                "subnet {s}: host bits set; did you mean {network}/{prefix}?"
            )));
        }
        if let Some((net, why)) = SPECIAL
            .iter()
            .find(|(net, _)| subnet.overlaps(net.network, net.prefix))
        {
            return Err(Error::Invalid(format!(
                "subnet {s} overlaps {net}, {why}: containers cannot live there; use a private range such as 172.18.0.0/16 or 10.77.0.0/24"
            )));
        }
        Ok(subnet)
    }
}

/// Address blocks no container network may use (RFC 6890): packets from or to them
/// are not routed as a lab's would be (they never leave a host, or are not unicast).
const SPECIAL: [(Subnet, &str); 5] = [
    (
        Subnet {
            network: Ipv4Addr::new(0, 0, 0, 0),
            prefix: 8,
        },
        "\"this network\"",
    ),
    (
        Subnet {
            network: Ipv4Addr::new(127, 0, 0, 0),
            prefix: 8,
        },
        "the loopback range",
    ),
    (
        Subnet {
            network: Ipv4Addr::new(169, 254, 0, 0),
            prefix: 16,
        },
        "the link-local range",
    ),
    (
        Subnet {
            network: Ipv4Addr::new(224, 0, 0, 0),
            prefix: 4,
        },
        "the multicast range",
    ),
    (
        Subnet {
            network: Ipv4Addr::new(240, 0, 0, 0),
            prefix: 4,
        },
        "the reserved range (and the broadcast address)",
    ),
];

impl TryFrom<String> for Subnet {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_rejects() {
        let s: Subnet = "172.18.0.0/16".parse().unwrap();
        assert_eq!(s.gateway(), a("172.18.0.1"));
        assert_eq!(s.broadcast(), a("172.18.255.255"));
        assert!("172.18.0.1/16".parse::<Subnet>().is_err());
        assert!("172.18.0.0".parse::<Subnet>().is_err());
        assert!("172.18.0.0/31".parse::<Subnet>().is_err());
        assert!("nonsense/16".parse::<Subnet>().is_err());
    }

    #[test]
    fn special_ranges_are_refused() {
        for (s, what) in [
            ("127.0.0.0/24", "loopback"),
            ("0.0.0.0/8", "this network"),
            ("240.0.0.0/24", "reserved"),
            ("169.254.0.0/16", "link-local"),
            ("224.0.0.0/24", "multicast"),
            ("239.255.0.0/16", "multicast"),
            ("232.0.0.0/8", "multicast"),
        ] {
            let err = s.parse::<Subnet>().unwrap_err().to_string();
            assert!(err.contains(what), "{s}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        for s in [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/24",
            "100.64.0.0/10",
        ] {
            assert!(s.parse::<Subnet>().is_ok(), "{s}");
        }
    }

    #[test]
    fn allocates_lowest_free() {
        let s: Subnet = "10.0.0.0/29".parse().unwrap();
        assert_eq!(s.next_free(&[]), Some(a("10.0.0.2")));
        assert_eq!(
            s.next_free(&[a("10.0.0.2"), a("10.0.0.4")]),
            Some(a("10.0.0.3"))
        );
        let all: Vec<_> = (2..7).map(|i| a(&format!("10.0.0.{i}"))).collect();
        assert_eq!(s.next_free(&all), None);
    }

    #[test]
    fn overlaps() {
        let s: Subnet = "203.0.113.0/24".parse().unwrap();
        assert!(s.overlaps(a("203.0.113.1"), 24));
        assert!(s.overlaps(a("203.0.0.0"), 16));
        let big: Subnet = "198.0.0.0/8".parse().unwrap();
        assert!(big.overlaps(a("198.51.100.2"), 24));
        let other: Subnet = "172.18.0.0/16".parse().unwrap();
        assert!(!other.overlaps(a("198.51.100.2"), 24));
        assert_eq!(
            Subnet::containing(a("198.51.100.2"), 24).to_string(),
            "198.51.100.0/24"
        );
    }

    #[test]
    fn checks_host_addresses() {
        let s: Subnet = "172.18.0.0/16".parse().unwrap();
        assert!(s.check_host(a("172.18.0.9")).is_ok());
        assert!(s.check_host(a("172.19.0.9")).is_err());
        assert!(s.check_host(a("172.18.0.1")).is_err());
        assert!(s.check_host(a("172.18.0.0")).is_err());
        assert!(s.check_host(a("172.18.255.255")).is_err());
    }
}
