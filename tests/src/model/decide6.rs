//! The hooks' decisions for IPv6 frames in a dual-stack lab (the README's IPv6
//! section): as IPv4's, but for what IPv6 does otherwise — extension headers, no header
//! checksum, neighbour discovery at a container's veth, link-local addresses. Fragments
//! go as IPv4's: the first with its flow, remembered for the rest (by the fragment
//! header's identification and next header).

use netlab_common::stats::DropReason;

use super::{
    Decision, Hook, Model, Sender, Where, forward,
    ip::{Ip, link_local},
    wire::{self, ETH, Kind, be16},
    wire6::{ICMPV6, is_extension},
};

/// Neighbour discovery messages a container may not send as it likes.
const ROUTER_ADVERT: u8 = 134;
const NEIGHBOUR_ADVERT: u8 = 136;
const REDIRECT: u8 = 137;

impl<A: Ip> Model<A> {
    pub(super) fn decide6(&mut self, hook: Hook, f: &[u8]) -> Result<Decision<A>, DropReason> {
        if !wire::is_family::<A>(f) {
            return self.not_ipv6(hook, f);
        }
        let cfg = Where::of(&self.cfg);
        match hook {
            Hook::UplinkEgress => {
                // The host's own packets go as they are, broken or not, but for its
                // ICMPv6 errors about packets it was handed translated.
                let s = A::read(f, ETH + A::SADDR_AT);
                let host = !cfg.in_subnet(s) || s == cfg.bridge;
                let p = match wire::parse::<A>(f) {
                    Ok(Some(p)) => p,
                    Err(_) if host => return Ok(Decision::Pass),
                    r => r?.expect("an IPv6 frame"),
                };
                if host {
                    return Ok(match p.kind {
                        Kind::IcmpError => self
                            .icmp_error(f, &p, Sender::Host)
                            .unwrap_or(Decision::Pass),
                        _ => Decision::Pass,
                    });
                }
                self.leaving(f, &p)
            }
            Hook::UplinkIngress => {
                // Not addressed to the host at L2: the stack's, untouched.
                if f[..6] != self.cfg.uplink_mac {
                    return Ok(Decision::Pass);
                }
                let p = wire::parse::<A>(f)?.expect("an IPv6 frame");
                if cfg.in_subnet(p.daddr) && p.daddr != cfg.bridge {
                    return Err(DropReason::DirectAccess);
                }
                if !cfg.is_host(p.daddr) {
                    return Ok(Decision::Pass);
                }
                self.arriving(f, &p)
            }
            Hook::BridgeIngress => {
                let p = wire::parse::<A>(f)?.expect("an IPv6 frame");
                if !cfg.in_subnet(p.saddr) {
                    return Ok(Decision::Pass);
                }
                if !cfg.is_host(p.daddr) {
                    // Leaving the lab, or to another container: the host routes it by
                    // the uplink, which is watched (or has no route for it), or by the
                    // bridge.
                    return Ok(Decision::Pass);
                }
                self.hairpin(f, &p)
            }
            Hook::Endpoint => self.endpoint6(f),
        }
    }

    /// A container's IPv6 frame at its veth: sent as itself (its address, a link-local
    /// one, or `::` for duplicate address detection; neighbour advertisements only for
    /// those; no router advertisement or redirect), then the fast path.
    fn endpoint6(&mut self, f: &[u8]) -> Result<Decision<A>, DropReason> {
        let (own, _) = self.cfg.sender(f);
        let p = wire::parse::<A>(f)?.expect("an IPv6 frame");
        // A chain not walked to its end could hide a neighbour advertisement.
        if is_extension(p.proto) && p.kind != Kind::Fragment {
            return Err(DropReason::UnsupportedProtocol);
        }
        let mine = |a: A| (a == own && own != A::default()) || link_local_a(a);
        let icmp6 = p.proto == ICMPV6;
        if !(mine(p.saddr) || (p.saddr == A::default() && icmp6)) {
            return Err(DropReason::SpoofedSource);
        }
        if icmp6 && (p.flags == ROUTER_ADVERT || p.flags == REDIRECT) {
            return Err(DropReason::SpoofedSource);
        }
        if icmp6 && p.flags == NEIGHBOUR_ADVERT {
            if p.l4 + 24 > f.len() {
                return Err(DropReason::Truncated);
            }
            if !mine(A::read(f, p.l4 + 8)) {
                return Err(DropReason::SpoofedSource);
            }
        }
        let Some(fast) = self.cfg.fast.clone() else {
            return Ok(Decision::Pass);
        };
        if p.kind != Kind::Flow || p.first_fragment {
            return Ok(Decision::Pass);
        }
        if self.cfg.in_subnet(p.daddr) {
            return Ok(self.switch(f, &p));
        }
        // A link-local source, hairpin (the bridge turns it around), a frame not to the
        // bridge's MAC: not the fast path's.
        if p.saddr != own || self.cfg.is_host(p.daddr) || f[..6] != fast.bridge_mac {
            return Ok(Decision::Pass);
        }
        // Planned before the NAT decides, for the uplink's address.
        let plan = self.plan(&p, self.cfg.uplink, p.daddr);
        if !plan.forwards() {
            return Ok(Decision::Pass);
        }
        match self.container_flow(Hook::Endpoint, &p) {
            // A flow leaving as another host address may route otherwise.
            Ok(Decision::Translate(t)) if t.to.0 == self.cfg.uplink => {
                let mut t = forward(*t, &p, plan);
                t.remember = None;
                Ok(Decision::Translate(Box::new(t)))
            }
            _ => Ok(Decision::Pass),
        }
    }

    /// A frame that is not IPv6 in an IPv6 case (the cases make no IPv4 ones): the IPv4
    /// programs pass it, but at a container's veth, where an ARP message must claim the
    /// container's own IPv4 address (or none), and a priority-tagged one there or at the
    /// uplink's ingress (addressed to it).
    fn not_ipv6(&mut self, hook: Hook, f: &[u8]) -> Result<Decision<A>, DropReason> {
        let to_uplink = f.len() >= 6 && f[..6] == self.cfg.uplink_mac;
        if hook == Hook::Endpoint || (hook == Hook::UplinkIngress && to_uplink) {
            super::decide4::not_ip::<A>(f)?;
        }
        if hook != Hook::Endpoint || f.len() < 14 || be16(f, 12) != 0x0806 {
            return Ok(Decision::Pass);
        }
        if f.len() < 32 {
            return Err(DropReason::Truncated);
        }
        let (own, _) = self.cfg.sender(f);
        let own4 = self.cfg.subnet4 | (low16(own) as u32);
        let spa = wire::be32(f, 28);
        if f[22..28] != f[6..12] || (spa != own4 && spa != 0) {
            return Err(DropReason::SpoofedSource);
        }
        Ok(Decision::Pass)
    }
}

fn link_local_a<A: Ip>(a: A) -> bool {
    A::V6 && link_local(low128(a))
}

/// An address of either family as a number.
fn low128<A: Ip>(a: A) -> u128 {
    let b = a.bytes();
    let mut w = [0u8; 16];
    w[16 - b.len()..].copy_from_slice(&b);
    u128::from_be_bytes(w)
}

fn low16<A: Ip>(a: A) -> u16 {
    low128(a) as u16
}
