//! `netlab rm NAME`.

use crate::{
    error::Result,
    ops::{self, Session},
};

#[derive(clap::Args)]
pub struct Args {
    pub name: String,
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    let mut s = Session::open(lab)?;
    ops::detach(&mut s, &args.name)?;
    println!("{}", args.name);
    Ok(())
}
