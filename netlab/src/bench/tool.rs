//! Peer tools beside netlab's own clients (`--tool`), so that a user can check
//! netlab's figures against a tool they already trust, on the same lab, right after
//! netlab's own measurement:
//!
//! - `sockperf` for b: `sockperf ping-pong --tcp --full-rtt` from wan against
//!   `sockperf server` in the container, through published port 8081 -> 5001 (or
//!   straight to the container on the routed baseline and the veth reference), both
//!   ends on the CPU of netlab's own client and server. Its messages are 14 bytes,
//!   the least it sends (its header), against netlab's 1; it reports round trips of
//!   its valid period (after its own 400 ms warm-up), from which the rate follows.
//! - `iperf3` for g: `iperf3 -u -l 64 -b 0` from the container to wan, one datagram
//!   per system call, so it measures mostly its own syscall rate (why g has its own
//!   sender): a lower bound, and a second opinion on the order of the datapaths.
//!
//! Scenario a is iperf3 already. The tools themselves (`Tool`: names, scenarios,
//! figures) are among the options; this module runs them.

use std::{net::SocketAddr, time::Duration};

use super::{
    disturb::Watch,
    lab::{BenchLab, SERVER},
    metric::Metric,
    options::{Options, Tool},
    workload::{Measured, Proc, cpus, iperf3_to_wan, wait_listening},
};
use crate::error::{Error, Result};

/// sockperf's server port in the container, and the host port published to it.
pub const SOCKPERF_PORT: u16 = 5001;
pub const SOCKPERF_PUBLISHED: u16 = 8081;
/// iperf3's UDP server port in wan (a's TCP one is 5201).
const IPERF_UDP_PORT: u16 = 5202;

impl Tool {
    /// Runs the tool on a lab and returns its figures.
    pub fn run(self, lab: &mut BenchLab, opts: &Options) -> Result<Measured> {
        match self {
            Self::Sockperf => sockperf(lab, opts),
            Self::Iperf3 => iperf3_small(lab, opts),
        }
    }
}

fn sockperf(lab: &mut BenchLab, opts: &Options) -> Result<Measured> {
    let target = if lab.contender.direct() {
        SocketAddr::from((lab.server_ip(), SOCKPERF_PORT))
    } else {
        if !lab.is_published(SOCKPERF_PUBLISHED) {
            let port = lab.port(SOCKPERF_PUBLISHED, SOCKPERF_PORT);
            lab.publish(&[port])?;
        }
        SocketAddr::from((lab.uplink_ip(), SOCKPERF_PUBLISHED))
    };
    let (client_cpu, server_cpu) = cpus();
    let (ip, port) = (lab.server_ip().to_string(), SOCKPERF_PORT.to_string());
    let _server = Proc::spawn(
        &lab.ns(SERVER),
        "sockperf",
        &["server", "--tcp", "-i", &ip, "-p", &port],
        server_cpu,
    )?;
    wait_listening(&lab.ns(SERVER), SOCKPERF_PORT)?;
    let watch = Watch::start(&[client_cpu, server_cpu]);
    let secs = opts.duration.as_secs().to_string();
    let (ip, port) = (target.ip().to_string(), target.port().to_string());
    let client = Proc::spawn(
        &lab.ns("wan"),
        "sockperf",
        &[
            "ping-pong",
            "--tcp",
            "--full-rtt",
            "--msg-size",
            "14",
            "-i",
            &ip,
            "-p",
            &port,
            "-t",
            &secs,
        ],
        client_cpu,
    )?;
    let (status, stdout, stderr) = client.wait(opts.duration + Duration::from_secs(30))?;
    let load = watch.stop();
    let out = parse_sockperf(&format!("{stdout}\n{stderr}")).ok_or_else(|| Error::Command {
        command: "sockperf ping-pong".into(),
        detail: format!("{status}: {}", last_line(&stderr, &stdout)),
    })?;
    Ok(Measured {
        values: vec![
            (Metric::SockperfRate, out.rate),
            (Metric::SockperfP50, out.p50_us),
            (Metric::SockperfP99, out.p99_us),
        ],
        load,
    })
}

fn last_line<'a>(a: &'a str, b: &'a str) -> &'a str {
    let line = |s: &'a str| s.lines().map(str::trim).rfind(|l| !l.is_empty());
    line(a).or_else(|| line(b)).unwrap_or("no output")
}

