//! The containers on the bridge, as the fast path needs them: where a packet for a
//! container's address goes (`bpf_redirect_peer` on the host end of its veth), and the
//! MAC it must carry.

use crate::addr::Addr6;

/// Value of `ENDPOINTS`, keyed by the container's address (network byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Endpoint {
    /// ifindex of the host end of the container's veth, in the lab host.
    pub ifindex: u32,
    /// MAC of the container's interface.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<Endpoint>() == 12);

/// Value of `SOURCES`, keyed by the ifindex of the host end of a container's veth:
/// what the container may send from (its address and its MAC). Anything else leaving
/// the container is spoofed and dropped at its veth.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Source {
    /// The container's address (network byte order).
    pub addr: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    /// Its IPv6 address in a dual-stack lab (zero otherwise): besides it, it may send
    /// from its link-local addresses (`fe80::/10`) and from `::` (duplicate address
    /// detection).
    pub addr6: Addr6,
}
const _: () = assert!(core::mem::size_of::<Source>() == 28);

/// Value of `UPLINKS`, keyed by ifindex: an interface of the lab host other than the
/// bridge, on which the uplink programs run (what iptables' `! -o BRIDGE` and
/// `--dst-type LOCAL` cover), and its address: the masquerade source of what leaves
/// by it, and a local address published ports answer on.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Uplink {
    /// Its first IPv4 address (network byte order), 0 for none.
    pub addr: u32,
    /// Its first global IPv6 address in a dual-stack lab, zero for none.
    pub addr6: Addr6,
}
const _: () = assert!(core::mem::size_of::<Uplink>() == 20);
