//! Was the machine quiet while a figure was measured? `/proc/stat` read before and
//! after each measurement says how much time the hypervisor stole from this VM, and
//! how busy the CPUs were that the workload does not use (on a quiet machine they
//! idle: both ends of b-d and i share one CPU, a's and g's take one each). A round
//! is also called disturbed when the veth reference, which has no datapath to change
//! between rounds, measured far from its own median: then the machine itself moved.

use std::fmt::Write as _;

/// Above this share of stolen time a measurement is disturbed (perf.md §5.1: discard
/// runs with more than about 2 % steal).
pub const STEAL_LIMIT_PCT: f64 = 2.0;
/// Above this the CPUs the workload leaves alone were doing someone else's work.
pub const OTHERS_LIMIT_PCT: f64 = 20.0;
/// How far the veth reference may land from its median before its round is
/// disturbed.
pub const VETH_LIMIT_PCT: f64 = 10.0;

/// One CPU's counters from `/proc/stat`, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Ticks {
    total: u64,
    /// idle and iowait.
    idle: u64,
    steal: u64,
}

impl Ticks {
    fn since(self, before: Ticks) -> Ticks {
        Ticks {
            total: self.total.saturating_sub(before.total),
            idle: self.idle.saturating_sub(before.idle),
            steal: self.steal.saturating_sub(before.steal),
        }
    }

    /// Busy: neither idle nor stolen.
    fn busy(self) -> u64 {
        self.total.saturating_sub(self.idle + self.steal)
    }
}

/// `/proc/stat`'s CPU lines at one moment: the sum, then each CPU by number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuTimes {
    all: Ticks,
    cpus: Vec<(usize, Ticks)>,
}

/// Parses the `cpu` lines of `/proc/stat`: user nice system idle iowait irq softirq
/// steal (guest time is already in user and nice).
pub fn parse(text: &str) -> Option<CpuTimes> {
    let mut all = None;
    let mut cpus = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("cpu")) {
        let mut fields = line.split_whitespace();
        let name = fields.next()?;
        let v: Vec<u64> = fields
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        if v.len() < 8 {
            return None;
        }
        let t = Ticks {
            total: v.iter().sum(),
            idle: v[3] + v[4],
            steal: v[7],
        };
        match name.strip_prefix("cpu").filter(|n| !n.is_empty()) {
            None => all = Some(t),
            Some(n) => cpus.push((n.parse().ok()?, t)),
        }
    }
    Some(CpuTimes { all: all?, cpus })
}

