//! Counters and drop reasons in the per-CPU `STATS` array: one [`Counters`] per CPU
//! for the programs (entry [`STATS_PROGRAMS`]), which a program fetches once per packet
//! and counts into, and one for userspace's own counts ([`STATS_USER`]), which it
//! rewrites whole without losing a program's update.
//!
//! `netlab stats` and its `--json` show them by name; a number is never reused for
//! another meaning (retire it instead).

/// Event counters: index into [`Counters`].
pub mod counter {
    /// Packets seen by each hook.
    pub const UPLINK_EGRESS_PACKETS: u32 = 0;
    pub const UPLINK_INGRESS_PACKETS: u32 = 1;
    pub const BRIDGE_INGRESS_PACKETS: u32 = 2;
    /// A new masqueraded flow got a NAT port.
    pub const SNAT_NEW_FLOWS: u32 = 3;
    /// Packets of masqueraded flows translated on the way out.
    pub const SNAT_PACKETS: u32 = 4;
    /// Replies of masqueraded flows translated back.
    pub const SNAT_REPLY_PACKETS: u32 = 5;
    /// ICMP errors about a tracked flow translated back to the container.
    pub const ICMP_ERRORS_TRANSLATED: u32 = 6;
    /// Expired flows removed by the datapath when it met them.
    pub const CT_EXPIRED: u32 = 7;
    /// Flows assured (established, or a two-way stream): moved into `CT`.
    pub const CT_CONFIRMED: u32 = 8;
    /// Passed on purpose without translation.
    pub const PASS_NOT_IPV4: u32 = 9;
    pub const PASS_FRAGMENT: u32 = 10;
    pub const PASS_UNTRACKED: u32 = 11;
    /// A new flow to a published port (external or hairpin).
    pub const DNAT_NEW_FLOWS: u32 = 12;
    /// Packets whose destination was rewritten to a container (published ports).
    pub const DNAT_PACKETS: u32 = 13;
    /// Replies of published flows translated back.
    pub const DNAT_REPLY_PACKETS: u32 = 14;
    /// Host-local connects/sends redirected to a container by the socket hooks.
    pub const HOST_LOCAL_REDIRECTS: u32 = 15;
    /// Packets the fast path forwarded itself, every way below together.
    pub const FAST_PATH_REDIRECTS: u32 = 16;
    /// Packets seen at the containers' veths (the endpoint programs).
    pub const ENDPOINT_PACKETS: u32 = 17;
    /// Fast path: from a container's veth straight to the uplink.
    pub const FAST_TO_UPLINK: u32 = 18;
    /// Fast path: from the uplink straight into a container (`bpf_redirect_peer`).
    pub const FAST_TO_CONTAINER: u32 = 19;
    /// Fast path: from one container straight into another (hairpin included).
    pub const FAST_BETWEEN_CONTAINERS: u32 = 20;
    /// Packets the fast path left to the stack, by why: too big for the next hop...
    pub const SLOW_MTU: u32 = 21;
    /// ...TTL about to run out (the stack answers with time exceeded)...
    pub const SLOW_TTL: u32 = 22;
    /// ...a fragment...
    pub const SLOW_FRAGMENT: u32 = 23;
    /// ...no route by the uplink, or not a flow the fast path forwards.
    pub const SLOW_OTHER: u32 = 24;
    /// Closed flows (TIME_WAIT, reset) moved from `CT` to the LRU table.
    pub const CT_CLOSED: u32 = 25;
    /// Assured flows left in the LRU table because `CT` was full.
    pub const CT_FULL: u32 = 26;
    /// Expired flows removed by the in-kernel garbage collector.
    pub const CT_GC_EXPIRED: u32 = 27;
    /// Garbage collector passes.
    pub const CT_GC_RUNS: u32 = 28;
    /// Fragments after the first, translated like their first fragment.
    pub const FRAGMENTS_TRANSLATED: u32 = 29;
    /// Flows of a withdrawn published mapping met and removed.
    pub const CT_WITHDRAWN: u32 = 30;
    /// Fast path to the uplink: next hop from the per-CPU cache, no route lookup.
    pub const NEXT_HOP_CACHED: u32 = 31;
    /// Established flows the garbage collector looked at (one key of its queue each).
    pub const CT_GC_SCANNED: u32 = 32;
    /// Established flows the collector could not queue (its queue was full): they
    /// expire only when a packet meets them.
    pub const CT_GC_UNQUEUED: u32 = 33;
    /// Packets the uplink programs saw on an interface of the lab host other than the
    /// uplink (they run on every interface but the bridge).
    pub const OTHER_UPLINK_PACKETS: u32 = 34;
    /// Entries the programs put into `CT` (two per established flow) and took out of
    /// it: with the two below, what `CT` holds (`status`' `IN USE`) without a walk.
    pub const CT_ENTRIES_ADDED: u32 = 35;
    pub const CT_ENTRIES_REMOVED: u32 = 36;
    /// Entries of `CT` that `netlab conntrack --flush` removed, and that the
    /// benchmark's synthetic flows added. Counted by userspace only, in entry
    /// [`super::STATS_USER`] (CPU 0's, under the lab's lock).
    pub const CT_ENTRIES_FLUSHED: u32 = 37;
    pub const CT_ENTRIES_FILLED: u32 = 38;
    /// New flows two CPUs made at once (the first packets of one flow, each on its own
    /// CPU): the one that came second took the other's translation instead of
    /// dropping its packet (the kernel's conntrack `clash_resolve`).
    pub const CT_CLASH_RESOLVED: u32 = 39;
    /// Packets whose IPv4 header checksum does not hold, left untouched to the stack
    /// (whose `ip_rcv` drops them) rather than translated or let open a flow: at the
    /// uplink's ingress, a container's veth and the bridge's ingress.
    pub const PASS_BAD_CHECKSUM: u32 = 40;
    /// A new masqueraded TCP connection took the NAT port of a closed one (TIME_WAIT or
    /// reset) to the same server, as nf_nat does when it finds no port free
    /// (`nf_nat_used_tuple_harder`).
    pub const CT_TAKEN_OVER: u32 = 41;
    /// TCP flows whose only answer was a reset: removed at once, as nf_conntrack does.
    pub const CT_RESET_UNANSWERED: u32 = 42;
    /// Resets sent into a container for its TCP segments that left with no flow
    /// (`tcp_no_flow`), as iptables' loose pick-up meets the server's.
    pub const TCP_RESETS_SENT: u32 = 43;

