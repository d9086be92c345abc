//! How a runtime's attachment (container id, interface) is known in the lab: as the
//! container `<id>-<ifname>`, whose namespace is the runtime's (`CNI_NETNS`). Both parts
//! may hold `-`, so a name can be two attachments' (`ab`, `c-d` and `ab-c`, `d`): the
//! container records its id and interface, and is the attachment only if they match.

use super::error::{CniError, CniResult, code};
use crate::lab::{Container, names};

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

/// Whether `c` (found by [`container_name`]) is the runtime's attachment (`id`,
/// `ifname`): a runtime's container, whose recorded id and interface are these. One
/// recorded before netlab kept the id is taken by its name alone, as it was then.
pub fn is(c: &Container, id: &str, ifname: &str) -> bool {
    c.runtime_netns.is_some()
        && c.runtime_id
            .as_deref()
            .is_none_or(|own| own == id && c.ifname == ifname)
}

/// The attachment `c` is, for an error message.
pub fn describe(c: &Container) -> String {
    match (&c.runtime_netns, &c.runtime_id) {
        (Some(_), Some(id)) => format!("container {id}'s interface {}", c.ifname),
        (Some(_), None) => format!("an attachment named {}", c.name),
        (None, _) => format!("netlab's own container {}", c.name),
    }
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
