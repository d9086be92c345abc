//! `netlab bench` end to end with tiny durations: every scenario runs on fresh sandbox
//! labs, the JSON is valid and complete, the SVG is well formed, bad flags are
//! one-line errors, and an interrupted benchmark still tears its lab down.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use netlab_tests::{netlab, netlab_bin, require_root};
use serde_json::Value;

/// The labs a benchmark reported (`... lab bench_N is up`) whose namespaces or
/// state still exist.
fn labs_left(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split(" lab ").nth(1))
        .filter_map(|l| l.strip_suffix(" is up"))
        .filter(|lab| {
            ["host", "wan", "srv"]
                .iter()
                .any(|ns| netlab::netlink::netns::exists(&format!("{lab}-{ns}")))
                || std::path::Path::new("/run/netlab").join(lab).exists()
        })
        .map(str::to_string)
        .collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netlab-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn figure<'a>(
    figs: &'a [Value],
    dp: &str,
    scenario: &str,
    ports: Option<u32>,
    metric: &str,
) -> Option<&'a Value> {
    figs.iter().find(|f| {
        f["datapath"] == dp
            && f["scenario"] == scenario
            && f["metric"] == metric
            && f["ports"] == ports.map_or(Value::Null, Value::from)
    })
}

#[test]
fn bench_runs_every_scenario_and_writes_json_and_svg() {
    require_root();
    let (json, svg) = (scratch("bench.json"), scratch("bench.svg"));
    let out = netlab(&[
        "bench",
        "--runs",
        "1",
        "--duration",
        "1",
        "--datapath",
        "ebpf,iptables,nftables",
        "--ports",
        "3,20",
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let table = String::from_utf8_lossy(&out.stdout);
    for title in [
        "(a) egress",
        "(b) published",
        "(c) published",
        "(d) CRR",
        "(e) time",
    ] {
        assert!(table.contains(title), "no {title} in:\n{table}");
    }

    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["format"], 1);
    assert_eq!(v["options"]["runs"], 1);
    assert_eq!(
        v["options"]["datapaths"],
        serde_json::json!(["ebpf", "iptables", "nftables", "routed"])
    );
    assert_eq!(v["options"]["port_counts"], serde_json::json!([3, 20]));
    assert!(v["machine"]["nproc"].as_u64().unwrap() >= 1);
    let figs = v["figures"].as_array().unwrap();

    let mut expected = vec![("a", None, "throughput")];
    for s in ["b", "c"] {
        for m in ["rate", "p50", "p99"] {
            expected.push((s, None, m));
        }
    }
    for n in [3, 20] {
        for m in ["rate", "p50", "p99"] {
            expected.push(("d", Some(n), m));
        }
    }
    expected.push(("e", Some(20), "publish_time"));

    for dp in ["iptables", "nftables"] {
        for &(s, ports, m) in &expected {
            let f = figure(figs, dp, s, ports, m)
                .unwrap_or_else(|| panic!("no {dp} {s} {ports:?} {m} in {v:#}"));
            assert_eq!(f["status"], "ok", "{f:#}\n{stderr}");
            assert_eq!(f["samples"].as_array().unwrap().len(), 1, "{f:#}");
            assert!(f["median"].as_f64().unwrap() > 0.0, "{f:#}");
            assert_eq!(f["min"], f["max"], "{f:#}");
            if dp == "iptables" {
                assert_eq!(f["ratio_to_iptables"], 1.0, "{f:#}");
            }
        }
    }
    // The baseline runs a-c only, straight to the container.
    for &(s, ports, m) in &expected {
        let f = figure(figs, "routed", s, ports, m);
        if ["a", "b", "c"].contains(&s) {
            assert_eq!(f.expect("routed figure")["status"], "ok", "{f:?}");
        } else {
            assert!(f.is_none(), "routed has no {s}: {f:?}");
        }
    }
    // eBPF: egress works; the publishing scenarios work or say why they cannot.
    assert_eq!(
        figure(figs, "ebpf", "a", None, "throughput").unwrap()["status"],
        "ok"
    );
    for &(s, ports, m) in &expected[1..] {
        let f = figure(figs, "ebpf", s, ports, m).expect("ebpf figure");
        if f["status"] == "n/a" {
            assert!(!f["errors"][0].as_str().unwrap().is_empty(), "{f:#}");
            assert_eq!(f["median"], Value::Null);
        } else {
            assert_eq!(f["status"], "ok");
        }
    }

    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    assert!(svg.contains("<polyline"), "no line chart for d");
    assert_eq!(
        stderr.matches(" is up").count(),
        4,
        "one lab per datapath: {stderr}"
    );
    assert!(
        labs_left(&stderr).is_empty(),
        "labs left: {:?}",
        labs_left(&stderr)
    );
    let _ = std::fs::remove_dir_all(json.parent().unwrap());
}

#[test]
fn bench_refuses_bad_flags_with_one_line_errors() {
    require_root();
    for (args, expect) in [
        (vec!["--runs", "0"], "--runs"),
        (vec!["--runs", "many"], "--runs"),
        (vec!["--duration", "0"], "--duration"),
        (vec!["--datapath", "pf"], "unknown datapath"),
        (vec!["--datapath", "iptables,iptables"], "twice"),
        (vec!["--scenario", "z"], "unknown scenario"),
        (vec!["--scenario", "f"], "scenario f"),
        (vec!["--ports", "100,10"], "ascending"),
        (vec!["--json", "/nonexistent/dir/b.json"], "does not exist"),
    ] {
        let mut all = vec!["bench"];
        all.extend(&args);
        let out = netlab(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("netlab: ") && err.contains(expect),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn interrupted_bench_tears_its_lab_down() {
    require_root();
    let mut child = Command::new(netlab_bin())
        .args([
            "bench",
            "--datapath",
            "iptables",
            "--scenario",
            "b",
            "--runs",
            "3",
            "--duration",
            "30",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bench");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Interrupt once the first lab is up and measuring.
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("bench never brought a lab up: {seen:?}"));
        let up = line.contains(" is up");
        seen.push(line);
        if up {
            break;
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let rest: Vec<String> = rx.iter().collect();
    assert_eq!(status.code(), Some(130), "{seen:?} {rest:?}");
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:?}");
    let all = seen.join("\n");
    assert!(labs_left(&all).is_empty(), "left: {:?}", labs_left(&all));
}
