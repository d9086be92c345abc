//! `netlab metrics --textfile DIR`: one `netlab_<lab>.prom` per lab in DIR, in
//! Prometheus' text format, for node_exporter's textfile collector (the convention for
//! tools without a daemon: run it from a timer). Each file is written whole under a
//! name the collector does not read (`.netlab_<lab>.prom.<pid>.tmp`), then renamed over the
//! old one: a scrape sees the old file or the new one, never half of one.

use std::path::{Path, PathBuf};

use super::{Format, LabFigures, encode};
use crate::error::{Error, Result};

/// The file a lab's metrics go to in `dir`.
pub fn path(dir: &Path, lab: &str) -> PathBuf {
    dir.join(format!("netlab_{lab}.prom"))
}

/// Refuses a `--textfile` that is not a directory (checked before any lab is read).
pub fn check_dir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        let what = if dir.exists() {
            "not a directory"
        } else {
            "no such directory"
        };
        return Err(Error::Invalid(format!(
            "--textfile {}: {what} (node_exporter's --collector.textfile.directory)",
            dir.display()
        )));
    }
    Ok(())
}

/// Writes each lab's file; returns the paths written.
pub fn write(dir: &Path, labs: &[LabFigures]) -> Result<Vec<PathBuf>> {
    check_dir(dir)?;
    let mut written = Vec::new();
    for lab in labs {
        let text = encode::encode(std::slice::from_ref(lab), Format::Prometheus);
        let to = path(dir, &lab.lab);
        crate::files::write_atomic(&to, text.as_bytes()).map_err(|e| Error::io("write", &to, e))?;
        written.push(to);
    }
    Ok(written)
}
