//! The bridge's ingress hook: what containers send to the host's IP side, on the slow
//! path (the fast path took it at the container's veth otherwise). Only hairpin is
//! translated here — a container reaching a port published on a host address has to
//! be turned around before the host routes it; what leaves the lab is translated at
//! the uplink's egress.

use aya_ebpf::programs::TcContext;
use netlab_common::stats::counter;

use crate::{
    conntrack, maps, nat,
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
    if !cfg.in_subnet(pkt.saddr) || !cfg.is_host(pkt.daddr) || pkt.kind != Kind::Flow {
        return PASS;
    }
    let now = conntrack::now();
    let mut hit = conntrack::Hit::empty();
    let found = nat::find_from_container(cfg, &pkt, now, &mut hit)?;
    if found.is_none() {
        return PASS;
    }
    let e = nat::commit(ctx, cfg, &found, &hit, &pkt, now)?;
    rewrite::apply(ctx, &pkt, &e, false)?;
    PASS
}
