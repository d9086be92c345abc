//! `netlab metrics`: every lab's figures in Prometheus' text format: printed once,
//! served on `--listen`, or written to `--textfile DIR`.

use std::{net::SocketAddr, os::unix::fs::MetadataExt, path::PathBuf};

use crate::{
    error::{Error, Result},
    lab::names,
    metrics::{self, Format, Labs},
};

#[derive(clap::Args)]
pub struct Args {
    /// Serve /metrics over HTTP on ADDR:PORT until killed, each scrape fresh (an
    /// `Accept: application/openmetrics-text` scraper gets OpenMetrics).
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "textfile")]
    pub listen: Option<String>,
    /// Write netlab_<lab>.prom into DIR (atomically) for node_exporter's textfile
    /// collector, instead of printing.
    #[arg(long, value_name = "DIR")]
    pub textfile: Option<PathBuf>,
    /// Only these labs, comma-separated (default: every lab that is up).
    #[arg(long, value_name = "LIST")]
    pub labs: Option<String>,
    /// Print OpenMetrics text instead of Prometheus' text format.
    #[arg(long, conflicts_with_all = ["listen", "textfile"])]
    pub openmetrics: bool,
}

/// The lab name is ignored: a scrape covers every lab (or `--labs`), each series
/// labelled `lab`.
pub fn run(_lab: &str, args: Args) -> Result<()> {
    // Bad flags are said before any lab is read (a lab another command is taking down
    // meanwhile would add a line of its own).
    if let Some(dir) = &args.textfile {
        metrics::textfile::check_dir(dir)?;
    }
    let mut labs = Labs::default();
    if let Some(list) = &args.labs {
        for lab in list.split(',').map(str::trim).filter(|l| !l.is_empty()) {
            names::check_lab(lab)?;
            labs.0.push(lab.to_string());
        }
        if labs.0.is_empty() {
            return Err(Error::Invalid(
                "--labs names no lab: give LAB[,LAB...], or leave it out for every lab".into(),
            ));
        }
    }
    // A lab named that is not up is a typo more often than not: said at once, rather
    // than scraped as nothing for ever after.
    let up: Vec<String> = crate::store::all_labs()?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let missing = labs.0.iter().find(|l| !up.contains(l)).map(|m| {
        Error::Invalid(format!(
            "--labs: lab {m} is not up (`netlab status --lab {m}`)"
        ))
    });
    if let Some(dir) = &args.textfile {
        // From a timer: the labs that are up are written even when another named one
        // went down, which is still said, and fails the run; the file netlab wrote of
        // a lab that is gone goes.
        let figures = if missing.is_none() || labs.0.iter().any(|l| up.contains(l)) {
            metrics::collect(&labs)?
        } else {
            Vec::new()
        };
        // Two runs at once (a timer per lab) would each save the record without the
        // other's file: one at a time per directory.
        let meta = std::fs::metadata(dir).map_err(|e| Error::io("stat", dir, e))?;
        let _dir = crate::store::lock_directory(meta.dev(), meta.ino())?;
        let done = metrics::textfile::write(dir, &figures, crate::store::exists)?;
        for path in done.written {
            eprintln!("wrote {}", path.display());
        }
        for path in done.removed {
            eprintln!("removed {} (its lab is gone)", path.display());
        }
        if let Some(e) = done.failed {
            if let Some(m) = missing {
                eprintln!("netlab: {m}");
            }
            return Err(e);
        }
        return missing.map_or(Ok(()), Err);
    }
    if let Some(e) = missing {
        return Err(e);
    }
    if let Some(addr) = &args.listen {
        let addr: SocketAddr = addr.parse().map_err(|_| {
            Error::Invalid(format!(
                "--listen {addr:?}: give ADDR:PORT, e.g. 127.0.0.1:9464"
            ))
        })?;
        return metrics::serve::serve(addr, &labs);
    }
    let format = if args.openmetrics {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    };
    print!("{}", metrics::scrape(&labs, format)?);
    Ok(())
}
