//! The endpoint program for IPv6 (reached from the IPv4 one by a tail call in a
//! dual-stack lab): a container sends IPv6 as itself — its own MAC, from its own
//! address, its link-local ones (`fe80::/10`) or `::` (duplicate address detection),
//! neighbour advertisements only for those, and no router advertisement or redirect.
//! Anything else is spoofed, dropped and counted.
//!
//! Then, with the fast path on, as for IPv4: a flow of the container's own address
//! leaving by the uplink is translated and redirected ([`uplink6::FAST`]); a frame for
//! another container is switched straight into it. Anything else (hairpin to a
//! published port among it) goes on to the bridge.

use aya_ebpf::programs::TcContext;
use netlab_common::{
    addr::Addr6,
    config::FLAG_FAST_PATH,
    endpoint::Source,
    proto::IPPROTO_ICMPV6,
    stats::{DropReason, counter},
};

use crate::{
    endpoint, forward, forward6, maps,
    maps::Stats,
    parse, parse6, uplink6,
    verdict::{PASS, Verdict},
};

/// ICMPv6 neighbour advertisement: it claims the address it names (its target).
const NDP_NEIGHBOUR_ADVERT: u8 = 136;
/// Router advertisement and redirect: a router's to send.
const NDP_ROUTER_ADVERT: u8 = 134;
const NDP_REDIRECT: u8 = 137;

#[inline(always)]
pub fn ingress(ctx: &TcContext, st: Stats) -> Verdict {
    st.count(counter::ENDPOINT_PACKETS);
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let src = maps::source(ifindex).ok_or(DropReason::SpoofedSource)?;
    endpoint::own_mac(ctx, &src)?;
    let pkt = parse6::ipv6(ctx)?;
    // A header chain the walk did not finish could hide a neighbour advertisement
    // from the check below: nothing a container needs.
    if parse6::is_extension(pkt.proto) && pkt.kind != parse::Kind::Fragment {
        return Err(DropReason::UnsupportedProtocol);
    }
    let icmp6 = pkt.proto == IPPROTO_ICMPV6;
    let unspecified = pkt.saddr == [0; 4];
    if !(own(&pkt.saddr, &src) || (unspecified && icmp6)) {
        return Err(DropReason::SpoofedSource);
    }
    // A container is no router: its advertisements and redirects would steer the
    // others' traffic through it.
    if icmp6 && (pkt.flags == NDP_ROUTER_ADVERT || pkt.flags == NDP_REDIRECT) {
        return Err(DropReason::SpoofedSource);
    }
    if icmp6 && pkt.flags == NDP_NEIGHBOUR_ADVERT {
        let target: Addr6 = ctx
            .load(pkt.l4_off + 8)
            .map_err(|_| DropReason::Truncated)?;
        if !own(&target, &src) {
            return Err(DropReason::SpoofedSource);
        }
    }
    let cfg = maps::config();
    if cfg.flags & FLAG_FAST_PATH == 0 {
        return PASS;
    }
    if pkt.kind != parse::Kind::Flow || pkt.first_fragment {
        st.count(if pkt.kind == parse::Kind::Fragment || pkt.first_fragment {
            counter::SLOW_FRAGMENT
        } else {
            counter::SLOW_OTHER
        });
        return PASS;
    }
    if cfg.in_subnet6(&pkt.daddr) {
        return Ok(forward6::switch(ctx, st, pkt));
    }
    // A link-local source is never forwarded (the stack answers it), hairpin to a
    // port published on a host address is the bridge's to turn around, and a frame
    // not addressed to the bridge is not the lab host's to route (the bridge switches
    // it to the container whose MAC it carries, or floods it). The uplink's and the
    // bridge's addresses are known here; the lab host's others (`HOST_ADDRS6`) are left
    // to the plan's route lookup, which finds them local: no hash lookup per packet.
    if pkt.saddr != src.addr6
        || maps::is_uplink_or_bridge6(cfg, &pkt.daddr)
        || !endpoint::to_bridge(ctx, cfg)
    {
        st.count(counter::SLOW_OTHER);
        return PASS;
    }
    // Planned before the NAT decides, in a frame of its own: the NAT's call chain has
    // no room left for the route lookup. What leaves keeps its destination and takes
    // the uplink's address (the NAT leaves any other source to the stack).
    let source = maps::uplink_addr6();
    if forward6::plan(ctx, st, pkt, &source, &pkt.daddr) == forward::STACK as i32 {
        return PASS;
    }
    Ok(uplink6::from_container(ctx, st, pkt, uplink6::FAST))
}

/// Whether `a` is the container's: its address, or a link-local one.
#[inline(always)]
fn own(a: &Addr6, src: &Source) -> bool {
    let b = a[0].to_ne_bytes();
    (*a == src.addr6 && src.addr6 != [0; 4]) || (b[0] == 0xfe && b[1] & 0xc0 == 0x80)
}
