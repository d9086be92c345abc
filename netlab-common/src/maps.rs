//! Map names and sizes. Userspace opens maps by these names, never by string literals.

/// Established flows: hash (never evicted), [`crate::conntrack::CtKey`] →
/// [`crate::conntrack::CtEntry`], two entries per flow. Sized at load time from
/// `netlab up --conntrack-max`.
pub const CT: &str = "CT";
/// Flows not (yet, or any more) established: LRU hash, same types, sized at load time
/// to a fraction of [`CT`] ([`pending_entries`]).
pub const CT_PENDING: &str = "CT_PENDING";
/// The default `--conntrack-max`, in flows.
pub const CONNTRACK_MAX_DEFAULT: u32 = 262_144;
/// Bounds of `--conntrack-max`.
pub const CONNTRACK_MAX_MIN: u32 = 1_024;
pub const CONNTRACK_MAX_MAX: u32 = 4_194_304;

/// Entries of [`CT`] for `flows` established flows (one per direction).
pub const fn established_entries(flows: u32) -> u32 {
    flows * 2
}

/// Entries of [`CT_PENDING`] for a lab of `flows`: an eighth as many flows, at least
/// 4,096 — it holds handshakes in flight, unanswered datagrams and closing flows.
pub const fn pending_entries(flows: u32) -> u32 {
    let f = flows / 8;
    (if f < 4_096 { 4_096 } else { f }) * 2
}

/// IPv6 flows (a dual-stack lab): the same two tables with 40-byte keys
/// ([`crate::conntrack::CtKey`]`<Addr6>`), sized alike (one entry otherwise), and of
/// the same kinds: established flows in a hash that never evicts, walked by the
/// collector ([`GC_QUEUE6`]); the others in an LRU hash.
pub const CT6: &str = "CT6";
pub const CT6_PENDING: &str = "CT6_PENDING";

/// Fragments after the first: LRU hash, [`crate::frag::FragKey`] →
/// [`crate::frag::FragNat`].
pub const FRAGS: &str = "FRAGS";
pub const FRAGS_MAX: u32 = 8_192;
/// The same for IPv6 (a dual-stack lab; one entry otherwise), [`crate::frag::FragKey6`]
/// → [`crate::frag::FragNat6`], as large as [`FRAGS`].
pub const FRAGS6: &str = "FRAGS6";

/// Published single ports: hash (never evicted), [`crate::publish::PubKey`] →
/// [`crate::publish::PubTarget`].
pub const PUBLISH: &str = "PUBLISH";
pub const PUBLISH_MAX: u32 = 65_536;

/// The same for IPv6: published single ports ([`crate::publish::PubKey`]`<Addr6>`) and
/// ranges, for the mappings that answer on IPv6.
pub const PUBLISH6: &str = "PUBLISH6";
pub const PUBLISH_RANGES6: &str = "PUBLISH_RANGES6";
/// The reverse map of host-local publishing for IPv6 sockets.
pub const PUBLISH_BACK6: &str = "PUBLISH_BACK6";
/// The lab host's IPv6 addresses (besides the uplink's and the bridge's): hash,
/// address → ifindex.
pub const HOST_ADDRS6: &str = "HOST_ADDRS6";
/// The IPv6 programs the IPv4 ones hand IPv6 packets to (tail calls): program array,
/// [`PROG6_UPLINK_EGRESS`]...
pub const PROGS6: &str = "PROGS6";
pub const PROG6_UPLINK_EGRESS: u32 = 0;
pub const PROG6_UPLINK_INGRESS: u32 = 1;
pub const PROG6_BRIDGE_INGRESS: u32 = 2;
pub const PROG6_BRIDGE_EGRESS: u32 = 3;
pub const PROG6_ENDPOINT_INGRESS: u32 = 4;
pub const PROGS6_LEN: u32 = 5;

/// Published ranges, one element each: array of [`crate::publish::PubRange`].
pub const PUBLISH_RANGES: &str = "PUBLISH_RANGES";
pub const PUBLISH_RANGES_MAX: u32 = 32;

/// Per-mapping counters, per CPU, indexed by mapping id: [`crate::publish::PubStats`].
pub const PUBLISH_STATS: &str = "PUBLISH_STATS";
pub const PUBLISH_STATS_MAX: u32 = 65_600;

/// Per-mapping generation, indexed by mapping id (`u32`): bumped when a mapping is
/// withdrawn, which kills every flow that went through it at once.
pub const MAPPINGS: &str = "MAPPINGS";

/// Host-local publishing's reverse map (`getpeername4`, `recvmsg4`): a socket and the
/// container it was sent to, [`crate::publish::PubBackKey`] → the published address
/// it asked for, [`crate::publish::PubBack`].
pub const PUBLISH_BACK: &str = "PUBLISH_BACK";

