//! rtnetlink operations, one small async fn each, and the namespace plumbing that runs
//! them in the right network namespace; beside them the other kernel interfaces netlab
//! reads and writes (cgroups, sysctls, socket diagnostics, BPF link records).

pub mod addr;
pub mod bpf;
pub mod cgroup;
pub mod link;
pub mod members;
pub mod neigh;
pub mod netns;
pub mod route;
pub mod sockdiag;
pub mod sysctl;

use crate::error::Error;

/// Whether a netlink error is the kernel saying `errno`.
pub fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

pub(crate) fn nl(
    op: &'static str,
    name: impl Into<String>,
) -> impl FnOnce(rtnetlink::Error) -> Error {
    let name = name.into();
    move |source| Error::Netlink { op, name, source }
}
