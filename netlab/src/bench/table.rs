//! The table `netlab bench` prints at the end. Per scenario, a row per contender and
//! figure: the median over the rounds with its confidence interval, ×R the ratio to
//! iptables and vR the ratio to the veth reference (each the median of the per-round
//! ratios, with its interval), and under the block the rounds a busy machine
//! disturbed. Then the veth reference's own spread, the goals' verdicts, and the
//! ratios `--target-width` did not narrow enough.

use std::fmt::Write as _;

use super::{
    Contender, Scenario,
    goal::{Goal, Verdict},
    report::{Figure, Report, Rounding, bound_beside, num, num_rounded, ratio_num, ratio_rounded},
    stats::Estimate,
};

#[cfg(test)]
const IPTABLES: Contender = Contender::lab(crate::lab::DatapathKind::Iptables);

/// `95`, `97.5`.
pub fn percent(confidence: f64) -> String {
    let p = confidence * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}")
    } else {
        format!("{p}")
    }
}

/// `59498 [58966–61481]`, `59498` from one round, `n/a`.
pub fn value_cell(e: Option<&Estimate>) -> String {
    match e {
        None => "n/a".into(),
        Some(Estimate {
            median,
            interval: None,
            ..
        }) => num(*median),
        Some(Estimate {
            median,
            interval: Some((lo, hi)),
            ..
        }) => format!(
            "{} [{}–{}]",
            num(*median),
            num_rounded(*lo, Rounding::Down),
            num_rounded(*hi, Rounding::Up)
        ),
    }
}

/// `×1.33 [1.21–1.45]`, `×1.33` from one round, empty without a ratio.
pub fn ratio_cell(symbol: &str, e: Option<&Estimate>) -> String {
    match e {
        None => String::new(),
        Some(Estimate {
            median,
            interval: None,
            ..
        }) => format!("{symbol}{}", ratio_num(*median)),
        Some(Estimate {
            median,
            interval: Some((lo, hi)),
            ..
        }) => format!(
            "{symbol}{} [{}–{}]",
            ratio_num(*median),
            ratio_rounded(*lo, Rounding::Down),
            ratio_rounded(*hi, Rounding::Up)
        ),
    }
}

