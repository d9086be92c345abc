//! One contender's turn in a round: its lab built, the scenarios of the round run on
//! it (each with the peer tools beside it), every outcome recorded in the report, the
//! lab torn down.

use super::{
    Contender, Options, Scenario, check_interrupt,
    lab::{BenchLab, SERVER},
    metric::Metric,
    report::{Report, num},
    rr::Mode,
    workload::{
        Measured, cli_at_scale, egress, full_table, publish_time, request_response, scale_step,
        small_packets,
    },
};
use crate::error::{Error, Result};

/// The order scenarios run in on one lab: h before d, since h publishes d's ports on
/// another container and takes them away again, and d and e keep theirs.
fn run_order(scenarios: &[Scenario]) -> Vec<Scenario> {
    let mut v = scenarios.to_vec();
    v.sort_by_key(|s| match s {
        Scenario::G => 3,
        Scenario::H => 4,
        Scenario::D => 5,
        Scenario::E => 6,
        s => *s as u8,
    });
    v
}

/// Builds a lab for a contender, runs `scenarios` on it into `report` (with the peer
/// tools beside them), tears it down. Only an interruption is an error; anything else
/// is recorded as n/a.
pub fn run_lab(
    opts: &Options,
    c: Contender,
    scenarios: &[Scenario],
    tag: &str,
    report: &mut Report,
) -> Result<()> {
    let scenarios = run_order(scenarios);
    if scenarios.is_empty() {
        return Ok(());
    }
    let mut lab = match BenchLab::up(c) {
        Ok(lab) => lab,
        Err(e) => {
            check_interrupt()?;
            let why = match &e {
                Error::Command { command, detail } if command.contains(" up ") => {
                    format!("no lab: {detail}")
                }
                e => format!("no lab: {e}"),
            };
            progress!("{tag}: every scenario n/a, {why}");
            for s in scenarios {
                for ports in ports_of(opts, s) {
                    report.fail(s, c, ports, &opts.metrics(s), &why);
                }
            }
            return Ok(());
        }
    };
    match c {
        Contender::Lab(..) => progress!("{tag}: lab {} is up", lab.name),
        Contender::Veth | Contender::Veth6 => progress!(
            "{tag}: veth pair {}-{SERVER} <-> {}-wan is up",
            lab.name,
            lab.name
        ),
    }
    for s in scenarios {
        if s == Scenario::D {
            let mut broken: Option<String> = None;
            for &n in &opts.port_counts {
                let result = match &broken {
                    Some(e) => Err(Error::Invalid(e.clone())),
                    None => scale_step(&mut lab, opts, n, tag),
                };
                record(report, tag, s, c, Some(n), s.metrics(), result, &mut broken)?;
            }
            continue;
        }
        let result = match s {
            Scenario::A => egress(&lab, opts),
            Scenario::B => request_response(&mut lab, opts, Mode::Rr),
            Scenario::C => request_response(&mut lab, opts, Mode::Crr),
            Scenario::E => publish_time(&mut lab, opts, tag),
            Scenario::G => small_packets(&lab, opts, tag),
            Scenario::H => cli_at_scale(&lab, opts),
            Scenario::I => full_table(c, opts, tag),
            Scenario::D | Scenario::F => unreachable!("handled above / not a workload"),
        };
        let ports = s.publishes().then(|| opts.max_ports());
        record(report, tag, s, c, ports, s.metrics(), result, &mut None)?;
        for t in opts.tools.iter().filter(|t| t.scenario() == s) {
            check_interrupt()?;
            let result = t.run(&mut lab, opts);
            record(report, tag, s, c, ports, t.metrics(), result, &mut None)?;
        }
    }
    Ok(())
}

fn ports_of(opts: &Options, s: Scenario) -> Vec<Option<u32>> {
    match s {
        Scenario::D => opts.port_counts.iter().map(|n| Some(*n)).collect(),
        Scenario::E | Scenario::H => vec![Some(opts.max_ports())],
        _ => vec![None],
    }
}

/// Puts one scenario's outcome (its figures `metrics`, or why they are n/a) into the
/// report and prints a progress line.
#[expect(
    clippy::too_many_arguments,
    reason = "one call per outcome, each named"
)]
fn record(
    report: &mut Report,
    tag: &str,
    s: Scenario,
    c: Contender,
    ports: Option<u32>,
    metrics: &[Metric],
    result: Result<Measured>,
    broken: &mut Option<String>,
) -> Result<()> {
    let label = match ports {
        Some(n) if s == Scenario::D => format!("{tag} {} ({n} ports)", s.letter()),
        Some(n) => format!("{tag} {} ({n} published)", s.letter()),
        None => format!("{tag} {}", s.letter()),
    };
    match result {
        Ok(Measured { values, load }) => {
            let shown: Vec<String> = values
                .iter()
                .map(|(m, v)| match m {
                    Metric::P50
                    | Metric::P99
                    | Metric::SockperfP50
                    | Metric::SockperfP99
                    | Metric::CliPublishAll
                    | Metric::CliPublishOne
                    | Metric::CliUnpublishOne
                    | Metric::CliRm => {
                        format!("{} {} {}", m.name(), num(*v), m.unit_shown(s))
                    }
                    // A peer tool's figure says whose it is, as its column does.
                    Metric::SockperfRate => format!("sockperf {} {}", num(*v), m.unit_shown(s)),
                    Metric::Iperf3PacketRate => format!("iperf3 {} {}", num(*v), m.unit_shown(s)),
                    _ => format!("{} {}", num(*v), m.unit_shown(s)),
                })
                .collect();
            let why = load.and_then(|l| l.disturbed());
            let note = why
                .map(|w| format!(" (disturbed: {w})"))
                .unwrap_or_default();
            progress!("{label}: {}{note}", shown.join(", "));
            for (m, v) in values {
                report.add(s, c, ports, m, v);
            }
            if let Some(load) = load {
                report.watch(s, c, ports, load);
            }
        }
        Err(Error::Interrupted(signal)) => return Err(Error::Interrupted(signal)),
        Err(e) => {
            progress!("{label}: n/a: {e}");
            report.fail(s, c, ports, metrics, &e.to_string());
            *broken = Some(e.to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h_runs_before_d_and_e() {
        use Scenario::*;
        assert_eq!(run_order(&[A, B, C, D, E, G, H]), [A, B, C, G, H, D, E]);
        assert_eq!(run_order(&[E, D]), [D, E]);
    }
}
