//! Crafted frames for BPF_PROG_TEST_RUN, and an independent checksum oracle: every
//! checksum is computed from scratch here, never incrementally as the datapath does.

use std::net::Ipv4Addr;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;

pub const ETH: usize = 14;

/// RFC 1071 checksum over `data` (odd length padded with a zero byte).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += word as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + l4.len());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    p.extend_from_slice(l4);
    p
}

/// An IPv4 packet under construction.
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub options: Vec<u8>,
    pub ttl: u8,
    pub frag: u16,
}

impl Ipv4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Self {
        Self {
            src,
            dst,
            proto,
            options: Vec::new(),
            ttl: 64,
            frag: 0x4000,
        }
    }

    /// The IPv4 header (checksum filled in) followed by `l4`.
    pub fn packet(&self, l4: &[u8]) -> Vec<u8> {
        assert_eq!(self.options.len() % 4, 0);
        let ihl = 5 + self.options.len() / 4;
        let total = ihl * 4 + l4.len();
        let mut h = vec![
            0x40 | ihl as u8,
            0,
            (total >> 8) as u8,
            total as u8,
            0x12,
            0x34,
            (self.frag >> 8) as u8,
            self.frag as u8,
            self.ttl,
            self.proto,
            0,
            0,
        ];
        h.extend_from_slice(&self.src.octets());
        h.extend_from_slice(&self.dst.octets());
        h.extend_from_slice(&self.options);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(l4);
        h
    }

    /// An Ethernet frame carrying this packet, addressed to the MAC of the loopback
    /// device BPF_PROG_TEST_RUN runs a program on by default (all zeroes), so that the
    /// frame is the host's (`PACKET_HOST`) there.
    pub fn frame(&self, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00];
        f.extend_from_slice(&self.packet(l4));
        f
    }

    /// A TCP segment at the default numbers ([`tcp_numbers`]).
    pub fn tcp(&self, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
        self.tcp_at(sport, dport, flags, tcp_numbers(flags), payload)
    }

    /// A TCP segment with sequence and acknowledgment numbers `(seq, ack)`.
    pub fn tcp_at(
        &self,
        sport: u16,
        dport: u16,
        flags: u8,
        (seq, ack): (u32, u32),
        payload: &[u8],
    ) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&ack.to_be_bytes());
        t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        t.extend_from_slice(payload);
        let c = checksum(&pseudo(self.src, self.dst, TCP, &t));
        t[16..18].copy_from_slice(&c.to_be_bytes());
        self.frame(&t)
    }

    pub fn udp(&self, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let len = 8 + payload.len();
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&(len as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        let c = checksum(&pseudo(self.src, self.dst, UDP, &u));
        u[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
        self.frame(&u)
    }

    /// ICMP echo request (type 8) or reply (type 0).
    pub fn echo(&self, kind: u8, id: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = vec![kind, 0, 0, 0];
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m.extend_from_slice(payload);
        let c = checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        self.frame(&m)
    }

    /// An ICMP error (`kind`/`code`) quoting `quoted` (an IPv4 packet without Ethernet).
    pub fn icmp_error(&self, kind: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
        let mut m = vec![kind, code, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(quoted);
        let c = checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        self.frame(&m)
    }
}

/// A parsed view of a frame the datapath produced.
pub struct View<'a> {
    pub frame: &'a [u8],
}

impl<'a> View<'a> {
    pub fn new(frame: &'a [u8]) -> Self {
        Self { frame }
    }

    fn ip(&self) -> &'a [u8] {
        &self.frame[ETH..]
    }

    pub fn ihl(&self) -> usize {
        ((self.ip()[0] & 0x0f) as usize) * 4
    }

    pub fn l4(&self) -> &'a [u8] {
        let total = u16::from_be_bytes([self.ip()[2], self.ip()[3]]) as usize;
        &self.ip()[self.ihl()..total]
    }

    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(<[u8; 4]>::try_from(&self.ip()[12..16]).unwrap())
    }

    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(<[u8; 4]>::try_from(&self.ip()[16..20]).unwrap())
    }

    pub fn sport(&self) -> u16 {
        u16::from_be_bytes([self.l4()[0], self.l4()[1]])
    }

    pub fn dport(&self) -> u16 {
        u16::from_be_bytes([self.l4()[2], self.l4()[3]])
    }

    /// The ICMP echo identifier.
    pub fn echo_id(&self) -> u16 {
        u16::from_be_bytes([self.l4()[4], self.l4()[5]])
    }

    pub fn ip_csum_ok(&self) -> bool {
        checksum(&self.ip()[..self.ihl()]) == 0
    }

    /// The L4 checksum verifies: TCP/UDP over the pseudo-header, ICMP over the message.
    pub fn l4_csum_ok(&self) -> bool {
        let proto = self.ip()[9];
        match proto {
            ICMP => checksum(self.l4()) == 0,
            _ => checksum(&pseudo(self.src(), self.dst(), proto, self.l4())) == 0,
        }
    }
}

/// `frame` with its Ethernet destination and source replaced.
pub fn with_macs(mut frame: Vec<u8>, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    frame[..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
    frame
}

/// The `struct __sk_buff` context to hand BPF_PROG_TEST_RUN (its head, up to and with
/// `ifindex`: the kernel zero-fills the rest) so that the program sees the packet on
/// interface `ifindex` of the calling thread's namespace; without one it sees the
/// loopback device (ifindex 1).
pub fn skb_on(ifindex: u32) -> [u8; 44] {
    let mut ctx = [0u8; 44];
    // `ifindex` is the eleventh 32-bit field.
    ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    ctx
}

/// The container source (`SOURCES` value) a frame claims: its IPv4 source address and
/// its Ethernet source, as far as the frame has them.
pub fn claimed_source(frame: &[u8]) -> netlab_common::endpoint::Source {
    let mut mac = [0u8; 6];
    if frame.len() >= 12 {
        mac.copy_from_slice(&frame[6..12]);
    }
    let addr = if frame.len() >= 30 {
        u32::from_ne_bytes([frame[26], frame[27], frame[28], frame[29]])
    } else {
        0
    };
    netlab_common::endpoint::Source {
        addr,
        mac,
        _pad: [0; 2],
        addr6: [0; 4],
    }
}

/// The sequence and acknowledgment numbers of a segment made without its own: every
/// segment at 0x01020304 acknowledging nothing (0), but that a SYN alone comes just
/// before (its sequence number counts one) and a SYN-ACK acknowledges exactly it, as
/// the opener's stack requires of the answer to its SYN.
pub fn tcp_numbers(flags: u8) -> (u32, u32) {
    const SYN_ACK: u8 = 0x12;
    match flags & SYN_ACK {
        0x02 => (0x0102_0303, 0),
        SYN_ACK => (0x0102_0304, 0x0102_0304),
        _ => (0x0102_0304, 0),
    }
}
