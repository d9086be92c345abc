//! What the iptables and nftables datapaths share: their tools run inside the lab
//! host's namespace, the sysctls they need there, hairpin on a published container's
//! bridge port, and forgetting the kernel's conntrack entries of a withdrawn port.

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use crate::{
    error::{Error, Result},
    lab::{LabState, NatOptions, PortSpec, Published, spec::host_ips_overlap},
    netlink::{link, netns, sysctl},
    topology,
};

/// The comment every iptables rule netlab adds carries; teardown removes exactly these.
pub const TAG: &str = "netlab";

use crate::netlink::sysctl::BRIDGE_NF_CALL_IPTABLES;
const CONNTRACK_SYSCTLS: &str = "/proc/sys/net/netfilter";

/// Runs `program args` in the lab host's namespace, `input` on its stdin; returns its
/// stdout. The error carries the command and its stderr on one line.
pub fn run(state: &LabState, program: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    run_in(&topology::host_ns(state), program, args, input)
}

/// [`run`] in namespace `host`.
pub fn run_in(host: &Path, program: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    let shown = || {
        format!("{program} {}", args.join(" "))
            .trim_end()
            .to_string()
    };
    // A child inherits the namespace of the thread that spawns it.
    let out = netns::run_in(host, || {
        let mut cmd = Command::new(program);
        // Killed, netlab leaves the tool running; the next command waits for it.
        crate::lockfile::hold_in_child(&mut cmd);
        let mut child = cmd
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::Command {
                    command: program.to_string(),
                    detail: "not found: install it (`cargo xtask setup` lists the packages)".into(),
                },
                _ => Error::io("run", program, e),
            })?;
        let stdin = child.stdin.take();
        std::thread::scope(|s| {
            // Written from a second thread so that a child that talks back cannot
            // deadlock against a large input (ten thousand rules).
            let writer = if let (Some(mut pipe), Some(text)) = (stdin, input) {
                Some(s.spawn(move || {
                    // A tool that dies before reading it all gives EPIPE here, and the
                    // command fails with the tool's exit as an error, rolling back. Not
                    // a SIGPIPE killing netlab mid-command (a review): blocked in this
                    // thread only, the signal stays pending on it and ends with it.
                    let mut pipe_signal = nix::sys::signal::SigSet::empty();
                    pipe_signal.add(nix::sys::signal::Signal::SIGPIPE);
                    let _ = pipe_signal.thread_block();
                    pipe.write_all(text.as_bytes())
                }))
            } else {
                None
            };
            let out = child
                .wait_with_output()
                .map_err(|e| Error::io("wait for", program, e))?;
            // A tool that exits 0 without reading all it was given did not apply it.
            let written = writer.map_or(Ok(()), |w| {
                w.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("writer thread panicked")))
            });
            match written {
                Err(e) if out.status.success() => Err(Error::Command {
                    command: shown(),
                    detail: format!("exited before reading all of its input ({e})"),
                }),
                _ => Ok(out),
            }
        })
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The first lines, each cut short: nft repeats the whole failing line (with ten
        // thousand elements in it), which no one-line error can carry.
        let detail = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(3)
            .map(|l| match l.char_indices().nth(160) {
                Some((i, _)) => format!("{}...", &l[..i]),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Error::Command {
            command: shown(),
            detail: if detail.is_empty() {
                format!("exited with {}", out.status)
            } else {
                detail
            },
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

/// The sysctls of the lab host namespace that both netfilter datapaths need before
/// their rules: bridged frames go through the IPv4 hooks (`bridge-nf-call-iptables`,
/// as Docker has it; and the IPv6 hooks in a lab with IPv6), and the bridge routes 127.0.0.1 (host-local publishing on
/// 127.0.0.1, as Docker without its userland proxy).
pub fn prepare_host(state: &LabState) -> Result<()> {
    let localnet = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", state.bridge);
    // Bridged IPv6 frames through the IPv6 hooks too, in a lab with IPv6.
    let ipv6 = state.subnet6.is_some();
    netns::run_in(&topology::host_ns(state), || {
        if !Path::new(BRIDGE_NF_CALL_IPTABLES).exists() {
            return Err(Error::Invalid(format!(
                "{BRIDGE_NF_CALL_IPTABLES} is missing: the kernel needs br_netfilter (`modprobe br_netfilter`)"
            )));
        }
        sysctl::set(BRIDGE_NF_CALL_IPTABLES, "1")?;
        if ipv6 {
            sysctl::set(sysctl::BRIDGE_NF_CALL_IP6TABLES, "1")?;
        }
        sysctl::set(&localnet, "1")
    })
}

/// In a sandbox, the lab's conntrack timeouts, once the rules are in: where conntrack
/// is a module (Debian's kernels), its sysctls exist only after the rules that use it
/// have loaded it. A lab on the machine's own namespace leaves the machine's timeouts
/// alone.
pub fn set_timeouts(state: &LabState) -> Result<()> {
    if !state.sandbox {
        return Ok(());
    }
    let timeouts = conntrack_timeouts(&state.nat, state.subnet6.is_some());
    netns::run_in(&topology::host_ns(state), || {
        for (key, secs) in &timeouts {
            sysctl::set(&format!("{CONNTRACK_SYSCTLS}/{key}"), &secs.to_string())?;
        }
        Ok(())
    })
}

/// The kernel conntrack timeouts that match the lab's NAT options (`--icmp-timeout`
/// for ICMPv6 too in a dual-stack lab).
fn conntrack_timeouts(nat: &NatOptions, ipv6: bool) -> Vec<(&'static str, u32)> {
    let mut timeouts = vec![
        (
            "nf_conntrack_tcp_timeout_established",
            nat.tcp_established_secs,
        ),
        ("nf_conntrack_tcp_timeout_syn_sent", nat.tcp_syn_secs),
        ("nf_conntrack_tcp_timeout_syn_recv", nat.tcp_syn_secs),
        ("nf_conntrack_tcp_timeout_fin_wait", nat.tcp_transitory_secs),
        (
            "nf_conntrack_tcp_timeout_close_wait",
            nat.tcp_transitory_secs,
        ),
        ("nf_conntrack_tcp_timeout_last_ack", nat.tcp_transitory_secs),
        ("nf_conntrack_tcp_timeout_time_wait", nat.tcp_time_wait_secs),
        ("nf_conntrack_tcp_timeout_close", nat.tcp_close_secs),
        ("nf_conntrack_udp_timeout", nat.udp_secs),
        ("nf_conntrack_udp_timeout_stream", nat.udp_stream_secs),
        ("nf_conntrack_icmp_timeout", nat.icmp_secs),
    ];
    if ipv6 {
        timeouts.push(("nf_conntrack_icmpv6_timeout", nat.icmp_secs));
    }
    timeouts
}

/// Turns hairpin on for the bridge ports of the containers some ports lead to (each
/// once): with bridge netfilter, a container's packet to its own published port is
/// DNATed on the bridge and must leave by the port it came in on. Docker does the
/// same when it runs without its userland proxy.
pub fn hairpin(state: &LabState, ports: &[Published]) -> Result<()> {
    let mut veths: Vec<String> = ports
        .iter()
        .filter_map(|p| state.container(&p.container).and_then(|c| c.veth.clone()))
        .collect();
    veths.sort();
    veths.dedup();
    if veths.is_empty() {
        return Ok(());
    }
    netns::netlink_in(&topology::host_ns(state), |h| async move {
        for veth in veths {
            let index = link::require(&h, &veth).await?;
            link::set_hairpin(&h, &veth, index, true).await?;
        }
        Ok(())
    })
}

/// (host port, container port) for every port of a spec: ranges are expanded, one
/// rule or map element per port, so that each host port maps to exactly its own
/// container port.
pub fn pairs(spec: &PortSpec) -> impl Iterator<Item = (u16, u16)> + '_ {
    (spec.host_port..=spec.host_end).map(|p| (p, spec.ctr_port_for(p)))
}

/// Checks that the `conntrack` tool is there before anything is withdrawn, so that an
/// unpublish does not stop halfway.
pub fn require_conntrack_tool() -> Result<()> {
    if on_path("conntrack") {
        Ok(())
    } else {
        Err(Error::Command {
            command: "conntrack".into(),
            detail: "not found: withdrawing a port flushes its flows with it; install the `conntrack` package (`cargo xtask setup`)".into(),
        })
    }
}

/// One entry of `conntrack -L`: its original and reply tuples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtFlow {
    pub proto: String,
    pub orig: (IpAddr, IpAddr, u16, u16),
    pub reply: (IpAddr, IpAddr, u16, u16),
}

/// Parses `conntrack -L` output (TCP and UDP lines; others are skipped).
pub fn parse_flows(text: &str) -> Vec<CtFlow> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let proto = words.next()?.to_string();
            let mut tuples: Vec<(IpAddr, IpAddr, u16, u16)> = Vec::new();
            let mut cur: (Option<IpAddr>, Option<IpAddr>, Option<u16>, Option<u16>) =
                (None, None, None, None);
            for w in words {
                let Some((k, v)) = w.split_once('=') else {
                    continue;
                };
                match k {
                    "src" => cur.0 = v.parse().ok(),
                    "dst" => cur.1 = v.parse().ok(),
                    "sport" => cur.2 = v.parse().ok(),
                    "dport" => {
                        cur.3 = v.parse().ok();
                        if let (Some(a), Some(b), Some(c), Some(d)) = cur {
                            tuples.push((a, b, c, d));
                        }
                        cur = (None, None, None, None);
                    }
                    _ => {}
                }
            }
            match tuples.as_slice() {
                [orig, reply, ..] => Some(CtFlow {
                    proto,
                    orig: *orig,
                    reply: *reply,
                }),
                _ => None,
            }
        })
        .collect()
}

