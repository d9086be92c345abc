//! The endpoint program on a netkit pair (`up --device netkit`): attached as the pair's
//! peer program (`BPF_NETKIT_PEER`, through the primary's ifindex in the lab host), so
//! that it runs when the container transmits, before the packet is queued anywhere.
//!
//! aya 0.14 attaches by tcx but not to netkit, so the link is made with the two bpf(2)
//! commands it takes: `BPF_LINK_CREATE`, then `BPF_OBJ_PIN` under the lab's links, as
//! [`super::hooks`] pins a tcx link. Removing the pin detaches it, as for tcx; deleting
//! the device does too.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

use aya::programs::SchedClassifier;

use crate::{
    error::{Error, Result},
    netlink::{link, netns},
};

/// `enum bpf_cmd` and `enum bpf_attach_type` values (linux/bpf.h).
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_NETKIT_PEER: u32 = 55;

/// `union bpf_attr` for `BPF_LINK_CREATE` with netkit's fields: no relative program, any
/// revision (appended after whatever is there).
#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative_fd: u32,
    _pad: u32,
    expected_revision: u64,
}

/// `union bpf_attr` for `BPF_OBJ_PIN`.
#[repr(C)]
#[derive(Default)]
struct ObjPin {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a `union bpf_attr` prefix of the size passed, zero-padded.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// Links `prog` as the peer program of the netkit pair whose primary is `ifindex` (in
/// the calling thread's namespace).
fn link_peer(prog: BorrowedFd<'_>, ifindex: u32) -> io::Result<OwnedFd> {
    let attr = LinkCreate {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_NETKIT_PEER,
        ..LinkCreate::default()
    };
    let fd = bpf(BPF_LINK_CREATE, &attr)?;
    // SAFETY: a new fd the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let name = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let attr = ObjPin {
        pathname: name.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        ..ObjPin::default()
    };
    bpf(BPF_OBJ_PIN, &attr).map(drop)
}

/// Attaches `prog` as the peer program of netkit primary `primary` in namespace `ns`,
/// and pins the link at `pin_at`: it stays attached after netlab exits.
pub fn attach_peer(prog: &SchedClassifier, ns: &Path, primary: &str, pin_at: &Path) -> Result<()> {
    let prog_fd = prog.fd().map_err(|e| Error::ebpf("program fd", e))?.as_fd();
    netns::netlink_in(ns, |h| async move {
        let ifindex = link::require(&h, primary).await?;
        let link = link_peer(prog_fd, ifindex)
            .map_err(|e| Error::ebpf("attach netkit peer program", format!("on {primary}: {e}")))?;
        pin(link.as_fd(), pin_at)
            .map_err(|e| Error::ebpf("pin link", format!("{}: {e}", pin_at.display())))
    })
}
