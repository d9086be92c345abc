//! The containers on the bridge, as the fast path needs them: where a packet for a
//! container's address goes (`bpf_redirect_peer` on the host end of its veth), and the
//! MAC it must carry.

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
