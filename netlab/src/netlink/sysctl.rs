//! Sysctls under /proc/sys/net. They belong to the network namespace of the thread that
//! opens the file, so call these from a thread inside the target namespace.

use std::fs;

use crate::error::{Error, Result};

/// Equivalent to `sysctl -w KEY=VALUE` (KEY as a /proc/sys path), written only if it differs.
pub fn set(path: &str, value: &str) -> Result<()> {
    let current = fs::read_to_string(path).map_err(|e| Error::io("read sysctl", path, e))?;
    if current.trim() == value {
        return Ok(());
    }
    fs::write(path, value).map_err(|e| Error::io("write sysctl", path, e))
}

pub const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
pub const IP6_FORWARD: &str = "/proc/sys/net/ipv6/conf/all/forwarding";
pub const BRIDGE_NF_CALL_IP6TABLES: &str = "/proc/sys/net/bridge/bridge-nf-call-ip6tables";
pub const BRIDGE_NF_CALL_IPTABLES: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// Equivalent to `sysctl -w net.ipv6.conf.IF.accept_dad=0`, before the link comes up:
/// its link-local address is usable at once too. A link-local address still in
/// duplicate address detection cannot take the answer to a neighbour solicitation sent
/// from it, so a router's first packets to a new neighbour are lost for up to two
/// seconds. (The addresses netlab gives are added with `nodad` already.)
pub fn ipv6_no_dad(ifname: &str) -> Result<()> {
    set(&format!("/proc/sys/net/ipv6/conf/{ifname}/accept_dad"), "0")
}

/// Equivalent to `sysctl -w net.ipv6.conf.IF.disable_ipv6=1`: no IPv6 on a link of a
/// lab without IPv6, not even a link-local address, so that no IPv6 packet a container
/// sends is taken in (and routed on, untranslated and unfiltered, by a host that
/// forwards IPv6). Nothing to do on a kernel without IPv6.
pub fn ipv6_off(ifname: &str) -> Result<()> {
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    if !std::path::Path::new(&path).exists() {
        return Ok(());
    }
    set(&path, "1")
}

/// Equivalent to `sysctl -w net.bridge.bridge-nf-call-iptables=0` and
/// `bridge-nf-call-ip6tables=0`: bridged frames of either family skip netfilter. This
/// kernel turns them on in every new namespace; a lab without netfilter rules turns
/// them off, in a namespace of its own, so that no frame pays for the hooks.
/// Absent without br_netfilter, which is as good.
pub fn bridge_netfilter_off() -> Result<()> {
    for key in [BRIDGE_NF_CALL_IPTABLES, BRIDGE_NF_CALL_IP6TABLES] {
        if std::path::Path::new(key).exists() {
            set(key, "0")?;
        }
    }
    Ok(())
}
