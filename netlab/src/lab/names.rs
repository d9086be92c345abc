//! Names of everything a lab creates. Every kernel object carries the lab's name, so
//! `netlab down` and the leak checks can find it.

use crate::error::{Error, Result};

/// Lab names: letters, digits and `_`, at most 12 characters, so that the bridge name
/// `nl-<lab>` fits the kernel's 15, and no `-`, so that `<lab>-<container>` is unambiguous.
pub fn check_lab(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 12
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid lab name {name:?}: use 1-12 letters, digits or '_'"
        )))
    }
}

/// Container names, as Docker allows them: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128
/// characters (a runtime's 64-digit container id fits); `host` and `wan` name the lab's
/// own namespaces.
pub fn check_container(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(Error::Invalid(format!(
            "invalid container name {name:?}: use letters, digits, '_', '.' or '-', starting with a letter or digit, 128 characters at most"
        )));
    }
    if name == "host" || name == "wan" {
        return Err(Error::Invalid(format!(
            "{name:?} is reserved for the lab's own namespace"
        )));
    }
    Ok(())
}

/// A bridge name given instead of `nl-<lab>` (a CNI network's `"bridge"`): a kernel
/// interface name, 1-15 letters, digits, `_`, `.` or `-`.
pub fn check_bridge(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid bridge name {name:?}: use 1-15 letters, digits, '_', '.' or '-'"
        )))
    }
}

pub fn bridge(lab: &str) -> String {
    format!("nl-{lab}")
}

pub fn host_netns(lab: &str) -> String {
    format!("{lab}-host")
}

pub fn wan_netns(lab: &str) -> String {
    format!("{lab}-wan")
}

pub fn container_netns(lab: &str, name: &str) -> String {
    format!("{lab}-{name}")
}

/// A `--network host` container's cgroup under the cgroup root: `netlab-<lab>-<name>`
/// (never a lab's own, `netlab-<lab>`: lab names have no `-`).
pub fn container_cgroup(lab: &str, name: &str) -> String {
    format!("netlab-{lab}-{name}")
}

/// Host end of a container's veth: `veth` + 7 hex digits of a hash of lab and name
/// (Docker's shape); the lab and container are in its alias.
pub fn veth(lab: &str, name: &str) -> String {
    format!("veth{:07x}", fnv1a(lab, name) & 0x0fff_ffff)
}

/// [`veth`], or, when another container of the lab holds that name already (28 bits of
/// hash: two names of one lab may meet), the first of its variants (the name and a
/// number hashed) that none holds. The container records the name it got.
pub fn veth_among(lab: &str, name: &str, taken: impl Fn(&str) -> bool) -> String {
    let first = veth(lab, name);
    if !taken(&first) {
        return first;
    }
    (1u32..)
        .map(|n| veth(lab, &format!("{name}/{n}")))
        .find(|v| !taken(v))
        .expect("a free name among 2^28")
}

/// Temporary name of the container end, before it is renamed `eth0` inside.
pub fn veth_peer(lab: &str, name: &str) -> String {
    format!("ceth{:07x}", fnv1a(lab, name) & 0x0fff_ffff)
}

/// `ip link` alias that marks a link as the lab's.
pub fn alias(lab: &str, what: &str) -> String {
    format!("netlab:{lab}:{what}")
}

fn fnv1a(lab: &str, name: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in lab.bytes().chain([b'/']).chain(name.bytes()) {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_veth_name_another_container_holds_is_not_given_again() {
        let first = veth("lab", "web");
        assert_eq!(veth_among("lab", "web", |_| false), first);
        let other = veth_among("lab", "web", |v| v == first);
        assert_ne!(other, first);
        assert!(other.starts_with("veth") && other.len() == 11, "{other}");
    }

    #[test]
    fn lab_names() {
        assert!(check_lab("default").is_ok());
        assert!(check_lab("t_1").is_ok());
        assert!(check_lab("").is_err());
        assert!(check_lab("a-b").is_err());
        assert!(check_lab("thirteenchars").is_err());
        assert!(bridge("twelve_chars").len() <= 15);
        assert!(check_bridge("nl0").is_ok());
        assert!(check_bridge("").is_err());
        assert!(check_bridge("sixteen_chars_xx").is_err());
        assert!(check_bridge("a/b").is_err());
        assert!(check_bridge("..").is_err());
    }

    #[test]
    fn container_names() {
        assert!(check_container("web-1.a_b").is_ok());
        assert!(check_container("-x").is_err());
        assert!(check_container("a b").is_err());
        assert!(check_container("host").is_err());
        assert!(check_container("wan").is_err());
    }

    #[test]
    fn veth_names_fit_and_differ() {
        let v = veth("default", "web");
        assert_eq!(v.len(), 11);
        assert_ne!(v, veth("default", "db"));
        assert_ne!(v, veth("other", "web"));
        assert_eq!(v[4..], veth_peer("default", "web")[4..]);
    }
}
