//! What the benchmark's figures are: a metric of a scenario ([`Metric`]), and the
//! figure or per-round ratio a target or a goal is about ([`Subject`]). The lowest layer
//! of the report, the goals and the options, which all name them.

use super::{Contender, Scenario};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// Gbit/s received by the far end.
    Throughput,
    /// Transactions (RR) or connections (CRR) per second.
    Rate,
    /// Median latency of a transaction, microseconds.
    P50,
    /// 99th percentile latency, microseconds.
    P99,
    /// Milliseconds for `Datapath::publish` of one port.
    PublishTime,
    /// Datagrams per second received by the far end.
    PacketRate,
    /// Milliseconds for `netlab publish` of N specs in one command.
    CliPublishAll,
    /// Milliseconds for `netlab publish` of one more port when N are published.
    CliPublishOne,
    /// Milliseconds for `netlab unpublish` of one port when N are published.
    CliUnpublishOne,
    /// Milliseconds for `netlab rm` of a container with N published ports.
    CliRm,
    /// Connections per second with the conntrack table holding a million flows.
    RateFull,
    /// `--tool sockperf` beside b: round trips per second, and their p50 and p99, µs.
    SockperfRate,
    SockperfP50,
    SockperfP99,
    /// `--tool iperf3` beside g: datagrams per second received by the far end.
    Iperf3PacketRate,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Self::Throughput => "throughput",
            Self::Rate => "rate",
            Self::P50 => "p50",
            Self::P99 => "p99",
            Self::PublishTime => "publish_time",
            Self::PacketRate => "packet_rate",
            Self::CliPublishAll => "cli_publish_all",
            Self::CliPublishOne => "cli_publish_one",
            Self::CliUnpublishOne => "cli_unpublish_one",
            Self::CliRm => "cli_rm",
            Self::RateFull => "rate_full",
            Self::SockperfRate => "sockperf_rate",
            Self::SockperfP50 => "sockperf_p50",
            Self::SockperfP99 => "sockperf_p99",
            Self::Iperf3PacketRate => "iperf3_packet_rate",
        }
    }

    /// The column heading in the table.
    pub fn heading(self, scenario: Scenario) -> String {
        let unit = self.unit_shown(scenario);
        match self {
            Self::P50 | Self::P99 => format!("{} {unit}", self.name()),
            Self::CliPublishAll => format!("publish N, {unit}"),
            Self::CliPublishOne => format!("publish 1 more, {unit}"),
            Self::CliUnpublishOne => format!("unpublish 1, {unit}"),
            Self::CliRm => format!("rm, {unit}"),
            Self::Rate if scenario == Scenario::I => format!("{unit}, empty table"),
            Self::RateFull => format!("{unit}, 1M flows"),
            Self::SockperfRate => format!("sockperf {unit}"),
            Self::SockperfP50 => format!("sockperf p50 {unit}"),
            Self::SockperfP99 => format!("sockperf p99 {unit}"),
            Self::Iperf3PacketRate => format!("iperf3 {unit}"),
            _ => unit.to_string(),
        }
    }

    /// The unit, in the JSON's ASCII spelling.
    pub fn unit(self, scenario: Scenario) -> &'static str {
        match self {
            Self::Throughput => "Gbit/s",
            Self::Rate if scenario == Scenario::B => "trans/s",
            Self::SockperfRate => "trans/s",
            Self::Rate | Self::RateFull => "conn/s",
            Self::P50 | Self::P99 | Self::SockperfP50 | Self::SockperfP99 => "us",
            Self::PacketRate | Self::Iperf3PacketRate => "pps",
            Self::PublishTime
            | Self::CliPublishAll
            | Self::CliPublishOne
            | Self::CliUnpublishOne
            | Self::CliRm => "ms",
        }
    }

    /// The unit as the terminal shows it.
    pub fn unit_shown(self, scenario: Scenario) -> &'static str {
        match self.unit(scenario) {
            "us" => "µs",
            u => u,
        }
    }

    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Self::Throughput
                | Self::Rate
                | Self::RateFull
                | Self::PacketRate
                | Self::SockperfRate
                | Self::Iperf3PacketRate
        )
    }
}

/// What a target or a goal is about: one contender's figure, or its per-round ratio to
/// a base contender's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Subject {
    pub scenario: Scenario,
    pub ports: Option<u32>,
    pub metric: Metric,
    pub numerator: Contender,
    pub denominator: Option<Contender>,
    /// The base's figure when it is another one of the same scenario (scenario i:
    /// with a million flows against an empty table); `None`: the same figure.
    pub base_metric: Option<Metric>,
}

impl Subject {
    /// `(c) conn/s ebpf / iptables`.
    pub fn describe(&self) -> String {
        let ports = self.ports.map(|n| format!(", N = {n}")).unwrap_or_default();
        let base = match (self.denominator, self.base_metric) {
            (Some(d), Some(m)) => format!(" / {} {}", d.name(), m.heading(self.scenario)),
            (Some(d), None) => format!(" / {}", d.name()),
            (None, _) => String::new(),
        };
        format!(
            "({}{ports}) {} {}{base}",
            self.scenario.letter(),
            self.metric.heading(self.scenario),
            self.numerator.name()
        )
    }
}
