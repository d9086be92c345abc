//! `netlab down`: remove everything the lab made, even when part of it is already gone.

use crate::{
    datapath::{self, ebpf},
    error::{Error, Errors, Result},
    netlink::netns,
    state::Locked,
    topology,
};

pub fn run(lab: &str) -> Result<()> {
    let lock = Locked::acquire(lab)?;
    let mut errors = Errors::default();
    match lock.load()? {
        Some(state) => {
            errors.check(datapath::for_kind(state.datapath).teardown(&state));
            errors.check(topology::teardown(&state));
        }
        None => {
            // No state: sweep what a crashed `up` may have left, by name.
            let leftovers: Vec<String> = std::fs::read_dir(netns::NETNS_DIR)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&format!("{lab}-")))
                .collect();
            let pins = ebpf::pin_dir(lab).exists();
            if leftovers.is_empty() && !pins {
                let _ = lock.remove();
                return Err(Error::Invalid(format!("lab {lab} does not exist")));
            }
            for ns in leftovers {
                errors.check(netns::delete(&ns));
            }
        }
    }
    errors.check(ebpf::remove_pins(lab));
    errors.check(lock.remove());
    errors.into_result()?;
    println!("lab {lab} is down");
    Ok(())
}
