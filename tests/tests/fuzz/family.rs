//! What the cases need of each address family: the lab's addresses, a pool to draw
//! frames' addresses from, and the family's packets built from scratch (every checksum
//! computed over what it covers).

use std::{fmt::Debug, hash::Hash, net::Ipv6Addr};

use aya::Pod;
use netlab_common::frag::{FragKey, FragKey6, FragNat, FragNat6};
use netlab_tests::{
    model::{FragTuple, ip::Ip, wire::ICMP},
    packet::checksum,
};

use crate::bpf::Tables;

pub trait Family: Ip<Raw: Tables> {
    const NAME: &str;
    const CTR: Self;
    const CTR2: Self;
    const BRIDGE: Self;
    const UPLINK: Self;
    const WAN: Self;
    const LOCALHOST: Self;
    /// The lab subnet and its mask; the uplink's on-link prefix and its mask.
    const SUBNET: (Self, Self);
    const UPLINK_NET: (Self, Self);
    /// Addresses frames are drawn from: containers (two running, one address of the
    /// subnet nobody has), the bridge's, the uplink's, wan, an on-link neighbour never
    /// resolved, beyond wan, loopback, and a few odd ones. The first ten are in the
    /// same places in both families.
    const POOL: &[Self];
    /// ICMP errors the cases send: (type, code).
    const ERRORS: &[(u8, u8)];
    /// Map names.
    const CT: &str;
    const CT_PENDING: &str;
    const PUBLISH: &str;
    const PUBLISH_RANGES: &str;
    const ENDPOINTS: &str;
    const FRAGS: &str;
    /// The fragment table's key and value.
    type FragKey: Copy + Debug + Eq + Hash + Pod;
    type FragNat: Copy + Debug + Eq + Pod;

    /// A datagram whose first fragment the model saw translated to `to`, as the
    /// fragment table holds it (without the time it was seen).
    fn frag_entry(datagram: FragTuple<Self>, to: (Self, Self)) -> (Self::FragKey, Self::FragNat);
    /// A table entry without the time it was seen, which the model does not keep.
    fn timeless(nat: Self::FragNat) -> Self::FragNat;

    /// An address from a random number.
    fn any(n: u128) -> Self;
    /// An IP packet around `l4`. `frag` is IPv4's flags and offset field: DF alone is a
    /// whole datagram (IPv6: no fragment header), MF or an offset a fragment.
    fn ip(src: Self, dst: Self, proto: u8, id: u32, frag: u16, l4: &[u8]) -> Vec<u8>;
    /// The L4 checksum over the pseudo-header (ICMP's: over the pseudo-header only for
    /// ICMPv6).
    fn l4_sum(src: Self, dst: Self, proto: u8, l4: &[u8]) -> u16;
}

impl Family for u32 {
    const NAME: &str = "IPv4";
    const CTR: u32 = 0xac12_0002; // 172.18.0.2
    const CTR2: u32 = 0xac12_0003;
    const BRIDGE: u32 = 0xac12_0001;
    const UPLINK: u32 = 0xc633_6402; // 198.51.100.2
    const WAN: u32 = 0xc633_6401;
    const LOCALHOST: u32 = 0x7f00_0001;
    const SUBNET: (u32, u32) = (0xac12_0000, 0xffff_0000);
    const UPLINK_NET: (u32, u32) = (0xc633_6400, 0xffff_ff00);
    const POOL: &[u32] = &[
        0xac12_0002,
        0xac12_0003,
        0xac12_0909, // 172.18.9.9
        0xac12_0001,
        0xc633_6402,
        0xc633_6401,
        0xc633_6409, // 198.51.100.9
        0xcb00_7101, // 203.0.113.1
        0xcb00_714d, // 203.0.113.77
        0x7f00_0001,
        0,
        0xffff_ffff,
        0xe000_00fb, // 224.0.0.251
        0xf000_0001, // 240.0.0.1
    ];
    const ERRORS: &[(u8, u8)] = &[(3, 3), (3, 1), (3, 4), (11, 0), (3, 13)];
    const CT: &str = netlab_common::maps::CT;
    const CT_PENDING: &str = netlab_common::maps::CT_PENDING;
    const PUBLISH: &str = netlab_common::maps::PUBLISH;
    const PUBLISH_RANGES: &str = netlab_common::maps::PUBLISH_RANGES;
    const ENDPOINTS: &str = netlab_common::maps::ENDPOINTS;
    const FRAGS: &str = netlab_common::maps::FRAGS;
    type FragKey = FragKey;
    type FragNat = FragNat;

    fn frag_entry(
        (zone, s, d, id, proto): FragTuple<u32>,
        (ts, td): (u32, u32),
    ) -> (FragKey, FragNat) {
        let key = FragKey {
            saddr: s.raw(),
            daddr: d.raw(),
            id: (id as u16).to_be(),
            proto,
            zone,
        };
        let nat = FragNat {
            saddr: ts.raw(),
            daddr: td.raw(),
            seen: 0,
        };
        (key, nat)
    }

    fn timeless(nat: FragNat) -> FragNat {
        FragNat { seen: 0, ..nat }
    }

    fn any(n: u128) -> u32 {
        n as u32
    }

