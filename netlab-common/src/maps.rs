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

/// Fragments after the first: LRU hash, [`crate::frag::FragKey`] →
/// [`crate::frag::FragNat`].
pub const FRAGS: &str = "FRAGS";
pub const FRAGS_MAX: u32 = 8_192;

/// Published single ports: hash (never evicted), [`crate::publish::PubKey`] →
/// [`crate::publish::PubTarget`].
pub const PUBLISH: &str = "PUBLISH";
pub const PUBLISH_MAX: u32 = 65_536;

/// Published ranges, one element each: array of [`crate::publish::PubRange`].
pub const PUBLISH_RANGES: &str = "PUBLISH_RANGES";
pub const PUBLISH_RANGES_MAX: u32 = 32;

/// Per-mapping counters, per CPU, indexed by mapping id: [`crate::publish::PubStats`].
pub const PUBLISH_STATS: &str = "PUBLISH_STATS";
pub const PUBLISH_STATS_MAX: u32 = 65_600;

/// Per-mapping generation, indexed by mapping id (`u32`): bumped when a mapping is
/// withdrawn, which kills every flow that went through it at once.
pub const MAPPINGS: &str = "MAPPINGS";

/// Host-local UDP replies: [`crate::publish::PubBack`] → [`crate::publish::PubBack`].
pub const PUBLISH_BACK: &str = "PUBLISH_BACK";

/// The containers on the bridge: hash, address (`u32`, network order) →
/// [`crate::endpoint::Endpoint`]. Kept by `run`/`rm`.
pub const ENDPOINTS: &str = "ENDPOINTS";
pub const ENDPOINTS_MAX: u32 = 65_536;

/// The garbage collector's timer: array of one [`crate::gc::GcState`].
pub const GC: &str = "GC";

/// Runtime configuration: array of one [`crate::config::Config`].
pub const CONFIG: &str = "CONFIG";

/// Per-CPU array of `u64` counters, indexed by [`crate::stats`].
pub const STATS: &str = "STATS";
pub const STATS_LEN: u32 = crate::stats::STATS_LEN;

/// Program names (the entry function names).
pub const PROG_UPLINK_EGRESS: &str = "uplink_egress";
pub const PROG_UPLINK_INGRESS: &str = "uplink_ingress";
pub const PROG_BRIDGE_INGRESS: &str = "bridge_ingress";
pub const PROG_ENDPOINT_INGRESS: &str = "endpoint_ingress";
pub const PROG_GC_START: &str = "gc_start";
pub const PROG_CONNECT4: &str = "host_connect4";
pub const PROG_SENDMSG4: &str = "host_sendmsg4";
pub const PROG_RECVMSG4: &str = "host_recvmsg4";
pub const PROG_GETPEERNAME4: &str = "host_getpeername4";
