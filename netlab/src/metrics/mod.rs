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
/// the next command on it says so and clears it up) or out of sight from this mount
/// namespace (`ops::figures_visible`, which says why); one that cannot be read (torn
/// down while it is read, or its state written by someone else) is left out and said
/// on stderr.
pub fn collect(which: &Labs) -> Result<Vec<LabFigures>> {
    let (labs, unreadable) = crate::store::labs_and_unreadable();
    for (lab, why) in unreadable {
        if which.covers(&lab) {
            left_out(&lab, Some(format!("its state is unreadable ({why})")));
        }
    }
    let mut labs: Vec<_> = labs
        .into_iter()
        .filter(|s| which.covers(&s.name))
        .filter(|s| {
            let why = if s.building {
                "it is being brought up (or its `up` was interrupted)".to_string()
            } else if s.taking_down {
                "it is partly taken down".to_string()
            } else if let Err(e) = crate::ops::figures_visible(s) {
                // Out of sight from this mount namespace, not gone.
                e.to_string()
            } else if !crate::topology::host_is_the_labs(s) {
                "its host namespace is gone".to_string()
            } else {
                return true;
            };
            // Said only of a lab the scrape names: the others are every lab that is up.
            if !which.0.is_empty() {
                left_out(&s.name, Some(why));
            }
            false
        })
        .collect();
    labs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(labs
        .iter()
        .filter_map(|state| {
            let figures = figures::collect(state);
            left_out(&state.name, figures.as_ref().err().map(|e| e.to_string()));
            figures.ok()
        })
        .collect())
}

/// Says on stderr why `lab` is left out of a scrape (`None`: it is not), once: a server
/// scraped every 15 s says it again only when the reason changes, or comes back after
/// the lab was in a scrape.
fn left_out(lab: &str, why: Option<String>) {
    static SAID: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    let before = said.iter().position(|(l, _)| l == lab);
    let old = before.map(|i| said.swap_remove(i).1);
    if let Some(why) = why {
        if old.as_deref() != Some(why.as_str()) {
            eprintln!("netlab metrics: lab {lab} left out: {why}");
        }
        said.push((lab.to_string(), why));
    }
}

/// One scrape, encoded.
pub fn scrape(which: &Labs, format: Format) -> Result<String> {
    Ok(encode::encode(&collect(which)?, format))
}
