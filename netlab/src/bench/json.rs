//! The benchmark's JSON file (`--json`), format 1: fields are only ever added. Each
//! figure has its samples with the round each came from, its median and interval,
//! and its per-round ratios to every other contender with their median and
//! interval; the document has the goals' verdicts, what `--target-width` reached, the
//! disturbed rounds and what the machine did during each measurement.

use serde_json::{Map, Value, json};

use super::{
    Contender,
    report::{Figure, Report, Standing, summary},
    stats::Estimate,
};

/// Bumped when the JSON changes incompatibly (fields are only ever added otherwise).
pub const JSON_FORMAT: u32 = 1;

fn low(e: Option<&Estimate>) -> Value {
    json!(e.and_then(|e| e.interval).map(|i| i.0))
}

fn high(e: Option<&Estimate>) -> Value {
    json!(e.and_then(|e| e.interval).map(|i| i.1))
}

/// `f`'s per-round ratios to every other contender that measured it.
fn ratios(r: &Report, f: &Figure) -> Value {
    let mut out = Map::new();
    for c in r.options.contenders() {
        if c == f.datapath {
            continue;
        }
        let paired = r.paired(f, c);
        if paired.is_empty() {
            continue;
        }
        let e = r.ratio_estimate(f, c);
        let e = e.as_ref();
        out.insert(
            c.name().to_string(),
            json!({
                "ratio": e.map(|e| e.median),
                "ci_low": low(e),
                "ci_high": high(e),
                "width_pct": e.map(|e| e.width_pct()).filter(|w| w.is_finite()),
                "rounds": paired.iter().map(|p| p.0).collect::<Vec<_>>(),
                "per_round": paired.iter().map(|p| p.1).collect::<Vec<_>>(),
            }),
        );
    }
    Value::Object(out)
}

fn figure(r: &Report, f: &Figure, confidence: f64) -> Value {
    let s = summary(&f.samples);
    let e = r.estimate(f);
    let e = e.as_ref();
    let disturbed: Vec<u32> = r.disturbed(f.scenario, f.ports).into_keys().collect();
    json!({
        "scenario": f.scenario.letter(),
        "title": f.scenario.title(),
        "datapath": f.datapath.name(),
        "family": f.datapath.family().name(),
        "ports": f.ports,
        "metric": f.metric.name(),
        "unit": f.metric.unit(f.scenario),
        "higher_is_better": f.metric.higher_is_better(),
        "status": if f.samples.is_empty() {
            "n/a"
        } else if r.kept(f).is_empty() {
            // Every round left out as disturbed (`--drop-disturbed`).
            "dropped"
        } else {
            "ok"
        },
        "samples": f.samples,
        "median": e.map(|e| e.median),
        "min": s.map(|s| s.1),
        "max": s.map(|s| s.2),
        "ratio_to_iptables": r.ratio(f),
        "errors": f.errors,
        "kind": if f.datapath.is_reference() { "reference" } else { "datapath" },
        "ratio_to_veth": r.ratio_to_veth(f),
        "ratio_to_ipv4": f
            .datapath
            .ipv4_twin()
            .and_then(|b| r.ratio_estimate(f, b))
            .map(|e| e.median),
        "rounds": f.rounds,
        "ci_low": low(e),
        "ci_high": high(e),
        "confidence": confidence,
        "ratios": ratios(r, f),
        "disturbed_rounds": disturbed,
        "dropped_rounds": r.dropped(f.scenario, f.ports),
    })
}

fn standing(w: &Standing) -> Value {
    let s = &w.subject;
    let e = w.estimate.as_ref();
    json!({
        "scenario": s.scenario.letter(),
        "ports": s.ports,
        "metric": s.metric.name(),
        "datapath": s.numerator.name(),
        "base": s.denominator.map(Contender::name),
        "base_metric": s.base_metric.map(|m| m.name()),
        "median": e.map(|e| e.median),
        "ci_low": low(e),
        "ci_high": high(e),
        "width_pct": e.map(|e| e.width_pct()).filter(|w| w.is_finite()),
    })
}

