//! `netlab down`: remove everything the lab made, even when part of it is already gone.

use crate::{error::Result, ops};

#[derive(clap::Args)]
pub struct Args {
    /// Take the lab down even while a CNI runtime's containers are attached to it and
    /// running (they lose their interface), or while another lab lives in its sandbox
    /// (that lab is left gone).
    #[arg(long)]
    pub force: bool,
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    ops::down(lab, args.force)?;
    println!("lab {lab} is down");
    Ok(())
}
