//! Whether the lab host forwards what the fast path is about to carry into a
//! container. The kernel forwards a packet only when forwarding is on for the device
//! it came in by (`net.ipv4.ip_forward`, `net.ipv4.conf.DEV.forwarding`,
//! `net.ipv6.conf.all.forwarding`): the uplink for a packet from outside, the bridge
//! for one from a container. Turned off after `up`, nothing is forwarded on the
//! iptables datapath, so nothing is on the eBPF one either.
//!
//! A packet leaving by the uplink meets the check in its own route lookup
//! (`bpf_fib_lookup` answers `BPF_FIB_LKUP_RET_FWD_DISABLED`), but a packet into a
//! container is planned from the endpoint map, without one. For those, the answer of a
//! lookup from that device is kept per CPU for the rest of the coarse second, as the
//! next hops are ([`crate::next_hop`]): forwarding turned off is seen within a second.

use aya_ebpf::{
    bindings::BPF_FIB_LKUP_RET_FWD_DISABLED, macros::map, maps::PerCpuArray, programs::TcContext,
};
use netlab_common::config::Config;

use crate::{
    fib::{self, AF_INET},
    maps,
};

/// One device's answer, with the lookup's parameters beside it (kept out of the
/// stack, whose frames the verifier adds up along a call chain).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Checked {
    /// The coarse second of the lookup; 0: never looked up.
    at: u32,
    /// 1: forwarding is on.
    on: u32,
    words: [u64; 8],
}

/// Slots per CPU: the uplink and the bridge, for each family; then, for each family,
/// one for another interface netlab watches (a second uplink), looked up each time.
const SLOTS: u32 = 6;

#[map(name = "FORWARDING")]
static FORWARDING: PerCpuArray<Checked> = PerCpuArray::with_max_entries(SLOTS, 0);

/// Whether the lab host forwards a packet of `family` (`AF_INET` or `AF_INET6`) that
/// came in where this one did (the uplink or another interface netlab watches, or
/// else, from a container, the bridge) in the second `now`. A BPF subprogram: inlined,
/// it would add to the frame of every program that plans.
#[inline(never)]
pub fn on(ctx: &TcContext, cfg: &Config, family: u8, now: u32) -> bool {
    let dev = unsafe { (*ctx.skb.skb).ifindex };
    let from_uplink = dev == cfg.uplink_ifindex;
    // Another watched interface has a forwarding setting of its own
    // (`net.ipv4.conf.DEV.forwarding`), which the kernel checks for what comes in by it.
    let other = !from_uplink && maps::uplink(dev).is_some();
    let v4 = (family == AF_INET) as u32;
    let slot = if other {
        4 + v4
    } else {
        v4 * 2 + from_uplink as u32
    };
    let Some(c) = FORWARDING.get_ptr_mut(slot) else {
        return false;
    };
    let c = unsafe { &mut *c };
    if !other && c.at == now && now != 0 {
        return c.on != 0;
    }
    // The kernel checks the device's forwarding before it looks any route up: no
    // addresses are needed for the answer.
    let f = fib::params(cfg, &mut c.words, family, 0, 0);
    if from_uplink || other {
        f.ifindex = dev;
    }
    let on = fib::run(ctx, f) != BPF_FIB_LKUP_RET_FWD_DISABLED;
    c.on = on as u32;
    c.at = now;
    on
}
