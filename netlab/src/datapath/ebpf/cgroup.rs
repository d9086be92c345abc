//! The host-local publishing hooks: cgroup sock_addr programs (connect4, sendmsg4,
//! recvmsg4, getpeername4, and connect6, recvmsg6, getpeername6 for IPv4-mapped
//! addresses), scoped to the lab host's namespace by its netns cookie.
//!
//! A lab with a namespace of its own (a sandbox, or a runtime's named namespace)
//! attaches them to a cgroup of its own, `netlab-<lab>` under the cgroup v2 root
//! (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts), which
//! `netlab exec host` joins; a lab on the machine's namespace attaches them to the root
//! cgroup, so every process of that namespace gets them.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use aya::programs::{CgroupAttachMode, CgroupSockAddr, links::FdLink};
use netlab_common::maps as names;

use super::pins;
use crate::{
    error::{Error, Result},
    lab::LabState,
};

/// Where cgroup v2 is mounted: host-local publishing needs it.
fn root() -> Result<PathBuf> {
    crate::netlink::cgroup::root().map_err(|_| {
        Error::Invalid(
            "no cgroup v2 hierarchy is mounted here: host-local publishing needs one (under `ip netns exec`, which mounts a /sys of its own, run netlab outside it)"
                .into(),
        )
    })
}

/// IPv4 sockets' hooks, and IPv6 sockets' (for the host's IPv6 addresses in a
/// dual-stack lab, and for IPv4-mapped ones: a dual-stack socket's IPv4 connections,
/// whose unconnected UDP sends meet `sendmsg4`).
pub const PROGRAMS: [&str; 8] = [
    names::PROG_CONNECT4,
    names::PROG_SENDMSG4,
    names::PROG_RECVMSG4,
    names::PROG_GETPEERNAME4,
    names::PROG_CONNECT6,
    names::PROG_SENDMSG6,
    names::PROG_RECVMSG6,
    names::PROG_GETPEERNAME6,
];

/// Whether the lab's hooks go on a cgroup of its own (not the machine's root cgroup).
fn owns_cgroup(state: &LabState) -> bool {
    state.host_netns.is_some()
}

/// The cgroup a lab's host processes run in for host-local publishing.
pub fn path(state: &LabState) -> Result<PathBuf> {
    if owns_cgroup(state) {
        own(&state.name)
    } else {
        root()
    }
}

fn own(lab: &str) -> Result<PathBuf> {
    Ok(root()?.join(format!("netlab-{lab}")))
}

/// Creates the lab's own cgroup (if it has one) and attaches the hooks, pinning links.
/// A cgroup it made is removed again when a hook cannot be attached (the lab's
/// rollback knows it only by its links, which may not be pinned yet).
pub fn attach(bpf: &mut aya::Ebpf, state: &LabState, links: &Path) -> Result<()> {
    let cg = path(state)?;
    if owns_cgroup(state) {
        // Recorded as being made (0) before it is made, then by its id at once, beside
        // the lab's state: its links, which name it too, are not pinned yet, and pins
        // may be out of sight of a later command (a runtime's private mount namespace
        // with a bpffs of its own). A kill between the two leaves "being made", which
        // `remove` takes for this lab's.
        let record = crate::store::record_file(&state.name, RECORD);
        fs::write(&record, MAKING.to_string()).map_err(|e| Error::io("write", &record, e))?;
        // Made here or not at all: one that is there already is not this lab's.
        if let Err(e) = fs::create_dir(&cg) {
            let _ = fs::remove_file(&record);
            return Err(Error::io("create cgroup", &cg, e));
        }
        let id = fs::metadata(&cg).map(|m| m.ino()).unwrap_or(0);
        if let Err(e) = fs::write(&record, id.to_string()) {
            let _ = fs::remove_dir(&cg);
            return Err(Error::io("write", &record, e));
        }
    }
    let attached = attach_to(bpf, &cg, links);
    if attached.is_err() && owns_cgroup(state) {
        let _ = fs::remove_dir(&cg);
    }
    attached
}

