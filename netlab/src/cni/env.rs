//! The `CNI_*` environment variables: which verb, and for ADD, DEL and CHECK the
//! attachment (container id, namespace, interface name, `CNI_ARGS`).

use std::path::PathBuf;

use super::{
    error::{CniError, CniResult, code},
    ips::{self, Asked},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

/// One container's attachment to a network, as the runtime names it.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub container_id: String,
    /// The container's network namespace; DEL may go without it.
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// `IP=` in `CNI_ARGS` (podman's `--ip`, or `--ip6` alone): the addresses asked
    /// for.
    pub ip: Asked,
    /// `MAC=` in `CNI_ARGS` (podman's `--mac-address`): the interface's MAC.
    pub mac: Option<String>,
}

fn invalid(msg: String) -> CniError {
    CniError::new(code::INVALID_ENVIRONMENT, msg)
}

/// `CNI_COMMAND`, read through `var` (the process environment, or a test's map).
pub fn command(var: &dyn Fn(&str) -> Option<String>) -> CniResult<Command> {
    match var("CNI_COMMAND").as_deref() {
        Some("ADD") => Ok(Command::Add),
        Some("DEL") => Ok(Command::Del),
        Some("CHECK") => Ok(Command::Check),
        Some("VERSION") => Ok(Command::Version),
        Some("STATUS") => Ok(Command::Status),
        Some("GC") => Ok(Command::Gc),
        Some(other) => Err(invalid(format!(
            "CNI_COMMAND {other:?} is not a CNI verb: ADD, DEL, CHECK, VERSION, STATUS or GC"
        ))),
        None => Err(invalid(
            "CNI_COMMAND is not set: netlab-cni is a CNI plugin, run by a container runtime".into(),
        )),
    }
}

/// A container id as the specification has it: an alphanumeric, then alphanumerics,
/// `_`, `.` or `-`.
fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// An interface name netlab can make: 1-15 letters, digits, `_`, `.` or `-`.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// `CNI_ARGS`, `K=V;K=V`: `IP` and `MAC` are used; `IgnoreUnknown`, `K8S_*` and, with
/// `IgnoreUnknown=1`, anything else are accepted and ignored.
fn parse_args(args: &str) -> CniResult<(Asked, Option<String>)> {
    let pairs: Vec<(&str, &str)> = args
        .split(';')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .ok_or_else(|| invalid(format!("CNI_ARGS: {p:?} is not KEY=VALUE")))
        })
        .collect::<CniResult<_>>()?;
    let ignore_unknown = pairs
        .iter()
        .any(|(k, v)| *k == "IgnoreUnknown" && matches!(*v, "1" | "true" | "True"));
    let (mut ip, mut mac) = (Asked::default(), None);
    for (k, v) in pairs {
        match k {
            "MAC" => {
                mac = Some(crate::lab::check_mac(v).map_err(|e| invalid(format!("CNI_ARGS: {e}")))?)
            }
            "IP" => {
                ip = ips::parse(v.split(','))
                    .map_err(|e| invalid(format!("CNI_ARGS: IP={v}: {e}")))?
            }
            "IgnoreUnknown" => {}
            k if k.starts_with("K8S_") => {}
            _ if ignore_unknown => {}
            k => {
                return Err(invalid(format!(
                    "CNI_ARGS: unknown argument {k} (netlab-cni takes IP and MAC; add IgnoreUnknown=1 to pass others)"
                )));
            }
        }
    }
    Ok((ip, mac))
}

/// The attachment an ADD, DEL or CHECK is about.
pub fn attachment(command: Command, var: &dyn Fn(&str) -> Option<String>) -> CniResult<Attachment> {
    let get = |name: &str| var(name).filter(|v| !v.is_empty());
    let container_id =
        get("CNI_CONTAINERID").ok_or_else(|| invalid("CNI_CONTAINERID is not set".into()))?;
    if !valid_id(&container_id) {
        return Err(invalid(format!(
            "CNI_CONTAINERID {container_id:?} is not a container id: letters, digits, '_', '.' or '-', starting with a letter or digit"
        )));
    }
    let ifname = get("CNI_IFNAME").ok_or_else(|| invalid("CNI_IFNAME is not set".into()))?;
    if !valid_ifname(&ifname) {
        return Err(invalid(format!(
            "CNI_IFNAME {ifname:?} is not an interface name netlab can make: 1-15 letters, digits, '_', '.' or '-'"
        )));
    }
    let netns = get("CNI_NETNS").map(PathBuf::from);
    match &netns {
        None if command != Command::Del => {
            return Err(invalid("CNI_NETNS is not set".into()));
        }
        Some(p) if !p.is_absolute() => {
            return Err(invalid(format!(
                "CNI_NETNS {} is not an absolute path",
                p.display()
            )));
        }
        _ => {}
    }
    let (ip, mac) = parse_args(&var("CNI_ARGS").unwrap_or_default())?;
    Ok(Attachment {
        container_id,
        netns,
        ifname,
        ip,
        mac,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn commands() {
        assert_eq!(
            command(&env(&[("CNI_COMMAND", "ADD")])).unwrap(),
            Command::Add
        );
        assert_eq!(
            command(&env(&[("CNI_COMMAND", "GC")])).unwrap(),
            Command::Gc
        );
        assert_eq!(command(&env(&[])).unwrap_err().code, 4);
        assert_eq!(
            command(&env(&[("CNI_COMMAND", "add")])).unwrap_err().code,
            4
        );
    }

    #[test]
    fn attachments() {
        let base = [
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.77.0.9;MAC=02:00:00:00:00:01",
            ),
        ];
        let a = attachment(Command::Add, &env(&base)).unwrap();
        assert_eq!(a.container_id, "abc123");
        assert_eq!(a.ip.v4, Some(std::net::Ipv4Addr::new(10, 77, 0, 9)));
        assert_eq!(a.mac.as_deref(), Some("02:00:00:00:00:01"));
        let without = |key: &str| -> Vec<(&str, &str)> {
            base.iter().copied().filter(|(k, _)| *k != key).collect()
        };
        assert_eq!(
            attachment(Command::Add, &env(&without("CNI_NETNS")))
                .unwrap_err()
                .code,
            4
        );
        assert!(attachment(Command::Del, &env(&without("CNI_NETNS"))).is_ok());
        assert_eq!(
            attachment(Command::Del, &env(&without("CNI_CONTAINERID")))
                .unwrap_err()
                .code,
            4
        );
        let with = |key: &str, v: &'static str| -> Vec<(&str, &str)> {
            base.iter()
                .map(|(k, old)| if *k == key { (*k, v) } else { (*k, *old) })
                .collect()
        };
        for (k, v) in [
            ("CNI_CONTAINERID", "-x"),
            ("CNI_IFNAME", "a/b"),
            ("CNI_IFNAME", "sixteen_chars_xx"),
            ("CNI_NETNS", "relative"),
            ("CNI_ARGS", "IP=nope"),
            ("CNI_ARGS", "FOO=1"),
            ("CNI_ARGS", "junk"),
        ] {
            assert_eq!(
                attachment(Command::Add, &env(&with(k, v)))
                    .unwrap_err()
                    .code,
                4,
                "{k}={v}"
            );
        }
    }
}
