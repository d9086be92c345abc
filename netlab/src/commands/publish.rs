//! `netlab publish NAME SPEC...` and `netlab unpublish NAME SPEC...`: edit a running
//! container's published ports, as Docker's `-p` cannot.

use crate::{
    error::Result,
    lab::{PortRequest, PortSpec},
    ops::{self, Session},
};

#[derive(clap::Args)]
pub struct Args {
    /// The container.
    pub name: String,
    /// Port specs in Docker's -p syntax: [HOST_IP:][HOST_PORT[-END]:]CTR_PORT[-END][/tcp|/udp]
    /// (an IPv6 HOST_IP in brackets: [::]:8080:80; an empty one every address: :8080:80).
    /// `publish` picks a free host port where none is given (80, ::80, 127.0.0.1::80,
    /// 0:80), or one of a host range given for one container port (9000-9005:80), and
    /// prints it; `unpublish` names the host port.
    #[arg(required = true)]
    pub specs: Vec<String>,
}

pub fn run_publish(lab: &str, args: Args) -> Result<()> {
    let mut specs: Vec<PortRequest> = Vec::new();
    for p in &args.specs {
        specs.extend(PortRequest::parse(p)?);
    }
    let mut s = Session::open(lab)?;
    let done = ops::publish(&mut s, &args.name, &specs)?;
    let mut out = String::new();
    for p in done {
        out += &format!("{} -> {}\n", p.spec, s.state.targets(&p));
    }
    print!("{out}");
    Ok(())
}

pub fn run_unpublish(lab: &str, args: Args) -> Result<()> {
    let specs: Vec<PortSpec> = args
        .specs
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_>>()?;
    let mut s = Session::open(lab)?;
    let gone = ops::unpublish(&mut s, &args.name, &specs)?;
    let mut out = String::new();
    for p in gone {
        out += &format!("{} unpublished\n", p.spec);
    }
    print!("{out}");
    Ok(())
}