/// Rows of cells as columns, each as wide as its widest cell; a row of two cells (an
/// n/a line) spans the rest.
fn columns(out: &mut String, rows: &[Vec<String>]) {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter(|r| r.len() == n || i == 0)
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
                + 3
        })
        .collect();
    for row in rows {
        let mut line = String::from("  ");
        for (cell, w) in row.iter().zip(&widths) {
            let pad = w.saturating_sub(cell.chars().count());
            let _ = write!(line, "{cell}{}", " ".repeat(pad));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// The rows of one block: (scenario, ports).
fn block(r: &Report, out: &mut String, scenario: Scenario, ports: Option<u32>) {
    let o = &r.options;
    let figures: Vec<&Figure> = r
        .sorted()
        .into_iter()
        .filter(|f| f.scenario == scenario && f.ports == ports)
        .collect();
    let title = match (scenario, ports) {
        (Scenario::D | Scenario::E | Scenario::H, Some(n)) => {
            format!("({}) {}, N = {n}", scenario.letter(), scenario.title())
        }
        _ => format!("({}) {}", scenario.letter(), scenario.title()),
    };
    let _ = writeln!(out, "\n{title}");
    // A lab's ratio to iptables is to iptables on its own family (iptables6 for a lab
    // over IPv6), and a lab over IPv6 has one to itself over IPv4: what IPv6 costs it.
    let has = |base: &dyn Fn(Contender) -> Option<Contender>| {
        figures.iter().any(|f| {
            base(f.datapath).is_some_and(|b| b != f.datapath && r.ratio_estimate(f, b).is_some())
        })
    };
    let iptables = |c: Contender| Some(c.iptables_base());
    let (x, v, four) = (
        has(&iptables),
        has(&|c| Some(c.reference())),
        has(&Contender::ipv4_twin),
    );
    let mut head = vec![
        "datapath".to_string(),
        "figure".to_string(),
        format!("median [{} %]", percent(o.confidence)),
    ];
    if x {
        head.push("× iptables".into());
    }
    if v {
        head.push("v veth".into());
    }
    if four {
        head.push("× IPv4".into());
    }
    head.push(String::new());
    let mut rows = vec![head];
    for c in o.contenders() {
        let mine: Vec<&&Figure> = figures.iter().filter(|f| f.datapath == c).collect();
        if mine.is_empty() {
            continue;
        }
        if mine.iter().all(|f| f.samples.is_empty()) {
            let why = mine[0].errors.first().map(String::as_str).unwrap_or("");
            rows.push(vec![c.name().to_string(), format!("n/a: {why}")]);
            continue;
        }
        for (i, f) in mine.iter().enumerate() {
            let name = if i == 0 { c.name() } else { String::new() };
            let mut row = vec![
                name.to_string(),
                f.metric.heading(scenario),
                value_cell(r.estimate(f).as_ref()),
            ];
            if x {
                let e = r.ratio_estimate(f, c.iptables_base());
                row.push(ratio_cell("×", e.as_ref()));
            }
            if v {
                row.push(ratio_cell("v", r.ratio_estimate(f, c.reference()).as_ref()));
            }
            if four {
                let e = c.ipv4_twin().and_then(|b| r.ratio_estimate(f, b));
                row.push(ratio_cell("×", e.as_ref()));
            }
            row.push(if f.errors.is_empty() {
                String::new()
            } else {
                format!("({} failed)", f.errors.len())
            });
            rows.push(row);
        }
    }
    columns(out, &rows);
    let disturbed = r.disturbed(scenario, ports);
    if !disturbed.is_empty() {
        let fate = if o.drop_disturbed {
            "left out (--drop-disturbed)"
        } else {
            "kept (--drop-disturbed leaves them out)"
        };
        let _ = writeln!(out, "  disturbed rounds, {fate}:");
        for (round, why) in disturbed {
            let _ = writeln!(out, "    round {round}: {}", why.join("; "));
        }
    }
}

/// The whole table.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let o = &r.options;
    let pct = percent(o.confidence);
    let _ = writeln!(
        out,
        "netlab bench: {} round(s) of {} s on {} CPU(s), kernel {}{}",
        r.round,
        o.duration.as_secs(),
        r.nproc,
        r.kernel,
        match r.virtualized.as_deref() {
            Some("qemu-tcg") => {
                ", in an emulated machine (qemu TCG): compare ratios, not absolute figures"
                    .to_string()
            }
            Some(v) => format!(", virtualized ({v})"),
            None => String::new(),
        }
    );
    // What the columns shown are ratios to.
    let mut bases = Vec::new();
    if o.datapaths.contains(&crate::lab::DatapathKind::Iptables) {
        bases.push(if o.families.contains(&super::Family::V6) {
            "×: the ratio to iptables (to iptables6 over IPv6)"
        } else {
            "×: the ratio to iptables"
        });
    }
    if o.reference {
        bases.push("v: to the veth reference");
    }
    if o.families.len() > 1 {
        bases.push("× IPv4: to the same datapath over IPv4");
    }
    let ratios = if bases.is_empty() {
        String::new()
    } else {
        format!(
            "; {}, each the median of the per-round ratios [{pct} % interval]",
            bases.join(", ")
        )
    };
    let _ = writeln!(
        out,
        "each row: median [{pct} % confidence interval] over the rounds{ratios}"
    );
    let mut blocks: Vec<(Scenario, Option<u32>)> =
        r.sorted().iter().map(|f| (f.scenario, f.ports)).collect();
    blocks.dedup();
    for (scenario, ports) in blocks {
        block(r, &mut out, scenario, ports);
    }
    let spreads: Vec<String> = o
        .scenarios
        .iter()
        .filter_map(|s| Some(format!("{} {:.1} %", s.letter(), r.veth_spread(*s)?)))
        .collect();
    if !spreads.is_empty() {
        let _ = writeln!(
            out,
            "\nthe veth reference's own spread over the rounds, (max - min) / median: {} (a quiet machine keeps it to a few %)",
            spreads.join(", ")
        );
    }
    goals(r, &mut out);
    target(r, &mut out);
    out
}

/// A goal's estimate: a ratio (`×1.32 [1.26–1.34]`) or a value with its unit, each
/// bound with the decimals it needs not to read as the goal's value
/// ([`bound_beside`]).
fn goal_cell(g: &Goal, e: Option<&Estimate>) -> String {
    let ratio = g.subject.denominator.is_some();
    let mut shown = match e {
        Some(Estimate {
            median,
            interval: Some((lo, hi)),
            ..
        }) => format!(
            "{}{} [{}–{}]",
            if ratio { "×" } else { "" },
            if ratio {
                ratio_num(*median)
            } else {
                num(*median)
            },
            bound_beside(*lo, Rounding::Down, g.value, ratio),
            bound_beside(*hi, Rounding::Up, g.value, ratio),
        ),
        Some(e) if ratio => ratio_cell("×", Some(e)),
        Some(e) => value_cell(Some(e)),
        None => String::new(),
    };
    if !ratio && e.is_some() {
        let unit = g.subject.metric.unit_shown(g.subject.scenario);
        let _ = write!(shown, " {unit}");
    }
    shown
}

/// The goals' verdicts.
fn goals(r: &Report, out: &mut String) {
    let verdicts = r.verdicts();
    if verdicts.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\ngoals, decided on {} % intervals (met: all of it on the goal's side; missed: all of it on the other; undecided: it straddles):",
        percent(r.options.confidence)
    );
    let mut rows = Vec::new();
    let mut counts = [0; 4];
    for (g, e, verdict) in &verdicts {
        let shown = goal_cell(g, e.as_ref());
        counts[match verdict {
            Verdict::Met => 0,
            Verdict::Missed => 1,
            Verdict::Undecided => 2,
            Verdict::NotMeasured => 3,
        }] += 1;
        let failed = r.failed_rounds(&g.subject());
        let verdict = if failed > 0 {
            format!("{verdict} ({failed} round(s) failed)")
        } else {
            verdict.to_string()
        };
        rows.push(vec![g.text.clone(), shown, verdict]);
    }
    columns(out, &rows);
    let [met, missed, undecided, na] = counts;
    let mut line = format!("  {met} met, {missed} missed, {undecided} undecided");
    if na > 0 {
        let _ = write!(line, ", {na} not measured");
    }
    let _ = writeln!(out, "{line}");
}

/// What `--target-width` reached.
fn target(r: &Report, out: &mut String) {
    let Some(width) = r.options.target_width else {
        return;
    };
    let wide = r.wide(width);
    if wide.is_empty() {
        let _ = writeln!(
            out,
            "\n--target-width {width} %: every interval within it after {} round(s)",
            r.round
        );
        return;
    }
    let _ = writeln!(
        out,
        "\n--target-width {width} %: {} interval(s) still wider after {} round(s) (--max-runs {}):",
        wide.len(),
        r.round,
        r.options.max_runs
    );
    let rows: Vec<Vec<String>> = wide
        .iter()
        .map(|w| {
            let e = w.estimate.as_ref();
            let shown = if w.subject.denominator.is_some() {
                ratio_cell("×", e)
            } else {
                value_cell(e)
            };
            let how = match e {
                Some(e) if e.interval.is_some() => format!("{:.1} % wide", e.width_pct()),
                _ => "no interval: fewer than two paired rounds among the first --runs".into(),
            };
            vec![w.subject.describe(), shown, how]
        })
        .collect();
    columns(out, &rows);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{metric::Metric, options::test_options};
    use crate::lab::DatapathKind;

    const EBPF: Contender = Contender::lab(DatapathKind::Ebpf);

    #[test]
    fn cells() {
        let e = Estimate {
            median: 1.333,
            interval: Some((1.21, 1.452)),
            n: 5,
        };
        assert_eq!(ratio_cell("×", Some(&e)), "×1.33 [1.21–1.46]");
        assert_eq!(value_cell(Some(&e)), "1.33 [1.21–1.46]");
        let one = Estimate {
            median: 59498.2,
            interval: None,
            n: 1,
        };
        assert_eq!(value_cell(Some(&one)), "59498");
        assert_eq!(ratio_cell("v", None), "");
        assert_eq!(percent(0.95), "95");
        assert_eq!(percent(0.975), "97.5");
    }

    #[test]
    fn the_table_with_intervals_goals_and_targets() {
        let mut o = test_options("ebpf,iptables", "a,b,h", "10");
        o.goals = vec![
            crate::bench::options::parse_goal("a:ebpf/iptables>=1.4", &o).unwrap(),
            crate::bench::options::parse_goal("h:cli_rm:ebpf<1000", &o).unwrap(),
        ];
        o.target_width = Some(5.0);
        o.runs = 3;
        let mut r = super::super::report::Report::new(&o);
        for (i, v) in [10.0, 12.0, 11.0].iter().enumerate() {
            r.start_round(i as u32 + 1);
            r.add(Scenario::A, IPTABLES, None, Metric::Throughput, *v);
            r.add(Scenario::A, EBPF, None, Metric::Throughput, v * 1.5);
            r.add(
                Scenario::A,
                Contender::Veth,
                None,
                Metric::Throughput,
                v * 2.0,
            );
            for m in [Metric::Rate, Metric::P50, Metric::P99] {
                r.add(Scenario::B, IPTABLES, None, m, 100.0 + i as f64);
            }
            for m in Scenario::H.metrics() {
                r.add(Scenario::H, EBPF, Some(10), *m, 2.0);
                r.add(Scenario::H, IPTABLES, Some(10), *m, 40.0);
            }
        }
        r.fail(
            Scenario::B,
            EBPF,
            None,
            &o.metrics(Scenario::B),
            "publishing is not implemented",
        );
        let t = render(&r);
        assert!(t.starts_with("netlab bench: 3 round(s) of 1 s"), "{t}");
        // Every round says ×1.5 and v0.75: an interval only as wide as the figures'
        // resolution (rounded outward). The figure itself spreads with the rounds.
        assert!(t.contains("×1.50 [1.49–1.51]"), "{t}");
        assert!(t.contains("v0.75 [0.74–0.76]"), "{t}");
        assert!(t.contains("×1.00 [1.00–1.00]"), "{t}");
        assert!(t.contains("16.5 [13.1–20.7]"), "{t}");
        assert!(t.contains("\n  ebpf "), "{t}");
        assert!(t.contains("\n  veth "), "{t}");
        assert!(t.contains("n/a: publishing is not implemented"), "{t}");
        assert!(t.contains("(h) the CLI with N published ports"), "{t}");
        assert!(t.contains("publish N, ms"), "{t}");
        assert!(t.contains("×0.050 [0.049–0.051]"), "{t}");
        // The veth reference's +-9 % is within its limit, and so no round is disturbed.
        assert!(!t.contains("disturbed"), "{t}");
        assert!(
            t.contains("spread over the rounds, (max - min) / median: a 18.2 %"),
            "{t}"
        );
        let line = |start: &str| {
            t.lines()
                .find(|l| l.starts_with(start))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        };
        assert_eq!(
            line("  a:ebpf"),
            "a:ebpf/iptables>=1.4 ×1.50 [1.49–1.51] met"
        );
        assert_eq!(
            line("  h:cli_rm"),
            "h:cli_rm:ebpf<1000 2.00 [1.99–2.01] ms met"
        );
        assert!(t.contains("2 met, 0 missed, 0 undecided"), "{t}");
        // a's ratios are as narrow as the figures' resolution; b's have no pair (eBPF failed, veth has no b here).
        assert!(
            t.contains("--target-width 5 %: every interval within it after 3 round(s)"),
            "{t}"
        );
        // One more round with eBPF at ×1.2 makes a's ratio wide.
        r.start_round(4);
        r.add(Scenario::A, IPTABLES, None, Metric::Throughput, 10.0);
        r.add(Scenario::A, EBPF, None, Metric::Throughput, 12.0);
        let t = render(&r);
        assert!(
            t.contains("still wider after 4 round(s) (--max-runs 1):"),
            "{t}"
        );
        assert!(t.contains("(a) Gbit/s ebpf / iptables"), "{t}");
        assert!(t.contains("% wide"), "{t}");
        // A busy machine during round 4, twice on eBPF: said once, with the worst.
        for busy in [30.0, 60.0] {
            let load = crate::bench::disturb::Load {
                steal_pct: 0.0,
                others_pct: Some(busy),
            };
            r.watch(Scenario::A, EBPF, None, load);
        }
        let t = render(&r);
        assert!(
            t.contains(
                "  disturbed rounds, kept (--drop-disturbed leaves them out):\n    round 4: ebpf: other CPUs 60 % busy\n"
            ),
            "{t}"
        );
    }
}