/// The stable JSON document (see the README).
pub fn render(r: &Report) -> Value {
    let o = &r.options;
    let confidence = o.confidence * 100.0;
    let figures: Vec<Value> = r
        .sorted()
        .into_iter()
        .map(|f| figure(r, f, confidence))
        .collect();
    let goals: Vec<Value> = r
        .verdicts()
        .into_iter()
        .map(|(g, e, verdict)| {
            let e = e.as_ref();
            json!({
                "goal": g.text,
                "scenario": g.subject.scenario.letter(),
                "ports": g.subject.ports,
                "metric": g.subject.metric.name(),
                "datapath": g.subject.numerator.name(),
                "base": g.subject.denominator.map(Contender::name),
                "base_metric": g.subject.base_metric.map(|m| m.name()),
                "op": g.op.symbol(),
                "value": g.value,
                "verdict": verdict.to_string(),
                "failed_rounds": r.failed_rounds(&g.subject()),
                "median": e.map(|e| e.median),
                "ci_low": low(e),
                "ci_high": high(e),
                "confidence": confidence,
            })
        })
        .collect();
    let target = o.target_width.map(|w| {
        let wide = r.wide(w);
        json!({
            "width_pct": w,
            "max_runs": o.max_runs,
            "rounds": r.round,
            "reached": wide.is_empty(),
            "not_reached": wide.iter().map(standing).collect::<Vec<_>>(),
        })
    });
    let mut blocks: Vec<_> = r.sorted().iter().map(|f| (f.scenario, f.ports)).collect();
    blocks.dedup();
    let disturbed: Vec<Value> = blocks
        .into_iter()
        .flat_map(|(s, p)| {
            r.disturbed(s, p).into_iter().map(move |(round, why)| {
                json!({
                    "scenario": s.letter(),
                    "ports": p,
                    "round": round,
                    "reasons": why,
                    "dropped": o.drop_disturbed,
                })
            })
        })
        .collect();
    let measurements: Vec<Value> = r
        .watched
        .iter()
        .map(|w| {
            json!({
                "round": w.round,
                "datapath": w.contender.name(),
                "scenario": w.scenario.letter(),
                "ports": w.ports,
                "steal_pct": w.load.steal_pct,
                "others_busy_pct": w.load.others_pct,
            })
        })
        .collect();
    let spread: Map<String, Value> = o
        .scenarios
        .iter()
        .filter_map(|s| Some((s.letter().to_string(), json!(r.veth_spread(*s)?))))
        .collect();
    json!({
        "format": JSON_FORMAT,
        "netlab_version": env!("CARGO_PKG_VERSION"),
        "machine": {"nproc": r.nproc, "kernel": r.kernel, "virtualized": r.virtualized},
        "options": {
            "datapaths": o.datapaths.iter().map(|d| d.name()).collect::<Vec<_>>(),
            "families": o.families.iter().map(|f| f.name()).collect::<Vec<_>>(),
            "scenarios": o.scenarios.iter().map(|s| s.letter()).collect::<Vec<_>>(),
            "runs": r.round,
            "duration_secs": o.duration.as_secs(),
            "port_counts": o.port_counts,
            "references": o.contenders().iter().filter(|c| c.is_reference()).map(|c| c.name()).collect::<Vec<_>>(),
            "runs_asked": o.runs,
            "max_runs": o.max_runs,
            "confidence": confidence,
            "target_width_pct": o.target_width,
            "drop_disturbed": o.drop_disturbed,
            "goals": o.goals.iter().map(|g| g.text.as_str()).collect::<Vec<_>>(),
            "tools": o.tools.iter().map(|t| t.name()).collect::<Vec<_>>(),
        },
        "figures": figures,
        "goals": goals,
        "target": target,
        "disturbed": disturbed,
        "measurements": measurements,
        "veth_spread_pct": spread,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        bench::{Scenario, metric::Metric, options::test_options},
        lab::DatapathKind,
    };

    const EBPF: Contender = Contender::lab(DatapathKind::Ebpf);
    const IPTABLES: Contender = Contender::lab(DatapathKind::Iptables);

    #[test]
    fn the_json_document() {
        let mut o = test_options("ebpf,iptables", "a,b,h", "10");
        o.goals = vec![super::super::options::parse_goal("a:ebpf/iptables>=1.4", &o).unwrap()];
        let mut r = Report::new(&o);
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
        for m in [Metric::Rate, Metric::P50, Metric::P99] {
            r.add(Scenario::B, IPTABLES, None, m, 100.0);
        }
        let j = render(&r);
        assert_eq!(j["format"], 1);
        assert_eq!(j["options"]["references"], json!(["veth"]));
        assert_eq!(j["options"]["datapaths"], json!(["ebpf", "iptables"]));
        assert_eq!(j["options"]["runs"], 3);
        assert_eq!(j["options"]["confidence"], 95.0);
        assert_eq!(j["options"]["goals"], json!(["a:ebpf/iptables>=1.4"]));
        let figs = j["figures"].as_array().unwrap();
        // a: ebpf, iptables, veth (the order they run); then b's three metrics.
        let a = &figs[0];
        assert_eq!(a["datapath"], "ebpf");
        assert_eq!(a["median"], 16.5);
        assert_eq!(a["ratio_to_iptables"], 1.5);
        assert_eq!(a["ratio_to_veth"], 0.75);
        assert_eq!(a["kind"], "datapath");
        assert_eq!(a["rounds"], json!([1, 2, 3]));
        assert_eq!(a["confidence"], 95.0);
        assert!(a["ci_low"].as_f64().unwrap() < 16.5 && a["ci_high"].as_f64().unwrap() > 16.5);
        assert_eq!(a["ratios"]["iptables"]["per_round"], json!([1.5, 1.5, 1.5]));
        assert_eq!(a["ratios"]["iptables"]["rounds"], json!([1, 2, 3]));
        let low = a["ratios"]["iptables"]["ci_low"].as_f64().unwrap();
        assert!(low < 1.5 && low > 1.498, "{low}");
        assert_eq!(a["ratios"]["veth"]["ratio"], 0.75);
        assert_eq!(a["disturbed_rounds"], json!([]));
        assert_eq!(figs[1]["ratio_to_iptables"], 1.0);
        assert_eq!(figs[2]["datapath"], "veth");
        assert_eq!(figs[2]["kind"], "reference");
        assert_eq!(figs[2]["ratio_to_veth"], 1.0);
        let na = figs
            .iter()
            .find(|f| f["datapath"] == "ebpf" && f["scenario"] == "b")
            .unwrap();
        assert_eq!(na["status"], "n/a");
        assert_eq!(na["median"], Value::Null);
        assert_eq!(na["ci_low"], Value::Null);
        assert_eq!(na["ratio_to_veth"], Value::Null);
        assert_eq!(na["errors"][0], "publishing is not implemented");
        let one = figs
            .iter()
            .find(|f| f["datapath"] == "iptables" && f["scenario"] == "b")
            .unwrap();
        assert_eq!(one["ci_low"], Value::Null, "one round has no interval");
        let rm = figs
            .iter()
            .find(|f| f["datapath"] == "ebpf" && f["metric"] == "cli_rm")
            .unwrap();
        assert_eq!(rm["unit"], "ms");
        assert_eq!(rm["ports"], 10);
        assert_eq!(rm["higher_is_better"], false);
        assert_eq!(rm["ratio_to_iptables"], 0.05);
        let g = &j["goals"][0];
        assert_eq!(g["verdict"], "met");
        assert_eq!(g["op"], ">=");
        assert_eq!(g["base"], "iptables");
        let low = g["ci_low"].as_f64().unwrap();
        assert!(low < 1.5 && low > 1.498, "{low}");
        assert_eq!(j["target"], Value::Null);
        assert_eq!(j["veth_spread_pct"]["a"].as_f64().unwrap().round(), 18.0);
    }
}
