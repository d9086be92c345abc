//! Counters and drop reasons in the per-CPU `STATS` array.
//!
//! Numbers are part of the `--json` contract: never reuse or renumber one; retire it.

/// Event counters: index into `STATS`.
pub mod counter {
    /// Packets seen by each hook.
    pub const UPLINK_EGRESS_PACKETS: u32 = 0;
    pub const UPLINK_INGRESS_PACKETS: u32 = 1;
    pub const BRIDGE_INGRESS_PACKETS: u32 = 2;
    /// A new masqueraded flow got a NAT port.
    pub const SNAT_NEW_FLOWS: u32 = 3;
    /// Packets whose source was rewritten at the uplink (masquerade).
    pub const SNAT_PACKETS: u32 = 4;
    /// Replies whose destination was rewritten back at the uplink.
    pub const SNAT_REPLY_PACKETS: u32 = 5;
    /// ICMP errors about a tracked flow translated back to the container.
    pub const ICMP_ERRORS_TRANSLATED: u32 = 6;
    /// Expired conntrack entries removed by the datapath.
    pub const CT_EXPIRED: u32 = 7;
    /// Flows promoted from pending to confirmed (first reply seen).
    pub const CT_CONFIRMED: u32 = 8;
    /// Passed on purpose without translation.
    pub const PASS_NOT_IPV4: u32 = 9;
    pub const PASS_FRAGMENT: u32 = 10;
    pub const PASS_UNTRACKED: u32 = 11;
    /// A new flow to a published port (external or hairpin).
    pub const DNAT_NEW_FLOWS: u32 = 12;
    /// Packets whose destination was rewritten to a container (published ports).
    pub const DNAT_PACKETS: u32 = 13;
    /// Replies of published flows rewritten back at the bridge.
    pub const DNAT_REPLY_PACKETS: u32 = 14;
    /// Host-local connects/sends redirected to a container by the socket hooks.
    pub const HOST_LOCAL_REDIRECTS: u32 = 15;
    /// Packets forwarded by the fast path (fib lookup + redirect), skipping the stack.
    pub const FAST_PATH_REDIRECTS: u32 = 16;

    pub const COUNT: u32 = 17;

    /// Names for `netlab stats`, in index order.
    pub const NAMES: [&str; COUNT as usize] = [
        "uplink_egress_packets",
        "uplink_ingress_packets",
        "bridge_ingress_packets",
        "snat_new_flows",
        "snat_packets",
        "snat_reply_packets",
        "icmp_errors_translated",
        "ct_expired",
        "ct_confirmed",
        "pass_not_ipv4",
        "pass_fragment",
        "pass_untracked",
        "dnat_new_flows",
        "dnat_packets",
        "dnat_reply_packets",
        "host_local_redirects",
        "fast_path_redirects",
    ];
}

/// Why the datapath dropped a packet. The packet is counted at
/// `DROP_BASE + reason` in `STATS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Headers shorter than they claim to be.
    Truncated = 1,
    /// IPv4 header length below 20 bytes.
    BadIpHeader = 2,
    /// No free NAT port for this destination in the configured range.
    PortsExhausted = 3,
    /// A conntrack insert failed for another reason than a taken port.
    CtInsertFailed = 4,
    /// Writing the packet (store or checksum helper) failed.
    RewriteFailed = 5,
    /// A fragment leaving the lab: its L4 header is elsewhere, so it cannot be masqueraded.
    Fragment = 6,
    /// A protocol the datapath does not masquerade (not TCP, UDP or ICMP echo/errors).
    UnsupportedProtocol = 7,
    /// The datapath configuration is missing.
    NoConfig = 8,
    /// Traffic from the uplink straight to a container address: neither a published
    /// port nor a reply (Docker 28's "DROP DIRECT ACCESS").
    DirectAccess = 9,
}

pub const DROP_BASE: u32 = 32;
pub const DROP_COUNT: u32 = 10;
pub const STATS_LEN: u32 = DROP_BASE + DROP_COUNT;

/// Names for `netlab stats`, indexed by reason number (0 unused).
pub const DROP_NAMES: [&str; DROP_COUNT as usize] = [
    "",
    "truncated",
    "bad_ip_header",
    "ports_exhausted",
    "ct_insert_failed",
    "rewrite_failed",
    "fragment",
    "unsupported_protocol",
    "no_config",
    "direct_access",
];

impl DropReason {
    pub const fn index(self) -> u32 {
        DROP_BASE + self as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_fit_before_drops() {
        const { assert!(counter::COUNT <= DROP_BASE) };
        assert_eq!(DropReason::DirectAccess as u32 + 1, DROP_COUNT);
        assert_eq!(DropReason::DirectAccess.index(), STATS_LEN - 1);
        assert_eq!(DROP_NAMES.len() as u32, DROP_COUNT);
    }
}
