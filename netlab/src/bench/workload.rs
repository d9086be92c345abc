//! The scenarios, on one fresh lab per run and datapath:
//!
//! - a: `iperf3 -c 203.0.113.1 -t DURATION -J` in the container, `iperf3 -s -1` in wan;
//! - b: request/response from wan to uplink:8080, published to the container's 5000;
//! - c: the same with a new connection per request;
//! - d: CRR to the last of N published ports (host port = container port =
//!   40000 + i), the ports published in one batch per step;
//! - e: with N ports published, `Datapath::publish` of one more port, timed five
//!   times (the median counts);
//! - g: 64-byte UDP datagrams from the container to 203.0.113.1 in wan, through the
//!   masquerade, as fast as they go ([`super::pps`]): datagrams received per second;
//! - h: through the netlab binary, as a user would: `netlab run many`, `netlab publish
//!   many` of N specs (40000 + i) in one command, then five times `netlab publish` of
//!   one more port and `netlab unpublish` of it (medians), then `netlab rm many`. It
//!   runs before d, on the same lab, and leaves nothing published behind.
//!
//! On the routed baseline and the veth reference, b, c and g go from wan straight to
//! the container's address, and a and g to wan's (the veth reference's wan end).
//! Both ends of b-d are pinned to one CPU (see [`cpus`]); a's and g's sender and
//! receiver to one each ([`stream_cpus`]). b-d and g warm up for a fifth of the
//! duration (at most 1 s) before they count. A scenario that fails (a datapath that
//! cannot publish yet, a tool that is missing) is recorded as n/a for that run, and
//! the others go on.

use std::{
    io::Read,
    net::{SocketAddr, TcpListener, UdpSocket},
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    Contender, Options, check_interrupt,
    disturb::{Load, Watch},
    lab::{BenchLab, SERVER},
    metric::Metric,
    pps,
    report::num,
    rr::{self, Mode, Outcome},
};
use crate::{
    error::{Error, Result},
    netlink::netns,
};

/// The server's port in the container for b and c.
pub const RR_PORT: u16 = 5000;
/// The host port b and c publish.
pub const PUBLISHED: u16 = 8080;
/// Scenario d publishes host port SCALE_BASE + i to the same container port.
pub const SCALE_BASE: u16 = 40_000;
/// Scenario e's extra ports; h's follow them.
pub const EXTRA_BASE: u16 = 30_000;
const EXTRA_SAMPLES: u16 = 5;
const CLI_EXTRA_BASE: u16 = EXTRA_BASE + EXTRA_SAMPLES;
/// h's container: N ports on it, then `rm`.
pub const CLI_CONTAINER: &str = "many";
const IPERF_PORT: u16 = 5201;
/// g's receiver in wan.
const PPS_PORT: u16 = 5300;
// d's (and h's) ports, e's and h's extra ports, b's port and the eBPF NAT range
// (20000-29999) never meet.
const _: () = assert!(SCALE_BASE as u32 + super::MAX_PORTS - 1 <= u16::MAX as u32);
const _: () = assert!(CLI_EXTRA_BASE + EXTRA_SAMPLES < SCALE_BASE);
const _: () = assert!(EXTRA_BASE > 29_999 && PUBLISHED < 20_000 && RR_PORT < 20_000);

/// What one scenario measured on one lab, and what the machine did meanwhile.
pub struct Measured {
    pub values: Vec<(Metric, f64)>,
    pub load: Option<Load>,
}

impl Measured {
    /// With the worse of its load and `other`.
    fn and_load(mut self, other: Option<Load>) -> Measured {
        self.load = match (self.load, other) {
            (Some(a), Some(b)) => Some(a.worst(b)),
            (a, b) => a.or(b),
        };
        self
    }
}

/// A child process in a namespace and its own process group; killed when dropped.
pub struct Proc {
    child: Child,
    what: String,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

fn drain(r: Option<impl Read + Send + 'static>) -> Option<JoinHandle<Vec<u8>>> {
    r.map(|mut r| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    })
}

