//! netlab: a Docker-style bridge network built from scratch over netlink, with NAT and
//! port publishing in eBPF. See DESIGN.md in the repository for the architecture.
//!
//! The library's layers, each using only those below it:
//!
//! ```text
//! commands/ (CLI)   cni/ (CNI plugin)   bench/       front ends
//! ops/              up, down, attach, detach, publish, unpublish
//! datapath/         ebpf, iptables, nftables, routed behind one trait
//! topology/         sandbox namespaces, bridge, containers
//! netlink/          one rtnetlink operation per function; namespaces
//! store, lockfile   the lab's state file under its lock
//! lab/              plain data: what state.json holds, names, specs, subnets
//! error, signals
//! ```

pub mod bench;
pub mod cli;
pub mod cni;
pub mod commands;
pub mod datapath;
pub mod error;
pub mod files;
pub mod lab;
pub mod lockfile;
pub mod metrics;
pub mod netlink;
pub mod ops;
pub mod signals;
pub mod store;
pub mod topology;

/// The TC programs, built by build.rs from netlab-ebpf.
pub const EBPF_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netlab-tc"));
