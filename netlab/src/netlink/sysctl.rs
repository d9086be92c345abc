//! Sysctls under /proc/sys/net. They belong to the network namespace of the thread that
//! opens the file, so call these from a thread inside the target namespace.

use std::fs;

use crate::error::{Error, Result};

/// Equivalent to `sysctl -w KEY=VALUE` (KEY as a /proc/sys path), written only if it differs.
pub fn set(path: &str, value: &str) -> Result<()> {
    set_changed(path, value).map(drop)
}

/// [`set`], saying whether the value changed.
pub fn set_changed(path: &str, value: &str) -> Result<bool> {
    let current = fs::read_to_string(path).map_err(|e| Error::io("read sysctl", path, e))?;
    if current.trim() == value {
        return Ok(false);
    }
    fs::write(path, value).map_err(|e| Error::io("write sysctl", path, e))?;
    Ok(true)
}

pub const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
pub const IP6_FORWARD: &str = "/proc/sys/net/ipv6/conf/all/forwarding";
pub const BRIDGE_NF_CALL_IP6TABLES: &str = "/proc/sys/net/bridge/bridge-nf-call-ip6tables";
pub const BRIDGE_NF_CALL_IPTABLES: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// Each interface's IPv4 forwarding (and `default`, what new ones get) is under here.
const IPV4_CONF: &str = "/proc/sys/net/ipv4/conf";

/// The interfaces (and `default`) whose IPv4 forwarding is on, `all` aside. Writing
/// `ip_forward` sets every one of them to its new value when it changes: an
/// `ip_forward` of 0 put back turns off what was on by itself (systemd-networkd's
/// per-link `IPv4Forwarding=`).
pub fn ipv4_forwarding_on() -> Result<Vec<String>> {
    let dir = fs::read_dir(IPV4_CONF).map_err(|e| Error::io("read", IPV4_CONF, e))?;
    let mut on = Vec::new();
    for entry in dir {
        let name = entry
            .map_err(|e| Error::io("read", IPV4_CONF, e))?
            .file_name();
        let Some(name) = name.to_str().filter(|n| *n != "all") else {
            continue;
        };
        let path = format!("{IPV4_CONF}/{name}/forwarding");
        // An interface gone meanwhile has nothing to put back.
        if fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
            on.push(name.to_string());
        }
    }
    on.sort();
    Ok(on)
}

/// Turns IPv4 forwarding on again on each of `names` still there (after `ip_forward`
/// went back to 0, which turned them off), each whatever the others do; the first
/// failure is returned.
pub fn ipv4_forwarding_back_on(names: &[String]) -> Result<()> {
    let mut first = Ok(());
    for name in names {
        let path = format!("{IPV4_CONF}/{name}/forwarding");
        if std::path::Path::new(&path).exists() {
            let done = set(&path, "1");
            if first.is_ok() {
                first = done;
            }
        }
    }
    first
}

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
