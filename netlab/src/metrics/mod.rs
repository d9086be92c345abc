//! `netlab metrics`: the labs' figures for Prometheus. A scrape covers every lab that
//! is up (or those named), each series labelled with its `lab`. What it reads of a lab is what `status`,
//! `stats`, `conntrack` and `ports` read ([`figures`]); it is written with
//! `prometheus-client` ([`encode`]) in Prometheus' text format (what `promtool`,
//! node_exporter's textfile collector and every Prometheus read) or in OpenMetrics'
//! when a scraper asks for it; printed once, served over HTTP ([`serve`]), or written
//! for node_exporter's textfile collector ([`textfile`]).

pub mod encode;
pub mod figures;
pub mod serve;
pub mod textfile;

pub use encode::Format;
pub use figures::LabFigures;

use crate::error::Result;

/// Which labs a scrape covers.
#[derive(Clone, Debug, Default)]
pub struct Labs(
    /// The named ones, or (empty) every lab that is up.
    pub Vec<String>,
);

impl Labs {
    fn covers(&self, lab: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|l| l == lab)
    }
}

/// The figures of the labs covered that are up, sorted by name; a lab being built is
/// left out, and so is one whose host namespace is gone (removed behind netlab's back:
/// the next command on it says so and clears it up); one that cannot be read (torn
/// down while it is read) is left out and said on stderr.
pub fn collect(which: &Labs) -> Result<Vec<LabFigures>> {
    let mut labs: Vec<_> = crate::store::all_labs()?
        .into_iter()
        .filter(|s| which.covers(&s.name))
        .filter(|s| {
            let why = if s.building {
                "it is being brought up (or its `up` was interrupted)"
            } else if s.taking_down {
                "it is partly taken down"
            } else if !crate::topology::host_is_the_labs(s) {
                "its host namespace is gone"
            } else {
                return true;
            };
            // Said only of a lab the scrape names: the others are every lab that is up.
            if !which.0.is_empty() {
                eprintln!("netlab metrics: lab {} left out: {why}", s.name);
            }
            false
        })
        .collect();
    labs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(labs
        .iter()
        .filter_map(|state| {
            figures::collect(state)
                .map_err(|e| eprintln!("netlab metrics: lab {} left out: {e}", state.name))
                .ok()
        })
        .collect())
}

/// One scrape, encoded.
pub fn scrape(which: &Labs, format: Format) -> Result<String> {
    Ok(encode::encode(&collect(which)?, format))
}
