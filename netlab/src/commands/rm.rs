//! `netlab rm NAME`.

use crate::{
    error::{Error, Result},
    publish,
    state::Locked,
    topology,
};

#[derive(clap::Args)]
pub struct Args {
    pub name: String,
}

pub fn run(lab: &str, args: Args) -> Result<()> {
    let lock = Locked::acquire(lab)?;
    let mut state = lock.require()?;
    let Some(c) = state.container(&args.name).cloned() else {
        return Err(Error::Invalid(format!(
            "no container {} in lab {lab}",
            args.name
        )));
    };
    let specs: Vec<_> = state
        .ports
        .iter()
        .filter(|p| p.container == args.name)
        .map(|p| p.spec)
        .collect();
    publish::unpublish(&mut state, &args.name, &specs)?;
    topology::remove_container(&state, &c)?;
    state.containers.retain(|x| x.name != args.name);
    lock.save(&state)?;
    println!("{}", args.name);
    Ok(())
}
