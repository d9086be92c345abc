//! Whole-map reads with `BPF_MAP_LOOKUP_BATCH` (Linux 5.6; the datapath needs 5.17):
//! thousands of entries per system call, where walking the keys takes one call per
//! entry and aya's iterator two. `status` counts a million flows' entries, and
//! `conntrack` and `metrics` read them, this way.

use std::os::fd::{AsFd, AsRawFd};

use aya::maps::MapData;
use bytemuck::Pod;

use crate::error::{Error, Result};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Entries asked for per call. A hash map returns whole buckets, so a call may ask
/// for more room (ENOSPC), which it is then given.
const CHUNK: usize = 8192;

/// `union bpf_attr` for the `BPF_MAP_*_BATCH` commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Walks every entry of a hash map (not per-CPU), a batch at a time: `each` gets the
/// batch's keys and values, `key_size` and `value_size` bytes apiece, and how many
/// there are. Entries added or removed meanwhile may or may not be seen, as with any
/// walk of a live map.
fn walk(map: &MapData, mut each: impl FnMut(&[u8], &[u8], usize)) -> Result<()> {
    let info = map
        .info()
        .map_err(|e| Error::ebpf("map info", e.to_string()))?;
    let (key_size, value_size) = (info.key_size() as usize, info.value_size() as usize);
    let fd = map.fd().as_fd().as_raw_fd();
    let mut chunk = CHUNK;
    // The walk's position: the kernel's opaque token (a bucket index for hash maps).
    let (mut token_in, mut token_out) = (0u64, 0u64);
    let mut first = true;
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    loop {
        keys.resize(chunk * key_size, 0u8);
        values.resize(chunk * value_size, 0u8);
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                &token_in as *const u64 as u64
            },
            out_batch: &mut token_out as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: fd as u32,
            ..BatchAttr::default()
        };
        // SAFETY: the buffers hold `count` keys and values of the map's own sizes, and
        // live across the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>() as libc::c_uint,
            )
        };
        let err = (rc < 0).then(std::io::Error::last_os_error);
        let got = (attr.count as usize).min(chunk);
        each(&keys[..got * key_size], &values[..got * value_size], got);
        match err.as_ref().and_then(std::io::Error::raw_os_error) {
            None => {}
            // The end of the map (the last entries came with it).
            Some(libc::ENOENT) => return Ok(()),
            // One bucket holds more entries than asked for: ask for more.
            Some(libc::ENOSPC) if got == 0 && chunk < 1 << 20 => {
                chunk *= 2;
                continue;
            }
            Some(_) => {
                return Err(Error::io(
                    "read map",
                    "BPF_MAP_LOOKUP_BATCH",
                    err.expect("an error"),
                ));
            }
        }
        token_in = token_out;
        first = false;
    }
}

/// How many entries a hash map holds.
pub fn count(map: &MapData) -> Result<u64> {
    let mut n = 0u64;
    walk(map, |_, _, got| n += got as u64)?;
    Ok(n)
}

/// Calls `each` on every entry of a hash map with keys `K` and values `V`, which must
/// be the map's own sizes, a batch at a time (nothing is collected).
pub fn for_each<K: Pod, V: Pod>(map: &MapData, mut each: impl FnMut(&K, &V)) -> Result<()> {
    let (ks, vs) = sizes::<K, V>(map)?;
    walk(map, |keys, values, got| {
        for i in 0..got {
            let k = bytemuck::pod_read_unaligned::<K>(&keys[i * ks..(i + 1) * ks]);
            let v = bytemuck::pod_read_unaligned::<V>(&values[i * vs..(i + 1) * vs]);
            each(&k, &v);
        }
    })
}

/// The key and value sizes of `K` and `V`, checked against the map's own.
fn sizes<K, V>(map: &MapData) -> Result<(usize, usize)> {
    let info = map
        .info()
        .map_err(|e| Error::ebpf("map info", e.to_string()))?;
    let (ks, vs) = (size_of::<K>(), size_of::<V>());
    if info.key_size() as usize != ks || info.value_size() as usize != vs {
        return Err(Error::ebpf(
            "read map",
            format!(
                "entries of {}+{} bytes, not {ks}+{vs}",
                info.key_size(),
                info.value_size()
            ),
        ));
    }
    Ok((ks, vs))
}

/// Every entry of a hash map with keys `K` and values `V`, which must be the map's
/// own sizes.
pub fn entries<K: Pod, V: Pod>(map: &MapData) -> Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    for_each(map, |k: &K, v: &V| out.push((*k, *v)))?;
    Ok(out)
}
