//! The layout contract between the netlab eBPF programs and userspace.
//!
//! Every type that crosses the kernel/user boundary lives here: `#[repr(C)]`, explicit
//! padding fields, no `bool`/`enum`/`Option`, and a compile-time size assertion. Addresses
//! and ports are stored in **network byte order** (raw, as read from the packet) unless a
//! field says otherwise, so the datapath never byte-swaps on the hot path.
//!
//! The pure logic both sides need (TCP state transitions, port-range arithmetic, timeouts)
//! lives here too, so that `cargo test -p netlab-common` covers it without root.
#![no_std]

pub mod addr;
pub mod config;
pub mod conntrack;
pub mod endpoint;
pub mod frag;
pub mod maps;
pub mod nat;
pub mod proto;
pub mod publish;
pub mod stats;

#[cfg(feature = "user")]
mod user {
    use crate::{
        addr::Addr6,
        conntrack::{CtEntry, CtKey},
        publish::{PubBack, PubBackKey6, PubKey, PubRange, PubTarget},
    };

    /// `bytemuck::Pod` for the types generic over their address, which its derive
    /// cannot check: each is `repr(C)` and its size asserted equal to the sum of its
    /// fields' (no padding) beside its definition.
    macro_rules! pod {
        ($($t:ty),*) => {$(
            unsafe impl bytemuck::Zeroable for $t {}
            unsafe impl bytemuck::Pod for $t {}
        )*};
    }
    pod!(
        CtKey,
        CtKey<Addr6>,
        CtEntry,
        CtEntry<Addr6>,
        PubKey,
        PubKey<Addr6>,
        PubTarget,
        PubTarget<Addr6>,
        PubRange,
        PubRange<Addr6>,
        PubBack,
        PubBack<Addr6>
    );

    // aya::Pod is a foreign trait: one impl per type (the orphan rule forbids a blanket impl).
    unsafe impl aya::Pod for crate::config::Config {}
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtEntry {}
    unsafe impl aya::Pod for CtKey<Addr6> {}
    unsafe impl aya::Pod for CtEntry<Addr6> {}
    unsafe impl aya::Pod for PubKey {}
    unsafe impl aya::Pod for PubTarget {}
    unsafe impl aya::Pod for PubRange {}
    unsafe impl aya::Pod for PubKey<Addr6> {}
    unsafe impl aya::Pod for PubTarget<Addr6> {}
    unsafe impl aya::Pod for PubRange<Addr6> {}
    unsafe impl aya::Pod for crate::publish::PubStats {}
    unsafe impl aya::Pod for PubBack {}
    unsafe impl aya::Pod for PubBack<Addr6> {}
    unsafe impl aya::Pod for crate::publish::PubBackKey {}
    unsafe impl aya::Pod for PubBackKey6 {}
    unsafe impl aya::Pod for crate::frag::FragKey {}
    unsafe impl aya::Pod for crate::frag::FragNat {}
    unsafe impl aya::Pod for crate::frag::FragKey6 {}
    unsafe impl aya::Pod for crate::frag::FragNat6 {}
    unsafe impl aya::Pod for crate::endpoint::Endpoint {}
    unsafe impl aya::Pod for crate::endpoint::Source {}
    unsafe impl aya::Pod for crate::endpoint::Uplink {}
    unsafe impl aya::Pod for crate::stats::GcRecord {}
}
