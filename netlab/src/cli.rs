//! The command line: one subcommand per module in `commands/`.

use clap::{Parser, Subcommand};

use crate::{commands, error::Result, lab::names};

/// A Docker-style bridge network from scratch, with NAT in eBPF. Needs root.
#[derive(Parser)]
#[command(name = "netlab", version, about, propagate_version = true)]
pub struct Cli {
    /// The lab to act on.
    #[arg(long, global = true, env = "NETLAB_LAB", default_value = "default")]
    pub lab: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create the lab: bridge, forwarding and the datapath (and the sandbox world).
    Up(commands::up::Args),
    /// Remove everything the lab made.
    Down(commands::down::Args),
    /// Create a container (a network namespace) on the lab.
    Run(commands::run::Args),
    /// Remove a container.
    Rm(commands::rm::Args),
    /// Publish ports of a running container (Docker's -p syntax).
    Publish(commands::publish::Args),
    /// Withdraw published ports of a running container.
    Unpublish(commands::publish::Args),
    /// List published ports and their counters.
    #[command(alias = "port")]
    Ports(commands::ports::Args),
    /// Run a command inside a container, or in `host` / `wan`.
    Exec(commands::exec::Args),
    /// Show the lab, its containers and addresses.
    Status(commands::status::Args),
    /// List (or flush) the eBPF datapath's connection tracking table.
    Conntrack(commands::conntrack::Args),
    /// Show the eBPF datapath's counters and drop reasons.
    Stats(commands::stats::Args),
    /// Stream the eBPF datapath's debug logs (labs brought up with --debug).
    Logs(commands::logs::Args),
    /// Every lab's figures for Prometheus: printed, served (--listen) or written for
    /// node_exporter's textfile collector (--textfile).
    Metrics(commands::metrics::Args),
    /// Compare the datapaths on fresh sandbox labs, and with a bare veth pair:
    /// throughput, request/response, connection rate, port scaling, publish time,
    /// small packets, the CLI at scale.
    // Boxed: its many flags would make every other command's value as large.
    Bench(Box<commands::bench::Args>),
}

/// Runs one subcommand on lab `lab`.
pub fn dispatch(lab: &str, command: Command) -> Result<()> {
    use commands::*;
    names::check_lab(lab)?;
    match command {
        Command::Up(args) => up::run(lab, args),
        Command::Down(args) => down::run(lab, args),
        Command::Run(args) => run::run(lab, args),
        Command::Rm(args) => rm::run(lab, args),
        Command::Exec(args) => exec::run(lab, args),
        Command::Status(args) => status::run(lab, args),
        Command::Conntrack(args) => conntrack::run(lab, args),
        Command::Stats(args) => stats::run(lab, args),
        Command::Logs(args) => logs::run(lab, args),
        Command::Metrics(args) => metrics::run(lab, args),
        Command::Publish(args) => publish::run_publish(lab, args),
        Command::Unpublish(args) => publish::run_unpublish(lab, args),
        Command::Ports(args) => ports::run(lab, args),
        Command::Bench(args) => bench::run(lab, *args),
    }
}
