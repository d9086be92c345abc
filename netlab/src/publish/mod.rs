//! Port publishing: Docker's `-p` specs, and the mappings a lab keeps in its state.

pub mod spec;

pub use spec::{PortSpec, Proto};
