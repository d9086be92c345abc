//! The port table: published ports, looked up by a new flow addressed to the host.

use netlab_common::{
    addr::Addr6,
    maps::PUBLISH_RANGES_MAX,
    publish::{PubKey, PubTarget, range_target_port},
};

use crate::maps;

/// The port table: exact (address, port) first, then any-address, then the ranges.
/// `daddr` must be one of the host's own addresses.
#[inline(always)]
pub fn lookup(daddr: u32, proto: u8, dport: u16) -> Option<PubTarget> {
    if let Some(t) = maps::publish_get(&PubKey {
        addr: daddr,
        port: dport,
        proto,
        _pad: 0,
    }) {
        return Some(t);
    }
    if let Some(t) = maps::publish_get(&PubKey {
        addr: 0,
        port: dport,
        proto,
        _pad: 0,
    }) {
        return Some(t);
    }
    let port = u16::from_be(dport);
    for i in 0..PUBLISH_RANGES_MAX {
        let Some(r) = maps::publish_range(i) else {
            break;
        };
        if r.used == 0 || r.proto != proto || (r.addr != 0 && r.addr != daddr) {
            continue;
        }
        if r.start <= port && port <= r.end {
            let mut t = r.target;
            t.port = range_target_port(r.start, u16::from_be(t.port), port).to_be();
            return Some(t);
        }
    }
    None
}

/// [`lookup`] for an IPv6 host address (`PUBLISH6`, `PUBLISH_RANGES6`).
#[inline(always)]
pub fn lookup6(daddr: &Addr6, proto: u8, dport: u16) -> Option<PubTarget<Addr6>> {
    if let Some(t) = maps::publish6_get(&PubKey {
        addr: *daddr,
        port: dport,
        proto,
        _pad: 0,
    }) {
        return Some(t);
    }
    if let Some(t) = maps::publish6_get(&PubKey {
        addr: [0; 4],
        port: dport,
        proto,
        _pad: 0,
    }) {
        return Some(t);
    }
    let port = u16::from_be(dport);
    for i in 0..PUBLISH_RANGES_MAX {
        let Some(r) = maps::publish_range6(i) else {
            break;
        };
        if r.used == 0 || r.proto != proto || (r.addr != [0; 4] && r.addr != *daddr) {
            continue;
        }
        if r.start <= port && port <= r.end {
            let mut t = r.target;
            t.port = range_target_port(r.start, u16::from_be(t.port), port).to_be();
            return Some(t);
        }
    }
    None
}
