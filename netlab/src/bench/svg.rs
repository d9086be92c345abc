//! The benchmark's chart, written by hand: one bar panel per headline figure (bars
//! are medians, whiskers min–max, one colour per datapath), and for scenario d two
//! line charts against the number of published ports (log scale).

use std::fmt::Write as _;

use super::{
    Scenario,
    report::{Figure, Metric, Report, num, summary},
};
use crate::lab::DatapathKind;

const WIDTH: f64 = 980.0;
const MARGIN: f64 = 20.0;
const BAR_W: f64 = 300.0;
const BAR_H: f64 = 240.0;
const LINE_W: f64 = 460.0;
const LINE_H: f64 = 280.0;
const FONT: &str = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\"";

fn colour(dp: DatapathKind) -> &'static str {
    match dp {
        DatapathKind::Ebpf => "#e4572e",
        DatapathKind::Iptables => "#4c72b0",
        DatapathKind::IptablesLegacy => "#8172b2",
        DatapathKind::Nftables => "#55a868",
        DatapathKind::NftablesFlowtable => "#2f7d4a",
        DatapathKind::Routed => "#9a9a9a",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round axis step giving about four ticks up to `max`.
fn step(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// An axis label: `40k`, `250`, `2.5`, `0.05`, as precise as the step needs.
fn tick(v: f64, step: f64) -> String {
    if v >= 10_000.0 && step >= 1000.0 {
        format!("{}k", v / 1000.0)
    } else if step >= 1.0 {
        format!("{v:.0}")
    } else {
        let digits = (-step.log10()).ceil().max(1.0) as usize;
        format!("{v:.digits$}")
    }
}

fn text(out: &mut String, x: f64, y: f64, size: u32, anchor: &str, extra: &str, s: &str) {
    let _ = writeln!(
        out,
        r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{anchor}" {FONT} {extra}>{}</text>"#,
        esc(s)
    );
}

/// Horizontal grid lines and their labels for a plot area; returns the y scale top.
fn y_axis(out: &mut String, x: f64, y: f64, w: f64, h: f64, max: f64) -> f64 {
    let st = step(max * 1.1);
    let top = (max * 1.1 / st).ceil().max(1.0) * st;
    let mut v = 0.0;
    while v <= top + st / 2.0 {
        let yy = y + h - v / top * h;
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e3e3e3"/>"##,
            x + w
        );
        text(
            out,
            x - 4.0,
            yy + 3.5,
            9,
            "end",
            "fill=\"#555\"",
            &tick(v, st),
        );
        v += st;
    }
    top
}

struct BarPanel {
    scenario: Scenario,
    metric: Metric,
    title: String,
}

fn bar_panels(report: &Report) -> Vec<BarPanel> {
    let mut v = Vec::new();
    for (scenario, metric, title) in [
        (Scenario::A, Metric::Throughput, "(a) egress throughput"),
        (Scenario::B, Metric::Rate, "(b) published RR"),
        (Scenario::B, Metric::P99, "(b) RR latency p99"),
        (Scenario::C, Metric::Rate, "(c) published CRR"),
        (Scenario::C, Metric::P99, "(c) CRR latency p99"),
        (
            Scenario::E,
            Metric::PublishTime,
            "(e) publish one more port",
        ),
    ] {
        if report
            .figures
            .iter()
            .any(|f| f.scenario == scenario && f.metric == metric)
        {
            let title = format!("{title}, {}", metric.unit_shown(scenario));
            v.push(BarPanel {
                scenario,
                metric,
                title,
            });
        }
    }
    v
}

fn draw_bars(out: &mut String, report: &Report, p: &BarPanel, x0: f64, y0: f64) {
    let figures: Vec<(DatapathKind, Option<&Figure>)> = report
        .options
        .datapaths
        .iter()
        .map(|dp| {
            (
                *dp,
                report.figures.iter().find(|f| {
                    f.scenario == p.scenario && f.metric == p.metric && f.datapath == *dp
                }),
            )
        })
        .filter(|(_, f)| f.is_some())
        .collect();
    panel(out, x0, y0, BAR_W, BAR_H, &p.title);
    if p.scenario == Scenario::E
        && let Some(n) = report.options.port_counts.last()
    {
        text(
            out,
            x0 + BAR_W - 8.0,
            y0 + 18.0,
            9,
            "end",
            "fill=\"#555\"",
            &format!("N = {n}"),
        );
    }
    let (px, py, pw, ph) = (x0 + 45.0, y0 + 34.0, BAR_W - 60.0, BAR_H - 90.0);
    let max = figures
        .iter()
        .filter_map(|(_, f)| f.and_then(|f| summary(&f.samples)).map(|s| s.2))
        .fold(0.0, f64::max);
    let top = y_axis(out, px, py, pw, ph, max);
    let slot = pw / figures.len().max(1) as f64;
    for (i, (dp, f)) in figures.iter().enumerate() {
        let cx = px + slot * (i as f64 + 0.5);
        let bw = (slot * 0.6).min(46.0);
        match f.and_then(|f| summary(&f.samples)) {
            Some((med, min, max)) => {
                let y = |v: f64| py + ph - v / top * ph;
                let _ = writeln!(
                    out,
                    r#"<rect x="{:.1}" y="{:.1}" width="{bw:.1}" height="{:.1}" fill="{}"><title>{} {}: median {} [{}-{}]</title></rect>"#,
                    cx - bw / 2.0,
                    y(med),
                    py + ph - y(med),
                    colour(*dp),
                    esc(dp.name()),
                    esc(&p.title),
                    num(med),
                    num(min),
                    num(max)
                );
                let _ = writeln!(
                    out,
                    r##"<path d="M{cx:.1} {:.1}V{:.1}M{:.1} {:.1}h8M{:.1} {:.1}h8" stroke="#222" fill="none"/>"##,
                    y(min),
                    y(max),
                    cx - 4.0,
                    y(min),
                    cx - 4.0,
                    y(max)
                );
                text(out, cx, y(max) - 4.0, 9, "middle", "", &num(med));
            }
            None => text(out, cx, py + ph - 4.0, 10, "middle", "fill=\"#999\"", "n/a"),
        }
        let ly = py + ph + 12.0;
        text(
            out,
            cx,
            ly,
            9,
            "end",
            &format!("transform=\"rotate(-30 {cx:.1} {ly:.1})\""),
            dp.name(),
        );
    }
}

/// A chart's frame and its bold title.
fn panel(out: &mut String, x0: f64, y0: f64, w: f64, h: f64, title: &str) {
    let _ = writeln!(
        out,
        r##"<rect x="{x0:.1}" y="{y0:.1}" width="{w}" height="{h}" fill="#fff" stroke="#ccc"/>"##
    );
    text(
        out,
        x0 + 10.0,
        y0 + 18.0,
        12,
        "start",
        "font-weight=\"bold\"",
        title,
    );
}

fn draw_lines(out: &mut String, report: &Report, metric: Metric, title: &str, x0: f64, y0: f64) {
    let counts = &report.options.port_counts;
    panel(out, x0, y0, LINE_W, LINE_H, title);
    let (px, py, pw, ph) = (x0 + 50.0, y0 + 44.0, LINE_W - 70.0, LINE_H - 90.0);
    let series: Vec<(DatapathKind, Vec<(u32, f64)>)> = report
        .options
        .datapaths
        .iter()
        .map(|dp| {
            let pts = counts
                .iter()
                .filter_map(|n| {
                    report
                        .figures
                        .iter()
                        .find(|f| {
                            f.scenario == Scenario::D
                                && f.metric == metric
                                && f.datapath == *dp
                                && f.ports == Some(*n)
                        })
                        .and_then(|f| f.median())
                        .map(|m| (*n, m))
                })
                .collect();
            (*dp, pts)
        })
        .filter(|(_, pts): &(DatapathKind, Vec<(u32, f64)>)| !pts.is_empty())
        .collect();
    // The routed baseline has no published ports; its plain CRR (scenario c) is the
    // ceiling, drawn across.
    let baseline = report
        .figures
        .iter()
        .find(|f| {
            f.datapath == DatapathKind::Routed && f.scenario == Scenario::C && f.metric == metric
        })
        .and_then(|f| f.median());
    let max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .chain(baseline)
        .fold(0.0, f64::max);
    let top = y_axis(out, px, py, pw, ph, max);
    let (lo, hi) = (
        (*counts.first().unwrap_or(&1) as f64).log10(),
        (*counts.last().unwrap_or(&1) as f64).log10(),
    );
    let x = |n: u32| {
        if hi > lo {
            px + ((n as f64).log10() - lo) / (hi - lo) * pw
        } else {
            px + pw / 2.0
        }
    };
    let y = |v: f64| py + ph - v / top * ph;
    for n in counts {
        text(
            out,
            x(*n),
            py + ph + 14.0,
            9,
            "middle",
            "fill=\"#555\"",
            &n.to_string(),
        );
    }
    text(
        out,
        px + pw / 2.0,
        py + ph + 30.0,
        10,
        "middle",
        "",
        "published ports (log scale); the last one is hit",
    );
    let missing: Vec<&str> = report
        .options
        .datapaths
        .iter()
        .filter(|dp| **dp != DatapathKind::Routed && !series.iter().any(|(d, _)| d == *dp))
        .map(|dp| dp.name())
        .collect();
    if !missing.is_empty() {
        text(
            out,
            x0 + LINE_W - 8.0,
            y0 + 18.0,
            9,
            "end",
            "fill=\"#999\"",
            &format!("n/a: {}", missing.join(", ")),
        );
    }
    if let Some(b) = baseline {
        let yb = y(b);
        let _ = writeln!(
            out,
            r#"<line x1="{px:.1}" y1="{yb:.1}" x2="{:.1}" y2="{yb:.1}" stroke="{}" stroke-width="1.5" stroke-dasharray="6 4"/>"#,
            px + pw,
            colour(DatapathKind::Routed)
        );
        // Labelled in the header: down in the plot it would cross the lines.
        text(
            out,
            x0 + LINE_W - 8.0,
            y0 + 32.0,
            9,
            "end",
            "fill=\"#777\"",
            &format!("dashed: routed, no NAT (c): {}", num(b)),
        );
    }
    for (dp, pts) in &series {
        let path: Vec<String> = pts
            .iter()
            .map(|(n, v)| format!("{:.1},{:.1}", x(*n), y(*v)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
            path.join(" "),
            colour(*dp)
        );
        for (n, v) in pts {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"><title>{} {n} ports: {}</title></circle>"#,
                x(*n),
                y(*v),
                colour(*dp),
                esc(dp.name()),
                num(*v)
            );
        }
    }
}

/// The whole chart.
pub fn render(report: &Report) -> String {
    let panels = bar_panels(report);
    let rows = panels.len().div_ceil(3);
    let has_d = report.figures.iter().any(|f| f.scenario == Scenario::D);
    let top = 70.0;
    let lines_y = top + rows as f64 * (BAR_H + MARGIN);
    let height = lines_y + if has_d { LINE_H + MARGIN } else { 0.0 };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">"#
    );
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="#fafafa"/>"##
    );
    let o = &report.options;
    text(
        &mut out,
        MARGIN,
        26.0,
        15,
        "start",
        "font-weight=\"bold\"",
        &format!(
            "netlab bench: median of {} run(s) of {} s, whiskers min-max ({} CPU(s), kernel {})",
            o.runs,
            o.duration.as_secs(),
            report.nproc,
            report.kernel
        ),
    );
    let mut lx = MARGIN;
    for dp in &o.datapaths {
        let _ = writeln!(
            out,
            r#"<rect x="{lx:.1}" y="42" width="12" height="12" fill="{}"/>"#,
            colour(*dp)
        );
        text(&mut out, lx + 16.0, 52.5, 11, "start", "", dp.name());
        lx += 30.0 + 7.0 * dp.name().len() as f64;
    }
    for (i, p) in panels.iter().enumerate() {
        let (col, row) = (i % 3, i / 3);
        let x0 = MARGIN + col as f64 * (BAR_W + MARGIN);
        let y0 = top + row as f64 * (BAR_H + MARGIN);
        draw_bars(&mut out, report, p, x0, y0);
    }
    if has_d {
        draw_lines(
            &mut out,
            report,
            Metric::Rate,
            "(d) CRR with N published ports, conn/s",
            MARGIN,
            lines_y,
        );
        draw_lines(
            &mut out,
            report,
            Metric::P99,
            "(d) CRR latency p99 with N published ports, µs",
            MARGIN * 2.0 + LINE_W,
            lines_y,
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Options;

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(step(10.0), 5.0);
        assert_eq!(step(42.0), 20.0);
        assert_eq!(step(0.3), 0.1);
        assert_eq!(step(0.0), 1.0);
        assert_eq!(tick(150_000.0, 50_000.0), "150k");
        assert_eq!(tick(250.0, 50.0), "250");
        assert_eq!(tick(2.5, 0.5), "2.5");
        assert_eq!(tick(0.05, 0.05), "0.05");
    }

    #[test]
    fn renders_bars_lines_and_gaps() {
        let opts = Options::parse("ebpf,iptables", "a,d", "1", "1", "10,100", None, None).unwrap();
        let mut r = Report::new(&opts);
        r.add(
            Scenario::A,
            DatapathKind::Iptables,
            None,
            Metric::Throughput,
            20.0,
        );
        r.fail(Scenario::A, DatapathKind::Ebpf, None, "x < y");
        r.add(Scenario::C, DatapathKind::Routed, None, Metric::Rate, 150.0);
        for n in [10, 100] {
            r.add(
                Scenario::D,
                DatapathKind::Iptables,
                Some(n),
                Metric::Rate,
                1000.0 / n as f64,
            );
            r.add(
                Scenario::D,
                DatapathKind::Iptables,
                Some(n),
                Metric::P99,
                n as f64,
            );
        }
        let svg = render(&r);
        assert!(svg.starts_with("<svg "));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("(a) egress throughput, Gbit/s"));
        assert!(svg.contains(">n/a<"));
        assert!(svg.contains(">n/a: ebpf<"), "d's missing line is named");
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("routed, no NAT (c): 150"));
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert!(!svg.contains("x < y"));
    }
}