/// Deletes the kernel conntrack entries chosen by `doomed` out of one `conntrack -L`
/// per protocol and family (IPv6 in a lab with IPv6); each deletion names its exact
/// original tuple.
fn delete_flows(
    state: &LabState,
    protos: &HashSet<&'static str>,
    doomed: impl Fn(&CtFlow) -> bool,
) -> Result<()> {
    let families: &[&str] = if state.subnet6.is_some() {
        &["ipv4", "ipv6"]
    } else {
        &["ipv4"]
    };
    for (proto, family) in protos
        .iter()
        .flat_map(|p| families.iter().map(move |f| (p, *f)))
    {
        let listed = run(state, "conntrack", &["-L", "-f", family, "-p", proto], None)?;
        for f in parse_flows(&listed).into_iter().filter(|f| doomed(f)) {
            let (src, dst, sport, dport) = f.orig;
            let (src, dst, sport, dport) = (
                src.to_string(),
                dst.to_string(),
                sport.to_string(),
                dport.to_string(),
            );
            let args = [
                "-D", "-f", family, "-p", proto, "-s", &src, "-d", &dst, "--sport", &sport,
                "--dport", &dport,
            ];
            match run(state, "conntrack", &args, None) {
                Ok(_) => {}
                // Gone meanwhile: conntrack exits 1 when nothing matched.
                Err(Error::Command { detail, .. }) if detail.contains("0 flow entries") => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Deletes the kernel conntrack entries of withdrawn ports, so that no established
/// flow keeps its DNAT: those whose original destination is a withdrawn host port on
/// an address the port answered on (its family's, or the one it names) and whose reply
/// comes from the container port it led to. A port of the other family on the same
/// host port keeps its flows.
pub fn forget_flows(state: &LabState, ports: &[Published]) -> Result<()> {
    // (protocol, host port, container address, container port) → the host addresses.
    let mut wanted: HashMap<(&'static str, u16, IpAddr, u16), Vec<Option<IpAddr>>> = HashMap::new();
    for port in ports {
        let mut ctrs = Vec::new();
        if port.spec.on_ipv4() {
            ctrs.push(IpAddr::V4(port.ctr_ip));
        }
        if port.spec.on_ipv6() {
            ctrs.extend(state.ip6_of(port.ctr_ip).map(IpAddr::V6));
        }
        for (hp, cp) in pairs(&port.spec) {
            for &ctr in &ctrs {
                wanted
                    .entry((port.spec.proto.name(), hp, ctr, cp))
                    .or_default()
                    .push(port.spec.host_ip);
            }
        }
    }
    let protos: HashSet<&'static str> = wanted.keys().map(|w| w.0).collect();
    delete_flows(state, &protos, |f| {
        let Some(p) = protos.iter().find(|p| **p == f.proto) else {
            return false;
        };
        wanted
            .get(&(*p, f.orig.3, f.reply.0, f.reply.2))
            .is_some_and(|hosts| hosts.iter().any(|h| host_ips_overlap(Some(f.orig.1), *h)))
    })
}

/// Deletes stale kernel conntrack entries to host ports about to be published: a
/// datagram stream that kept arriving while the port was closed holds an unanswered
/// entry without DNAT, which would keep its packets away from the container. Only
/// entries to an address the new port answers on: any of the lab host's (not only the
/// uplink's and the bridge's: a port on another of its addresses is stuck as well).
pub fn forget_stale(state: &LabState, ports: &[Published]) -> Result<()> {
    let mut local = netns::netlink_in(&topology::host_ns(state), |h| async move {
        crate::netlink::addr::all_links(&h).await
    })?;
    local.extend([state.uplink_addr, state.bridge_addr].map(IpAddr::V4));
    // (protocol, host port) → the host addresses.
    let mut wanted: HashMap<(&'static str, u16), Vec<Option<IpAddr>>> = HashMap::new();
    for port in ports {
        for (hp, _) in pairs(&port.spec) {
            wanted
                .entry((port.spec.proto.name(), hp))
                .or_default()
                .push(port.spec.host_ip);
        }
    }
    let protos: HashSet<&'static str> = wanted.keys().map(|w| w.0).collect();
    delete_flows(state, &protos, |f| {
        let Some(p) = protos.iter().find(|p| **p == f.proto) else {
            return false;
        };
        let (dst, dport) = (f.orig.1, f.orig.3);
        (local.contains(&dst) || dst.is_loopback())
            && wanted
                .get(&(*p, dport))
                .is_some_and(|hosts| hosts.iter().any(|h| host_ips_overlap(Some(dst), *h)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_expand_port_by_port() {
        let spec: PortSpec = "8000-8002:9000-9002/udp".parse().unwrap();
        assert_eq!(
            pairs(&spec).collect::<Vec<_>>(),
            [(8000, 9000), (8001, 9001), (8002, 9002)]
        );
        let one: PortSpec = "8080:80".parse().unwrap();
        assert_eq!(pairs(&one).collect::<Vec<_>>(), [(8080, 80)]);
    }

    #[test]
    fn parses_conntrack_listings() {
        let text = "tcp      6 431999 ESTABLISHED src=198.51.100.1 dst=198.51.100.2 sport=50000 dport=8080 src=172.18.0.2 dst=198.51.100.1 sport=80 dport=50000 [ASSURED] mark=0 use=1\n\
udp      17 29 src=198.51.100.1 dst=198.51.100.2 sport=4000 dport=5353 [UNREPLIED] src=198.51.100.2 dst=198.51.100.1 sport=5353 dport=4000 mark=0 use=1\n\
conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.\n";
        let flows = parse_flows(text);
        assert_eq!(flows.len(), 2);
        assert_eq!(flows[0].proto, "tcp");
        assert_eq!(
            flows[0].orig,
            (
                "198.51.100.1".parse().unwrap(),
                "198.51.100.2".parse().unwrap(),
                50000,
                8080
            )
        );
        assert_eq!(flows[0].reply.0, "172.18.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(flows[1].orig.3, 5353);
    }

    #[test]
    fn timeouts_follow_the_nat_options() {
        let nat = NatOptions {
            tcp_established_secs: 7,
            udp_secs: 9,
            ..NatOptions::default()
        };
        let t = conntrack_timeouts(&nat, false);
        assert!(t.contains(&("nf_conntrack_tcp_timeout_established", 7)));
        assert!(t.contains(&("nf_conntrack_udp_timeout", 9)));
        assert!(!t.iter().any(|(k, _)| k.contains("icmpv6")));
        let t = conntrack_timeouts(&nat, true);
        assert!(t.contains(&("nf_conntrack_icmpv6_timeout", nat.icmp_secs)));
    }
}
