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
    // A panic unwinds (every guard runs) to here: output that could not be written has
    // been said in one line, any other panic as Rust says it.
    let done = std::panic::catch_unwind(|| netlab::cli::dispatch(&cli.lab, cli.command))
        .unwrap_or_else(|payload| match output_failure(&*payload) {
            Some(_) => std::process::exit(1),
            None => std::panic::resume_unwind(payload),
        });
    if let Err(e) = done {
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
/// commands print at their end, so what the command did is done, and the line says so;
/// the panic still unwinds, so every guard on the way runs. Every other panic is
/// reported as Rust reports it.
fn output_errors_are_one_line() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| match output_failure(info.payload()) {
        Some(why) => {
            let _ = writeln!(
                std::io::stderr(),
                "netlab: cannot write the output ({why}); what the command did is done"
            );
        }
        None => default(info),
    }));
}

/// Why printing failed, when `payload` is the panic of `println!` on a stdout that
/// cannot be written (std's message, "failed printing to stdout: ERROR").
fn output_failure(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())?;
    msg.strip_prefix("failed printing to stdout: ")
}
