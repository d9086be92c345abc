//! The lab host's route lookup (`bpf_fib_lookup`) as the fast path and its checks make
//! it: parameters built in 64 bytes the caller owns (its stack or a per-CPU slot), from
//! the bridge, and the call. Below [`crate::forward`], [`crate::forward6`],
//! [`crate::into_lab`] and the bridge's IPv6 hook, which all look routes up.

use core::mem::size_of;

use aya_ebpf::{
    EbpfContext as _, bindings::bpf_fib_lookup as FibParams, helpers::generated::bpf_fib_lookup,
    programs::TcContext,
};
use netlab_common::config::Config;

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;
const _: () = assert!(size_of::<FibParams>() == 64);

/// `words` made the parameters of a route lookup in the lab host's tables, as from the
/// bridge, for `proto` of `family`; the addresses (and another ingress device) are the
/// caller's to fill in. With `tot_len` 0 the kernel checks the skb itself against the
/// device's MTU (GSO-aware) and returns that MTU in `mtu_result`; with a length, it
/// checks that against the route's MTU and returns it only when the length does not
/// fit.
#[inline(always)]
pub fn params<'a>(
    cfg: &Config,
    words: &'a mut [u64; 8],
    family: u8,
    proto: u8,
    tot_len: u16,
) -> &'a mut FibParams {
    // Zeroed word by word: LLVM turns a plain zeroing loop into a call to a
    // byte-by-byte memset subprogram.
    for w in words.iter_mut() {
        unsafe { core::ptr::write_volatile(w, 0) };
    }
    let f = unsafe { &mut *(words.as_mut_ptr() as *mut FibParams) };
    f.family = family;
    f.l4_protocol = proto;
    f.__bindgen_anon_1.tot_len = tot_len;
    f.ifindex = cfg.bridge_ifindex;
    f
}

/// The route lookup of `f`; its code.
#[inline(always)]
pub fn run(ctx: &TcContext, f: &mut FibParams) -> u32 {
    (unsafe { bpf_fib_lookup(ctx.as_ptr(), f, size_of::<FibParams>() as i32, 0) }) as u32
}
