//! What the model reads in a frame: the outer IP header and the L4 header that NAT
//! cares about, and the header quoted inside an ICMP error — IPv4's here, IPv6's in
//! `wire6`. Every length is bounded by the frame *and* by the IPv4 total length: bytes
//! past the total length (padding, or a frame longer than its datagram) are not part of
//! the packet and are never read.

use netlab_common::stats::DropReason;

use super::ip::Ip;

pub const ETH: usize = 14;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ECHO_REPLY: u8 = 0;
pub const UNREACH: u8 = 3;
pub const ECHO_REQUEST: u8 = 8;
pub const TIME_EXCEEDED: u8 = 11;
pub const PARAMETER_PROBLEM: u8 = 12;

/// What the L4 payload is, as far as NAT is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// TCP, UDP or ICMP echo: a tuple with ports (the echo identifier for ICMP).
    Flow,
    /// ICMP destination unreachable or time exceeded (not itself a first fragment).
    IcmpError,
    /// A fragment after the first: addresses only.
    Fragment,
    Other,
}

/// An IP packet as the model sees it. Addresses are host-order numbers.
#[derive(Clone, Copy, Debug)]
pub struct Pkt<A> {
    /// Offset of the IP header in the frame.
    pub l3: usize,
    /// The IP header's length: IPv4's with its options, IPv6's with its extension
    /// headers.
    pub ihl: usize,
    /// Offset of the L4 header.
    pub l4: usize,
    /// One past the datagram's last byte (`l3 + total length`).
    pub end: usize,
    pub proto: u8,
    pub saddr: A,
    pub daddr: A,
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte, or the ICMP type.
    pub flags: u8,
    pub ttl: u8,
    /// The datagram's identification (IPv6: its fragment header's).
    pub id: u32,
    /// The protocol a fragment's datagram is keyed by: IPv4's, or the one IPv6's
    /// fragment header names next (the first fragment's L4 header may sit behind more
    /// extension headers).
    pub frag_proto: u8,
    pub first_fragment: bool,
    pub kind: Kind,
    /// Length of the whole frame.
    pub len: usize,
    /// TCP: sequence and acknowledgment numbers, the window as in the header, one past
    /// the segment's last sequence number (SYN and FIN count one), and a SYN's window
    /// scale option.
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    pub seq_end: u32,
    pub wscale: Option<u8>,
}

pub fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

pub fn be32(f: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]])
}

/// Whether the frame is an IPv4 packet whose header checksum does not hold, options
/// included, as the host's `ip_rcv` checks it right after the version and the header
/// length: a frame it cannot judge (not IPv4, a version or header length refused
/// first, a header cut short) is not called bad.
pub fn ipv4_checksum_bad(f: &[u8]) -> bool {
    if f.len() < 34 || be16(f, 12) != 0x0800 || f[14] >> 4 != 4 {
        return false;
    }
    let ihl = (f[14] & 0x0f) as usize * 4;
    ihl >= 20 && f.len() >= 14 + ihl && crate::packet::checksum(&f[14..14 + ihl]) != 0
}

/// Whether the frame is IPv4 by its ethertype.
pub fn is_ipv4(f: &[u8]) -> bool {
    f.len() >= ETH && be16(f, 12) == 0x0800
}

/// Whether the frame holds a VLAN tag (802.1Q or 802.1ad) of VLAN id 0 after its MAC
/// addresses: a priority tag, which the kernel strips after the programs (the README's
/// `vlan_tagged`).
pub fn priority_tagged(f: &[u8]) -> bool {
    f.len() >= ETH + 2 && matches!(be16(f, 12), 0x8100 | 0x88a8) && be16(f, ETH) & 0x0fff == 0
}

/// Whether the frame is of family `A` by its ethertype.
pub fn is_family<A: Ip>(f: &[u8]) -> bool {
    f.len() >= ETH && be16(f, 12) == A::ETHERTYPE
}

/// The source address of a frame of family `A` long enough to carry one.
pub fn saddr_of<A: Ip>(f: &[u8]) -> Option<A> {
    (is_family::<A>(f) && f.len() >= ETH + A::HDR).then(|| A::read(f, ETH + A::SADDR_AT))
}

/// Parses a frame of family `A`: `Ok(None)` for anything else; a drop reason for a
/// packet whose headers are broken or cut.
pub fn parse<A: Ip>(f: &[u8]) -> Result<Option<Pkt<A>>, DropReason> {
    A::parse(f)
}

/// The packet quoted in ICMP error `outer`, when it is a flow NAT tracks.
pub fn quoted<A: Ip>(f: &[u8], outer: &Pkt<A>) -> Result<Option<Pkt<A>>, DropReason> {
    A::quoted(f, outer)
}