/// What `sockperf ping-pong` reported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SockperfOut {
    /// Round trips per second over its valid period.
    pub rate: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Parses `sockperf ping-pong` output (its colour codes left in):
/// `[Valid Duration] RunTime=0.550 sec; SentMessages=10181; ReceivedMessages=10181`
/// and `---> percentile 50.000 =   53.820`.
pub fn parse_sockperf(text: &str) -> Option<SockperfOut> {
    let field = |line: &str, key: &str| -> Option<f64> {
        let rest = line.split(key).nth(1)?;
        let end = rest.find([' ', ';']).unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    let valid = text.lines().find(|l| l.contains("[Valid Duration]"))?;
    let secs = field(valid, "RunTime=")?;
    let received = field(valid, "ReceivedMessages=")?;
    let percentile = |p: &str| {
        text.lines()
            .find(|l| l.contains(&format!("percentile {p} =")))
            .and_then(|l| l.rsplit('=').next()?.trim().parse().ok())
    };
    (secs > 0.0 && received > 0.0).then_some(())?;
    Some(SockperfOut {
        rate: received / secs,
        p50_us: percentile("50.000")?,
        p99_us: percentile("99.000")?,
    })
}

fn iperf3_small(lab: &BenchLab, opts: &Options) -> Result<Measured> {
    let (status, stdout, stderr, load) =
        iperf3_to_wan(lab, opts, IPERF_UDP_PORT, &["-u", "-l", "64", "-b", "0"])?;
    let pps = iperf_udp_pps(&stdout).ok_or_else(|| Error::Command {
        command: "iperf3 -c -u".into(),
        detail: format!("{status}: {}", last_line(&stderr, &stdout)),
    })?;
    Ok(Measured {
        values: vec![(Metric::Iperf3PacketRate, pps)],
        load,
    })
}

/// Datagrams received per second from `iperf3 -u -J` output: sent less lost, over
/// the test's seconds.
pub fn iperf_udp_pps(json: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let end = &v["end"];
    let sum = if end["sum_received"].is_object() {
        &end["sum_received"]
    } else {
        &end["sum"]
    };
    let (packets, lost, secs) = (
        sum["packets"].as_f64()?,
        sum["lost_packets"].as_f64()?,
        sum["seconds"].as_f64()?,
    );
    (secs > 0.0 && packets > lost).then(|| (packets - lost) / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockperf_output() {
        let text = "sockperf: [Total Run] RunTime=1.000 sec; Warm up time=400 msec; SentMessages=21079; ReceivedMessages=21078
sockperf: ========= Printing statistics for Server No: 0
sockperf: [Valid Duration] RunTime=0.550 sec; SentMessages=10181; ReceivedMessages=10175
sockperf: \x1b[2;35m====> avg-rtt=54.026 (std-dev=10.658)\x1b[0m
sockperf: ---> percentile 99.999 =  863.575
sockperf: ---> percentile 99.000 =   76.583
sockperf: ---> percentile 90.000 =   58.056
sockperf: ---> percentile 50.000 =   53.820
";
        let out = parse_sockperf(text).unwrap();
        assert!((out.rate - 10175.0 / 0.55).abs() < 1e-6, "{out:?}");
        assert_eq!((out.p50_us, out.p99_us), (53.82, 76.583));
        assert_eq!(parse_sockperf("sockperf: connection refused"), None);
    }

    #[test]
    fn iperf3_udp_json() {
        let j = r#"{"end": {"sum": {"seconds": 2.0, "packets": 500, "lost_packets": 100},
            "sum_received": {"seconds": 2.0, "packets": 500, "lost_packets": 100}}}"#;
        assert_eq!(iperf_udp_pps(j), Some(200.0));
        let old = r#"{"end": {"sum": {"seconds": 1.0, "packets": 10, "lost_packets": 0}}}"#;
        assert_eq!(iperf_udp_pps(old), Some(10.0));
        assert_eq!(iperf_udp_pps(r#"{"error": "unable to connect"}"#), None);
    }

    #[test]
    fn tools_and_their_scenarios() {
        assert_eq!(Tool::parse("sockperf"), Some(Tool::Sockperf));
        assert_eq!(Tool::parse("netperf"), None);
        assert_eq!(Tool::Sockperf.scenario(), crate::bench::Scenario::B);
        assert_eq!(Tool::Iperf3.metrics(), [Metric::Iperf3PacketRate]);
    }
}
