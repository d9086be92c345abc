use std::io::Write;

use clap::Parser;
use netlab::cli::Cli;

fn main() {
    // Die quietly on a closed pipe (`netlab conntrack | head`), as Unix tools do.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::try_parse().unwrap_or_else(|e| usage_error(e));
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "netlab: needs root (it creates network namespaces and loads eBPF programs); run it as root"
        );
        std::process::exit(1);
    }
    netlab::files::own_umask();
    if let Err(e) = netlab::cli::dispatch(&cli.lab, cli.command) {
        // A closed stderr (a benchmark's reader gone) loses the line, not the exit code.
        let _ = writeln!(std::io::stderr(), "netlab: {e}");
        std::process::exit(e.exit_code());
    }
}

/// Help and version print as clap renders them; a usage error becomes one line, like
/// every other netlab error: `netlab: invalid value 'pf' for '--datapath <DATAPATH>'
/// [possible values: ...] (see --help)`.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        e.exit();
    }
    let text = e.render().to_string();
    let line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
        })
        .collect();
    // clap's tip goes on a line of its own: here after a semicolon.
    let line = line
        .iter()
        .enumerate()
        .fold(String::new(), |mut out, (i, l)| {
            if i > 0 {
                out.push_str(if l.starts_with("tip:") { "; " } else { " " });
            }
            out.push_str(l);
            out
        });
    eprintln!(
        "netlab: {} (see --help)",
        line.trim_start_matches("error: ")
    );
    std::process::exit(2);
}
