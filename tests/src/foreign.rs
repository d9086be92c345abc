//! Someone else's TC program on a lab's hook: a few BPF instructions, loaded and
//! attached by tcx with raw `bpf(2)` calls (no netlab code involved), that count the
//! packets they see and hand each on (`TCX_NEXT`). Attached first or last on a hook,
//! it shows whether netlab's programs let the programs after them see what netlab does
//! not own, and still work with a program before them. Detached when dropped.

use std::{
    os::fd::{FromRawFd, OwnedFd},
    path::Path,
};

const BPF_MAP_CREATE: i64 = 0;
const BPF_MAP_LOOKUP_ELEM: i64 = 1;
const BPF_PROG_LOAD: i64 = 5;
const BPF_LINK_CREATE: i64 = 28;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
const BPF_F_BEFORE: u32 = 1 << 3;
const BPF_F_AFTER: u32 = 1 << 4;

/// Where on the hook the program goes.
#[derive(Clone, Copy)]
pub enum Place {
    /// Before every program already there.
    First,
    /// After every program already there.
    Last,
}

/// A counting program attached to one hook.
pub struct Foreign {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

fn bpf(cmd: i64, attr: &mut [u64]) -> std::io::Result<i32> {
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr) as u32,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(rc as i32)
}

/// One BPF instruction: opcode, registers, offset, immediate.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | u64::from(dst & 0xf) << 8
        | u64::from(src & 0xf) << 12
        | u64::from(off as u16) << 16
        | u64::from(imm as u32) << 32
}

impl Foreign {
    /// Loads the counter and attaches it to `iface`'s ingress (or egress) in namespace
    /// `ns`, at `place`.
    pub fn attach(ns: &Path, iface: &str, ingress: bool, place: Place) -> Foreign {
        // An array of one u64: the count.
        let mut attr = [0u64; 8];
        attr[0] = u64::from(BPF_MAP_TYPE_ARRAY) | 4u64 << 32; // map_type, key_size
        attr[1] = 8 | 1u64 << 32; // value_size, max_entries
        let map = bpf(BPF_MAP_CREATE, &mut attr).expect("create the counter map");
        // r1 = map; *(u32 *)(r10 - 4) = 0; r2 = r10 - 4; r0 = lookup(r1, r2);
        // if r0 { lock *(u64 *)r0 += 1 }; return -1 (TCX_NEXT)
        let prog = [
            insn(0x18, 1, 1, 0, map),
            insn(0, 0, 0, 0, 0),
            insn(0x62, 10, 0, -4, 0),
            insn(0xbf, 2, 10, 0, 0),
            insn(0x07, 2, 0, 0, -4),
            insn(0x85, 0, 0, 0, 1),
            insn(0x15, 0, 0, 2, 0),
            insn(0xb7, 1, 0, 0, 1),
            insn(0xdb, 0, 1, 0, 0),
            insn(0xb7, 0, 0, 0, -1),
            insn(0x95, 0, 0, 0, 0),
        ];
        let license = c"GPL";
        let mut attr = [0u64; 16];
        attr[0] = u64::from(BPF_PROG_TYPE_SCHED_CLS) | (prog.len() as u64) << 32;
        attr[1] = prog.as_ptr() as u64;
        attr[2] = license.as_ptr() as u64;
        let prog = bpf(BPF_PROG_LOAD, &mut attr).expect("load the counter program");
        let (map, prog) = unsafe { (OwnedFd::from_raw_fd(map), OwnedFd::from_raw_fd(prog)) };
        let raw_prog = std::os::fd::AsRawFd::as_raw_fd(&prog);
        let iface = iface.to_string();
        let link = crate::in_ns(ns, move || {
            let name = std::ffi::CString::new(iface).unwrap();
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert_ne!(ifindex, 0, "no interface {name:?}");
            let mut attr = [0u64; 8];
            attr[0] = raw_prog as u64 | u64::from(ifindex) << 32;
            let at = if ingress {
                BPF_TCX_INGRESS
            } else {
                BPF_TCX_EGRESS
            };
            let flags = match place {
                Place::First => BPF_F_BEFORE,
                Place::Last => BPF_F_AFTER,
            };
            attr[1] = u64::from(at) | u64::from(flags) << 32;
            bpf(BPF_LINK_CREATE, &mut attr).expect("attach the counter by tcx")
        });
        Foreign {
            map,
            _prog: prog,
            _link: unsafe { OwnedFd::from_raw_fd(link) },
        }
    }

    /// The packets it has seen.
    pub fn count(&self) -> u64 {
        let key: u32 = 0;
        let mut value: u64 = 0;
        let mut attr = [0u64; 4];
        attr[0] = std::os::fd::AsRawFd::as_raw_fd(&self.map) as u64;
        attr[1] = &key as *const u32 as u64;
        attr[2] = &mut value as *mut u64 as u64;
        bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).expect("read the counter");
        value
    }
}
