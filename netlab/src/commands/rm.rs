//! `netlab rm NAME`.

use crate::{
    error::Result,
    ops::{self, Session},
};

#[derive(clap::Args)]
pub struct Args {
    pub name: String,
    /// Docker's `rm -f`, taken as Docker users type it: `rm` always ends the
    /// container's processes.
    #[arg(short = 'f', long = "force", hide = true)]
    pub _force: bool,
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    let mut s = Session::open(lab)?;
    ops::detach(&mut s, &args.name)?;
    println!("{}", args.name);
    Ok(())
}
