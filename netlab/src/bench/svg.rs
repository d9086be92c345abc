//! The benchmark's chart, drawn with plotters' SVG backend: one bar panel per headline
//! figure (bars are medians, whiskers min–max, one colour per datapath and one for the
//! veth reference, each panel saying what fraction of the veth reference eBPF
//! reached), the CLI timings of scenario h on log scales with their goals, and for
//! scenario d two line charts against the number of published ports (log scale), with
//! the routed baseline's and the veth reference's CRR as dashed ceilings.

use plotters::{
    coord::{Shift, ranged1d::ValueFormatter, types::RangedCoordusize},
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{
    Contender, Family, Scenario,
    metric::Metric,
    report::{Figure, Report, num, summary},
};
use crate::{
    error::{Error, Result},
    lab::DatapathKind,
};

const WIDTH: u32 = 1000;
const MARGIN: i32 = 14;
const HEADER_H: u32 = 80;
const COLUMNS: u32 = 3;
const PANEL_W: u32 = (WIDTH - (COLUMNS + 1) * MARGIN as u32) / COLUMNS;
const PANEL_H: u32 = 290;
const LINE_H: u32 = 340;
const FONT: &str = "sans-serif";

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = std::result::Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn colour(c: Contender) -> RGBColor {
    match c {
        Contender::Lab(DatapathKind::Ebpf, ..) => RGBColor(0xe4, 0x57, 0x2e),
        Contender::Lab(DatapathKind::Iptables, ..) => RGBColor(0x4c, 0x72, 0xb0),
        Contender::Lab(DatapathKind::IptablesLegacy, ..) => RGBColor(0x81, 0x72, 0xb2),
        Contender::Lab(DatapathKind::Nftables, ..) => RGBColor(0x55, 0xa8, 0x68),
        Contender::Lab(DatapathKind::NftablesFlowtable, ..) => RGBColor(0x1f, 0x6e, 0x3c),
        Contender::Lab(DatapathKind::Routed, ..) => RGBColor(0x9a, 0x9a, 0x9a),
        Contender::Veth | Contender::Veth6 => RGBColor(0x33, 0x33, 0x33),
    }
}

/// An axis label: `40k`, `250`, `2.5`, `0.05`.
fn axis_label(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if v.abs() >= 10_000.0 {
        format!("{}k", trim(format!("{:.1}", v / 1000.0)))
    } else if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        trim(format!("{v:.2}"))
    }
}

/// A round top for a linear axis that holds `max` with room for the labels above
/// the bars.
fn nice_top(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let want = max * 1.18;
    let mag = 10f64.powf(want.log10().floor());
    [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|t| *t >= want)
        .unwrap_or(10.0 * mag)
}

