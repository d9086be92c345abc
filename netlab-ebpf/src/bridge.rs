//! The bridge's ingress hook: what containers send to the host's IP side, on the slow
//! path (the fast path took it at the container's veth otherwise). Only hairpin is
//! translated here — a container reaching a port published on a host address has to
//! be turned around before the host routes it, and the later fragments of its datagram
//! with it; what leaves the lab is translated at the uplink's egress.

use aya_ebpf::programs::TcContext;
use netlab_common::{conntrack::ZONE_FROM_CTR, stats::counter};

use crate::{
    conntrack, frag, maps, nat,
    parse::Kind,
    rewrite,
    uplink::{config, parse},
    verdict::{PASS, Verdict},
};

#[inline(always)]
pub fn ingress(ctx: &TcContext) -> Verdict {
    maps::count(counter::BRIDGE_INGRESS_PACKETS);
    let cfg = config()?;
    let Some(pkt) = parse(ctx)? else { return PASS };
    if !cfg.in_subnet(pkt.saddr) || !cfg.is_host(pkt.daddr) {
        return PASS;
    }
    if pkt.kind == Kind::Fragment {
        // The rest of a hairpin datagram goes where its first fragment went.
        return frag::translate_later(ctx, &pkt, ZONE_FROM_CTR).unwrap_or(PASS);
    }
    if pkt.kind != Kind::Flow {
        return PASS;
    }
    let now = conntrack::now();
    let mut hit = conntrack::Hit::empty();
    let found = nat::find_from_container(cfg, &pkt, now, &mut hit)?;
    if found.is_none() {
        return PASS;
    }
    let e = nat::commit(ctx, cfg, &found, &hit, &pkt, now)?;
    frag::remember(&pkt, ZONE_FROM_CTR, &e);
    rewrite::apply(ctx, &pkt, &e, false)?;
    PASS
}
