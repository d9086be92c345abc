//! The hooks' decisions for IPv4 frames (DESIGN §3): what each program must do with a
//! frame, before the flow logic the two families share (`Model::container_flow`, ...).

use netlab_common::stats::DropReason;

use super::{
    Decision, Hook, Model, Sender, Where, forward,
    ip::Ip,
    wire::{self, Kind, be16},
};

impl<A: Ip> Model<A> {
    pub(super) fn decide4(&mut self, hook: Hook, f: &[u8]) -> Result<Decision<A>, DropReason> {
        let cfg = Where::of(&self.cfg);
        match hook {
            Hook::UplinkEgress => {
                // The host's own traffic is none of the NAT's business, broken or not,
                // but for its ICMP errors about packets it was handed translated.
                // The bridge's address is the host's.
                if let Some(s) = wire::saddr_of::<A>(f)
                    && (!cfg.in_subnet(s) || s == cfg.bridge)
                {
                    return Ok(match wire::parse::<A>(f) {
                        Ok(Some(p)) if p.kind == Kind::IcmpError => self
                            .icmp_error(f, &p, Sender::Host)
                            .unwrap_or(Decision::Pass),
                        _ => Decision::Pass,
                    });
                }
                let Some(p) = wire::parse::<A>(f)? else {
                    return Ok(Decision::Pass);
                };
                if !cfg.in_subnet(p.saddr) {
                    return Ok(Decision::Pass);
                }
                self.leaving(f, &p)
            }
            Hook::UplinkIngress => {
                // Not addressed to the host at L2 (`pkt_type` not PACKET_HOST): the
                // stack's, untouched.
                if f.len() >= 6 && f[..6] != self.cfg.uplink_mac {
                    return Ok(Decision::Pass);
                }
                // A header the host's `ip_rcv` drops is left to it, untouched.
                if wire::ipv4_checksum_bad(f) {
                    return Ok(Decision::Pass);
                }
                let Some(p) = wire::parse::<A>(f)? else {
                    return not_ip(f);
                };
                if cfg.in_subnet(p.daddr) && p.daddr != cfg.bridge {
                    return Err(DropReason::DirectAccess);
                }
                if !cfg.is_host(p.daddr) {
                    return Ok(Decision::Pass);
                }
                self.arriving(f, &p)
            }
            Hook::BridgeIngress => {
                if wire::ipv4_checksum_bad(f) {
                    return Ok(Decision::Pass);
                }
                let Some(p) = wire::parse::<A>(f)? else {
                    return Ok(Decision::Pass);
                };
                if !cfg.in_subnet(p.saddr) {
                    return Ok(Decision::Pass);
                }
                if !cfg.is_host(p.daddr) {
                    // Leaving the lab, or to another container: the host routes it by
                    // the uplink, which is watched, or by the bridge.
                    return Ok(Decision::Pass);
                }
                self.hairpin(f, &p)
            }
            Hook::Endpoint => {
                // The first hook a container's packet meets: what it can forward itself
                // it translates and redirects; anything else goes on, untouched and
                // unrecorded, to the bridge and the uplink, which decide. But first: a
                // container sends from its own MAC and address only.
                let (own, _) = self.cfg.sender(f);
                if f.len() >= 14 && be16(f, 12) == 0x0806 {
                    // ARP: the sender's MAC and address (or 0.0.0.0, a probe's).
                    if f.len() < 32 {
                        return Err(DropReason::Truncated);
                    }
                    let spa = wire::be32(f, 28);
                    if f[22..28] != f[6..12] || (A::from(spa) != own && spa != 0) {
                        return Err(DropReason::SpoofedSource);
                    }
                    return Ok(Decision::Pass);
                }
                let Some(p) = wire::parse::<A>(f)? else {
                    return not_ip(f);
                };
                if p.saddr != own {
                    return Err(DropReason::SpoofedSource);
                }
                // Without the fast path, the checks are all it does.
                if self.cfg.fast.is_none() || p.kind != Kind::Flow || p.first_fragment {
                    return Ok(Decision::Pass);
                }
                if wire::ipv4_checksum_bad(f) {
                    return Ok(Decision::Pass);
                }
                if cfg.in_subnet(p.daddr) {
                    return Ok(self.switch(f, &p));
                }
                match self.container_flow(hook, &p) {
                    Ok(Decision::Translate(t)) => {
                        let plan = self.plan(&p, t.to.0, t.to.1);
                        if !plan.forwards() {
                            return Ok(Decision::Pass);
                        }
                        let mut t = forward(*t, &p, plan);
                        t.remember = None;
                        Ok(Decision::Translate(Box::new(t)))
                    }
                    _ => Ok(Decision::Pass),
                }
            }
        }
    }
}

/// A frame that is not IP at a container's veth or the uplink's ingress: passed, but a
/// priority-tagged one, which the kernel would take as untagged past the programs.
pub(super) fn not_ip<A: Ip>(f: &[u8]) -> Result<Decision<A>, DropReason> {
    match wire::priority_tagged(f) {
        true => Err(DropReason::VlanTagged),
        false => Ok(Decision::Pass),
    }
}
