//! The fast path: a translated packet of an established flow is forwarded to its next
//! hop straight from TC — `bpf_fib_lookup` in the lab host's tables, TTL decremented,
//! MACs rewritten, `bpf_redirect` to the egress device — so it skips the host's IP
//! input, routing and forwarding path. Anything the lookup does not fully answer (no
//! route, unresolved neighbour, a packet too big for the next hop, TTL running out) falls
//! back to the stack, which knows how to answer it (ARP, ICMP errors).

use core::mem::size_of;

use aya_ebpf::{
    EbpfContext as _,
    bindings::{__sk_buff, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams},
    helpers::generated::{bpf_fib_lookup, bpf_redirect},
    programs::TcContext,
};
use netlab_common::{
    config::{Config, FLAG_FAST_PATH},
    stats::counter,
};

use crate::{maps, parse::Packet};

const AF_INET: u8 = 2;
const IP_TTL_OFF: usize = 8;

/// Redirects the packet (already rewritten to `saddr -> daddr`) to its next hop, or
/// returns `None` to let the stack forward it.
#[inline(always)]
pub fn redirect(
    ctx: &TcContext,
    cfg: &Config,
    pkt: &Packet,
    saddr: u32,
    daddr: u32,
) -> Option<i32> {
    if cfg.flags & FLAG_FAST_PATH == 0 {
        return None;
    }
    let mut f: FibParams = unsafe { core::mem::zeroed() };
    f.family = AF_INET;
    f.l4_protocol = pkt.proto;
    // tot_len 0: the kernel checks the MTU against the skb itself, GSO-aware.
    f.__bindgen_anon_1.tot_len = 0;
    f.ifindex = unsafe { (*(ctx.as_ptr() as *const __sk_buff)).ingress_ifindex };
    f.__bindgen_anon_3.ipv4_src = saddr;
    f.__bindgen_anon_4.ipv4_dst = daddr;
    let rc = unsafe { bpf_fib_lookup(ctx.as_ptr(), &mut f, size_of::<FibParams>() as i32, 0) };
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        return None;
    }
    // Routers decrement the TTL; a packet about to expire goes to the stack for its ICMP.
    let word: [u8; 2] = ctx.load(pkt.l3_off + IP_TTL_OFF).ok()?;
    if word[0] <= 1 {
        return None;
    }
    let new = [word[0] - 1, word[1]];
    let (old, new) = (u16::from_ne_bytes(word), u16::from_ne_bytes(new));
    ctx.l3_csum_replace(pkt.l3_off + 10, old as u64, new as u64, 2)
        .ok()?;
    ctx.store(pkt.l3_off + IP_TTL_OFF, &new, 0).ok()?;
    ctx.store(0, &f.dmac, 0).ok()?;
    ctx.store(6, &f.smac, 0).ok()?;
    maps::count(counter::FAST_PATH_REDIRECTS);
    Some(unsafe { bpf_redirect(f.ifindex, 0) } as i32)
}
