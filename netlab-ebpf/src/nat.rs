//! The NAT's decisions, the same whichever hook meets the packet: the flow a packet
//! belongs to, found in conntrack or opened — masquerade for a container reaching out,
//! a published port for a client reaching in, hairpin for a container reaching a
//! published port — and what the packet is rewritten to.
//!
//! Every hook works in two steps: [`find`] says what the packet would become (without
//! changing anything), then [`commit`] records it (counters, TCP state, a new flow). A
//! hook that cannot finish the job (the fast path at a container's veth that finds no
//! route) stops after `find` and leaves the packet to the hook after it.

use aya_ebpf::programs::TcContext;
use aya_log_ebpf::debug;
use netlab_common::{
    config::Config,
    conntrack::{CtEntry, CtKey, FLAG_ORIGIN, ZONE_FROM_CTR, ZONE_FROM_OUTSIDE},
    proto::{
        ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, IPPROTO_ICMP, IPPROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST,
        TCP_SYN, martian_source,
    },
    publish::PubTarget,
    stats::{DropReason, counter},
};

use crate::{
    conntrack::{self, HALF, Hit},
    maps::{self, Stats},
    parse::Packet,
    publish,
};

/// The packet belongs to a tracked flow.
pub const KNOWN: u8 = 0;
/// The first packet of a masqueraded flow (container → outside).
pub const MASQUERADE: u8 = 1;
/// The first packet of a flow to a published port: from outside, or from a container
/// (hairpin).
pub const PUBLISHED: u8 = 2;
/// Not the NAT's business (the host's own traffic).
pub const NONE: u8 = 3;

/// A packet's flow and the tuple it is rewritten to `(saddr, daddr, sport, dport)`;
/// for a new masqueraded or hairpin flow the source port is still to be chosen. A
/// plain struct with every field set and no pointers, for the verifier's sake: LLVM
/// copies such aggregates in pieces, and a map-value pointer cut in pieces is rejected.
/// The conntrack entry, when there is one, travels separately in a [`Hit`].
#[derive(Clone, Copy)]
pub struct Found {
    pub kind: u8,
    pub key: CtKey,
    pub target: PubTarget,
    pub to: (u32, u32, u16, u16),
}

impl Found {
    #[inline(always)]
    fn new(kind: u8, key: CtKey, target: PubTarget, to: (u32, u32, u16, u16)) -> Self {
        Self {
            kind,
            key,
            target,
            to,
        }
    }

    #[inline(always)]
    pub fn is_none(&self) -> bool {
        self.kind == NONE
    }
}

const NO_TARGET: PubTarget = PubTarget {
    addr: 0,
    port: 0,
    _pad: 0,
    id: 0,
};

#[inline(always)]
pub fn key(pkt: &Packet, zone: u8) -> CtKey {
    CtKey::new(pkt.saddr, pkt.daddr, pkt.sport, pkt.dport, pkt.proto, zone)
}

/// Whether a packet may open a flow: a TCP SYN (not a SYN-ACK, nor anything after it),
/// a UDP datagram, an ICMP echo request.
#[inline(always)]
pub fn opens_flow(pkt: &Packet) -> bool {
    match pkt.proto {
        IPPROTO_TCP => pkt.flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN,
        IPPROTO_ICMP => pkt.flags == ICMP_ECHO_REQUEST,
        _ => true,
    }
}

/// The tracked flow `pkt` (whose key is `key`) belongs to: the key's entry, unless
/// the packet is an ICMP echo message of the wrong kind for its direction. Echo
/// requests go the way the flow was opened and replies come back (nf_conntrack's ICMP
/// tuples carry the type): an echo request from a ping flow's far end with the NAT's
/// identifier is the host's to answer, not the container's, as with iptables.
#[inline(always)]
fn flow_of(cfg: &Config, st: Stats, key: &CtKey, pkt: &Packet, now: u32) -> Hit {
    let hit = conntrack::lookup(cfg, st, key, now);
    if hit.found() && pkt.proto == IPPROTO_ICMP {
        let origin = unsafe { (*hit.entry).flags } & FLAG_ORIGIN != 0;
        if pkt.flags
            != if origin {
                ICMP_ECHO_REQUEST
            } else {
                ICMP_ECHO_REPLY
            }
        {
            return Hit::empty();
        }
    }
    hit
}

/// The tracked flow of `hit`.
#[inline(always)]
fn known(key: CtKey, hit: &Hit) -> Found {
    if hit.entry.is_null() {
        return Found::new(NONE, key, NO_TARGET, (0, 0, 0, 0));
    }
    let e = unsafe { &*hit.entry };
    Found::new(KNOWN, key, NO_TARGET, (e.saddr, e.daddr, e.sport, e.dport))
}

/// Nothing to do for a packet without a flow that cannot open one; an error when half
/// of its flow was found (the flow is gone, and the packet with it).
#[inline(always)]
fn leave(key: CtKey, hit: &Hit, pkt: &Packet) -> Result<Found, DropReason> {
    if hit.status == HALF && !opens_flow(pkt) {
        return Err(DropReason::HalfFlow);
    }
    Ok(Found::new(NONE, key, NO_TARGET, (0, 0, 0, 0)))
}

