//! Whether the lab host's stack would forward a translated packet into the lab, asked
//! before the fast path carries it into a container itself. The stack routes such a
//! packet from the device it came in by (the uplink, another interface netlab watches,
//! or, from a container, the bridge) and forwards it only when all of this holds, so
//! the fast path asks the same of `bpf_fib_lookup` with the packet's addresses:
//!
//! - forwarding is on for that device (`net.ipv4.ip_forward`,
//!   `net.ipv4.conf.DEV.forwarding`, `net.ipv6.conf.all.forwarding`): the lookup answers
//!   `BPF_FIB_LKUP_RET_FWD_DISABLED`;
//! - the route to the container leaves by the bridge: a blackhole, unreachable or
//!   prohibit route, or a policy rule (`ip rule ... iif eth0 prohibit`), or a route by
//!   another device, is the stack's to act on;
//! - IPv4 from outside: the route back to the source leaves by the device the packet
//!   came in by. The stack's reverse-path filter (`rp_filter`, `fib_validate_source`)
//!   drops, at 1, a packet whose source it would route out by another interface, at 2
//!   one whose source it has no route for; `bpf_fib_lookup` checks no source and a
//!   program cannot read the setting, so anything else is left to the stack, where the
//!   setting in force decides (every setting accepts what this lets through). IPv6 has
//!   no reverse-path filter.
//!
//! The lookups carry what the kernel's carry, so that a policy rule sees what it would
//! see there: the packet's protocol, its ports (TCP and UDP), its TOS (IPv4) or
//! traffic class and flow label (IPv6), the destination and its port as translated,
//! and the source as it came, before any source NAT (a hairpin packet is routed before
//! POSTROUTING, with the container's own address). A rule on the firewall mark is not
//! seen (the lookup takes no mark before Linux 6.10).
//!
//! Anything else is left to the stack, translated. The answer is kept per CPU for the
//! rest of the coarse second, per source, destination, ports, protocol, TOS and device,
//! as the next hops are ([`crate::next_hop`]): a setting or a route changed is seen
//! within a second.

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS},
    macros::map,
    maps::PerCpuArray,
    programs::TcContext,
};
use netlab_common::{
    addr::Addr6,
    config::Config,
    proto::{IPPROTO_TCP, IPPROTO_UDP},
};

use crate::{
    fib::{self, AF_INET, AF_INET6},
    maps,
    parse::Packet,
};

/// Slots per CPU (a power of two), for each family.
const SLOTS: u32 = 256;

/// One answer, with the lookups' parameters beside it (kept out of the stack, whose
/// frames the verifier adds up along a call chain).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Checked<A> {
    src: A,
    dst: A,
    /// Source and destination port (network order), as one word.
    ports: u32,
    /// The protocol, and the TOS (IPv4) above it.
    proto_tos: u32,
    /// IPv6: the traffic class and flow label (network order); 0 for IPv4.
    flowinfo: u32,
    /// The device the packet was seen on.
    dev: u32,
    /// The coarse second of the lookup; 0: never looked up.
    at: u32,
    /// 1: the stack forwards it.
    ok: u32,
    _pad: u32,
    words: [u64; 8],
}

#[map(name = "INTO_LAB")]
static INTO_LAB: PerCpuArray<Checked<u32>> = PerCpuArray::with_max_entries(SLOTS, 0);

#[map(name = "INTO_LAB6")]
static INTO_LAB6: PerCpuArray<Checked<Addr6>> = PerCpuArray::with_max_entries(SLOTS, 0);

/// Whether a packet that came in by `dev` came from outside (an interface netlab
/// watches), rather than from a container (by way of the bridge).
#[inline(always)]
fn from_outside(cfg: &Config, dev: u32) -> bool {
    dev == cfg.uplink_ifindex || maps::uplink(dev).is_some()
}

/// Whether a lookup's code says there is a unicast route (its device in the
/// parameters); the MTU is [`crate::forward::fits_bridge`]'s to check.
#[inline(always)]
fn found(rc: u32) -> bool {
    rc == BPF_FIB_LKUP_RET_SUCCESS
        || rc == BPF_FIB_LKUP_RET_NO_NEIGH
        || rc == BPF_FIB_LKUP_RET_FRAG_NEEDED
}

/// The device a packet is seen on (a container's host-side device, or a watched
/// interface).
#[inline(always)]
fn device(ctx: &TcContext) -> u32 {
    unsafe { (*ctx.skb.skb).ifindex }
}

/// Whether the kernel's route lookup takes ports of the protocol (its flow dissector
/// reads them for TCP and UDP; an ICMP echo's identifier is no port to it).
#[inline(always)]
fn has_ports(proto: u8) -> bool {
    proto == IPPROTO_TCP || proto == IPPROTO_UDP
}

/// What an IPv4 packet's route lookup takes besides its addresses, packed in one word
/// (a BPF subprogram takes five arguments): the source and destination port (network
/// order; 0 but for TCP and UDP), the protocol and the TOS.
#[inline(always)]
pub fn selectors(ctx: &TcContext, pkt: &Packet, dport: u16) -> u64 {
    let (sport, dport) = if has_ports(pkt.proto) {
        (pkt.sport, dport)
    } else {
        (0, 0)
    };
    let tos: u8 = ctx.load(pkt.l3_off + 1).unwrap_or(0);
    sport as u64 | (dport as u64) << 16 | (pkt.proto as u64) << 32 | (tos as u64) << 40
}

