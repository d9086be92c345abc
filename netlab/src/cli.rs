//! The command line: one subcommand per module in `commands/`.

use clap::{Parser, Subcommand};

use crate::commands;

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
    Down,
    /// Create a container (a network namespace) on the lab.
    Run(commands::run::Args),
    /// Remove a container.
    Rm(commands::rm::Args),
    /// Publish ports of a running container (Docker's -p syntax).
    Publish(commands::publish::Args),
    /// Withdraw published ports of a running container.
    Unpublish(commands::publish::Args),
    /// List published ports and their counters.
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
    /// Compare the datapaths on fresh sandbox labs: throughput, request/response,
    /// connection rate, port scaling, publish time.
    Bench(commands::bench::Args),
}
