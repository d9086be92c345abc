//! A lab's IPv6 subnet (`up --ipv6 --subnet6`). No allocator of its own: a container's
//! IPv6 address carries its IPv4 host number (172.18.0.10 is fd00:ac12::a on the
//! defaults), so the state needs no second address per container, unless one is given
//! (`run --ip6`): then it is recorded, and the IPv4 host number it spells is given to
//! no other container.

use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use serde::{Deserialize, Serialize};

use super::Subnet;
use crate::error::Error;

/// The subnet of `up --ipv6` without `--subnet6` on the default IPv4 subnet: see
/// [`Subnet6::for_subnet`].
pub const DEFAULT: &str = "fd00:ac12::/64";

/// An IPv6 network, `ADDR/PREFIX`, stored with host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet6 {
    pub network: Ipv6Addr,
    pub prefix: u8,
}

impl Subnet6 {
    /// The IPv6 subnet of `up --ipv6` without `--subnet6`: a unique local (ULA) /64
    /// that spells the IPv4 subnet's network address in its second and third groups
    /// (172.18.0.0/16 is fd00:ac12::/64, 10.77.1.0/24 fd00:a4d:100::/64), so that labs
    /// of different IPv4 subnets get different IPv6 ones.
    pub fn for_subnet(v4: &Subnet) -> Subnet6 {
        let n = u32::from(v4.network);
        Subnet6 {
            network: Ipv6Addr::new(0xfd00, (n >> 16) as u16, n as u16, 0, 0, 0, 0, 0),
            prefix: 64,
        }
    }

    fn mask(&self) -> u128 {
        u128::MAX
            .checked_shl(128 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    pub fn contains(&self, a: Ipv6Addr) -> bool {
        u128::from(a) & self.mask() == u128::from(self.network)
    }

    pub fn overlaps(&self, other: Ipv6Addr, prefix: u8) -> bool {
        let shorter = Subnet6 {
            network: self.network,
            prefix: self.prefix.min(prefix),
        };
        u128::from(other) & shorter.mask() == u128::from(self.network) & shorter.mask()
    }

    /// The bridge's address, `::1` of the subnet (as the IPv4 gateway is its `.1`).
    pub fn gateway(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.network) | 1)
    }

    /// The bridge's address with the prefix length, as `ip addr` shows it.
    pub fn gateway_cidr(&self) -> String {
        format!("{}/{}", self.gateway(), self.prefix)
    }

    /// The IPv6 address of the container at `ip` in `v4`: the same host number.
    pub fn host(&self, v4: &Subnet, ip: Ipv4Addr) -> Ipv6Addr {
        let host = u32::from(ip) & !v4.mask();
        Ipv6Addr::from(u128::from(self.network) | u128::from(host))
    }

    /// The IPv4 address in `v4` whose IPv6 address [`Subnet6::host`] makes `a`, if any.
    pub fn v4_of(&self, v4: &Subnet, a: Ipv6Addr) -> Option<Ipv4Addr> {
        let host = u128::from(a) & !self.mask();
        let host = u32::try_from(host).ok().filter(|h| h & v4.mask() == 0)?;
        self.contains(a)
            .then(|| Ipv4Addr::from(u32::from(v4.network) | host))
    }

    /// Refuses an address `run --ip6` cannot give a container: outside the subnet,
    /// its network address (the subnet-router anycast) or the bridge's.
    pub fn check_host(&self, a: Ipv6Addr) -> Result<(), Error> {
        if !self.contains(a) {
            return Err(Error::Invalid(format!(
                "address {a} is outside the lab's IPv6 subnet {self}"
            )));
        }
        if a == self.network {
            return Err(Error::Invalid(format!(
                "address {a} is the subnet-router anycast address of {self}"
            )));
        }
        if a == self.gateway() {
            return Err(Error::Invalid(format!(
                "address {a} is the bridge's own address"
            )));
        }
        Ok(())
    }

    /// Refuses a subnet too small to give every IPv4 host number of `v4` its address.
    pub fn check_room(&self, v4: &Subnet) -> Result<(), Error> {
        if 128 - u32::from(self.prefix) < 32 - u32::from(v4.prefix) {
            return Err(Error::Invalid(format!(
                "--subnet6 {self} has fewer host bits than --subnet {v4}: a container's IPv6 address carries its IPv4 host number; use a /{} or shorter",
                96 + v4.prefix
            )));
        }
        Ok(())
    }
}