/// Whether the lab host forwards an IPv4 packet from `src` (as it came, before any
/// source NAT), translated to `dst` (a container), into the lab, as seen in the coarse
/// second `now`; `sel` from [`selectors`]. A BPF subprogram: inlined, it would add to
/// the frame of every program that plans. What it needs after a helper call it reads
/// back from the slot rather than keep in its own frame, which the verifier adds to the
/// uplink program's (Linux 6.1 allows 512 bytes for the chain); the lab's configuration
/// it reads from the read-only global, which leaves room for `now` in the five
/// arguments a subprogram takes.
#[inline(never)]
pub fn routed(ctx: &TcContext, src: u32, dst: u32, sel: u64, now: u32) -> bool {
    let cfg = maps::config();
    let ports = sel as u32;
    let proto_tos = (sel >> 32) as u32;
    let slot = ((src ^ dst ^ ports).wrapping_mul(0x9e37_79b1) >> 24) & (SLOTS - 1);
    let Some(c) = INTO_LAB.get_ptr_mut(slot) else {
        return false;
    };
    let c = unsafe { &mut *c };
    if c.at == now
        && now != 0
        && c.src == src
        && c.dst == dst
        && c.ports == ports
        && c.proto_tos == proto_tos
        && c.dev == device(ctx)
    {
        return c.ok != 0;
    }
    c.src = src;
    c.dst = dst;
    c.ports = ports;
    c.proto_tos = proto_tos;
    c.dev = device(ctx);
    c.at = now;
    // Until the answer: whether it came from outside (its route back is checked).
    c.ok = from_outside(cfg, c.dev) as u32;
    let f = fib::params(cfg, &mut c.words, AF_INET, c.proto_tos as u8, 0);
    if c.ok != 0 {
        f.ifindex = c.dev;
    }
    f.sport = c.ports as u16;
    f.dport = (c.ports >> 16) as u16;
    f.__bindgen_anon_2.tos = (c.proto_tos >> 8) as u8;
    f.__bindgen_anon_3.ipv4_src = c.src;
    f.__bindgen_anon_4.ipv4_dst = c.dst;
    let mut ok = found(fib::run(ctx, f)) && f.ifindex == cfg.bridge_ifindex;
    if ok && c.ok != 0 {
        // The kernel's reverse lookup: from the container back to the source, as from
        // the device the packet is forwarded out by (the bridge), ports swapped.
        let f = fib::params(cfg, &mut c.words, AF_INET, c.proto_tos as u8, 0);
        f.sport = (c.ports >> 16) as u16;
        f.dport = c.ports as u16;
        f.__bindgen_anon_2.tos = (c.proto_tos >> 8) as u8;
        f.__bindgen_anon_3.ipv4_src = c.dst;
        f.__bindgen_anon_4.ipv4_dst = c.src;
        ok = found(fib::run(ctx, f)) && f.ifindex == c.dev;
    }
    c.ok = ok as u32;
    ok
}

/// [`routed`] for an IPv6 packet `pkt` translated already to `dst` (its ports are
/// read from it), which has no reverse-path filter. A BPF subprogram.
#[inline(never)]
pub fn routed6(ctx: &TcContext, pkt: &Packet<Addr6>, dst: &Addr6, now: u32) -> bool {
    let cfg = maps::config();
    let ports: u32 = if has_ports(pkt.proto) {
        ctx.load(pkt.l4_off).unwrap_or(0)
    } else {
        0
    };
    // The version, traffic class and flow label word; the version left out.
    let flowinfo: u32 = ctx.load::<u32>(pkt.l3_off).unwrap_or(0) & 0x0fff_ffffu32.to_be();
    let src = &pkt.saddr;
    let mix = src[3] ^ src[2] ^ dst[3] ^ dst[2] ^ ports;
    let slot = (mix.wrapping_mul(0x9e37_79b1) >> 24) & (SLOTS - 1);
    let Some(c) = INTO_LAB6.get_ptr_mut(slot) else {
        return false;
    };
    let c = unsafe { &mut *c };
    if c.at == now
        && now != 0
        && c.src == *src
        && c.dst == *dst
        && c.ports == ports
        && c.proto_tos == pkt.proto as u32
        && c.flowinfo == flowinfo
        && c.dev == device(ctx)
    {
        return c.ok != 0;
    }
    c.src = *src;
    c.dst = *dst;
    c.ports = ports;
    c.proto_tos = pkt.proto as u32;
    c.flowinfo = flowinfo;
    c.dev = device(ctx);
    c.at = now;
    c.ok = from_outside(cfg, c.dev) as u32;
    let f = fib::params(cfg, &mut c.words, AF_INET6, c.proto_tos as u8, 0);
    if c.ok != 0 {
        f.ifindex = c.dev;
    }
    // The two ports as they lie in the header: source, then destination.
    let p = c.ports.to_ne_bytes();
    f.sport = u16::from_ne_bytes([p[0], p[1]]);
    f.dport = u16::from_ne_bytes([p[2], p[3]]);
    f.__bindgen_anon_2.flowinfo = c.flowinfo;
    f.__bindgen_anon_3.ipv6_src = c.src;
    f.__bindgen_anon_4.ipv6_dst = c.dst;
    let ok = found(fib::run(ctx, f)) && f.ifindex == cfg.bridge_ifindex;
    c.ok = ok as u32;
    ok
}