    pub const COUNT: u32 = 44;

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
        "endpoint_packets",
        "fast_to_uplink",
        "fast_to_container",
        "fast_between_containers",
        "slow_mtu",
        "slow_ttl",
        "slow_fragment",
        "slow_other",
        "ct_closed",
        "ct_full",
        "ct_gc_expired",
        "ct_gc_runs",
        "fragments_translated",
        "ct_withdrawn",
        "next_hop_cached",
        "ct_gc_scanned",
        "ct_gc_unqueued",
        "other_uplink_packets",
        "ct_entries_added",
        "ct_entries_removed",
        "ct_entries_flushed",
        "ct_entries_filled",
        "ct_clash_resolved",
        "pass_bad_checksum",
        "ct_taken_over",
        "ct_reset_unanswered",
        "tcp_resets_sent",
    ];
}

/// Why the datapath dropped a packet. The packet is counted at
/// `DROP_BASE + reason` in `STATS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Headers shorter than they claim to be.
    Truncated = 1,
    /// IPv4 header length below 20 bytes, or a total length that does not fit.
    BadIpHeader = 2,
    /// No free NAT port for this destination in the configured range.
    PortsExhausted = 3,
    /// A new flow's conntrack insert failed: another CPU made the same flow at the same
    /// moment and had not finished it (its translation reserved, its entry not in yet),
    /// or another flow took the translation between this one's lookup and insert.
    CtInsertFailed = 4,
    /// Writing the packet (store or checksum helper) failed.
    RewriteFailed = 5,
    /// A fragment leaving the lab whose first fragment was not seen: without it, its
    /// flow is unknown and it cannot be masqueraded.
    Fragment = 6,
    /// A protocol the datapath does not masquerade (not TCP, UDP or ICMP echo/errors).
    UnsupportedProtocol = 7,
    /// Retired (the datapath's configuration missing): the configuration is a global of
    /// the programs now, never missing.
    NoConfig = 8,
    /// Traffic from the uplink straight to a container address: neither a published
    /// port nor a reply (Docker 28's "DROP DIRECT ACCESS").
    DirectAccess = 9,
    /// A packet of a flow of which only one half was left (the other was evicted from
    /// the LRU table under pressure): the flow is gone, and its packet goes nowhere.
    HalfFlow = 10,
    /// A TCP segment that cannot open a flow (not a SYN) and belongs to none, leaving
    /// the lab.
    TcpNoFlow = 11,
    /// A container's packet with a source address or MAC that is not the container's
    /// own (or ARP claiming another's address): spoofing, dropped at its veth.
    SpoofedSource = 12,
    /// A TCP reset outside the window its receiver offered (nf_conntrack's rule), or,
    /// while the flow is being opened, one without the handshake's exact numbers: it
    /// would end the flow for someone who cannot see it, and is ignored.
    InvalidRst = 13,
    /// A container's packet leaving by an interface without an IPv4 address, behind
    /// which it cannot be masqueraded (iptables' MASQUERADE drops it too).
    NoAddress = 14,
    /// A container's new flow the host would route out by an interface netlab does not
    /// watch yet (one added since the last `netlab up`, `run` or `publish`): it could
    /// not be masqueraded there.
    Unwatched = 15,
    /// A TCP segment of a tracked flow whose flags no TCP sends (none, FIN without ACK,
    /// SYN with FIN or RST, ...): nf_conntrack marks it invalid and it goes nowhere.
    /// So does a bare SYN from the responder of an answered flow, and a SYN-ACK that
    /// does not acknowledge the SYN it answers.
    InvalidTcpFlags = 16,
    /// A frame still holding a VLAN tag of VLAN id 0 (a priority tag) after the one the
    /// kernel took into the skb: the kernel strips it after the programs and takes the
    /// packet inside as the interface's own, untagged, past every check of theirs
    /// (iptables, after it, sees the packet). Dropped at a container's veth and the
    /// uplink's ingress; at a container's veth, so is a frame on a VLAN (a lab has
    /// none).
    VlanTagged = 17,
}

