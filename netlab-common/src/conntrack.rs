//! Connection tracking entries and the TCP state machine.
//!
//! A flow is tracked as two entries, one per direction, each keyed by the tuple *as the
//! hook sees it before translation*, in the zone of that hook. The entry says what to
//! rewrite the packet to. For a masqueraded flow from 172.18.0.2:45000 to 203.0.113.1:80
//! leaving through 198.51.100.2:P:
//!
//! ```text
//! zone UPLINK_OUT  172.18.0.2:45000 -> 203.0.113.1:80   => rewrite src to 198.51.100.2:P
//! zone UPLINK_IN   203.0.113.1:80 -> 198.51.100.2:P     => rewrite dst to 172.18.0.2:45000
//! ```
//!
//! The UPLINK_IN key is what makes a NAT port unique per destination: it is inserted
//! first, with `BPF_NOEXIST`, and a port is taken only if that insert succeeds.

/// The hook a key belongs to; part of the key so that the same tuple seen by two hooks
/// never collides.
pub const ZONE_UPLINK_OUT: u8 = 1;
pub const ZONE_UPLINK_IN: u8 = 2;
pub const ZONE_BRIDGE_IN: u8 = 3;

/// Conntrack key: the 5-tuple as seen by the hook, plus the zone.
/// Addresses and ports in network byte order; for ICMP echo both ports hold the echo
/// identifier (the "port" of an ICMP flow), as Linux and Cilium do.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct CtKey {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub zone: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<CtKey>() == 16);

impl CtKey {
    pub const fn new(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8, zone: u8) -> Self {
        Self {
            saddr,
            daddr,
            sport,
            dport,
            proto,
            zone,
            _pad: [0; 2],
        }
    }
}

/// Conntrack entry: the translated tuple for one direction of a flow, and its bookkeeping.
///
/// The packet is rewritten to `(saddr, daddr, sport, dport)`; fields equal to the key are
/// left alone. The reply direction's key is this tuple reversed, in `pair_zone`
/// ([`CtEntry::pair_key`]), so either entry finds the other.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct CtEntry {
    /// Translated tuple, network byte order.
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    /// Zone of the paired (reply) entry.
    pub pair_zone: u8,
    /// TCP state ([`TCP_SYN_SENT`]...), 0 for UDP and ICMP.
    pub state: u8,
    /// [`FLAG_ORIGIN`] on the direction that opened the flow.
    pub flags: u8,
    pub _pad: u8,
    /// The published mapping this flow goes through (`PUBLISH_STATS` index), 0 if none.
    pub pub_id: u32,
    pub _pad2: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the flow was created.
    pub created_ns: u64,
    /// `bpf_ktime_get_ns()` of the last packet in this direction.
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<CtEntry>() == 56);

impl CtEntry {
    /// The key of the other direction of this flow.
    pub const fn pair_key(&self, proto: u8) -> CtKey {
        CtKey::new(
            self.daddr,
            self.saddr,
            self.dport,
            self.sport,
            proto,
            self.pair_zone,
        )
    }
}

/// The entry of the direction that opened the flow (for listing flows once).
pub const FLAG_ORIGIN: u8 = 1;

/// TCP states, per direction entry. Numbers are stable: they appear in `--json`.
pub const TCP_NONE: u8 = 0;
pub const TCP_SYN_SENT: u8 = 1;
pub const TCP_ESTABLISHED: u8 = 2;
pub const TCP_CLOSING: u8 = 3;
pub const TCP_CLOSED: u8 = 4;

/// Next TCP state after a packet with `flags` (byte 13 of the TCP header).
///
/// Deliberately coarse, like a NAT needs: RST closes, FIN starts closing (and a closing
/// flow never goes back to established), SYN without ACK (re)starts a flow, and anything
/// else with ACK on a new or starting flow establishes it.
pub const fn tcp_next_state(state: u8, flags: u8) -> u8 {
    use crate::proto::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
    if flags & TCP_RST != 0 {
        return TCP_CLOSED;
    }
    if flags & TCP_FIN != 0 {
        return if state == TCP_CLOSED {
            TCP_CLOSED
        } else {
            TCP_CLOSING
        };
    }
    match state {
        TCP_CLOSING | TCP_CLOSED if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 => TCP_SYN_SENT,
        TCP_CLOSING | TCP_CLOSED => state,
        _ if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 => TCP_SYN_SENT,
        _ if flags & TCP_ACK != 0 => TCP_ESTABLISHED,
        _ => {
            if state == TCP_NONE {
                TCP_SYN_SENT
            } else {
                state
            }
        }
    }
}

