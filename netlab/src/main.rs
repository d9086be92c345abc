use clap::Parser;
use netlab::cli::Cli;

fn main() {
    // Die quietly on a closed pipe (`netlab conntrack | head`), as Unix tools do.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "netlab: needs root (it creates network namespaces and loads eBPF programs); run it as root"
        );
        std::process::exit(1);
    }
    if let Err(e) = netlab::commands::dispatch(&cli.lab, cli.command) {
        eprintln!("netlab: {e}");
        std::process::exit(e.exit_code());
    }
}
