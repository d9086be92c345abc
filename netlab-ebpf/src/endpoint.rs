//! The endpoint program: tcx ingress on the host end of every container's veth, the
//! first hook a container's packet meets (attached by `run`, detached by `rm`, only
//! with the fast path on). A packet it can forward itself — a tracked or new flow
//! leaving by the uplink, hairpin to a published port, a frame for another container —
//! is translated and redirected there, never entering the bridge or the host's
//! forwarding path. Anything else goes on as if the program were not there, and the
//! bridge and uplink hooks handle it.

use aya_ebpf::programs::TcContext;
use netlab_common::stats::counter;

use crate::{
    conntrack, forward, maps, nat,
    parse::Kind,
    rewrite,
    uplink::{config, parse},
    verdict::{PASS, Verdict},
};

#[inline(always)]
pub fn ingress(ctx: &TcContext) -> Verdict {
    maps::count(counter::ENDPOINT_PACKETS);
    let cfg = config()?;
    let Some(pkt) = parse(ctx)? else { return PASS };
    if !cfg.in_subnet(pkt.saddr) {
        return PASS;
    }
    if pkt.kind != Kind::Flow || pkt.first_fragment {
        maps::count(if pkt.kind == Kind::Fragment || pkt.first_fragment {
            counter::SLOW_FRAGMENT
        } else {
            counter::SLOW_OTHER
        });
        return PASS;
    }
    if cfg.in_subnet(pkt.daddr) {
        let plan = forward::plan_switched(ctx, &pkt);
        return forward::go(ctx, cfg, &plan);
    }
    let now = conntrack::now();
    let mut hit = conntrack::Hit::empty();
    // What this hook cannot decide (no flow to open) the hooks after it decide.
    let Ok(found) = nat::find_from_container(cfg, &pkt, now, &mut hit) else {
        return PASS;
    };
    if found.is_none() {
        return PASS;
    }
    let plan = forward::plan(ctx, cfg, &pkt, found.to.0, found.to.1, now);
    if !plan.forwards() {
        return PASS;
    }
    let Some(slot) = forward::scratch() else {
        return PASS;
    };
    unsafe { *slot = plan };
    let e = nat::commit(ctx, cfg, &found, &hit, &pkt, now)?;
    rewrite::apply(ctx, &pkt, &e, true)?;
    let plan = unsafe { *slot };
    forward::go(ctx, cfg, &plan)
}
