//! `netlab down`: remove everything the lab made, even when part of it is already gone.

use crate::{error::Result, ops};

pub fn run(lab: &str) -> Result<()> {
    ops::down(lab)?;
    println!("lab {lab} is down");
    Ok(())
}
