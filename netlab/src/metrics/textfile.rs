//! `netlab metrics --textfile DIR`: one `netlab_<lab>.prom` per lab in DIR, in
//! Prometheus' text format, for node_exporter's textfile collector (the convention for
//! tools without a daemon: run it from a timer). Each file is written whole under a
//! name the collector does not read (`.netlab_<lab>.prom.<pid>.<nanos>.tmp`), then
//! renamed over the old one: a scrape sees the old file or the new one, never half of
//! one.
//!
//! The files written are recorded in the directory ([`RECORD`], one `LAB DEV INO` line
//! each, the identity of the file netlab made), so that a later run removes the file of
//! a lab that is gone (taken down) rather than leave its last figures, `netlab_lab_info`
//! 1 included, to be scraped for ever: only a file recorded, still that file (same
//! device and inode, netlab's owner), and only for a lab that no longer exists. A
//! file someone put in its place, or any other file of the directory, is never
//! touched, whatever its name.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use super::{Format, LabFigures, encode};
use crate::error::{Error, Result};

/// The record of the files netlab wrote in a textfile directory (hidden: the collector
/// reads `*.prom` only).
pub const RECORD: &str = ".netlab_textfiles";

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

/// What a textfile run did: the files written, those removed (of labs gone), and the
/// first file that could not be written (the others are said on stderr).
#[derive(Debug, Default)]
pub struct Done {
    pub written: Vec<PathBuf>,
    pub removed: Vec<PathBuf>,
    pub failed: Option<Error>,
}

/// A file netlab wrote: its lab and its identity.
#[derive(Clone, Debug, PartialEq)]
struct Written {
    lab: String,
    dev: u64,
    ino: u64,
}

/// Writes each lab's file, then removes the recorded files of labs that no longer
/// exist (`exists`), and records what is netlab's now.
pub fn write(dir: &Path, labs: &[LabFigures], exists: impl Fn(&str) -> bool) -> Result<Done> {
    check_dir(dir)?;
    let before = read_record(dir);
    let mut record: Vec<Written> = before.iter().filter(|w| is_ours(dir, w)).cloned().collect();
    let mut done = Done::default();
    let mut failed = None;
    for lab in labs {
        let text = encode::encode(std::slice::from_ref(lab), Format::Prometheus);
        let to = path(dir, &lab.lab);
        // One lab's file that cannot be written (a directory someone made at its name)
        // keeps no other lab's from being written: said, and the run fails at the end.
        let (dev, ino) = match crate::files::write_atomic_identified(&to, text.as_bytes()) {
            Ok(id) => id,
            Err(e) => {
                let e = Error::io("write", &to, e);
                if failed.is_some() {
                    eprintln!("netlab: {e}");
                } else {
                    failed = Some(e);
                }
                continue;
            }
        };
        record.retain(|w| w.lab != lab.lab);
        record.push(Written {
            lab: lab.lab.clone(),
            dev,
            ino,
        });
        done.written.push(to);
    }
    for w in record.iter().filter(|w| !exists(&w.lab)) {
        let file = path(dir, &w.lab);
        // Checked again just before: only the file netlab made.
        if is_ours(dir, w) {
            match fs::remove_file(&file) {
                Ok(()) => done.removed.push(file),
                // Another run at once took it first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    let e = Error::io("remove", &file, e);
                    match failed {
                        Some(_) => eprintln!("netlab: {e}"),
                        None => failed = Some(e),
                    }
                }
            }
        }
    }
    record.retain(|w| exists(&w.lab));
    if record != before
        && let Err(e) = save_record(dir, &record)
    {
        // The figures are written: only a later removal is lost.
        eprintln!(
            "netlab metrics: {e}: the files written are not recorded, and will not be removed when their lab is taken down"
        );
    }
    done.failed = failed;
    Ok(done)
}

/// Whether the file `w` records is still the one netlab made: a regular file of this
/// user's, with the identity recorded.
fn is_ours(dir: &Path, w: &Written) -> bool {
    fs::symlink_metadata(path(dir, &w.lab))
        .is_ok_and(|m| m.is_file() && m.uid() == euid() && (m.dev(), m.ino()) == (w.dev, w.ino))
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The record, if it is netlab's (a regular file of this user's that no one else may
/// write; one made by anyone else is ignored, so that no one can have netlab remove a
/// file by writing a record); lines that do not parse, or name no lab, are left out.
fn read_record(dir: &Path) -> Vec<Written> {
    let file = dir.join(RECORD);
    let trusted = fs::symlink_metadata(&file)
        .is_ok_and(|m| m.is_file() && m.uid() == euid() && m.mode() & 0o022 == 0);
    if !trusted {
        return Vec::new();
    }
    fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Written> {
    let mut words = line.split_whitespace();
    let (lab, dev, ino) = (words.next()?, words.next()?, words.next()?);
    if words.next().is_some() || crate::lab::names::check_lab(lab).is_err() {
        return None;
    }
    Some(Written {
        lab: lab.to_string(),
        dev: dev.parse().ok()?,
        ino: ino.parse().ok()?,
    })
}

/// Writes the record whole (as the metrics files are), or removes it once it records
/// nothing (a record of this user's only: one that is not netlab's is left alone).
fn save_record(dir: &Path, record: &[Written]) -> Result<()> {
    let file = dir.join(RECORD);
    if record.is_empty() {
        let ours = fs::symlink_metadata(&file).is_ok_and(|m| m.is_file() && m.uid() == euid());
        if ours {
            fs::remove_file(&file).map_err(|e| Error::io("remove", &file, e))?;
        }
        return Ok(());
    }
    let text: String = record
        .iter()
        .map(|w| format!("{} {} {}\n", w.lab, w.dev, w.ino))
        .collect();
    crate::files::write_atomic(&file, text.as_bytes()).map_err(|e| Error::io("write", &file, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lines() {
        let w = parse_line("web 2049 77").unwrap();
        assert_eq!((w.lab.as_str(), w.dev, w.ino), ("web", 2049, 77));
        for bad in ["", "web", "web 1", "web 1 x", "../x 1 2", "web 1 2 3"] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }
}