impl FromStr for Subnet6 {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || {
            Error::Invalid(format!(
                "invalid IPv6 subnet {s:?}: expected IPv6 CIDR such as {DEFAULT}"
            ))
        };
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(48..=120).contains(&prefix) {
            return Err(Error::Invalid(format!(
                "IPv6 subnet {s}: prefix must be between /48 and /120"
            )));
        }
        let subnet = Subnet6 {
            network: addr,
            prefix,
        };
        let network = Ipv6Addr::from(u128::from(addr) & subnet.mask());
        if network != addr {
            return Err(Error::Invalid(format!(
                "IPv6 subnet {s}: host bits set; did you mean {network}/{prefix}?"
            )));
        }
        // Unicast and routable through a NAT: not loopback, unspecified, link-local,
        // multicast, or IPv4-mapped.
        let first = addr.segments()[0];
        // 64:ff9b::/96 and 64:ff9b:1::/48 belong to NAT64 (RFC 6052, RFC 8215).
        let nat64 = first == 0x64 && addr.segments()[1] == 0xff9b;
        let special = nat64
            || addr.is_loopback()
            || addr.is_unspecified()
            || first & 0xffc0 == 0xfe80
            || first & 0xff00 == 0xff00
            || addr.to_ipv4_mapped().is_some()
            || u128::from(addr) >> 96 == 0;
        if special {
            return Err(Error::Invalid(format!(
                "IPv6 subnet {s} is not a unicast range containers can live in; use a unique local range such as {DEFAULT}"
            )));
        }
        Ok(subnet)
    }
}

impl TryFrom<String> for Subnet6 {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<Subnet6> for String {
    fn from(s: Subnet6) -> String {
        s.to_string()
    }
}

impl fmt::Display for Subnet6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let s: Subnet6 = DEFAULT.parse().unwrap();
        assert_eq!(s.gateway(), "fd00:ac12::1".parse::<Ipv6Addr>().unwrap());
        assert!(s.contains("fd00:ac12::ffff".parse().unwrap()));
        assert!(!s.contains("fd00:ac13::1".parse().unwrap()));
        for bad in [
            "fd00:ac12::1/64",
            "fd00:ac12::/44",
            "fd00:ac12::/121",
            "fd00:ac12::",
            "172.18.0.0/16",
            "fe80::/64",
            "ff02::/64",
            "::/64",
            "::ffff:0:0/96",
            "64:ff9b::/96",
            "64:ff9b:1::/48",
        ] {
            assert!(bad.parse::<Subnet6>().is_err(), "{bad}");
        }
        assert_eq!(
            "fd00:ac12::/64".parse::<Subnet6>().unwrap().to_string(),
            DEFAULT
        );
    }

    #[test]
    fn the_default_follows_the_ipv4_subnet() {
        let s6 = |v4: &str| Subnet6::for_subnet(&v4.parse().unwrap()).to_string();
        assert_eq!(s6("172.18.0.0/16"), DEFAULT);
        assert_eq!(s6("10.77.1.0/24"), "fd00:a4d:100::/64");
        assert_ne!(s6("10.77.0.0/24"), s6("10.77.1.0/24"));
    }

    #[test]
    fn a_container_keeps_its_host_number() {
        let v4: Subnet = "172.18.0.0/16".parse().unwrap();
        let v6: Subnet6 = DEFAULT.parse().unwrap();
        assert_eq!(
            v6.host(&v4, "172.18.1.10".parse().unwrap()),
            "fd00:ac12::10a".parse::<Ipv6Addr>().unwrap()
        );
        assert!(v6.check_room(&v4).is_ok());
        let small: Subnet6 = "fd00:ac12::/120".parse().unwrap();
        assert!(small.check_room(&v4).is_err());
        assert!(small.check_room(&"10.0.0.0/24".parse().unwrap()).is_ok());
        assert!(v6.overlaps("fd00:ac12::".parse::<Ipv6Addr>().unwrap(), 48));
        assert!(!v6.overlaps("2001:db8:100::".parse::<Ipv6Addr>().unwrap(), 64));
    }

    #[test]
    fn a_given_address_maps_back_to_the_host_number_it_spells() {
        let v4: Subnet = "172.18.0.0/16".parse().unwrap();
        let v6: Subnet6 = DEFAULT.parse().unwrap();
        let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert_eq!(
            v6.v4_of(&v4, a("fd00:ac12::10a")),
            Some("172.18.1.10".parse().unwrap())
        );
        // Beyond the IPv4 subnet's host numbers, or outside the subnet: none.
        assert_eq!(v6.v4_of(&v4, a("fd00:ac12::1:0")), None);
        assert_eq!(v6.v4_of(&v4, a("fd00:ac12::1:0:5")), None);
        assert_eq!(v6.v4_of(&v4, a("fd00:ac13::5")), None);
        assert!(v6.check_host(a("fd00:ac12::beef")).is_ok());
        for bad in ["fd00:ac12::", "fd00:ac12::1", "fd00:ac13::5", "2001:db8::5"] {
            assert!(v6.check_host(a(bad)).is_err(), "{bad}");
        }
    }
}
