//! `netlab publish NAME SPEC...` and `netlab unpublish NAME SPEC...`: edit a running
//! container's published ports, as Docker's `-p` cannot.

use crate::{
    error::Result,
    publish::{self, PortSpec},
    state::Locked,
};

#[derive(clap::Args)]
pub struct Args {
    /// The container.
    pub name: String,
    /// Port specs in Docker's -p syntax: [HOST_IP:]HOST_PORT[-END]:CTR_PORT[-END][/tcp|/udp].
    #[arg(required = true)]
    pub specs: Vec<String>,
}

fn parse(specs: &[String]) -> Result<Vec<PortSpec>> {
    specs.iter().map(|s| s.parse()).collect()
}

pub fn run_publish(lab: &str, args: Args) -> Result<()> {
    let specs = parse(&args.specs)?;
    let lock = Locked::acquire(lab)?;
    let mut state = lock.require()?;
    let done = publish::publish(&mut state, &args.name, &specs)?;
    if let Err(e) = lock.save(&state) {
        let _ = publish::unpublish(&mut state, &args.name, &specs);
        return Err(e);
    }
    for p in done {
        if p.spec.host_port == p.spec.host_end {
            println!("{} -> {}:{}", p.spec, p.ctr_ip, p.spec.ctr_port);
        } else {
            println!(
                "{} -> {}:{}-{}",
                p.spec,
                p.ctr_ip,
                p.spec.ctr_port,
                p.spec.ctr_end()
            );
        }
    }
    Ok(())
}

pub fn run_unpublish(lab: &str, args: Args) -> Result<()> {
    let specs = parse(&args.specs)?;
    let lock = Locked::acquire(lab)?;
    let mut state = lock.require()?;
    let gone = publish::unpublish(&mut state, &args.name, &specs)?;
    lock.save(&state)?;
    for p in gone {
        println!("{} unpublished", p.spec);
    }
    Ok(())
}