/// A bar panel: one figure of one scenario, a bar per contender.
struct BarPanel {
    scenario: Scenario,
    metric: Metric,
    title: String,
    /// Log scale (scenario h).
    log: bool,
    /// A goal `--goal` set on eBPF's figure itself (its value and operator), drawn
    /// across the panel.
    goal: Option<(f64, &'static str)>,
}

fn bar_panels(report: &Report) -> Vec<BarPanel> {
    let goal_on = |scenario: Scenario, metric: Metric| {
        report
            .options
            .goals
            .iter()
            .find(|g| {
                let s = &g.subject;
                s.scenario == scenario
                    && s.metric == metric
                    && s.denominator.is_none()
                    && s.numerator == Contender::lab(DatapathKind::Ebpf)
            })
            .map(|g| (g.value, g.op.symbol()))
    };
    let mut v = Vec::new();
    for (scenario, metric, title) in [
        (Scenario::A, Metric::Throughput, "(a) egress throughput"),
        (Scenario::B, Metric::Rate, "(b) published RR"),
        (Scenario::B, Metric::P99, "(b) RR latency p99"),
        (Scenario::C, Metric::Rate, "(c) published CRR"),
        (Scenario::C, Metric::P99, "(c) CRR latency p99"),
        (Scenario::G, Metric::PacketRate, "(g) 64-byte UDP, received"),
        (Scenario::E, Metric::PublishTime, "(e) publish 1 more port"),
        (
            Scenario::H,
            Metric::CliPublishAll,
            "(h) netlab publish N specs",
        ),
        (
            Scenario::H,
            Metric::CliPublishOne,
            "(h) netlab publish 1 more",
        ),
        (
            Scenario::H,
            Metric::CliUnpublishOne,
            "(h) netlab unpublish 1",
        ),
        (Scenario::H, Metric::CliRm, "(h) netlab rm, N ports"),
        (Scenario::I, Metric::Rate, "(i) CRR, empty table"),
        (
            Scenario::I,
            Metric::RateFull,
            "(i) CRR, 1M flows in the table",
        ),
    ] {
        if report
            .figures
            .iter()
            .any(|f| f.scenario == scenario && f.metric == metric)
        {
            let log = scenario == Scenario::H;
            v.push(BarPanel {
                scenario,
                metric,
                title: format!("{title}, {}", metric.unit_shown(scenario)),
                log,
                goal: goal_on(scenario, metric),
            });
        }
    }
    v
}

/// (contender, median, min, max) of a panel's figure, `None` where it is n/a.
type Bar = (Contender, Option<(f64, f64, f64)>);

fn bars_of(report: &Report, p: &BarPanel) -> Vec<Bar> {
    report
        .options
        .contenders()
        .into_iter()
        .filter_map(|c| {
            let f = report
                .figures
                .iter()
                .find(|f| f.scenario == p.scenario && f.metric == p.metric && f.datapath == c)?;
            // The rounds that count, as the table's (not those --drop-disturbed drops).
            let kept: Vec<f64> = report.kept(f).into_iter().map(|(_, v)| v).collect();
            Some((c, summary(&kept)))
        })
        .collect()
}

/// "ebpf: 0.87 of veth" under a panel's title, when both were measured.
fn veth_note(report: &Report, p: &BarPanel) -> Option<String> {
    let f: &Figure = report.figures.iter().find(|f| {
        f.scenario == p.scenario
            && f.metric == p.metric
            && f.datapath == Contender::lab(DatapathKind::Ebpf)
    })?;
    let r = report.ratio_to_veth(f)?;
    Some(format!("ebpf = {r:.2} x veth"))
}

/// A panel's white ground and grey border; returns the panel's width in pixels.
fn panel_frame(area: &Area) -> std::result::Result<u32, DrawingAreaErrorKind<std::io::Error>> {
    area.fill(&WHITE)?;
    let (w, h) = area.dim_in_pixel();
    area.draw(&Rectangle::new(
        [(0, 0), (w as i32 - 1, h as i32 - 1)],
        RGBColor(0xcc, 0xcc, 0xcc).stroke_width(1),
    ))?;
    Ok(w)
}

fn draw_bar_panel(root: &Area, area: &Area, report: &Report, p: &BarPanel) -> Drawn {
    panel_frame(area)?;
    area.draw_text(
        &p.title,
        &(FONT, 14).into_font().style(FontStyle::Bold).color(&BLACK),
        (10, 8),
    )?;
    let note = match (p.scenario, report.options.port_counts.last()) {
        (Scenario::E | Scenario::H, Some(n)) => Some(format!("N = {n}")),
        _ => None,
    };
    let note = [note, veth_note(report, p)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ");
    area.draw_text(
        &note,
        &(FONT, 12).into_font().color(&RGBColor(0x55, 0x55, 0x55)),
        (10, 27),
    )?;
    let plot = area.margin(44, 4, 6, 10);
    let bars = bars_of(report, p);
    let max = bars
        .iter()
        .filter_map(|(_, s)| s.map(|s| s.2))
        .chain(p.goal.map(|g| g.0))
        .fold(0.0, f64::max);
    let min = bars
        .iter()
        .filter_map(|(_, s)| s.map(|s| s.1))
        .chain(p.goal.map(|g| g.0))
        .fold(f64::INFINITY, f64::min);
    // Segments 0..=n-1, one per bar (a lone bar gets an empty neighbour).
    let n = bars.len().saturating_sub(1).max(1);
    if p.log {
        // A decade below the smallest value, so that every bar and the goal show.
        let lo = 10f64.powf((min.max(1e-3) * 0.5).log10().floor());
        let hi = 10f64.powf((max.max(lo) * 3.0).log10().ceil());
        let chart = ChartBuilder::on(&plot)
            .x_label_area_size(88)
            .y_label_area_size(46)
            .build_cartesian_2d((0..n).into_segmented(), (lo..hi).log_scale())?;
        bar_chart(root, chart, &bars, lo, p.goal)
    } else {
        let chart = ChartBuilder::on(&plot)
            .x_label_area_size(88)
            .y_label_area_size(46)
            .build_cartesian_2d((0..n).into_segmented(), 0.0..nice_top(max))?;
        bar_chart(root, chart, &bars, 0.0, p.goal)
    }
}

/// Bars from `base` to the median, whiskers min–max, the median written above, n/a
/// for what was not measured, and the contenders' names below, on any y axis.
fn bar_chart<'a, Y>(
    root: &Area,
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<SegmentedCoord, Y>>,
    bars: &[Bar],
    base: f64,
    goal: Option<(f64, &'static str)>,
) -> Drawn
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .disable_x_mesh()
        // The names are written below, upwards.
        .x_labels(bars.len().max(1))
        .x_label_formatter(&|_| String::new())
        .y_labels(6)
        .y_label_formatter(&|v| axis_label(*v))
        .y_label_style((FONT, 11))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(0xe3, 0xe3, 0xe3))
        .draw()?;
    let at = |i: usize| SegmentValue::CenterOf(i);
    for (i, (c, s)) in bars.iter().enumerate() {
        let Some((med, min, max)) = *s else {
            chart.draw_series([EmptyElement::at((at(i), base))
                + Text::new(
                    "n/a",
                    (0, -6),
                    (FONT, 12)
                        .into_font()
                        .color(&RGBColor(0x99, 0x99, 0x99))
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )])?;
            continue;
        };
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), base),
                (SegmentValue::Exact(i + 1), med),
            ],
            colour(*c).filled(),
        );
        // As many segments as bars, but two at least (see draw_bar_panel).
        let slot = (chart.plotting_area().dim_in_pixel().0 / bars.len().max(2) as u32) as i32;
        let pad = ((slot - 48) / 2).max(slot / 5).max(2) as u32;
        bar.set_margin(0, 0, pad, pad);
        chart.draw_series([bar])?;
        let ink = RGBColor(0x22, 0x22, 0x22).stroke_width(1);
        chart.draw_series([PathElement::new(vec![(at(i), min), (at(i), max)], ink)])?;
        chart.draw_series([min, max].map(|v| {
            EmptyElement::at((at(i), v)) + PathElement::new(vec![(-4, 0), (4, 0)], ink)
        }))?;
        chart.draw_series([EmptyElement::at((at(i), max))
            + Text::new(
                num(med),
                (0, -4),
                (FONT, 11)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )])?;
    }
    if let Some((g, op)) = goal {
        chart.draw_series(DashedLineSeries::new(
            [
                (SegmentValue::Exact(0), g),
                (SegmentValue::Exact(bars.len()), g),
            ],
            5,
            4,
            RED.stroke_width(1),
        ))?;
        // At the right end: the first bar is eBPF's, whose label would meet it.
        chart.draw_series([EmptyElement::at((SegmentValue::Exact(bars.len()), g))
            + Text::new(
                format!("goal for ebpf: {op} {}", num(g)),
                (-3, -3),
                (FONT, 10)
                    .into_font()
                    .color(&RED)
                    .pos(Pos::new(HPos::Right, VPos::Bottom)),
            )])?;
    }
    // Names below the axis, written upwards, on the whole chart's area (the
    // plotting area ends at the axis).
    for (i, (c, _)) in bars.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(at(i), base));
        root.draw_text(
            &c.name(),
            &(FONT, 11)
                .into_font()
                .transform(FontTransform::Rotate270)
                .color(&BLACK)
                .pos(Pos::new(HPos::Right, VPos::Center)),
            (x, y + 6),
        )?;
    }
    Ok(())
}

