//! The uplink's LAN seen from a container: the uplink's address changing under a
//! running lab, and a neighbour on it that never answers.
//!
//! The uplink's address changing under a running lab (a DHCP lease renewed with
//! another address), on either family: containers' new flows leave with the address
//! the uplink has now, a flow masqueraded behind the gone address ends (the
//! container's next datagram on it opens a new flow behind the new one), and a
//! published port answers on the new address — as MASQUERADE does, which follows the
//! interface. No daemon watches the uplink: on eBPF the next command that syncs the
//! lab host's interfaces (`run`, `publish`) takes the change in, and says so.

use std::net::{IpAddr, SocketAddr};

use crate::{Lab, sockets::udp};

/// One family's addresses for the scenario.
pub struct Family {
    /// `ip`'s family flag.
    pub flag: &'static str,
    /// The uplink's address at `up`, and the one it moves to (with its prefix).
    pub before: &'static str,
    pub after: &'static str,
    pub prefix: u8,
    /// A server in wan, and the wildcard a container's socket binds to.
    pub server: &'static str,
    pub any: &'static str,
    /// `ip addr add`'s words after the address (IPv6: no duplicate address detection).
    pub add_flags: &'static [&'static str],
    /// The side link's addresses ([`crate::SideHost`]: the lab host's end, the side
    /// host's), with their prefix: IPv4's are the side host's own, IPv6's are added.
    pub side_host: &'static str,
    pub side: &'static str,
    pub side_prefix: u8,
}

pub const IPV4: Family = Family {
    flag: "-4",
    before: "198.51.100.2",
    after: "198.51.100.5",
    prefix: 24,
    server: "203.0.113.1",
    any: "0.0.0.0",
    add_flags: &[],
    side_host: "192.0.2.1",
    side: "192.0.2.2",
    side_prefix: 24,
};

pub const IPV6: Family = Family {
    flag: "-6",
    before: "2001:db8:100::2",
    after: "2001:db8:100::5",
    prefix: 64,
    server: "2001:db8:113::1",
    any: "::",
    add_flags: &["nodad"],
    side_host: "2001:db8:200::1",
    side: "2001:db8:200::2",
    side_prefix: 64,
};

fn sock(addr: &str, port: u16) -> SocketAddr {
    SocketAddr::new(addr.parse().unwrap(), port)
}

/// Sends from `client` to the server and back; returns the source the server saw.
fn round_trip(
    server: &std::net::UdpSocket,
    client: &std::net::UdpSocket,
    to: SocketAddr,
) -> IpAddr {
    let mut buf = [0u8; 64];
    client.send_to(b"ping", to).unwrap();
    let (_, from) = server.recv_from(&mut buf).expect("the server receives");
    server.send_to(b"pong", from).unwrap();
    let (n, _) = client
        .recv_from(&mut buf)
        .expect("the reply reaches the container");
    assert_eq!(&buf[..n], b"pong");
    from.ip()
}