/// Seconds an entry lives after its last packet, by protocol and state.
pub const fn timeout_secs(cfg: &crate::config::Config, proto: u8, state: u8) -> u32 {
    match proto {
        crate::proto::IPPROTO_TCP => match state {
            TCP_ESTABLISHED => cfg.tcp_established_secs,
            _ => cfg.tcp_transitory_secs,
        },
        crate::proto::IPPROTO_UDP => cfg.udp_secs,
        _ => cfg.icmp_secs,
    }
}

/// Whether an entry last seen at `last_seen_ns` has expired at `now_ns`.
pub const fn expired(
    cfg: &crate::config::Config,
    proto: u8,
    state: u8,
    last_seen_ns: u64,
    now_ns: u64,
) -> bool {
    let timeout_ns = timeout_secs(cfg, proto, state) as u64 * 1_000_000_000;
    now_ns > last_seen_ns && now_ns - last_seen_ns > timeout_ns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

    #[test]
    fn handshake_establishes() {
        let s = tcp_next_state(TCP_NONE, TCP_SYN);
        assert_eq!(s, TCP_SYN_SENT);
        assert_eq!(tcp_next_state(s, TCP_SYN | TCP_ACK), TCP_ESTABLISHED);
        assert_eq!(tcp_next_state(s, TCP_ACK), TCP_ESTABLISHED);
        assert_eq!(tcp_next_state(TCP_ESTABLISHED, TCP_ACK), TCP_ESTABLISHED);
    }

    #[test]
    fn fin_and_rst_close() {
        assert_eq!(
            tcp_next_state(TCP_ESTABLISHED, TCP_FIN | TCP_ACK),
            TCP_CLOSING
        );
        assert_eq!(tcp_next_state(TCP_CLOSING, TCP_ACK), TCP_CLOSING);
        assert_eq!(tcp_next_state(TCP_ESTABLISHED, TCP_RST), TCP_CLOSED);
        assert_eq!(tcp_next_state(TCP_CLOSED, TCP_FIN), TCP_CLOSED);
        assert_eq!(tcp_next_state(TCP_CLOSED, TCP_ACK), TCP_CLOSED);
    }

    #[test]
    fn new_syn_reopens_a_closed_tuple() {
        assert_eq!(tcp_next_state(TCP_CLOSED, TCP_SYN), TCP_SYN_SENT);
        assert_eq!(tcp_next_state(TCP_CLOSING, TCP_SYN), TCP_SYN_SENT);
    }

    #[test]
    fn timeouts_follow_state() {
        let cfg = crate::config::Config::default();
        assert_eq!(
            timeout_secs(&cfg, crate::proto::IPPROTO_TCP, TCP_ESTABLISHED),
            cfg.tcp_established_secs
        );
        assert_eq!(
            timeout_secs(&cfg, crate::proto::IPPROTO_TCP, TCP_CLOSING),
            cfg.tcp_transitory_secs
        );
        assert_eq!(
            timeout_secs(&cfg, crate::proto::IPPROTO_UDP, 0),
            cfg.udp_secs
        );
        assert!(!expired(&cfg, crate::proto::IPPROTO_UDP, 0, 1_000, 2_000));
        let later = 1_000 + (cfg.udp_secs as u64 + 1) * 1_000_000_000;
        assert!(expired(&cfg, crate::proto::IPPROTO_UDP, 0, 1_000, later));
        assert!(!expired(
            &cfg,
            crate::proto::IPPROTO_TCP,
            TCP_ESTABLISHED,
            1_000,
            later
        ));
    }
}
