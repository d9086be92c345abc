//! Builds the eBPF object (netlab-ebpf, for bpfel-unknown-none, with nightly and
//! bpf-linker) so that `src/lib.rs` can embed it. `cargo xtask setup` installs the tools.

use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "netlab-ebpf")
        .ok_or_else(|| anyhow!("netlab-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    // The object is built from netlab-common too (layouts, constants such as the
    // collector's batch): a change there must rebuild it.
    let common = root_dir.join("../netlab-common/src");
    println!("cargo:rerun-if-changed={common}");
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::default())
}
