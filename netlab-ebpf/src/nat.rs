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
use netlab_common::{
    config::Config,
    conntrack::{CtEntry, CtKey, FLAG_ORIGIN, ZONE_FROM_CTR, ZONE_FROM_OUTSIDE},
    proto::{IPPROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, echo_reply, echo_request, is_icmp},
    publish::PubTarget,
    stats::{DropReason, counter},
};

use crate::{
    conntrack::{self, HALF, Hit},
    family::Family,
    maps::{self, Stats},
    parse::Packet,
    words,
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
pub struct Found<A = u32> {
    pub kind: u8,
    pub key: CtKey<A>,
    pub target: PubTarget<A>,
    pub to: (A, A, u16, u16),
}

impl<A: Family> Found<A> {
    #[inline(always)]
    fn new(kind: u8, key: CtKey<A>, target: PubTarget<A>, to: (A, A, u16, u16)) -> Self {
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

/// No published port.
#[inline(always)]
fn no_target<A: Family>() -> PubTarget<A> {
    PubTarget {
        addr: A::default(),
        port: 0,
        _pad: 0,
        id: 0,
    }
}

#[inline(always)]
pub fn key<A: Family>(pkt: &Packet<A>, zone: u8) -> CtKey<A> {
    CtKey::new(pkt.saddr, pkt.daddr, pkt.sport, pkt.dport, pkt.proto, zone)
}

/// Whether a packet may open a flow: a TCP SYN (not a SYN-ACK, nor anything after it),
/// a UDP datagram, an ICMP echo request.
#[inline(always)]
pub fn opens_flow<A: Family>(pkt: &Packet<A>) -> bool {
    match pkt.proto {
        IPPROTO_TCP => pkt.flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN,
        p if is_icmp(p) => pkt.flags == echo_request(p),
        _ => true,
    }
}

/// The tracked flow `pkt` (whose key is `key`) belongs to: the key's entry, unless
/// the packet is an ICMP echo message of the wrong kind for its direction. Echo
/// requests go the way the flow was opened and replies come back (nf_conntrack's ICMP
/// tuples carry the type): an echo request from a ping flow's far end with the NAT's
/// identifier is the host's to answer, not the container's, as with iptables.
#[inline(always)]
fn flow_of<A: Family>(
    cfg: &Config,
    st: Stats,
    key: &CtKey<A>,
    pkt: &Packet<A>,
    now: u32,
) -> Hit<A> {
    let hit = conntrack::lookup(cfg, st, key, now);
    if hit.found() && is_icmp(pkt.proto) {
        let origin = unsafe { (*hit.entry).flags } & FLAG_ORIGIN != 0;
        if pkt.flags
            != if origin {
                echo_request(pkt.proto)
            } else {
                echo_reply(pkt.proto)
            }
        {
            return Hit::empty();
        }
    }
    hit
}

/// The tracked flow of `hit`.
#[inline(always)]
fn known<A: Family>(key: CtKey<A>, hit: &Hit<A>) -> Found<A> {
    if hit.entry.is_null() {
        return Found::new(NONE, key, no_target(), (A::default(), A::default(), 0, 0));
    }
    let e = unsafe { &*hit.entry };
    Found::new(
        KNOWN,
        key,
        no_target(),
        (e.saddr, e.daddr, e.sport, e.dport),
    )
}

/// Nothing to do for a packet without a flow that cannot open one; an error when half
/// of its flow was found (the flow is gone, and the packet with it).
#[inline(always)]
fn leave<A: Family>(key: CtKey<A>, hit: &Hit<A>, pkt: &Packet<A>) -> Result<Found<A>, DropReason> {
    if hit.status == HALF && !opens_flow(pkt) {
        return Err(DropReason::HalfFlow);
    }
    Ok(Found::new(
        NONE,
        key,
        no_target(),
        (A::default(), A::default(), 0, 0),
    ))
}

/// A packet a container sent (its source is in the lab subnet) to somewhere outside
/// the subnet: a tracked flow, a new masqueraded flow (behind `masquerade`, the address
/// of the interface it leaves by), or a new hairpin flow to a port published on a host
/// address. [`NONE`] for traffic the NAT leaves alone (to the host itself).
/// `leaving_by`: the ifindex of the interface the packet is leaving by, whose address
/// `masquerade` is (an uplink's egress; 0 elsewhere), where a flow masqueraded behind
/// an address that is not one of this interface's ends, as `nf_nat_oif_changed` ends
/// it: a route moved it to another interface, and its packet opens a new flow behind
/// this one's address, if it can open one. (Behind another address of the same
/// interface, a second one that now comes first, it goes on.)
#[inline(always)]
pub fn find_from_container<A: Family>(
    cfg: &Config,
    st: Stats,
    masquerade: A,
    leaving_by: u32,
    pkt: &Packet<A>,
    now: u32,
    hit: &mut Hit<A>,
) -> Result<Found<A>, DropReason> {
    let key = key(pkt, ZONE_FROM_CTR);
    *hit = flow_of(cfg, st, &key, pkt, now);
    if leaving_by != 0 && hit.found() {
        let e = unsafe { &*hit.entry };
        // Masqueraded (opened here, no published port, its source changed) behind an
        // address that is not this interface's.
        if e.flags & FLAG_ORIGIN != 0
            && e.pub_id == 0
            && e.saddr != key.saddr
            && e.saddr != masquerade
            && A::host_ifindex(&e.saddr) != Some(leaving_by)
        {
            A::ct_remove(st, hit.table, &e.pair_key(key.proto));
            A::ct_remove(st, hit.table, &key);
            *hit = Hit::none(conntrack::MISSING);
        }
    }
    if hit.found() {
        return Ok(known(key, hit));
    }
    if A::is_host(cfg, &pkt.daddr) {
        if opens_flow(pkt)
            && let Some(target) = A::published(pkt.daddr, pkt.proto, pkt.dport)
        {
            let to = (A::bridge_addr(cfg), target.addr, 0, target.port);
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
    if masquerade == A::default() {
        return Err(DropReason::NoAddress);
    }
    let to = (masquerade, pkt.daddr, 0, pkt.dport);
    Ok(Found::new(MASQUERADE, key, no_target(), to))
}

/// A packet that arrived on the uplink addressed to the uplink address: a tracked flow
/// (a reply to a masqueraded flow, or a published flow), or a new flow to a published
/// port. [`NONE`] for the host's own traffic.
#[inline(always)]
pub fn find_from_outside<A: Family>(
    cfg: &Config,
    st: Stats,
    pkt: &Packet<A>,
    now: u32,
    hit: &mut Hit<A>,
) -> Result<Found<A>, DropReason> {
    let key = key(pkt, ZONE_FROM_OUTSIDE);
    *hit = flow_of(cfg, st, &key, pkt, now);
    if hit.found() {
        return Ok(known(key, hit));
    }
    // A source the lab host's stack would refuse (a martian, or one of its own
    // addresses) opens nothing: the packet goes on untranslated, to be refused there,
    // as the kernel's routing refuses it before any NAT. Nor does one of the lab's
    // subnet, which lives behind the bridge: spoofed, it would reach the container as
    // a peer container's own (iptables' hairpin masquerade shows it the bridge's).
    if opens_flow(pkt)
        && !is_icmp(pkt.proto)
        && !A::martian(&pkt.saddr)
        && !A::is_host(cfg, &pkt.saddr)
        && !A::in_lab(cfg, &pkt.saddr)
        && let Some(target) = A::published(pkt.daddr, pkt.proto, pkt.dport)
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
pub fn commit<A: Family>(
    ctx: &TcContext,
    cfg: &Config,
    st: Stats,
    found: &Found<A>,
    hit: &Hit<A>,
    pkt: &Packet<A>,
    now: u32,
) -> Result<CtEntry<A>, DropReason> {
    // Every field is written below; zeroed first for the verifier.
    let mut e = core::mem::MaybeUninit::<CtEntry<A>>::uninit();
    let e = unsafe {
        words::zero(&mut *e.as_mut_ptr());
        &mut *e.as_mut_ptr()
    };
    if found.kind == KNOWN {
        commit_known(st, &found.key, hit, pkt, now, e)?;
    } else {
        commit_new(ctx, cfg, st, found, pkt, now, e)?;
    }
    Ok(*e)
}

/// [`commit`] of a packet of a tracked flow (`hit`, found with `key`).
#[inline(always)]
pub fn commit_known<A: Family>(
    st: Stats,
    key: &CtKey<A>,
    hit: &Hit<A>,
    pkt: &Packet<A>,
    now: u32,
    out: &mut CtEntry<A>,
) -> Result<(), DropReason> {
    // Always set for a known flow; the check is for the verifier, which cannot tie the
    // two together.
    if hit.entry.is_null() {
        return Err(DropReason::CtInsertFailed);
    }
    conntrack::touch(st, key, hit, pkt, now, out)?;
    st.count(match (out.pub_id != 0, key.zone) {
        (true, ZONE_FROM_OUTSIDE) => counter::DNAT_PACKETS,
        (true, _) => counter::DNAT_REPLY_PACKETS,
        (false, ZONE_FROM_CTR) => counter::SNAT_PACKETS,
        (false, _) => counter::SNAT_REPLY_PACKETS,
    });
    Ok(())
}

/// [`commit`] of the first packet of a new flow: masquerade, or a published port. One
/// call site each for the allocation loop and the log, so the verifier walks them once.
#[inline(always)]
pub fn commit_new<A: Family>(
    ctx: &TcContext,
    cfg: &Config,
    st: Stats,
    found: &Found<A>,
    pkt: &Packet<A>,
    now: u32,
    out: &mut CtEntry<A>,
) -> Result<(), DropReason> {
    let key = &found.key;
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
    let nf = A::new_flow().ok_or(DropReason::CtInsertFailed)?;
    let nf = unsafe { &mut *nf };
    nf.key = *key;
    conntrack::entry(&mut nf.out, found.to, pair_zone, target.id, pkt, now);
    nf.alloc = on_clash;
    let ours = conntrack::create(ctx, cfg, st, nf, now)?;
    words::copy(out, &nf.out);
    // A flow another CPU made first is counted new there, and logged there.
    if masquerade {
        if ours {
            st.count(counter::SNAT_NEW_FLOWS);
        }
        st.count(counter::SNAT_PACKETS);
    } else {
        if ours {
            maps::count_connection(target.id);
            st.count(counter::DNAT_NEW_FLOWS);
        }
        maps::count_publish(target.id, pkt.len);
        st.count(counter::DNAT_PACKETS);
    }
    if ours {
        A::log_new_flow(ctx, key, out);
    }
    Ok(())
}
