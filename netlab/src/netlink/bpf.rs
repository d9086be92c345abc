//! What the kernel records about a pinned BPF link, read with the `bpf` syscall
//! directly (aya's `LinkInfo` shows only the link's and program's ids).

use std::{
    ffi::CString,
    mem::size_of,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_TYPE_CGROUP: u32 = 3;

/// `bpf_attr` for `BPF_OBJ_GET`.
#[repr(C)]
struct ObjGet {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// `bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The id of the cgroup the link pinned at `pin` attaches its program to (the cgroup
/// directory's inode); `None` when there is no such pin, or it is not a cgroup link.
pub fn cgroup_link_target(pin: &Path) -> Option<u64> {
    let path = CString::new(pin.as_os_str().as_bytes()).ok()?;
    let get = ObjGet {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &get as *const ObjGet,
            size_of::<ObjGet>(),
        )
    };
    if fd < 0 {
        return None;
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // `struct bpf_link_info`: type, id, prog_id, then (at byte 16) the union whose
    // cgroup member starts with `cgroup_id`.
    let mut info = [0u32; 32];
    let req = InfoByFd {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of::<[u32; 32]>() as u32,
        info: info.as_mut_ptr() as u64,
    };
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &req as *const InfoByFd,
            size_of::<InfoByFd>(),
        )
    };
    let id = |lo: u32, hi: u32| {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&lo.to_ne_bytes());
        bytes[4..].copy_from_slice(&hi.to_ne_bytes());
        u64::from_ne_bytes(bytes)
    };
    (rc == 0 && info[0] == BPF_LINK_TYPE_CGROUP).then(|| id(info[4], info[5]))
}
