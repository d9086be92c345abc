//! One module per subcommand; each has `Args` and `run`.

pub mod bench;
pub mod conntrack;
pub mod down;
pub mod exec;
pub mod logs;
pub mod ports;
pub mod publish;
pub mod rm;
pub mod run;
pub mod stats;
pub mod status;
pub mod up;

use crate::{
    cli::Command,
    datapath::DatapathKind,
    error::{Error, Result},
    state::{LabState, Locked},
};

/// The state of a lab on the eBPF datapath; on another datapath, a clear error that
/// says where `what` lives instead.
pub fn require_ebpf(lab: &str, what: &str) -> Result<LabState> {
    let state = Locked::acquire(lab)?.require()?;
    if state.datapath != DatapathKind::Ebpf {
        return Err(Error::Invalid(format!(
            "lab {lab} runs the {} datapath: {what}",
            state.datapath.name()
        )));
    }
    Ok(state)
}

pub fn dispatch(lab: &str, command: Command) -> Result<()> {
    crate::topology::names::check_lab(lab)?;
    match command {
        Command::Up(args) => up::run(lab, args),
        Command::Down => down::run(lab),
        Command::Run(args) => run::run(lab, args),
        Command::Rm(args) => rm::run(lab, args),
        Command::Exec(args) => exec::run(lab, args),
        Command::Status(args) => status::run(lab, args),
        Command::Conntrack(args) => conntrack::run(lab, args),
        Command::Stats(args) => stats::run(lab, args),
        Command::Logs(args) => logs::run(lab, args),
        Command::Publish(args) => publish::run_publish(lab, args),
        Command::Unpublish(args) => publish::run_unpublish(lab, args),
        Command::Ports(args) => ports::run(lab, args),
        Command::Bench(args) => bench::run(lab, args),
    }
}