/// The value of the `GC` map as userspace reads it: the collector's timer (opaque,
/// read as zeros) and its record of how long its runs take.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct GcRecord {
    pub _timer: [u64; 2],
    /// Nanoseconds the longest run took, and the last one.
    pub longest_ns: u64,
    pub last_ns: u64,
}
const _: () = assert!(core::mem::size_of::<GcRecord>() == 32);

pub const DROP_BASE: u32 = 64;
pub const DROP_COUNT: u32 = 18;
pub const STATS_LEN: u32 = DROP_BASE + DROP_COUNT;

/// Every counter and drop reason, by index: the value of an entry of `STATS`.
pub type Counters = [u64; STATS_LEN as usize];

/// The entry of `STATS` the programs count into.
pub const STATS_PROGRAMS: u32 = 0;
/// The entry of `STATS` userspace counts into (`ct_entries_flushed`, `_filled`).
pub const STATS_USER: u32 = 1;
/// Entries of `STATS`.
pub const STATS_ENTRIES: u32 = 2;

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
    "half_flow",
    "tcp_no_flow",
    "spoofed_source",
    "invalid_rst",
    "no_address",
    "unwatched",
    "invalid_tcp_flags",
    "vlan_tagged",
];

impl DropReason {
    pub const fn index(self) -> u32 {
        DROP_BASE + self as u32
    }
}

/// Reasons no program counts any more: `netlab stats` still lists them (its JSON only
/// ever gains fields), at 0; `netlab metrics` leaves them out.
pub const RETIRED_DROPS: [&str; 1] = [DROP_NAMES[DropReason::NoConfig as usize]];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_fit_before_drops() {
        const { assert!(counter::COUNT <= DROP_BASE) };
        assert_eq!(counter::NAMES.len() as u32, counter::COUNT);
        assert_eq!(DropReason::VlanTagged as u32 + 1, DROP_COUNT);
        assert_eq!(DropReason::VlanTagged.index(), STATS_LEN - 1);
        assert_eq!(DROP_NAMES.len() as u32, DROP_COUNT);
    }
}
