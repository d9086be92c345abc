//! The reset the eBPF datapath answers a container's TCP segment with when it leaves
//! by the uplink with no flow (`tcp_no_flow`), written from the rule (the kernel's
//! `REJECT --reject-with tcp-reset`, `nf_send_reset`), not from the programs: into the
//! container from the bridge, the addresses and ports swapped, TTL (hop limit) 64, no
//! options, window 0; a segment with ACK answered at its acknowledgment number (RST
//! alone), one without acknowledged up to its end (RST and ACK). A reset, a segment
//! with flags no TCP sends or a TCP header no TCP sends, one behind IPv4 options or IPv6
//! extension headers, or one from no known container gets none (it is only dropped).

use netlab_common::conntrack::tcp_flags_valid;

use super::{
    RST,
    ip::Ip,
    wire::{Pkt, TCP},
};

/// The TCP acknowledgment flag.
const ACK: u8 = 0x10;

/// The reset frame for segment `p` of frame `input` from the container with MAC
/// `ctr_mac`, sent from the bridge's `bridge_mac`; `None` when none is sent.
pub fn frame<A: Ip>(
    input: &[u8],
    p: &Pkt<A>,
    ctr_mac: [u8; 6],
    bridge_mac: [u8; 6],
) -> Option<Vec<u8>> {
    if p.proto != TCP
        || p.flags & RST != 0
        || !tcp_flags_valid(p.flags)
        || p.l3 != 14
        || p.ihl != A::HDR
    {
        return None;
    }
    // A header no TCP sends: a data offset under 5 words, or past the segment's end.
    let hlen = (input[p.l4 + 12] >> 4) as usize * 4;
    if hlen < 20 || p.l4 + hlen > p.end {
        return None;
    }
    let mut f = Vec::with_capacity(14 + A::HDR + 20);
    f.extend_from_slice(&ctr_mac);
    f.extend_from_slice(&bridge_mac);
    f.extend_from_slice(&A::ETHERTYPE.to_be_bytes());
    let (src, dst) = (p.daddr.bytes(), p.saddr.bytes());
    if A::V6 {
        f.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, TCP, 64]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
    } else {
        f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, TCP, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        let sum = !fold(words(&f[14..34]));
        f[24..26].copy_from_slice(&sum.to_be_bytes());
    }
    let (seq, ack, flags) = if p.flags & ACK != 0 {
        (p.ack, 0, RST)
    } else {
        (0, p.seq_end, RST | ACK)
    };
    let l4 = f.len();
    f.extend_from_slice(&p.dport.to_be_bytes());
    f.extend_from_slice(&p.sport.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[5 << 4, flags, 0, 0, 0, 0, 0, 0]);
    let mut pseudo = words(&src) + words(&dst) + TCP as u64 + 20;
    pseudo += words(&f[l4..]);
    let sum = !fold(pseudo);
    f[l4 + 16..l4 + 18].copy_from_slice(&sum.to_be_bytes());
    Some(f)
}

/// The sum of `b` as 16-bit big-endian words.
fn words(b: &[u8]) -> u64 {
    b.chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u64)
        .sum()
}

fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}
