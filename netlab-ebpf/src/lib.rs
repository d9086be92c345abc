#![no_std]
// The library target exists so that netlab's build.rs can depend on this crate for
// cache invalidation; the programs are in the `netlab-tc` binary.
