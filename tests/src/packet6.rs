//! Crafted IPv6 frames for BPF_PROG_TEST_RUN, with checksums computed from scratch
//! (the oracle), never incrementally as the datapath does.

use std::net::Ipv6Addr;

use crate::packet::checksum;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMPV6: u8 = 58;
pub const HOPOPTS: u8 = 0;
pub const DSTOPTS: u8 = 60;
pub const FRAGMENT: u8 = 44;

/// Offsets in a frame: the IPv6 header after Ethernet, its addresses.
pub const IP6: usize = 14;
pub const SRC: usize = IP6 + 8;
pub const DST: usize = IP6 + 24;

/// The checksum of an L4 message over the IPv6 pseudo-header.
pub fn l4_checksum(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, l4: &[u8]) -> u16 {
    let mut p = Vec::with_capacity(40 + l4.len());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&(l4.len() as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, proto]);
    p.extend_from_slice(l4);
    checksum(&p)
}

/// An IPv6 packet under construction: addresses, the L4 protocol, and extension
/// headers (each whole: next-header byte, length, body) put before the L4 header.
#[derive(Clone)]
pub struct Ipv6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub proto: u8,
    pub hop_limit: u8,
    /// Each `(type, bytes after the two-byte head)`; the chain is linked when built.
    pub ext: Vec<(u8, Vec<u8>)>,
}

impl Ipv6 {
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr, proto: u8) -> Self {
        Self {
            src,
            dst,
            proto,
            hop_limit: 64,
            ext: Vec::new(),
        }
    }

    /// The IPv6 header and its extension headers, then `l4`.
    pub fn packet(&self, l4: &[u8]) -> Vec<u8> {
        let mut exts = Vec::new();
        for (i, (_, body)) in self.ext.iter().enumerate() {
            let next = self.ext.get(i + 1).map_or(self.proto, |e| e.0);
            let len = 2 + body.len();
            assert_eq!(len % 8, 0, "an extension header is a multiple of 8 bytes");
            exts.push(next);
            exts.push((len / 8 - 1) as u8);
            exts.extend_from_slice(body);
        }
        let first = self.ext.first().map_or(self.proto, |e| e.0);
        let payload = exts.len() + l4.len();
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&(payload as u16).to_be_bytes());
        h.push(first);
        h.push(self.hop_limit);
        h.extend_from_slice(&self.src.octets());
        h.extend_from_slice(&self.dst.octets());
        h.extend_from_slice(&exts);
        h.extend_from_slice(l4);
        h
    }

    /// An Ethernet frame carrying this packet, to the loopback device's MAC (all
    /// zeroes: `PACKET_HOST` under BPF_PROG_TEST_RUN).
    pub fn frame(&self, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0, 0x02, 0x86, 0xdd];
        f.extend_from_slice(&self.packet(l4));
        f
    }

    pub fn udp_l4(&self, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        let c = l4_checksum(self.src, self.dst, UDP, &u);
        u[6..8].copy_from_slice(&c.to_be_bytes());
        u
    }

    pub fn udp(&self, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        self.frame(&self.udp_l4(sport, dport, payload))
    }

    pub fn tcp_l4(&self, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        let (seq, ack) = crate::packet::tcp_numbers(flags);
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&ack.to_be_bytes());
        t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        t.extend_from_slice(payload);
        let c = l4_checksum(self.src, self.dst, TCP, &t);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        t
    }

    pub fn tcp(&self, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
        self.frame(&self.tcp_l4(sport, dport, flags, payload))
    }

    /// An ICMPv6 message of `kind`/`code` with the 4 bytes after the checksum `rest`
    /// and then `body`.
    pub fn icmp_l4(&self, kind: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind, code, 0, 0];
        m.extend_from_slice(&rest);
        m.extend_from_slice(body);
        let c = l4_checksum(self.src, self.dst, ICMPV6, &m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }

    /// An echo request (128) or reply (129) with identifier `id`.
    pub fn echo(&self, kind: u8, id: u16) -> Vec<u8> {
        let mut rest = [0u8; 4];
        rest[..2].copy_from_slice(&id.to_be_bytes());
        rest[3] = 1;
        self.frame(&self.icmp_l4(kind, 0, rest, b"ping"))
    }
}

/// A fragment header as an entry of [`Ipv6::ext`]: the fragment's `offset` in the
/// datagram's fragmentable part (bytes, a multiple of 8), whether more follow, and the
/// datagram's identification.
pub fn fragment_header(offset: usize, more: bool, id: u32) -> (u8, Vec<u8>) {
    assert_eq!(offset % 8, 0, "fragments start at multiples of 8 bytes");
    // The 13-bit offset counts 8-byte units from bit 3: the byte offset itself.
    let mut body = (offset as u16 | u16::from(more)).to_be_bytes().to_vec();
    body.extend_from_slice(&id.to_be_bytes());
    (FRAGMENT, body)
}

impl Ipv6 {
    /// The datagram whose fragmentable part (what follows this packet's extension
    /// headers, starting with a header of `self.proto`) is `part`, as a sender's stack
    /// cuts it in two: frames of the bytes before `cut` (a multiple of 8) and after,
    /// each behind a fragment header with identification `id`.
    pub fn fragments(&self, part: &[u8], cut: usize, id: u32) -> [Vec<u8>; 2] {
        let with = |offset, more| {
            let mut ip = self.clone();
            ip.ext.push(fragment_header(offset, more, id));
            ip
        };
        [
            with(0, true).frame(&part[..cut]),
            with(cut, false).frame(&part[cut..]),
        ]
    }
}

/// Whether the L4 checksum of the IPv6 frame `f` (its L4 header at `l4`, protocol
/// `proto`) verifies.
pub fn l4_ok(f: &[u8], l4: usize, proto: u8) -> bool {
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&f[SRC..SRC + 16]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&f[DST..DST + 16]).unwrap());
    l4_checksum(src, dst, proto, &f[l4..]) == 0
}
