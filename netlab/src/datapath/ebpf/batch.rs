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

/// One reader of a hash map's entries, a `BPF_MAP_LOOKUP_BATCH` call at a time, with
/// room for the entries of the last call.
struct Reader {
    fd: libc::c_int,
    key_size: usize,
    value_size: usize,
    keys: Vec<u8>,
    values: Vec<u8>,
}

/// What one call read.
struct Read {
    /// Entries, in the reader's buffers.
    got: usize,
    /// Where the next call goes on (the bucket after the last one read), or `None`
    /// at the end of the map.
    next: Option<u64>,
    /// The first bucket from where the call began holds more entries than it asked
    /// for: it read nothing, and must ask for more.
    too_small: bool,
}

impl Reader {
    fn new(map: &MapData) -> Result<Reader> {
        let info = map
            .info()
            .map_err(|e| Error::ebpf("map info", e.to_string()))?;
        Ok(Reader {
            fd: map.fd().as_fd().as_raw_fd(),
            key_size: info.key_size() as usize,
            value_size: info.value_size() as usize,
            keys: Vec::new(),
            values: Vec::new(),
        })
    }

    /// Reads up to `count` entries, whole buckets only, from the position `from` (the
    /// kernel's token: for a hash map, the index of a bucket; 0 is the start).
    fn read(&mut self, from: u64, count: usize) -> Result<Read> {
        self.keys.resize(count * self.key_size, 0u8);
        self.values.resize(count * self.value_size, 0u8);
        let mut next = 0u64;
        let mut attr = BatchAttr {
            in_batch: &from as *const u64 as u64,
            out_batch: &mut next as *mut u64 as u64,
            keys: self.keys.as_mut_ptr() as u64,
            values: self.values.as_mut_ptr() as u64,
            count: count as u32,
            map_fd: self.fd as u32,
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
        let got = (attr.count as usize).min(count);
        if rc >= 0 {
            return Ok(Read {
                got,
                next: Some(next),
                too_small: false,
            });
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            // The end of the map (the last entries came with it).
            Some(libc::ENOENT) => Ok(Read {
                got,
                next: None,
                too_small: false,
            }),
            Some(libc::ENOSPC) if got == 0 && count < 1 << 20 => Ok(Read {
                got: 0,
                next: Some(from),
                too_small: true,
            }),
            _ => Err(Error::io("read map", "BPF_MAP_LOOKUP_BATCH", err)),
        }
    }

    /// The keys and values of the last call's `got` entries.
    fn entries(&self, got: usize) -> (&[u8], &[u8]) {
        (
            &self.keys[..got * self.key_size],
            &self.values[..got * self.value_size],
        )
    }
}

/// Walks every entry of a hash map (not per-CPU), a batch at a time: `each` gets the
/// batch's keys and values, `key_size` and `value_size` bytes apiece, and how many
/// there are. Entries added or removed meanwhile may or may not be seen, as with any
/// walk of a live map.
fn walk(map: &MapData, mut each: impl FnMut(&[u8], &[u8], usize)) -> Result<()> {
    let mut reader = Reader::new(map)?;
    let (mut from, mut chunk) = (0, CHUNK);
    loop {
        let read = reader.read(from, chunk)?;
        if read.too_small {
            chunk *= 2;
            continue;
        }
        let (keys, values) = reader.entries(read.got);
        each(keys, values, read.got);
        match read.next {
            Some(next) => from = next,
            None => return Ok(()),
        }
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
    let sizes = sizes::<K, V>(map)?;
    walk(map, |keys, values, got| {
        decode((keys, values), got, sizes, |k: K, v: V| each(&k, &v))
    })
}

/// Calls `each` on each of `got` entries of a batch, as `K` and `V` (their sizes
/// `ks`, `vs`).
fn decode<K: Pod, V: Pod>(
    (keys, values): (&[u8], &[u8]),
    got: usize,
    (ks, vs): (usize, usize),
    mut each: impl FnMut(K, V),
) {
    for i in 0..got {
        let k = bytemuck::pod_read_unaligned::<K>(&keys[i * ks..(i + 1) * ks]);
        let v = bytemuck::pod_read_unaligned::<V>(&values[i * vs..(i + 1) * vs]);
        each(k, v);
    }
}

/// [`for_each`] in two threads at once, one per half of the map's buckets, for a
/// large map on a machine with two CPUs or more (in one otherwise): each thread
/// counts into its own `T` (made by `make`), and the `T`s are returned.
///
/// A hash map has a power of two buckets (`max_entries` rounded up), and the batch
/// token is a bucket's index, so the upper half's thread starts at the middle bucket.
/// The lower half's must stop there, but a call reads whole buckets up to a count of
/// entries, and skips empty buckets, so where it ends is known only afterwards: a
/// call that ends past the middle is read again asking for fewer entries, down to one
/// bucket. That one bucket may be the first of the upper half (when the buckets
/// between are empty); its entries are then among the first the upper thread read,
/// and left to it. An entry is read by one thread only, as a key is in one bucket.
pub fn for_each_in_halves<K: Pod + Send, V: Pod, T: Send>(
    map: &MapData,
    make: impl Fn() -> T + Sync,
    each: impl Fn(&mut T, &K, &V) + Sync,
) -> Result<Vec<T>> {
    let sizes = sizes::<K, V>(map)?;
    let info = map
        .info()
        .map_err(|e| Error::ebpf("map info", e.to_string()))?;
    let middle = u64::from(info.max_entries()).next_power_of_two() / 2;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 || middle < HALVES_FROM {
        let mut t = make();
        for_each(map, |k: &K, v: &V| each(&mut t, k, v))?;
        return Ok(vec![t]);
    }
    std::thread::scope(|scope| {
        let upper = scope.spawn(|| -> Result<(T, Vec<K>)> {
            let mut t = make();
            let mut reader = Reader::new(map)?;
            let (mut from, mut chunk) = (middle, CHUNK);
            let mut first: Option<Vec<K>> = None;
            loop {
                let read = reader.read(from, chunk)?;
                if read.too_small {
                    chunk *= 2;
                    continue;
                }
                let keep = first.is_none();
                let mut keys = Vec::new();
                decode(reader.entries(read.got), read.got, sizes, |k: K, v: V| {
                    if keep {
                        keys.push(k);
                    }
                    each(&mut t, &k, &v);
                });
                first.get_or_insert(keys);
                match read.next {
                    Some(next) => from = next,
                    None => return Ok((t, first.unwrap_or_default())),
                }
            }
        });
        let mut t = make();
        let mut reader = Reader::new(map)?;
        let (mut from, mut chunk) = (0, CHUNK);
        // Whether the next call, if it reads anything, reads exactly one bucket: the
        // call before it found the first bucket one entry too big.
        let mut one_bucket = false;
        let mut straddling = Vec::new();
        while from < middle {
            let read = reader.read(from, chunk)?;
            if read.too_small {
                one_bucket = chunk < CHUNK;
                chunk = if one_bucket { chunk + 1 } else { chunk * 2 };
                continue;
            }
            let next = read.next.unwrap_or(u64::MAX);
            if next <= middle {
                decode(reader.entries(read.got), read.got, sizes, |k: K, v: V| {
                    each(&mut t, &k, &v)
                });
                (from, one_bucket) = (next, false);
                continue;
            }
            if read.got == 0 {
                break;
            }
            if one_bucket || read.got == 1 {
                decode(reader.entries(read.got), read.got, sizes, |k: K, v: V| {
                    straddling.push((k, v))
                });
                break;
            }
            // Past the middle: again, asking for fewer.
            chunk = (read.got / 2).max(1);
        }
        let (upper_t, upper_first) = upper.join().expect("the upper half's thread")?;
        for (k, v) in straddling {
            if !upper_first
                .iter()
                .any(|u| bytemuck::bytes_of(u) == bytemuck::bytes_of(&k))
            {
                each(&mut t, &k, &v);
            }
        }
        Ok(vec![t, upper_t])
    })
}

/// Maps with fewer buckets than this are read by one thread.
const HALVES_FROM: u64 = 1 << 16;

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
