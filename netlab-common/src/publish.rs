//! The port table: published ports, edited by `netlab publish` while the lab runs.
//!
//! Single ports live in the `PUBLISH` hash (never evicted), one entry per host port;
//! each range lives as one entry in the small `PUBLISH_RANGES` array, scanned after a
//! miss. Counters live in the per-CPU `PUBLISH_STATS` array, indexed by the mapping's id,
//! which conntrack entries carry so that established packets are counted too.

use crate::addr::Addr6;

/// Key of `PUBLISH` (`PUBLISH6` with IPv6 addresses): host address (0 = every host
/// address), port, protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PubKey<A = u32> {
    /// Network byte order; 0 means any address of the host.
    pub addr: A,
    /// Network byte order.
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<PubKey>() == 8);
const _: () = assert!(core::mem::size_of::<PubKey<Addr6>>() == 20);

/// Where a published port leads.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PubTarget<A = u32> {
    /// Container address, network byte order.
    pub addr: A,
    /// Container port, network byte order (for a range: the port of the range's first).
    pub port: u16,
    pub _pad: u16,
    /// Index into `PUBLISH_STATS` (1-based; 0 = no counters).
    pub id: u32,
}
const _: () = assert!(core::mem::size_of::<PubTarget>() == 12);
const _: () = assert!(core::mem::size_of::<PubTarget<Addr6>>() == 24);

/// One published range, as one element of `PUBLISH_RANGES` (`PUBLISH_RANGES6`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PubRange<A = u32> {
    /// Network byte order; 0 means any address of the host.
    pub addr: A,
    /// First and last host port, **host byte order**.
    pub start: u16,
    pub end: u16,
    pub proto: u8,
    /// 1 when the slot holds a range.
    pub used: u8,
    pub _pad: u16,
    pub target: PubTarget<A>,
}
const _: () = assert!(core::mem::size_of::<PubRange>() == 24);
const _: () = assert!(core::mem::size_of::<PubRange<Addr6>>() == 48);

/// Per-mapping counters (per CPU; userspace sums them).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct PubStats {
    pub packets: u64,
    pub bytes: u64,
    pub connections: u64,
}
const _: () = assert!(core::mem::size_of::<PubStats>() == 24);

/// An address and port (network order) with its protocol: in the reverse map of
/// host-local publishing, the container's a socket was sent to, and the published one
/// it asked for.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PubBack<A = u32> {
    pub addr: A,
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<PubBack>() == 8);
const _: () = assert!(core::mem::size_of::<PubBack<Addr6>>() == 20);

/// The key of the reverse map of host-local publishing: one socket of the lab host
/// (its cookie) and the container's address and port it was sent to. Per socket, so
/// that a socket that reaches the container directly, or by another published
/// address, is never shown what another socket asked for.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct PubBackKey {
    pub cookie: u64,
    pub to: PubBack,
}
const _: () = assert!(core::mem::size_of::<PubBackKey>() == 16);

/// [`PubBackKey`] of an IPv6 socket (`PUBLISH_BACK6`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct PubBackKey6 {
    pub cookie: u64,
    pub to: PubBack<Addr6>,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<PubBackKey6>() == 32);

/// The container port for host port `port` (host order) of a range starting at `start`
/// whose first container port is `ctr_first` (host order).
pub const fn range_target_port(start: u16, ctr_first: u16, port: u16) -> u16 {
    ctr_first.wrapping_add(port.wrapping_sub(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_ports_line_up() {
        assert_eq!(range_target_port(8000, 9000, 8000), 9000);
        assert_eq!(range_target_port(8000, 9000, 8099), 9099);
        assert_eq!(range_target_port(8000, 8000, 8042), 8042);
    }
}