/// A packet a container sent (its source is in the lab subnet) to somewhere outside
/// the subnet: a tracked flow, a new masqueraded flow (behind `masquerade`, the address
/// of the interface it leaves by), or a new hairpin flow to a port published on a host
/// address. [`NONE`] for traffic the NAT leaves alone (to the host itself).
#[inline(always)]
pub fn find_from_container(
    cfg: &Config,
    st: Stats,
    masquerade: u32,
    pkt: &Packet,
    now: u32,
    hit: &mut Hit,
) -> Result<Found, DropReason> {
    let key = key(pkt, ZONE_FROM_CTR);
    *hit = flow_of(cfg, st, &key, pkt, now);
    if hit.found() {
        return Ok(known(key, hit));
    }
    if maps::is_host(cfg, pkt.daddr) {
        if opens_flow(pkt)
            && let Some(target) = publish::lookup(pkt.daddr, pkt.proto, pkt.dport)
        {
            let to = (cfg.bridge_addr, target.addr, 0, target.port);
            return Ok(Found::new(PUBLISHED, key, target, to));
        }
        return leave(key, hit, pkt);
    }
    if !opens_flow(pkt) {
        return Err(if hit.status == HALF {
            DropReason::HalfFlow
        } else if pkt.proto == IPPROTO_TCP {
            DropReason::TcpNoFlow
        } else {
            // An ICMP message nobody could answer, leaving with a container's address.
            DropReason::UnsupportedProtocol
        });
    }
    if masquerade == 0 {
        return Err(DropReason::NoAddress);
    }
    let to = (masquerade, pkt.daddr, 0, pkt.dport);
    Ok(Found::new(MASQUERADE, key, NO_TARGET, to))
}

/// A packet that arrived on the uplink addressed to the uplink address: a tracked flow
/// (a reply to a masqueraded flow, or a published flow), or a new flow to a published
/// port. [`NONE`] for the host's own traffic.
#[inline(always)]
pub fn find_from_outside(
    cfg: &Config,
    st: Stats,
    pkt: &Packet,
    now: u32,
    hit: &mut Hit,
) -> Result<Found, DropReason> {
    let key = key(pkt, ZONE_FROM_OUTSIDE);
    *hit = flow_of(cfg, st, &key, pkt, now);
    if hit.found() {
        return Ok(known(key, hit));
    }
    // A source the lab host's stack would refuse (a martian, or one of its own
    // addresses) opens nothing: the packet goes on untranslated, to be refused there,
    // as the kernel's routing refuses it before any NAT.
    if opens_flow(pkt)
        && pkt.proto != IPPROTO_ICMP
        && !martian_source(u32::from_be(pkt.saddr))
        && !maps::is_host(cfg, pkt.saddr)
        && let Some(target) = publish::lookup(pkt.daddr, pkt.proto, pkt.dport)
    {
        // The client's own address is kept: the container sees who connects.
        let to = (pkt.saddr, target.addr, pkt.sport, target.port);
        return Ok(Found::new(PUBLISHED, key, target, to));
    }
    leave(key, hit, pkt)
}

/// Records the packet on its flow (`hit`, from the same `find_*`; opening it if new)
/// and returns the entry it is translated with.
#[inline(always)]
pub fn commit(
    ctx: &TcContext,
    cfg: &Config,
    st: Stats,
    found: &Found,
    hit: &Hit,
    pkt: &Packet,
    now: u32,
) -> Result<CtEntry, DropReason> {
    let key = &found.key;
    if found.kind == KNOWN {
        // Always set for a known flow; the check is for the verifier, which cannot
        // tie the two together.
        if hit.entry.is_null() {
            return Err(DropReason::CtInsertFailed);
        }
        let e = conntrack::touch(st, key, hit, pkt, now)?;
        st.count(match (e.pub_id != 0, key.zone) {
            (true, ZONE_FROM_OUTSIDE) => counter::DNAT_PACKETS,
            (true, _) => counter::DNAT_REPLY_PACKETS,
            (false, ZONE_FROM_CTR) => counter::SNAT_PACKETS,
            (false, _) => counter::SNAT_REPLY_PACKETS,
        });
        return Ok(e);
    }
    // A new flow: masquerade, or a published port. One call site each for the
    // allocation loop and the log, so the verifier walks them once.
    let masquerade = found.kind == MASQUERADE;
    let target = found.target;
    // Hairpin takes a NAT source port (bridge-address:port), so that the reply comes
    // back through the host; from outside only a clash changes the client's port.
    let (pair_zone, on_clash) = if masquerade {
        (ZONE_FROM_OUTSIDE, 0)
    } else if key.zone == ZONE_FROM_CTR {
        (ZONE_FROM_CTR, 0)
    } else {
        (ZONE_FROM_CTR, 1)
    };
    let nf = conntrack::scratch().ok_or(DropReason::CtInsertFailed)?;
    let nf = unsafe { &mut *nf };
    nf.key = *key;
    nf.out = conntrack::entry(found.to, pair_zone, target.id, pkt, now);
    nf.alloc = on_clash;
    conntrack::create(cfg, st, nf, now)?;
    let e = nf.out;
    if masquerade {
        st.count(counter::SNAT_NEW_FLOWS);
        st.count(counter::SNAT_PACKETS);
    } else {
        maps::count_connection(target.id);
        maps::count_publish(target.id, pkt.len);
        st.count(counter::DNAT_NEW_FLOWS);
        st.count(counter::DNAT_PACKETS);
    }
    // Two records, each naming the flow by its source: one record of all nine values
    // takes more stack than the uplink's program (logs on) has left.
    debug!(
        ctx,
        "new flow proto {} {:i}:{} -> {:i}:{}",
        key.proto,
        u32::from_be(key.saddr),
        u16::from_be(key.sport),
        u32::from_be(key.daddr),
        u16::from_be(key.dport)
    );
    debug!(
        ctx,
        "new flow from {:i}:{} as {:i}:{} -> {:i}:{}",
        u32::from_be(key.saddr),
        u16::from_be(key.sport),
        u32::from_be(e.saddr),
        u16::from_be(e.sport),
        u32::from_be(e.daddr),
        u16::from_be(e.dport)
    );
    Ok(e)
}
