use which::which;

/// Rebuild when bpf-linker changes: cargo cannot see it otherwise.
fn main() {
    let bpf_linker =
        which("bpf-linker").expect("bpf-linker is not on PATH: run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
}
