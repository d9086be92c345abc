//! What the model reads in an IPv6 frame: the fixed header, the extension headers
//! before the L4 header (hop-by-hop, routing, destination options, fragment: at most
//! four are walked), the L4 header, and the packet quoted inside an ICMPv6 error.
//! Every length is bounded by the frame and by the payload length.

use netlab_common::stats::DropReason;

use super::wire::{self, ETH, Kind, Pkt, TCP, UDP, be16, be32};

pub const ICMPV6: u8 = 58;
pub const HOPOPTS: u8 = 0;
pub const ROUTING: u8 = 43;
pub const FRAGMENT: u8 = 44;
pub const DSTOPTS: u8 = 60;
pub const DEST_UNREACH: u8 = 1;
pub const PKT_TOOBIG: u8 = 2;
pub const TIME_EXCEEDED: u8 = 3;
pub const PARAMETER_PROBLEM: u8 = 4;
pub const ECHO_REQUEST: u8 = 128;
pub const ECHO_REPLY: u8 = 129;

/// The most extension headers walked before the L4 header.
const MAX_EXT: usize = 4;

pub fn is_extension(proto: u8) -> bool {
    matches!(proto, HOPOPTS | ROUTING | DSTOPTS | FRAGMENT)
}

/// Where the walk of the extension headers ended.
struct Walk {
    proto: u8,
    l4: usize,
    id: u32,
    /// What the fragment header names next.
    frag_proto: u8,
    later_fragment: bool,
    first_fragment: bool,
    /// Reached an L4 header (not stopped by the limit or a routing header still on
    /// its way).
    done: bool,
}

/// Walks the extension headers after the fixed header at `l3`, within `end`.
fn walk(f: &[u8], l3: usize, nexthdr: u8, end: usize) -> Result<Walk, DropReason> {
    let mut w = Walk {
        proto: nexthdr,
        l4: l3 + 40,
        id: 0,
        frag_proto: 0,
        later_fragment: false,
        first_fragment: false,
        done: false,
    };
    for _ in 0..MAX_EXT {
        match w.proto {
            HOPOPTS | ROUTING | DSTOPTS => {
                if w.l4 + 4 > end {
                    return Err(DropReason::Truncated);
                }
                // Segments left: the destination is not the final one, which the L4
                // checksum covers.
                if w.proto == ROUTING && f[w.l4 + 3] != 0 {
                    return Ok(w);
                }
                w.proto = f[w.l4];
                w.l4 += (f[w.l4 + 1] as usize + 1) * 8;
            }
            FRAGMENT => {
                if w.l4 + 8 > end {
                    return Err(DropReason::Truncated);
                }
                let off_m = be16(f, w.l4 + 2);
                w.proto = f[w.l4];
                w.frag_proto = w.proto;
                w.id = be32(f, w.l4 + 4);
                w.l4 += 8;
                if off_m & !7 != 0 {
                    w.later_fragment = true;
                    w.done = true;
                    return Ok(w);
                }
                w.first_fragment = off_m & 1 != 0;
            }
            _ => {
                w.done = true;
                return Ok(w);
            }
        }
    }
    w.done = !is_extension(w.proto);
    Ok(w)
}

fn packet(f: &[u8], l3: usize, w: &Walk, end: usize) -> Pkt<u128> {
    Pkt {
        l3,
        ihl: w.l4 - l3,
        l4: w.l4,
        end,
        proto: w.proto,
        saddr: u128::from_be_bytes(f[l3 + 8..l3 + 24].try_into().unwrap()),
        daddr: u128::from_be_bytes(f[l3 + 24..l3 + 40].try_into().unwrap()),
        sport: 0,
        dport: 0,
        flags: 0,
        ttl: f[l3 + 7],
        id: w.id,
        frag_proto: w.frag_proto,
        first_fragment: w.first_fragment,
        kind: Kind::Other,
        len: f.len(),
        seq: 0,
        ack: 0,
        win: 0,
        seq_end: 0,
        wscale: None,
    }
}

/// Parses an IPv6 frame: `Ok(None)` for another ethertype; a drop reason for a packet
/// whose headers are broken or cut. A chain the walk does not finish is `Other`.
pub fn parse(f: &[u8]) -> Result<Option<Pkt<u128>>, DropReason> {
    if f.len() < ETH || be16(f, 12) != 0x86dd {
        return Ok(None);
    }
    if f.len() < ETH + 40 {
        return Err(DropReason::Truncated);
    }
    let l3 = ETH;
    if f[l3] >> 4 != 6 {
        return Err(DropReason::BadIpHeader);
    }
    let end = l3 + 40 + be16(f, l3 + 4) as usize;
    if end > f.len() {
        return Err(DropReason::Truncated);
    }
    let w = walk(f, l3, f[l3 + 6], end)?;
    let mut p = packet(f, l3, &w, end);
    if w.later_fragment {
        p.kind = Kind::Fragment;
        return Ok(Some(p));
    }
    if !w.done || p.l4 > end {
        return Ok(Some(p));
    }
    let l4_len = end - p.l4;
    match p.proto {
        TCP | UDP => wire::ports(f, &mut p)?,
        ICMPV6 => {
            if l4_len < 8 {
                return Err(DropReason::Truncated);
            }
            p.flags = f[p.l4];
            match p.flags {
                ECHO_REQUEST | ECHO_REPLY => {
                    p.sport = be16(f, p.l4 + 4);
                    p.dport = p.sport;
                    p.kind = Kind::Flow;
                }
                DEST_UNREACH | PKT_TOOBIG | TIME_EXCEEDED | PARAMETER_PROBLEM
                    if !p.first_fragment =>
                {
                    p.kind = Kind::IcmpError
                }
                // Neighbour discovery, MLD and the rest: the stack's.
                _ => {}
            }
        }
        _ => {}
    }
    Ok(Some(p))
}

/// The packet quoted in ICMPv6 error `outer`: `Ok(None)` when it is not a flow NAT
/// tracks (another protocol, a message other than echo, a later fragment, a chain not
/// walked to its end); a drop reason when the quote is too short to say (the eight
/// bytes of L4 header every error quotes) or its header is broken.
pub fn quoted(f: &[u8], outer: &Pkt<u128>) -> Result<Option<Pkt<u128>>, DropReason> {
    let l3 = outer.l4 + 8;
    let end = outer.end;
    if l3 + 40 > end {
        return Err(DropReason::Truncated);
    }
    if f[l3] >> 4 != 6 {
        return Err(DropReason::BadIpHeader);
    }
    let w = walk(f, l3, f[l3 + 6], end)?;
    if w.later_fragment || !w.done {
        return Ok(None);
    }
    let mut q = packet(f, l3, &w, end);
    q.first_fragment = false;
    q.id = 0;
    match q.proto {
        TCP | UDP => {
            if q.l4 + 8 > end {
                return Err(DropReason::Truncated);
            }
            q.sport = be16(f, q.l4);
            q.dport = be16(f, q.l4 + 2);
            q.kind = Kind::Flow;
        }
        ICMPV6 => {
            if q.l4 + 8 > end {
                return Err(DropReason::Truncated);
            }
            if f[q.l4] == ECHO_REQUEST || f[q.l4] == ECHO_REPLY {
                q.flags = f[q.l4];
                q.sport = be16(f, q.l4 + 4);
                q.dport = q.sport;
                q.kind = Kind::Flow;
            }
        }
        _ => {}
    }
    Ok((q.kind == Kind::Flow).then_some(q))
}