/// The counters now; `None` where `/proc/stat` cannot be read (then nothing is
/// flagged).
pub fn now() -> Option<CpuTimes> {
    parse(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// What the machine did during one measurement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// Time stolen by the hypervisor, % of all CPUs' time.
    pub steal_pct: f64,
    /// How busy the CPUs the workload does not use were, %; `None` when it uses
    /// them all.
    pub others_pct: Option<f64>,
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

impl Load {
    /// The load between two readings, for a workload pinned to `used`.
    pub fn between(before: &CpuTimes, after: &CpuTimes, used: &[usize]) -> Load {
        let all = after.all.since(before.all);
        let others: Vec<Ticks> = after
            .cpus
            .iter()
            .filter(|(n, _)| !used.contains(n))
            .filter_map(|(n, t)| {
                let b = before.cpus.iter().find(|(m, _)| m == n)?.1;
                Some(t.since(b))
            })
            .collect();
        let others_pct = (!others.is_empty()).then(|| {
            let busy = others.iter().map(|t| t.busy()).sum();
            pct(busy, others.iter().map(|t| t.total).sum())
        });
        Load {
            steal_pct: pct(all.steal, all.total),
            others_pct,
        }
    }

    /// The worse of two loads (a scenario that measures twice).
    pub fn worst(self, other: Load) -> Load {
        Load {
            steal_pct: self.steal_pct.max(other.steal_pct),
            others_pct: match (self.others_pct, other.others_pct) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        }
    }

    /// Why the measurement was disturbed, or `None` when it was not.
    pub fn disturbed(&self) -> Option<String> {
        let mut why = String::new();
        if self.steal_pct > STEAL_LIMIT_PCT {
            let _ = write!(why, "steal {:.1} %", self.steal_pct);
        }
        if let Some(o) = self.others_pct.filter(|o| *o > OTHERS_LIMIT_PCT) {
            if !why.is_empty() {
                why.push_str(", ");
            }
            let _ = write!(why, "other CPUs {o:.0} % busy");
        }
        (!why.is_empty()).then_some(why)
    }
}

/// A measurement's watch: started before it, read after it.
pub struct Watch {
    before: Option<CpuTimes>,
    used: Vec<usize>,
}

impl Watch {
    /// Starts watching a workload pinned to the CPUs `used`.
    pub fn start(used: &[Option<usize>]) -> Watch {
        let mut used: Vec<usize> = used.iter().flatten().copied().collect();
        used.dedup();
        Watch {
            before: now(),
            used,
        }
    }

    /// Starts watching a measurement that may run on every CPU (the CLI, publishing):
    /// only stolen time counts.
    pub fn unpinned() -> Watch {
        let before = now();
        let used = before
            .as_ref()
            .map(|b| b.cpus.iter().map(|(n, _)| *n).collect())
            .unwrap_or_default();
        Watch { before, used }
    }

    pub fn stop(self) -> Option<Load> {
        Some(Load::between(&self.before?, &now()?, &self.used))
    }
}

/// How far `value` is from `median`, in %.
pub fn off_by_pct(value: f64, median: f64) -> f64 {
    if median == 0.0 {
        0.0
    } else {
        (value / median - 1.0) * 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "cpu  100 0 100 800 0 0 0 0 0 0
cpu0 50 0 50 400 0 0 0 0 0 0
cpu1 50 0 50 400 0 0 0 0 0 0
intr 821407 0 0
ctxt 1
";
    // 200 ticks later on each CPU: cpu1 (the workload's) busy throughout; cpu0 busy
    // for 60 of its 200 and 10 stolen.
    const AFTER: &str = "cpu  360 0 100 930 0 0 0 10 0 0
cpu0 110 0 50 530 0 0 0 10 0 0
cpu1 250 0 50 400 0 0 0 0 0 0
";

    #[test]
    fn load_from_two_readings() {
        let (b, a) = (parse(BEFORE).unwrap(), parse(AFTER).unwrap());
        let l = Load::between(&b, &a, &[1]);
        assert!((l.steal_pct - 2.5).abs() < 1e-9, "{l:?}");
        // cpu0: 200 ticks, 130 idle, 10 stolen, 60 busy.
        assert!((l.others_pct.unwrap() - 30.0).abs() < 1e-9, "{l:?}");
        assert_eq!(
            l.disturbed().as_deref(),
            Some("steal 2.5 %, other CPUs 30 % busy")
        );
        // A workload on both CPUs leaves nothing to watch.
        let l = Load::between(&b, &a, &[0, 1]);
        assert_eq!(l.others_pct, None);
        assert_eq!(l.disturbed().as_deref(), Some("steal 2.5 %"));
        let quiet = Load {
            steal_pct: 0.5,
            others_pct: Some(3.0),
        };
        assert_eq!(quiet.disturbed(), None);
        assert_eq!(
            quiet.worst(Load {
                steal_pct: 0.1,
                others_pct: Some(40.0)
            }),
            Load {
                steal_pct: 0.5,
                others_pct: Some(40.0)
            }
        );
    }

    #[test]
    fn proc_stat_as_this_machine_writes_it() {
        let t = parse(&std::fs::read_to_string("/proc/stat").unwrap()).unwrap();
        assert!(!t.cpus.is_empty() && t.all.total > 0, "{t:?}");
        assert!(parse("intr 1 2 3").is_none());
        assert!(parse("cpu  1 2 x 4 5 6 7 8").is_none());
        assert!((off_by_pct(88.0, 80.0) - 10.0).abs() < 1e-9);
    }
}