/// The scenario on a lab up already (with IPv6 for [`IPV6`]).
pub fn masquerade_follows(lab: &Lab, dp: &str, f: &Family) {
    lab.ok(&["run", "a"]);
    let to = sock(f.server, 7001);
    let server = udp(&lab.ns("wan"), &to.to_string());
    let any = sock(f.any, 0).to_string();
    let old = udp(&lab.ns("a"), &any);
    let before: IpAddr = f.before.parse().unwrap();
    let after: IpAddr = f.after.parse().unwrap();
    assert_eq!(round_trip(&server, &old, to), before);
    // A flow from wan to a port published on the address that goes.
    lab.ok(&["publish", "a", "9090:9000/udp"]);
    let inside = udp(&lab.ns("a"), &sock(f.any, 9000).to_string());
    let outside = udp(&lab.ns("wan"), &any);
    outside.send_to(b"in", sock(f.before, 9090)).unwrap();
    inside
        .recv_from(&mut [0u8; 8])
        .expect("the published port receives");

    // The new address first (IPv4: as a secondary one, promoted when the old goes).
    lab.exec_ok(
        "host",
        &["sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1"],
    );
    let add = format!("{}/{}", f.after, f.prefix);
    let del = format!("{}/{}", f.before, f.prefix);
    let mut cmd = vec!["ip", f.flag, "addr", "add", &add, "dev", "eth0"];
    cmd.extend(f.add_flags);
    lab.exec_ok("host", &cmd);
    lab.exec_ok("host", &["ip", f.flag, "addr", "del", &del, "dev", "eth0"]);
    let out = lab.run(&["run", "b"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    if crate::is_ebpf(dp) {
        let said = format!("has {} (was {}) now", f.after, f.before);
        assert!(err.contains(&said), "{err}");
        let ended = format!(
            "flows through {}, which the lab host no longer has, ended",
            f.before
        );
        assert!(err.contains(&ended), "{err}");
        // Said once: the next command has nothing to say.
        let again = lab.run(&["run", "c"]);
        assert!(again.stderr.is_empty(), "{again:?}");
    }

    // `status` shows the address the uplink has now, and the one it had at `up`.
    let status = lab.ok(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("json");
    let key = if f.flag == "-4" {
        "address"
    } else {
        "address6"
    };
    assert_eq!(status["uplink"][key], f.after, "{status}");
    assert_eq!(
        status["uplink"][format!("{key}_at_up")],
        f.before,
        "{status}"
    );

    let new = udp(&lab.ns("a"), &any);
    assert_eq!(round_trip(&server, &new, to), after, "a new flow");
    assert_eq!(round_trip(&server, &old, to), after, "the flow before");
    if crate::is_ebpf(dp) {
        let flows = lab.conntrack();
        assert!(
            flows
                .iter()
                .all(|x| x["translated"]["src"] != f.before && x["original"]["dst"] != f.before),
            "{flows:?}"
        );
    }

    // A port published without an address answers on the new one.
    lab.ok(&["publish", "a", "8080:8000"]);
    let web = lab.spawn("a", &["python3", "-m", "http.server", "-b", f.any, "8000"]);
    assert!(crate::wait_for(std::time::Duration::from_secs(10), || {
        lab.exec_ok("a", &["ss", "-Htln"]).contains(":8000 ")
    }));
    let url = match after {
        IpAddr::V4(a) => format!("http://{a}:8080/"),
        IpAddr::V6(a) => format!("http://[{a}]:8080/"),
    };
    assert_eq!(lab.curl("wan", &url), "200");
    drop(web);
}

/// A container connecting to an address of the uplink's LAN that nobody holds (the
/// lab host's neighbour resolution fails) is told "host unreachable" within seconds,
/// as the kernel's forwarding tells it, rather than waiting for TCP's timeout.
pub fn an_unresolved_neighbour_is_unreachable(lab: &Lab, nobody: &str) {
    lab.ok(&["run", "a"]);
    let to = sock(nobody, 80);
    let err = crate::in_ns(&lab.ns("a"), move || {
        std::net::TcpStream::connect_timeout(&to, std::time::Duration::from_secs(20))
            .expect_err("nobody answers")
    });
    assert_eq!(err.kind(), std::io::ErrorKind::HostUnreachable, "{err}");
}

/// A second address on the uplink, which may come first in its list (IPv6 lists the
/// newest first): containers' flows masqueraded behind the first one go on behind it,
/// as on iptables, whose MASQUERADE ends a flow only when its interface changes or its
/// address goes.
pub fn a_second_address_keeps_the_flows_behind_the_first(lab: &Lab, f: &Family) {
    lab.ok(&["run", "a"]);
    let to = sock(f.server, 7003);
    let server = udp(&lab.ns("wan"), &to.to_string());
    let client = udp(&lab.ns("a"), &sock(f.any, 0).to_string());
    let before: IpAddr = f.before.parse().unwrap();
    assert_eq!(round_trip(&server, &client, to), before);
    let add = format!("{}/{}", f.after, f.prefix);
    let mut cmd = vec!["ip", f.flag, "addr", "add", &add, "dev", "eth0"];
    cmd.extend(f.add_flags);
    lab.exec_ok("host", &cmd);
    lab.ok(&["run", "b"]);
    for _ in 0..3 {
        assert_eq!(round_trip(&server, &client, to), before, "the flow before");
    }
}

/// A tracked flow that a route change sends out by another interface of the lab host
/// is masqueraded behind that interface's address from then on (iptables ends the
/// flow, `nf_nat_oif_changed`, and masquerades its next packet there): it never leaves
/// with the address of the interface it left by before.
pub fn a_flow_a_route_moves(lab: &Lab, dp: &str, f: &Family) {
    lab.ok(&["run", "a"]);
    let side = crate::SideHost::new(lab);
    let in_side = |cmd: &[&str]| crate::run_in_ns_ok(&side.ns(), cmd);
    if f.flag == "-6" {
        let host_end = format!("{}/{}", f.side_host, f.side_prefix);
        lab.exec_ok(
            "host",
            &[
                "ip", "-6", "addr", "add", &host_end, "dev", "side0", "nodad",
            ],
        );
        let side_end = format!("{}/{}", f.side, f.side_prefix);
        in_side(&[
            "ip", "-6", "addr", "add", &side_end, "dev", "side1", "nodad",
        ]);
    }
    // The side host answers for the internet address too, once a route says so.
    let own = format!("{}/{}", f.server, if f.flag == "-4" { 32 } else { 128 });
    in_side(&["ip", f.flag, "addr", "add", &own, "dev", "lo"]);
    // eBPF watches the side link from the next sync on.
    lab.ok(&["run", "b"]);
    let to = sock(f.server, 7002);
    let by_wan = udp(&lab.ns("wan"), &to.to_string());
    let by_side = udp(&side.ns(), &to.to_string());
    by_side
        .set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    let client = udp(&lab.ns("a"), &sock(f.any, 0).to_string());
    let mut buf = [0u8; 16];
    client.send_to(b"before", to).unwrap();
    let (_, from) = by_wan.recv_from(&mut buf).expect("wan receives");
    assert_eq!(from.ip(), f.before.parse::<IpAddr>().unwrap());
    lab.exec_ok(
        "host",
        &[
            "ip", f.flag, "route", "add", &own, "via", f.side, "dev", "side0",
        ],
    );
    // iptables drops the packet whose interface changed; the next opens a new flow.
    let seen = (0..3).find_map(|_| {
        client.send_to(b"moved", to).unwrap();
        by_side.recv_from(&mut buf).ok().map(|(_, from)| from)
    });
    let from = seen.expect("the side host receives the flow");
    assert_eq!(from.ip(), f.side_host.parse::<IpAddr>().unwrap(), "{dp}");
    by_side.send_to(b"back", from).unwrap();
    let (n, _) = client
        .recv_from(&mut buf)
        .expect("the reply reaches the container");
    assert_eq!(&buf[..n], b"back");
}