    fn ip(src: u32, dst: u32, proto: u8, id: u32, frag: u16, l4: &[u8]) -> Vec<u8> {
        let total = 20 + l4.len();
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
        h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        h[4..6].copy_from_slice(&(id as u16).to_be_bytes());
        h[6..8].copy_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&src.to_be_bytes());
        h.extend_from_slice(&dst.to_be_bytes());
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(l4);
        h
    }

    fn l4_sum(src: u32, dst: u32, proto: u8, l4: &[u8]) -> u16 {
        if proto == ICMP {
            return checksum(l4);
        }
        let mut p = Vec::with_capacity(12 + l4.len());
        p.extend_from_slice(&src.to_be_bytes());
        p.extend_from_slice(&dst.to_be_bytes());
        p.extend_from_slice(&[0, proto]);
        p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        p.extend_from_slice(l4);
        checksum(&p)
    }
}

const fn v6(a: Ipv6Addr) -> u128 {
    a.to_bits()
}

impl Family for u128 {
    const NAME: &str = "IPv6";
    const CTR: u128 = v6(Ipv6Addr::new(0xfd00, 0xac12, 0, 0, 0, 0, 0, 2));
    const CTR2: u128 = v6(Ipv6Addr::new(0xfd00, 0xac12, 0, 0, 0, 0, 0, 3));
    const BRIDGE: u128 = v6(Ipv6Addr::new(0xfd00, 0xac12, 0, 0, 0, 0, 0, 1));
    const UPLINK: u128 = v6(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2));
    const WAN: u128 = v6(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1));
    const LOCALHOST: u128 = 1;
    const SUBNET: (u128, u128) = (
        v6(Ipv6Addr::new(0xfd00, 0xac12, 0, 0, 0, 0, 0, 0)),
        !0u128 << 64,
    );
    const UPLINK_NET: (u128, u128) = (
        v6(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0)),
        !0u128 << 64,
    );
    const POOL: &[u128] = &[
        Self::CTR,
        Self::CTR2,
        v6(Ipv6Addr::new(0xfd00, 0xac12, 0, 0, 0, 0, 9, 9)),
        Self::BRIDGE,
        Self::UPLINK,
        Self::WAN,
        v6(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 9)),
        v6(Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 1)),
        v6(Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0x4d)),
        1,
        0,
        v6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)),
        v6(Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 0, 0xfb)),
        v6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2)),
        v6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0xc633, 0x6401)),
        v6(Ipv6Addr::new(0xfd00, 0xac12, 1, 0, 0, 0, 0, 1)),
    ];
    const ERRORS: &[(u8, u8)] = &[(1, 4), (1, 0), (2, 0), (3, 0), (4, 0)];
    const CT: &str = netlab_common::maps::CT6;
    const CT_PENDING: &str = netlab_common::maps::CT6_PENDING;
    const PUBLISH: &str = netlab_common::maps::PUBLISH6;
    const PUBLISH_RANGES: &str = netlab_common::maps::PUBLISH_RANGES6;
    const ENDPOINTS: &str = netlab_common::maps::ENDPOINTS6;
    const FRAGS: &str = netlab_common::maps::FRAGS6;
    type FragKey = FragKey6;
    type FragNat = FragNat6;

    fn frag_entry(
        (zone, s, d, id, proto): FragTuple<u128>,
        (ts, td): (u128, u128),
    ) -> (FragKey6, FragNat6) {
        let key = FragKey6 {
            saddr: s.raw(),
            daddr: d.raw(),
            id: id.to_be(),
            proto,
            zone,
            _pad: [0; 2],
        };
        let nat = FragNat6 {
            saddr: ts.raw(),
            daddr: td.raw(),
            seen: 0,
        };
        (key, nat)
    }

    fn timeless(nat: FragNat6) -> FragNat6 {
        FragNat6 { seen: 0, ..nat }
    }

    /// Anywhere under `2001:db8::/32`, or anywhere at all.
    fn any(n: u128) -> u128 {
        if n & 1 == 0 {
            v6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)) | (n >> 32)
        } else {
            n
        }
    }

    fn ip(src: u128, dst: u128, proto: u8, id: u32, frag: u16, l4: &[u8]) -> Vec<u8> {
        let mut ext = Vec::new();
        let mut next = proto;
        if frag & 0x3fff != 0 {
            let off_m = ((frag & 0x1fff) << 3) | u16::from(frag & 0x2000 != 0);
            ext.extend_from_slice(&[proto, 0]);
            ext.extend_from_slice(&off_m.to_be_bytes());
            // All 32 bits, as Linux's are (the cases' identifications are 16 bits).
            ext.extend_from_slice(&id.wrapping_mul(0x9e37_79b9).to_be_bytes());
            next = 44;
        }
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&((ext.len() + l4.len()) as u16).to_be_bytes());
        h.extend_from_slice(&[next, 64]);
        h.extend_from_slice(&src.to_be_bytes());
        h.extend_from_slice(&dst.to_be_bytes());
        h.extend_from_slice(&ext);
        h.extend_from_slice(l4);
        h
    }

    fn l4_sum(src: u128, dst: u128, proto: u8, l4: &[u8]) -> u16 {
        let mut p = Vec::with_capacity(40 + l4.len());
        p.extend_from_slice(&src.to_be_bytes());
        p.extend_from_slice(&dst.to_be_bytes());
        p.extend_from_slice(&(l4.len() as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, proto]);
        p.extend_from_slice(l4);
        checksum(&p)
    }
}
