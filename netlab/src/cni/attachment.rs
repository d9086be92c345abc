//! How a runtime's attachment (container id, interface) is known in the lab: as the
//! container `<id>-<ifname>`, whose namespace is the runtime's (`CNI_NETNS`).

use super::error::{CniError, CniResult, code};
use crate::lab::names;

/// The lab container of an attachment: unique per (id, interface), so that one
/// container may join a network twice under two interface names.
pub fn container_name(container_id: &str, ifname: &str) -> CniResult<String> {
    let name = format!("{container_id}-{ifname}");
    names::check_container(&name).map_err(|_| {
        CniError::new(
            code::INVALID_ENVIRONMENT,
            format!(
                "CNI_CONTAINERID {container_id:?} is too long: with CNI_IFNAME it must fit netlab's 128-character container names"
            ),
        )
    })?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(container_name("abc", "eth0").unwrap(), "abc-eth0");
        let id = "f".repeat(64);
        assert_eq!(container_name(&id, "eth1").unwrap().len(), 69);
        assert_eq!(
            container_name(&"f".repeat(130), "eth0").unwrap_err().code,
            4
        );
    }
}