/// The containers on the bridge: hash, address (`u32`, network order) →
/// [`crate::endpoint::Endpoint`]. Kept by `run`/`rm`.
pub const ENDPOINTS: &str = "ENDPOINTS";
pub const ENDPOINTS_MAX: u32 = 65_536;
/// The same by IPv6 address (`Addr6`), in a dual-stack lab. Kept by `run`/`rm`.
pub const ENDPOINTS6: &str = "ENDPOINTS6";

/// What containers may send from: hash, ifindex of a container veth's host end →
/// [`crate::endpoint::Source`]. Kept by `run`/`rm`.
pub const SOURCES: &str = "SOURCES";

/// The lab host's interfaces other than the bridge, where the uplink programs run:
/// hash, ifindex → [`crate::endpoint::Uplink`]; and their addresses: hash, address →
/// ifindex. Kept by `up`, `run` and `publish`.
pub const UPLINKS: &str = "UPLINKS";
pub const HOST_ADDRS: &str = "HOST_ADDRS";
pub const UPLINKS_MAX: u32 = 256;

/// The uplink's addresses as it has them now: array of one
/// [`crate::endpoint::Uplink`], set from the configuration when the object is loaded
/// and brought up to date by every command that syncs the watched interfaces (`run`,
/// `publish`, CNI ADD). The masquerade source of what leaves by the uplink, and the
/// first of the host's addresses the programs check, without a hash lookup.
pub const UPLINK_NOW: &str = "UPLINK_NOW";

/// The smallest MTU a route of the lab host's carries (`ip route ... mtu N`), IPv4's
/// at 0 and IPv6's at 1, 0 for none: an array of two `u32`, written by every command
/// that syncs the watched interfaces (`run`, `publish`, CNI ADD). `bpf_fib_lookup`
/// answers a locked route MTU and a learnt path MTU, not a route's own unlocked one,
/// which forwarding holds packets to all the same: the fast path leaves anything
/// larger than this to the stack.
pub const ROUTE_MTU: &str = "ROUTE_MTU";

/// The garbage collector's timer and its record: array of one `GcState`.
pub const GC: &str = "GC";
/// The established flows the collector looks at, one key each, in turn: a queue of
/// [`crate::conntrack::CtKey`], sized at load time ([`gc_queue_entries`]).
pub const GC_QUEUE: &str = "GC_QUEUE";
/// The same for IPv6's established flows ([`CT6`]), of
/// [`crate::conntrack::CtKey`]`<Addr6>` (one entry in a lab without IPv6).
pub const GC_QUEUE6: &str = "GC_QUEUE6";

/// Entries of [`GC_QUEUE`] for `flows` established flows: one key per flow, and as
/// many again for keys of flows that have left the table since they were queued.
pub const fn gc_queue_entries(flows: u32) -> u32 {
    flows * 2
}

/// The lab's configuration as userspace reads it back: array of one
/// [`crate::config::Config`]. No program reads it.
pub const CONFIG: &str = "CONFIG";

/// The lab's configuration as the programs read it: a read-only global (`.rodata`)
/// set at load time, so that it costs no lookup and the verifier knows its values.
pub const CONFIG_GLOBAL: &str = "LAB_CONFIG";

/// Per-CPU array of [`crate::stats::Counters`], [`crate::stats::STATS_ENTRIES`] of
/// them (one for the programs, one for userspace).
pub const STATS: &str = "STATS";
pub const STATS_LEN: u32 = crate::stats::STATS_LEN;

/// Program names (the entry function names).
pub const PROG_UPLINK_EGRESS: &str = "uplink_egress";
pub const PROG_UPLINK_INGRESS: &str = "uplink_ingress";
pub const PROG_BRIDGE_INGRESS: &str = "bridge_ingress";
pub const PROG_BRIDGE_EGRESS: &str = "bridge_egress";
pub const PROG_ENDPOINT_INGRESS: &str = "endpoint_ingress";
pub const PROG_GC_START: &str = "gc_start";
pub const PROG_CONNECT4: &str = "host_connect4";
pub const PROG_SENDMSG4: &str = "host_sendmsg4";
pub const PROG_RECVMSG4: &str = "host_recvmsg4";
pub const PROG_GETPEERNAME4: &str = "host_getpeername4";
pub const PROG_SENDMSG6: &str = "host_sendmsg6";
/// The IPv6 programs, in [`PROGS6`] at the index beside each.
pub const PROGS6_NAMES: [(&str, u32); 5] = [
    ("uplink_egress6", PROG6_UPLINK_EGRESS),
    ("uplink_ingress6", PROG6_UPLINK_INGRESS),
    ("bridge_ingress6", PROG6_BRIDGE_INGRESS),
    ("bridge_egress6", PROG6_BRIDGE_EGRESS),
    ("endpoint_ingress6", PROG6_ENDPOINT_INGRESS),
];
pub const PROG_CONNECT6: &str = "host_connect6";
pub const PROG_RECVMSG6: &str = "host_recvmsg6";
pub const PROG_GETPEERNAME6: &str = "host_getpeername6";