fn attach_to(bpf: &mut aya::Ebpf, cg: &Path, links: &Path) -> Result<()> {
    let cg_file = fs::File::open(cg).map_err(|e| Error::io("open cgroup", cg, e))?;
    for name in PROGRAMS {
        let prog: &mut CgroupSockAddr = bpf
            .program_mut(name)
            .ok_or_else(|| Error::ebpf("find program", name))?
            .try_into()
            .map_err(|e| Error::ebpf("program type", e))?;
        if prog.fd().is_err() {
            prog.load()
                .map_err(|e| Error::ebpf("load program", format!("{name}: {e}")))?;
        }
        let id = prog
            .attach(&cg_file, CgroupAttachMode::default())
            .map_err(|e| Error::ebpf("attach", format!("{name} to {}: {e}", cg.display())))?;
        let link: FdLink = prog
            .take_link(id)
            .map_err(|e| Error::ebpf("take link", e))?
            .try_into()
            .map_err(|e| Error::ebpf("cgroup link", e))?;
        link.pin(links.join(name))
            .map_err(|e| Error::ebpf("pin link", format!("{name}: {e}")))?;
    }
    Ok(())
}

/// Refuses a lab whose own cgroup would be one that is there already (someone else's:
/// it would be taken over, and removed with the lab, its processes moved out).
pub fn check_free(state: &LabState) -> Result<()> {
    if !owns_cgroup(state) {
        return Ok(());
    }
    let cg = own(&state.name)?;
    if cg.exists() {
        return Err(Error::Conflict(format!(
            "cgroup {} exists and is not one netlab made for lab {}: remove it (`rmdir {}`) or pick another lab name",
            cg.display(),
            state.name,
            cg.display()
        )));
    }
    Ok(())
}

/// Where `attach` records the id of the cgroup it made, beside the lab's state.
const RECORD: &str = "ebpf-cgroup-id";
/// In [`RECORD`] while `attach` makes the cgroup (no cgroup has id 0).
const MAKING: u64 = 0;

/// The id of the cgroup a lab made for its hooks (the cgroup directory's inode): as
/// the kernel records it in their pinned link (`bpf_link_info.cgroup.cgroup_id`), or
/// else as `attach` recorded it beside the lab's state when it made it. What tells the
/// cgroup netlab made from one made at its path since (removed and made again behind
/// netlab's back, or made while `up` was failing), which is never joined, emptied or
/// removed. Read before the lab's pins are removed.
pub fn attached_id(lab: &str) -> Option<u64> {
    crate::netlink::bpf::cgroup_link_target(&pins::links(lab).join(PROGRAMS[0])).or_else(|| {
        fs::read_to_string(crate::store::record_file(lab, RECORD))
            .ok()?
            .trim()
            .parse()
            .ok()
    })
}

/// Removes a lab's own cgroup if it is the one its hooks were attached to (`attached`,
/// from [`attached_id`]), moving any process still in it to the root first; returns
/// whether it was there.
pub fn remove(lab: &str, attached: Option<u64>) -> Result<bool> {
    let Ok(cg) = own(lab) else { return Ok(false) };
    if attached == Some(MAKING) {
        // `up` was killed while it made the cgroup: one at its path is that `up`'s,
        // the path having been free when it checked. Removed only empty (rmdir refuses
        // a cgroup holding a process or a cgroup).
        return Ok(fs::remove_dir(&cg).is_ok());
    }
    if !crate::netlink::cgroup::is_the_one(&cg, attached) {
        return Ok(false);
    }
    if let (Ok(procs), Ok(root)) = (fs::read_to_string(cg.join("cgroup.procs")), root()) {
        for pid in procs.lines() {
            let _ = fs::write(root.join("cgroup.procs"), pid);
        }
    }
    fs::remove_dir(&cg).map_err(|e| Error::io("remove cgroup", &cg, e))?;
    Ok(true)
}

/// The cgroup a process of the lab host joins (`netlab exec host`) so that its sockets
/// see the host-local publishing hooks: the lab's own, if it is the one they are
/// attached to; none for a lab on the machine's namespace, whose hooks sit on the root
/// cgroup.
pub fn joinable(state: &LabState) -> Result<Option<PathBuf>> {
    if !owns_cgroup(state) {
        return Ok(None);
    }
    let cg = own(&state.name)?;
    Ok(crate::netlink::cgroup::is_the_one(&cg, attached_id(&state.name)).then_some(cg))
}
