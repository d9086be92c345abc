//! Protocol numbers and header sizes the datapath needs.

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_HLEN: usize = 14;
pub const IPV4_MIN_HLEN: usize = 20;

/// Whether an IPv4 source address (host byte order) is one the kernel never takes
/// from a wire (a "martian" source, `ip_route_input`): the zero network, loopback,
/// multicast, and the reserved 240/4 with the limited broadcast.
pub const fn martian_source(addr: u32) -> bool {
    matches!(addr >> 24, 0 | 127 | 224..=255)
}

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
/// Parameter problem: like the two errors above, it quotes the packet it is about.
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;

/// TCP flag bits (byte 13 of the TCP header).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// IPv4 `frag_off` field (host order): more-fragments flag and the offset mask.
pub const IP_MF: u16 = 0x2000;
pub const IP_OFFSET: u16 = 0x1fff;