impl Proc {
    /// Starts `program` in `ns`, pinned to `cpu` if given (set in the child before
    /// it execs, so every thread it starts inherits it).
    pub fn spawn(ns: &Path, program: &str, args: &[&str], cpu: Option<usize>) -> Result<Proc> {
        let what = format!("{program} {}", args.join(" "));
        let mut child = netns::run_in(ns, || {
            let mut cmd = Command::new(program);
            if let Some(cpu) = cpu {
                // SAFETY: sched_setaffinity is a plain system call, safe between fork
                // and exec; pin_to allocates nothing.
                unsafe { cmd.pre_exec(move || rr::pin_to(cpu)) };
            }
            cmd.args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .spawn()
                .map_err(|e| Error::Command {
                    command: program.to_string(),
                    detail: format!("cannot start it: {e}"),
                })
        })?;
        let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
        Ok(Proc {
            child,
            what,
            stdout,
            stderr,
        })
    }

    /// Waits for the process, noticing Ctrl-C and the deadline; returns its status,
    /// stdout and stderr.
    pub fn wait(mut self, timeout: Duration) -> Result<(ExitStatus, String, String)> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|e| Error::io("wait for", &self.what, e))?
            {
                break status;
            }
            check_interrupt()?;
            if Instant::now() > deadline {
                return Err(Error::Command {
                    command: self.what.clone(),
                    detail: format!("still running after {} s", timeout.as_secs()),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = |h: Option<JoinHandle<Vec<u8>>>| {
            h.and_then(|h| h.join().ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        Ok((status, text(self.stdout.take()), text(self.stderr.take())))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until a TCP socket listens on `port` in namespace `ns`, reading the
/// namespace's own /proc/net/tcp.
pub fn wait_listening(ns: &Path, port: u16) -> Result<()> {
    let suffix = format!(":{port:04X}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listening = netns::run_in(ns, || {
            let mut any = false;
            for file in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
                // tcp6 is not there while IPv6 is off.
                let table = std::fs::read_to_string(file).unwrap_or_default();
                any |= table.lines().skip(1).any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 3 && f[1].ends_with(&suffix) && f[3] == "0A"
                });
            }
            Ok::<bool, Error>(any)
        })?;
        if listening {
            return Ok(());
        }
        check_interrupt()?;
        if Instant::now() > deadline {
            return Err(Error::Command {
                command: format!("server in {}", ns.display()),
                detail: format!("nothing listens on port {port} after 10 s"),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Scenario a: container -> wan TCP throughput, in Gbit/s as the receiver saw it.
/// The sender runs on the CPU of every other workload, the receiver on another one
/// (as in g): left to the scheduler, the two ends shared a CPU in some runs and not in
/// others, and a datapath's runs spread by a third.
pub(super) fn egress(lab: &BenchLab, opts: &Options) -> Result<Measured> {
    let (status, stdout, stderr, load) = iperf3_to_wan(lab, opts, IPERF_PORT, &[])?;
    let gbps = iperf_gbps(&stdout).ok_or_else(|| Error::Command {
        command: "iperf3 -c".into(),
        detail: iperf_error(&stdout).unwrap_or_else(|| format!("{status}: {}", stderr.trim())),
    })?;
    Ok(Measured {
        values: vec![(Metric::Throughput, gbps)],
        load,
    })
}

/// One `iperf3 -J` run from the container to wan (`extra`: the client's own flags),
/// the server bound to the far address on `port`, each end on its own CPU; returns
/// the client's exit status, its output, its errors, and the machine's load meanwhile.
pub fn iperf3_to_wan(
    lab: &BenchLab,
    opts: &Options,
    port: u16,
    extra: &[&str],
) -> Result<(ExitStatus, String, String, Option<Load>)> {
    let (wan, port_arg) = (lab.ns("wan"), port.to_string());
    let far = lab.far_addr().to_string();
    let (sender_cpu, receiver_cpu) = stream_cpus();
    let server = Proc::spawn(
        &wan,
        "iperf3",
        &["-s", "-1", "-B", &far, "-p", &port_arg],
        receiver_cpu,
    )?;
    wait_listening(&wan, port)?;
    let secs = opts.duration.as_secs().to_string();
    let mut args = vec!["-c", &far, "-p", &port_arg, "-t", &secs, "-J"];
    args.extend_from_slice(extra);
    let watch = Watch::start(&[sender_cpu, receiver_cpu]);
    let client = Proc::spawn(&lab.ns(SERVER), "iperf3", &args, sender_cpu)?;
    let (status, stdout, stderr) = client.wait(opts.duration + Duration::from_secs(30))?;
    let load = watch.stop();
    let _ = server.wait(Duration::from_secs(5));
    Ok((status, stdout, stderr, load))
}

/// Received throughput from `iperf3 -J` output.
pub fn iperf_gbps(json: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let bps = v["end"]["sum_received"]["bits_per_second"].as_f64()?;
    (bps > 0.0).then_some(bps / 1e9)
}

fn iperf_error(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["error"].as_str().map(str::to_string)
}

/// (client CPU, server CPU): the same one, the machine's last. Both ends of every
/// request/response workload run on one CPU, so that a transaction never waits for a
/// wakeup on the other CPU: on a VM that costs tens of microseconds (measured here:
/// iptables RR p50 58 µs with client and server on different CPUs, 7 µs on one) and
/// would swamp what the datapaths cost. What is measured is the CPU cost of the whole
/// path.
pub fn cpus() -> (Option<usize>, Option<usize>) {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (Some(n - 1), Some(n - 1))
}

/// (sender CPU, receiver CPU) of a one-way workload (a, g): the sender on the CPU of
/// every other workload, the receiver on the first CPU when that is another one.
pub fn stream_cpus() -> (Option<usize>, Option<usize>) {
    let (sender, _) = cpus();
    (sender, sender.map(|c| if c > 0 { 0 } else { c }))
}

/// Starts a server of `mode` on the container's `ctr_port`, runs the client from
/// wan against `target` for the duration.
fn serve_and_measure(
    lab: &BenchLab,
    ctr_port: u16,
    target: SocketAddr,
    mode: Mode,
    duration: Duration,
) -> Result<(Outcome, Option<Load>)> {
    let failed = |what: &str, e: std::io::Error| Error::Command {
        command: format!("bench {what}"),
        detail: e.to_string(),
    };
    let listener = netns::run_in(&lab.ns(SERVER), || {
        TcpListener::bind((lab.unspecified(), ctr_port))
            .map_err(|e| failed(&format!("server on port {ctr_port}"), e))
    })?;
    let (client_cpu, server_cpu) = cpus();
    let _server = rr::Server::start(listener, mode, server_cpu).map_err(|e| failed("server", e))?;
    let timing = rr::Timing {
        warmup: (duration / 5).min(Duration::from_secs(1)),
        duration,
    };
    let watch = Watch::start(&[client_cpu, server_cpu]);
    let out = netns::run_in(&lab.ns("wan"), || {
        if let Some(cpu) = client_cpu {
            rr::pin_to(cpu).map_err(|e| failed("client", e))?;
        }
        let client = match mode {
            Mode::Rr => rr::rr_client,
            Mode::Crr => rr::crr_client,
        };
        client(target, timing, &super::interrupted).map_err(|e| failed("client", e))
    })?;
    let load = watch.stop();
    check_interrupt()?;
    if out.transactions == 0 {
        return Err(Error::Command {
            command: "bench client".into(),
            detail: format!("no transaction with {target} completed"),
        });
    }
    Ok((out, load))
}

fn rr_figures((out, load): (Outcome, Option<Load>)) -> Measured {
    Measured {
        values: vec![
            (Metric::Rate, out.rate()),
            (Metric::P50, out.percentile_us(50.0)),
            (Metric::P99, out.percentile_us(99.0)),
        ],
        load,
    }
}

/// Scenarios b and c: through the published port, or straight to the container on
/// the routed baseline.
pub(super) fn request_response(lab: &mut BenchLab, opts: &Options, mode: Mode) -> Result<Measured> {
    let target = if lab.contender.direct() {
        SocketAddr::from((lab.server_ip(), RR_PORT))
    } else {
        if !lab.is_published(PUBLISHED) {
            let port = lab.port(PUBLISHED, RR_PORT);
            lab.publish(&[port])?;
        }
        SocketAddr::from((lab.uplink_ip(), PUBLISHED))
    };
    Ok(rr_figures(serve_and_measure(
        lab,
        RR_PORT,
        target,
        mode,
        opts.duration,
    )?))
}

/// Flows scenario i puts in the conntrack table.
pub const FULL_TABLE_FLOWS: u32 = 1_000_000;

/// Scenario i, on a lab of its own sized for the flows: CRR through the published
/// port with an empty table, then with [`FULL_TABLE_FLOWS`] established flows in it
/// (synthetic ones that the measurement never meets, so every lookup of the
/// measurement misses or hits among them as a busy lab's would).
pub(super) fn full_table(c: Contender, opts: &Options, tag: &str) -> Result<Measured> {
    let size = (FULL_TABLE_FLOWS + FULL_TABLE_FLOWS / 10).to_string();
    let mut lab = BenchLab::up_with(c, &["--conntrack-max", &size])?;
    let port = lab.port(PUBLISHED, RR_PORT);
    lab.publish(&[port])?;
    let target = SocketAddr::from((lab.uplink_ip(), PUBLISHED));
    let (empty, load) = serve_and_measure(&lab, RR_PORT, target, Mode::Crr, opts.duration)?;
    check_interrupt()?;
    let started = Instant::now();
    let filled = lab.fill_conntrack(FULL_TABLE_FLOWS)?;
    if filled < FULL_TABLE_FLOWS {
        return Err(Error::Invalid(format!(
            "the table took {filled} of {FULL_TABLE_FLOWS} flows"
        )));
    }
    progress!(
        "{tag}: {filled} flows put in the table in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (full, full_load) = serve_and_measure(&lab, RR_PORT, target, Mode::Crr, opts.duration)?;
    let m = Measured {
        values: vec![
            (Metric::Rate, empty.rate()),
            (Metric::RateFull, full.rate()),
        ],
        load,
    };
    Ok(m.and_load(full_load))
}

/// Publishes scenario d's ports up to `n` in one batch.
fn publish_up_to(lab: &mut BenchLab, n: u32, tag: &str) -> Result<()> {
    let have = lab.published_count(SCALE_BASE);
    if n <= have {
        return Ok(());
    }
    let ports: Vec<_> = (have..n)
        .map(|i| {
            let p = SCALE_BASE + i as u16;
            lab.port(p, p)
        })
        .collect();
    let took = lab.publish(&ports)?;
    progress!(
        "{tag}: published {} more ports ({n} in all) in {:.3} s",
        ports.len(),
        took.as_secs_f64()
    );
    Ok(())
}

/// One step of scenario d: `n` ports published, CRR to the last one.
pub(super) fn scale_step(
    lab: &mut BenchLab,
    opts: &Options,
    n: u32,
    tag: &str,
) -> Result<Measured> {
    publish_up_to(lab, n, tag)?;
    let last = SCALE_BASE + (n - 1) as u16;
    let target = SocketAddr::from((lab.uplink_ip(), last));
    Ok(rr_figures(serve_and_measure(
        lab,
        last,
        target,
        Mode::Crr,
        opts.duration,
    )?))
}

/// Scenario e: milliseconds to publish one more port with N published.
pub(super) fn publish_time(lab: &mut BenchLab, opts: &Options, tag: &str) -> Result<Measured> {
    publish_up_to(lab, opts.max_ports(), tag)?;
    let watch = Watch::unpinned();
    let mut times = Vec::new();
    for i in 0..EXTRA_SAMPLES {
        check_interrupt()?;
        let port = lab.port(EXTRA_BASE + i, RR_PORT);
        times.push(lab.publish(&[port])?.as_secs_f64() * 1000.0);
    }
    let median = super::report::summary(&times).map_or(0.0, |s| s.0);
    Ok(Measured {
        values: vec![(Metric::PublishTime, median)],
        load: watch.stop(),
    })
}

/// Sleeps for `d`, noticing Ctrl-C.
fn pause(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check_interrupt()?;
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    Ok(())
}

/// Scenario g: datagrams per second received in wan, from the container's sender
/// (see [`super::pps`]). The sender runs on the CPU of every other workload, the
/// receiver on another one, when there is one.
pub(super) fn small_packets(lab: &BenchLab, opts: &Options, tag: &str) -> Result<Measured> {
    let failed = |what: &str, e: std::io::Error| Error::Command {
        command: format!("bench {what}"),
        detail: e.to_string(),
    };
    let target = SocketAddr::from((lab.far_addr(), PPS_PORT));
    let (sender_cpu, receiver_cpu) = stream_cpus();
    let socket = netns::run_in(&lab.ns("wan"), || {
        UdpSocket::bind(target).map_err(|e| failed(&format!("receiver on {target}"), e))
    })?;
    let receiver = pps::Receiver::start(socket, receiver_cpu).map_err(|e| failed("receiver", e))?;
    let socket = netns::run_in(&lab.ns(SERVER), || {
        UdpSocket::bind((lab.unspecified(), 0)).map_err(|e| failed("sender", e))
    })?;
    let sender = pps::Sender::start(socket, target, sender_cpu)
        .map_err(|e| failed(&format!("sender to {target}"), e))?;
    pause((opts.duration / 5).min(Duration::from_secs(1)))?;
    let (r0, s0, t0) = (receiver.received(), sender.sent(), Instant::now());
    let watch = Watch::start(&[sender_cpu, receiver_cpu]);
    pause(opts.duration)?;
    let load = watch.stop();
    let (r1, s1, secs) = (
        receiver.received(),
        sender.sent(),
        t0.elapsed().as_secs_f64(),
    );
    sender.finish().map_err(|e| failed("sender", e))?;
    drop(receiver);
    let (got, sent) = ((r1 - r0) as f64 / secs, (s1 - s0) as f64 / secs);
    if got == 0.0 {
        return Err(Error::Command {
            command: "bench sender".into(),
            detail: format!("no datagram reached {target}"),
        });
    }
    progress!(
        "{tag} g: sent {} pps, {:.1} % of them lost on the way",
        num(sent),
        (1.0 - got / sent.max(got)) * 100.0
    );
    Ok(Measured {
        values: vec![(Metric::PacketRate, got)],
        load,
    })
}

/// The median of some milliseconds.
fn median_ms(times: &[Duration]) -> f64 {
    let ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1000.0).collect();
    super::report::summary(&ms).map_or(0.0, |s| s.0)
}

/// Scenario h: the CLI with N published ports, timed through the binary.
pub(super) fn cli_at_scale(lab: &BenchLab, opts: &Options) -> Result<Measured> {
    let n = opts.max_ports();
    lab.netlab(&["run", CLI_CONTAINER])?;
    let result = cli_steps(lab, n);
    if result.is_err() {
        // Leave d and e a lab without h's ports, whatever failed.
        let _ = lab.netlab(&["rm", CLI_CONTAINER]);
    }
    result
}

fn cli_steps(lab: &BenchLab, n: u32) -> Result<Measured> {
    let specs: Vec<String> = (0..n)
        .map(|i| {
            let p = SCALE_BASE + i as u16;
            format!("{p}:{p}")
        })
        .collect();
    let mut args = vec!["publish", CLI_CONTAINER];
    args.extend(specs.iter().map(String::as_str));
    let watch = Watch::unpinned();
    let all = lab.netlab_timed(&args)?;
    let (mut one, mut un) = (Vec::new(), Vec::new());
    for i in 0..EXTRA_SAMPLES {
        check_interrupt()?;
        let spec = format!("{}:{RR_PORT}", CLI_EXTRA_BASE + i);
        one.push(lab.netlab_timed(&["publish", CLI_CONTAINER, &spec])?);
    }
    for i in 0..EXTRA_SAMPLES {
        check_interrupt()?;
        let spec = format!("{}:{RR_PORT}", CLI_EXTRA_BASE + i);
        un.push(lab.netlab_timed(&["unpublish", CLI_CONTAINER, &spec])?);
    }
    check_interrupt()?;
    let rm = lab.netlab_timed(&["rm", CLI_CONTAINER])?;
    Ok(Measured {
        values: vec![
            (Metric::CliPublishAll, all.as_secs_f64() * 1000.0),
            (Metric::CliPublishOne, median_ms(&one)),
            (Metric::CliUnpublishOne, median_ms(&un)),
            (Metric::CliRm, rm.as_secs_f64() * 1000.0),
        ],
        load: watch.stop(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iperf3_json() {
        let ok = r#"{"start": {}, "end": {"sum_received": {"bits_per_second": 12.5e9}}}"#;
        assert_eq!(iperf_gbps(ok), Some(12.5));
        let err = r#"{"start": {}, "end": {}, "error": "unable to connect to server"}"#;
        assert_eq!(iperf_gbps(err), None);
        assert_eq!(
            iperf_error(err).as_deref(),
            Some("unable to connect to server")
        );
        assert_eq!(iperf_gbps("not json"), None);
    }
}
