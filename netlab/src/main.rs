use std::io::Write;

use clap::Parser;
use netlab::cli::Cli;

fn main() {
    // Die quietly on a closed pipe (`netlab conntrack | head`), as Unix tools do.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    output_errors_are_one_line();
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

/// Output that cannot be written (`netlab status > /dev/full`) ends the command with one
/// line and exit 1, not a panic's message and backtrace with exit 101 (a review). The
/// commands print at their end, so what the command did is done, and the line says so.
/// Every other panic is reported as Rust reports it.
fn output_errors_are_one_line() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if let Some(why) = msg.strip_prefix("failed printing to stdout: ") {
            let _ = writeln!(
                std::io::stderr(),
                "netlab: cannot write the output ({why}); what the command did is done"
            );
            std::process::exit(1);
        }
        default(info);
    }));
}
