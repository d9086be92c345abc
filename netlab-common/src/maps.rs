//! Map names and sizes. Userspace opens maps by these names, never by string literals.

/// Conntrack: LRU hash, [`crate::conntrack::CtKey`] → [`crate::conntrack::CtEntry`].
/// Holds flows that have seen traffic in both directions (confirmed).
pub const CONNTRACK: &str = "CONNTRACK";
pub const CONNTRACK_MAX: u32 = 131_072;

/// Unconfirmed flows (no reply seen yet): a separate LRU so that a flood of new flows
/// churns this table and never evicts confirmed flows from [`CONNTRACK`].
pub const CT_PENDING: &str = "CT_PENDING";
pub const CT_PENDING_MAX: u32 = 32_768;

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

/// Host-local UDP replies: [`crate::publish::PubBack`] → [`crate::publish::PubBack`].
pub const PUBLISH_BACK: &str = "PUBLISH_BACK";

/// Runtime configuration: array of one [`crate::config::Config`].
pub const CONFIG: &str = "CONFIG";

/// Per-CPU array of `u64` counters, indexed by [`crate::stats`].
pub const STATS: &str = "STATS";
pub const STATS_LEN: u32 = crate::stats::STATS_LEN;

/// Program names (the `#[classifier]` function names).
pub const PROG_UPLINK_EGRESS: &str = "uplink_egress";
pub const PROG_UPLINK_INGRESS: &str = "uplink_ingress";
pub const PROG_BRIDGE_INGRESS: &str = "bridge_ingress";
pub const PROG_CONNECT4: &str = "host_connect4";
pub const PROG_SENDMSG4: &str = "host_sendmsg4";
pub const PROG_RECVMSG4: &str = "host_recvmsg4";
pub const PROG_GETPEERNAME4: &str = "host_getpeername4";