type SegmentedCoord = plotters::coord::ranged1d::SegmentedCoord<RangedCoordusize>;

/// One line per datapath of scenario d's `metric` against the number of published
/// ports, and the contenders without published ports as dashed ceilings.
fn draw_lines(
    area: &Area,
    report: &Report,
    metric: Metric,
    title: &str,
    legend: SeriesLabelPosition,
) -> Drawn {
    let w = panel_frame(area)?;
    let counts = &report.options.port_counts;
    let series: Vec<(Contender, Vec<(f64, f64)>)> = report
        .options
        .contenders()
        .into_iter()
        .map(|c| {
            let pts = counts
                .iter()
                .filter_map(|n| {
                    report
                        .figures
                        .iter()
                        .find(|f| {
                            f.scenario == Scenario::D
                                && f.metric == metric
                                && f.datapath == c
                                && f.ports == Some(*n)
                        })
                        .and_then(|f| f.median())
                        .map(|m| (*n as f64, m))
                })
                .collect();
            (c, pts)
        })
        .filter(|(_, pts): &(Contender, Vec<(f64, f64)>)| !pts.is_empty())
        .collect();
    // Without published ports, the routed baseline and the veth reference have a
    // plain CRR (scenario c): the ceilings.
    let ceilings: Vec<(Contender, f64)> = [Contender::lab(DatapathKind::Routed), Contender::Veth]
        .into_iter()
        .filter_map(|c| {
            let f = report
                .figures
                .iter()
                .find(|f| f.datapath == c && f.scenario == Scenario::C && f.metric == metric)?;
            Some((c, f.median()?))
        })
        .collect();
    let max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .chain(ceilings.iter().map(|c| c.1))
        .fold(0.0, f64::max);
    let (lo, hi) = (
        *counts.first().unwrap_or(&1) as f64,
        *counts.last().unwrap_or(&1) as f64,
    );
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo / 2.0, hi * 2.0)
    };
    // Scenario d runs over IPv4 only.
    let missing: Vec<String> = report
        .options
        .datapaths
        .iter()
        .flat_map(|d| {
            report
                .options
                .devices
                .iter()
                .map(|v| Contender::Lab(*d, *v, Family::V4))
        })
        .filter(|c| !c.direct() && !series.iter().any(|(s, _)| s == c))
        .map(|c| c.name())
        .collect();
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 14).into_font().style(FontStyle::Bold))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(52)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..nice_top(max))?;
    chart
        .configure_mesh()
        .x_desc("published ports (log scale); the last one is hit")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| axis_label(*v))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(0xe3, 0xe3, 0xe3))
        .label_style((FONT, 11))
        .draw()?;
    for (c, v) in &ceilings {
        let style = colour(*c).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new([(lo, *v), (hi, *v)], 7, 4, style))?
            .label(format!("{} (c, no ports): {}", c.name(), num(*v)))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
    }
    for (c, pts) in &series {
        let style = colour(*c).stroke_width(2);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), style))?
            .label(c.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, colour(*c).filled())))?;
    }
    if !missing.is_empty() {
        area.draw_text(
            &format!("n/a: {}", missing.join(", ")),
            &(FONT, 11)
                .into_font()
                .color(&RGBColor(0x99, 0x99, 0x99))
                .pos(Pos::new(HPos::Right, VPos::Top)),
            (w as i32 - 12, 30),
        )?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .label_font((FONT, 11))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0xcc, 0xcc, 0xcc))
        .draw()
}

