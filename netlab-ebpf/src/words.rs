//! Copying and zeroing a struct eight bytes at a time. A plain `*dst = *src` between
//! two pointers LLVM cannot tell apart (a map value and a per-CPU slot, say) compiles
//! to a call of bpf-linker's `memmove`, and a zeroed struct to its `memset`: loops of
//! one byte per turn, 56 turns for an IPv4 conntrack entry, 80 for an IPv6 one — about
//! a tenth of a packet's time on the established path before these. Volatile accesses
//! keep LLVM from turning the words back into those calls.

use core::mem::{align_of, size_of};

/// Checks, at compile time, that `T` is made of whole, aligned words.
struct Words<T>(T);

impl<T> Words<T> {
    const COUNT: usize = {
        assert!(size_of::<T>() % 8 == 0 && align_of::<T>() >= 8);
        size_of::<T>() / 8
    };
}

/// `*dst = *src`, a word at a time.
#[inline(always)]
pub fn copy<T: Copy>(dst: &mut T, src: &T) {
    let d = dst as *mut T as *mut u64;
    let s = src as *const T as *const u64;
    for i in 0..Words::<T>::COUNT {
        unsafe { core::ptr::write_volatile(d.add(i), core::ptr::read_volatile(s.add(i))) };
    }
}

/// `*dst = *src` for an address (`u32`, or IPv6's `[u32; 4]`), a 32-bit word at a
/// time: assigned whole between two pointers, an IPv6 address is a call of
/// bpf-linker's `memmove`.
#[inline(always)]
pub fn addr<T: Copy>(dst: &mut T, src: &T) {
    const { assert!(size_of::<T>() % 4 == 0 && align_of::<T>() >= 4) };
    let d = dst as *mut T as *mut u32;
    let s = src as *const T as *const u32;
    for i in 0..size_of::<T>() / 4 {
        unsafe { core::ptr::write_volatile(d.add(i), core::ptr::read_volatile(s.add(i))) };
    }
}

/// A MAC address copied a byte at a time, in line: `*dst = *src` between two pointers
/// is a call of bpf-linker's `memmove` (a six-turn loop).
#[inline(always)]
pub fn mac(dst: &mut [u8; 6], src: &[u8; 6]) {
    for i in 0..6 {
        unsafe { core::ptr::write_volatile(&mut dst[i], core::ptr::read_volatile(&src[i])) };
    }
}

/// `*dst` all zeroes, a word at a time.
#[inline(always)]
pub fn zero<T: Copy>(dst: &mut T) {
    let d = dst as *mut T as *mut u64;
    for i in 0..Words::<T>::COUNT {
        unsafe { core::ptr::write_volatile(d.add(i), 0) };
    }
}
