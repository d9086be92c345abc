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
pub const IPPROTO_ICMPV6: u8 = 58;

pub const ETH_P_IPV6: u16 = 0x86dd;
pub const IPV6_HLEN: usize = 40;
/// IPv6 extension headers the datapath walks past: hop-by-hop, routing, fragment,
/// destination options.
pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_DSTOPTS: u8 = 60;

/// ICMPv6 errors (they quote the packet they are about) and echo.
pub const ICMPV6_DEST_UNREACH: u8 = 1;
pub const ICMPV6_PKT_TOOBIG: u8 = 2;
pub const ICMPV6_TIME_EXCEED: u8 = 3;
pub const ICMPV6_PARAMPROB: u8 = 4;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;

/// Whether `proto` is ICMP of either family: a flow of echo messages, whose "ports"
/// are the identifier.
pub const fn is_icmp(proto: u8) -> bool {
    proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6
}

/// The echo request type of ICMP `proto` (ICMP or ICMPv6).
pub const fn echo_request(proto: u8) -> u8 {
    if proto == IPPROTO_ICMPV6 {
        ICMPV6_ECHO_REQUEST
    } else {
        ICMP_ECHO_REQUEST
    }
}

/// The echo reply type of ICMP `proto` (ICMP or ICMPv6).
pub const fn echo_reply(proto: u8) -> u8 {
    if proto == IPPROTO_ICMPV6 {
        ICMPV6_ECHO_REPLY
    } else {
        ICMP_ECHO_REPLY
    }
}

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