fn draw(root: &Area, report: &Report) -> Drawn {
    root.fill(&RGBColor(0xfa, 0xfa, 0xfa))?;
    let o = &report.options;
    root.draw_text(
        &format!(
            "netlab bench: median of {} run(s) of {} s, whiskers min-max ({} CPU(s), kernel {})",
            // The rounds run (--target-width may have added some), as the table's.
            if report.round > 0 {
                report.round
            } else {
                o.runs
            },
            o.duration.as_secs(),
            report.nproc,
            report.kernel
        ),
        &(FONT, 16).into_font().style(FontStyle::Bold).color(&BLACK),
        (MARGIN, 14),
    )?;
    let mut x = MARGIN;
    for c in o.contenders() {
        root.draw(&Rectangle::new([(x, 46), (x + 12, 58)], colour(c).filled()))?;
        let name = if c.is_reference() {
            "veth (reference: one veth pair, no bridge, routing or NAT)".to_string()
        } else {
            c.name().to_string()
        };
        root.draw_text(&name, &(FONT, 13).into_font().color(&BLACK), (x + 16, 45))?;
        x += 32 + 7 * name.len() as i32;
    }
    let panels = bar_panels(report);
    for (i, p) in panels.iter().enumerate() {
        let (col, row) = (i as i32 % COLUMNS as i32, i as i32 / COLUMNS as i32);
        let x0 = MARGIN + col * (PANEL_W as i32 + MARGIN);
        let y0 = HEADER_H as i32 + row * (PANEL_H as i32 + MARGIN);
        let area = root.clone().shrink((x0, y0), (PANEL_W, PANEL_H));
        draw_bar_panel(root, &area, report, p)?;
    }
    if report.figures.iter().any(|f| f.scenario == Scenario::D) {
        let y0 = lines_top(panels.len());
        let w = (WIDTH - 3 * MARGIN as u32) / 2;
        // Each legend where its lines are not: rates fall to the right, latencies rise.
        for (i, (metric, title, legend)) in [
            (
                Metric::Rate,
                "(d) CRR with N published ports, conn/s",
                SeriesLabelPosition::LowerLeft,
            ),
            (
                Metric::P99,
                "(d) CRR latency p99 with N published ports, µs",
                SeriesLabelPosition::UpperLeft,
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let x0 = MARGIN + i as i32 * (w as i32 + MARGIN);
            let area = root.clone().shrink((x0, y0), (w, LINE_H));
            draw_lines(&area, report, metric, title, legend)?;
        }
    }
    Ok(())
}

fn lines_top(panels: usize) -> i32 {
    let rows = panels.div_ceil(COLUMNS as usize) as i32;
    HEADER_H as i32 + rows * (PANEL_H as i32 + MARGIN)
}

/// The whole chart.
pub fn render(report: &Report) -> Result<String> {
    let panels = bar_panels(report).len();
    let has_d = report.figures.iter().any(|f| f.scenario == Scenario::D);
    let height = lines_top(panels) as u32 + if has_d { LINE_H + MARGIN as u32 } else { 0 };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        draw(&root, report)
            .and_then(|()| root.present())
            .map_err(|e| Error::Command {
                command: "draw the benchmark's chart".into(),
                detail: e.to_string(),
            })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::options::test_options;

    #[test]
    fn axis_labels_and_tops_are_round() {
        assert_eq!(axis_label(150_000.0), "150k");
        assert_eq!(axis_label(12_500.0), "12.5k");
        assert_eq!(axis_label(250.0), "250");
        assert_eq!(axis_label(2.5), "2.5");
        assert_eq!(axis_label(0.05), "0.05");
        assert_eq!(nice_top(10.0), 15.0);
        assert_eq!(nice_top(42.0), 50.0);
        assert_eq!(nice_top(0.0), 1.0);
    }

    #[test]
    fn renders_bars_lines_ceilings_and_gaps() {
        let opts = test_options("ebpf,iptables", "a,d,f,h", "10,100");
        let mut r = Report::new(&opts);
        let (ebpf, ipt, routed) = (
            Contender::lab(DatapathKind::Ebpf),
            Contender::lab(DatapathKind::Iptables),
            Contender::lab(DatapathKind::Routed),
        );
        r.add(Scenario::A, ipt, None, Metric::Throughput, 20.0);
        r.add(Scenario::A, Contender::Veth, None, Metric::Throughput, 40.0);
        r.add(Scenario::A, ebpf, None, Metric::Throughput, 30.0);
        r.fail(Scenario::A, routed, None, Scenario::A.metrics(), "x < y");
        r.add(Scenario::C, routed, None, Metric::Rate, 150.0);
        r.add(Scenario::C, Contender::Veth, None, Metric::Rate, 200.0);
        for n in [10, 100] {
            r.add(Scenario::D, ipt, Some(n), Metric::Rate, 1000.0 / n as f64);
            r.add(Scenario::D, ipt, Some(n), Metric::P99, n as f64);
        }
        r.options
            .goals
            .push(crate::bench::options::parse_goal("h:cli_rm:ebpf<1000", &r.options).unwrap());
        for m in Scenario::H.metrics() {
            r.add(Scenario::H, ebpf, Some(100), *m, 3.0);
            r.add(Scenario::H, ipt, Some(100), *m, 900.0);
        }
        let svg = render(&r).unwrap();
        assert!(svg.starts_with("<svg "), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("(a) egress throughput, Gbit/s"));
        assert!(
            svg.contains("ebpf = 0.75 x veth"),
            "the fraction of the reference"
        );
        assert!(
            svg.contains(">\nn/a\n<") || svg.contains(">n/a<"),
            "routed's a is n/a"
        );
        assert!(svg.contains("n/a: ebpf"), "d's missing line is named");
        assert!(svg.contains("<polyline"), "d's lines");
        assert!(svg.contains("routed (c, no ports): 150"));
        assert!(svg.contains("veth (c, no ports): 200"));
        assert!(svg.contains("(h) netlab publish N specs, ms"));
        assert!(svg.contains("goal for ebpf: &lt; 1000"));
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert!(!svg.contains("x < y"), "errors stay out of the chart");
    }
}
