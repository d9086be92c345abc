//! netlab: a Docker-style bridge network built from scratch over netlink, with NAT and
//! port publishing in eBPF. See DESIGN.md in the repository for the architecture.

pub mod bench;
pub mod cli;
pub mod commands;
pub mod datapath;
pub mod error;
pub mod netlink;
pub mod publish;
pub mod state;
pub mod topology;

/// The TC programs, built by build.rs from netlab-ebpf.
pub const EBPF_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netlab-tc"));