/// [`parse`] for IPv4.
pub fn parse4(f: &[u8]) -> Result<Option<Pkt<u32>>, DropReason> {
    if !is_ipv4(f) {
        return Ok(None);
    }
    if f.len() < ETH + 20 {
        return Err(DropReason::Truncated);
    }
    let l3 = ETH;
    let vihl = f[l3];
    let ihl = (vihl & 0x0f) as usize * 4;
    let tot_len = be16(f, l3 + 2) as usize;
    if vihl >> 4 != 4 || ihl < 20 || tot_len < ihl {
        return Err(DropReason::BadIpHeader);
    }
    if l3 + tot_len > f.len() {
        return Err(DropReason::Truncated);
    }
    let frag = be16(f, l3 + 6);
    let mut p = Pkt {
        l3,
        ihl,
        l4: l3 + ihl,
        end: l3 + tot_len,
        proto: f[l3 + 9],
        saddr: be32(f, l3 + 12),
        daddr: be32(f, l3 + 16),
        sport: 0,
        dport: 0,
        flags: 0,
        ttl: f[l3 + 8],
        id: be16(f, l3 + 4) as u32,
        frag_proto: f[l3 + 9],
        first_fragment: frag & 0x2000 != 0 && frag & 0x1fff == 0,
        kind: Kind::Other,
        len: f.len(),
        seq: 0,
        ack: 0,
        win: 0,
        seq_end: 0,
        wscale: None,
    };
    if frag & 0x1fff != 0 {
        p.kind = Kind::Fragment;
        return Ok(Some(p));
    }
    let l4_len = p.end - p.l4;
    match p.proto {
        TCP | UDP => ports(f, &mut p)?,
        ICMP => {
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
                UNREACH | TIME_EXCEEDED | PARAMETER_PROBLEM if !p.first_fragment => {
                    p.kind = Kind::IcmpError
                }
                _ => {}
            }
        }
        _ => {}
    }
    Ok(Some(p))
}

/// Reads the ports of a TCP segment or UDP datagram (and TCP's sequence numbers,
/// window, flags and window scale) into `p`, a flow packet then; the L4 header runs
/// from `p.l4` to `p.end`.
pub(super) fn ports<A>(f: &[u8], p: &mut Pkt<A>) -> Result<(), DropReason> {
    let l4_len = p.end - p.l4;
    if l4_len < if p.proto == TCP { 20 } else { 8 } {
        return Err(DropReason::Truncated);
    }
    p.sport = be16(f, p.l4);
    p.dport = be16(f, p.l4 + 2);
    if p.proto == TCP {
        p.flags = f[p.l4 + 13];
        p.seq = be32(f, p.l4 + 4);
        p.ack = be32(f, p.l4 + 8);
        p.win = be16(f, p.l4 + 14);
        let doff = (f[p.l4 + 12] >> 4) as usize * 4;
        let payload = if (20..=l4_len).contains(&doff) {
            l4_len - doff
        } else {
            0
        };
        let syn_fin = (p.flags & 0x02 != 0) as u32 + (p.flags & 0x01 != 0) as u32;
        p.seq_end = p.seq.wrapping_add(payload as u32 + syn_fin);
        if p.flags & 0x02 != 0 && doff > 20 && doff <= l4_len {
            p.wscale = window_scale(&f[p.l4 + 20..p.l4 + doff]);
        }
    }
    p.kind = Kind::Flow;
    Ok(())
}

/// The packet quoted in IPv4 ICMP error `outer`: `Ok(None)` when it is not a flow NAT
/// tracks (another protocol, an ICMP message other than echo, a fragment after the
/// first); a drop reason when the quote is too short to say or its header is broken.
pub fn quoted4(f: &[u8], outer: &Pkt<u32>) -> Result<Option<Pkt<u32>>, DropReason> {
    let l3 = outer.l4 + 8;
    let end = outer.end;
    if l3 + 20 > end {
        return Err(DropReason::Truncated);
    }
    let vihl = f[l3];
    let ihl = (vihl & 0x0f) as usize * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        return Err(DropReason::BadIpHeader);
    }
    if be16(f, l3 + 6) & 0x1fff != 0 {
        return Ok(None);
    }
    let mut q = Pkt {
        l3,
        ihl,
        l4: l3 + ihl,
        end,
        proto: f[l3 + 9],
        saddr: be32(f, l3 + 12),
        daddr: be32(f, l3 + 16),
        sport: 0,
        dport: 0,
        flags: 0,
        ttl: f[l3 + 8],
        id: be16(f, l3 + 4) as u32,
        frag_proto: f[l3 + 9],
        first_fragment: false,
        kind: Kind::Other,
        len: f.len(),
        seq: 0,
        ack: 0,
        win: 0,
        seq_end: 0,
        wscale: None,
    };
    match q.proto {
        TCP | UDP => {
            if q.l4 + 4 > end {
                return Err(DropReason::Truncated);
            }
            q.sport = be16(f, q.l4);
            q.dport = be16(f, q.l4 + 2);
            q.kind = Kind::Flow;
        }
        ICMP => {
            if q.l4 + 8 > end {
                return Err(DropReason::Truncated);
            }
            q.flags = f[q.l4];
            if q.flags == ECHO_REQUEST || q.flags == ECHO_REPLY {
                q.sport = be16(f, q.l4 + 4);
                q.dport = q.sport;
                q.kind = Kind::Flow;
            }
        }
        _ => {}
    }
    Ok((q.kind == Kind::Flow).then_some(q))
}

/// The window scale option among a SYN's TCP options (RFC 7323: at most 14): the first
/// one before the end-of-options; none when an option is cut off by the header's end
/// or has a length below 2.
pub fn window_scale(opts: &[u8]) -> Option<u8> {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = *opts.get(i + 1)? as usize;
                if kind == 3 && len == 3 {
                    return opts.get(i + 2).map(|s| (*s).min(14));
                }
                if len < 2 {
                    return None;
                }
                i += len;
            }
        }
    }
    None
}
