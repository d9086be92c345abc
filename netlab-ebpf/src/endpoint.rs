//! The endpoint program: tcx ingress on the host end of every container's veth, or
//! with `--device netkit` the peer program of its netkit pair (run in the container's
//! own transmit), the first hook a container's packet meets (attached by `run`,
//! detached by `rm`).
//!
//! It first makes sure the container sends as itself: every frame with its own MAC,
//! every IPv4 packet from its own address, every ARP message claiming its own address
//! (or none, as a probe does). Anything else is spoofed — another container's
//! address, to hijack its replies or reset its connections; an address outside the
//! lab, to leave unmasqueraded; another's MAC, to steal its frames on the bridge — and
//! is dropped and counted (`spoofed_source`). Cilium does the same; iptables does not.
//!
//! Then, with the fast path on, a packet it can forward itself — a tracked or new flow
//! leaving by the uplink, hairpin to a published port, a frame for another container —
//! is translated and redirected there, never entering the bridge or the host's
//! forwarding path. Anything else goes on as if the program were not there, and the
//! bridge and uplink hooks handle it.

use aya_ebpf::programs::TcContext;
use netlab_common::{
    config::{Config, FLAG_FAST_PATH, FLAG_NETKIT},
    endpoint::Source,
    proto::{ETH_HLEN, ETH_P_IP},
    stats::{DropReason, counter},
};

use crate::{
    conntrack, forward,
    maps::{self, Stats},
    nat,
    parse::{self, Kind},
    rewrite,
    uplink::parse,
    verdict::{PASS, Verdict},
};

const ETH_P_ARP: u16 = 0x0806;
/// Offset of the sender's MAC and address in an Ethernet ARP message for IPv4.
const ARP_SENDER: usize = ETH_HLEN + 8;

#[inline(always)]
pub fn ingress(ctx: &TcContext, st: Stats) -> Verdict {
    st.count(counter::ENDPOINT_PACKETS);
    let cfg = maps::config();
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // A veth netlab attached this program to always has its source: it is recorded
    // before the program is attached and removed after it is detached.
    let src = maps::source(ifindex).ok_or(DropReason::SpoofedSource)?;
    let ethertype = own_mac(ctx, &src)?;
    if ethertype == ETH_P_ARP.to_be() {
        return own_arp(ctx, &src);
    }
    if ethertype != ETH_P_IP.to_be() {
        if parse::priority_tagged(ctx, ethertype) {
            return Err(DropReason::VlanTagged);
        }
        return PASS;
    }
    let Some(pkt) = parse(ctx, st)? else {
        return PASS;
    };
    if pkt.saddr != src.addr {
        return Err(DropReason::SpoofedSource);
    }
    if cfg.flags & FLAG_FAST_PATH == 0 {
        return PASS;
    }
    if pkt.kind != Kind::Flow || pkt.first_fragment {
        st.count(if pkt.kind == Kind::Fragment || pkt.first_fragment {
            counter::SLOW_FRAGMENT
        } else {
            counter::SLOW_OTHER
        });
        return PASS;
    }
    // Left to the stack as it came, which drops it (or the receiving container's).
    if parse::ipv4_checksum_bad(ctx) {
        st.count(counter::PASS_BAD_CHECKSUM);
        return PASS;
    }
    if cfg.in_subnet(pkt.daddr) {
        let plan = forward::plan_switched(ctx, st, &pkt);
        return forward::go(ctx, cfg, st, &plan, hook(cfg));
    }
    // A frame not addressed to the bridge is not the lab host's to route: the bridge
    // switches it to the container whose MAC it carries, or floods it.
    if !to_bridge(ctx, cfg) {
        st.count(counter::SLOW_OTHER);
        return PASS;
    }
    let now = conntrack::now();
    let mut hit = conntrack::Hit::empty();
    // What this hook cannot decide (no flow to open) the hooks after it decide.
    let Ok(found) = nat::find_from_container(cfg, st, maps::uplink_addr(), 0, &pkt, now, &mut hit)
    else {
        return PASS;
    };
    if found.is_none() {
        return PASS;
    }
    let plan = forward::plan(ctx, cfg, st, &pkt, found.to.0, found.to.1, found.to.3, now);
    if !plan.forwards() {
        return PASS;
    }
    let Some(slot) = forward::scratch() else {
        return PASS;
    };
    unsafe { *slot = plan };
    let e = nat::commit(ctx, cfg, st, &found, &hit, &pkt, now)?;
    rewrite::apply(ctx, &pkt, &e, true)?;
    let plan = unsafe { *slot };
    forward::go(ctx, cfg, st, &plan, hook(cfg))
}

/// Where this program runs: a veth's TC ingress, or a netkit peer's transmit.
#[inline(always)]
pub fn hook(cfg: &Config) -> forward::Hook {
    if cfg.flags & FLAG_NETKIT != 0 {
        forward::Hook::Netkit
    } else {
        forward::Hook::TcIngress
    }
}

/// Checks that the frame carries the container's MAC as its source; returns its
/// ethertype (raw).
#[inline(always)]
pub fn own_mac(ctx: &TcContext, src: &Source) -> Result<u16, DropReason> {
    let (data, end) = (ctx.data(), ctx.data_end());
    let head: [u8; ETH_HLEN] = if data + ETH_HLEN <= end {
        unsafe { *(data as *const [u8; ETH_HLEN]) }
    } else {
        match ctx.load(0) {
            Ok(h) => h,
            // A runt without a whole Ethernet header carries nothing to spoof.
            Err(_) => return Err(DropReason::Truncated),
        }
    };
    let m = &src.mac;
    if head[6..12] != [m[0], m[1], m[2], m[3], m[4], m[5]] {
        return Err(DropReason::SpoofedSource);
    }
    Ok(u16::from_ne_bytes([head[12], head[13]]))
}

/// Whether the frame is addressed to the bridge's MAC (the only frames the lab host
/// routes), read straight from the packet: no helper call on the fast path.
#[inline(always)]
pub fn to_bridge(ctx: &TcContext, cfg: &Config) -> bool {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + 6 > end {
        return false;
    }
    let dmac = unsafe { *(data as *const [u8; 6]) };
    let b = &cfg.bridge_mac;
    dmac == [b[0], b[1], b[2], b[3], b[4], b[5]]
}

/// An ARP message from the container must name its own MAC as the sender's, and its
/// own address (or 0.0.0.0, a probe's).
#[inline(always)]
fn own_arp(ctx: &TcContext, src: &Source) -> Verdict {
    let sender: [u8; 10] = ctx.load(ARP_SENDER).map_err(|_| DropReason::Truncated)?;
    let m = &src.mac;
    let addr = u32::from_ne_bytes([sender[6], sender[7], sender[8], sender[9]]);
    if sender[..6] != [m[0], m[1], m[2], m[3], m[4], m[5]] || (addr != src.addr && addr != 0) {
        return Err(DropReason::SpoofedSource);
    }
    PASS
}
