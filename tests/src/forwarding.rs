//! Forwarding turned off in a lab host after `up`: what the host forwards stops, what
//! it sends itself does not; and a route or a rule of the lab host against a container
//! holds. Written once for both families (the IPv4 suite's `strict` and the IPv6
//! suite's `ipv6`).

use std::{net::UdpSocket, thread, time::Duration};

use crate::{Lab, sockets::udp};

/// The addresses of one family in a sandbox lab.
pub struct Family {
    /// The sysctl that turns the family's forwarding off and on in the lab host.
    pub sysctl: &'static str,
    /// Any address, to bind a socket to (`0.0.0.0`, `::`).
    pub any: &'static str,
    /// The uplink's address.
    pub uplink: &'static str,
    /// wan's address on the link to the lab host.
    pub wan: &'static str,
}

/// IPv4 in a sandbox lab.
pub const IPV4: Family = Family {
    sysctl: "net.ipv4.ip_forward",
    any: "0.0.0.0",
    uplink: "198.51.100.2",
    wan: "198.51.100.1",
};

/// IPv6 in a dual-stack sandbox lab.
pub const IPV6: Family = Family {
    sysctl: "net.ipv6.conf.all.forwarding",
    any: "::",
    uplink: "2001:db8:100::2",
    wan: "2001:db8:100::1",
};

impl Family {
    fn v6(&self) -> bool {
        self.any.contains(':')
    }

    fn python(&self) -> &'static str {
        if self.v6() {
            "socket.AF_INET6"
        } else {
            "socket.AF_INET"
        }
    }

    /// `addr:port` as a socket address is written.
    fn at(&self, addr: &str, port: u16) -> String {
        if addr.contains(':') {
            format!("[{addr}]:{port}")
        } else {
            format!("{addr}:{port}")
        }
    }
}

/// Longer than the fast path keeps its answers about forwarding, routes into the lab and next hops (the
/// rest of a coarse second).
pub const CACHED: Duration = Duration::from_millis(1100);

/// With `udp 5300:53` published from container `web`, on `lab` (a sandbox lab with a
/// second container `client`): a datagram from outside to the published port (one
/// way: no reply is needed for it to count), from `client` to wan, and from `client` to
/// the published port on the uplink's address (hairpin) each arrive while forwarding
/// is on, and none while it is off, but the hairpin where `hairpin_bridged` (the
/// classic datapaths over IPv6: br_netfilter bridges a packet its DNAT sent back into
/// the bridge after a route lookup, and IPv6 checks forwarding only in `ip6_forward`,
/// where that packet never goes). The lab host's own datagram to the published port
/// arrives throughout: it is sent, not forwarded. Every datagram is sent by a process
/// of the namespace (`netlab exec`: the lab host's in the lab's cgroup, whose hooks
/// publish for it on the eBPF datapath).
pub fn stops_what_is_forwarded(lab: &Lab, dp: &str, f: &Family, hairpin_bridged: bool) {
    let web = udp(&lab.ns("web"), &f.at(f.any, 53));
    let wan = udp(&lab.ns("wan"), &f.at(f.wan, 7020));
    let paths: [(&str, &str, &str, u16, &UdpSocket); 4] = [
        ("from outside", "wan", f.uplink, 5300, &web),
        ("to outside", "client", f.wan, 7020, &wan),
        ("hairpin", "client", f.uplink, 5300, &web),
        ("from the lab host", "host", f.uplink, 5300, &web),
    ];
    let check = |phase: &str, forwarding: bool| {
        for (path, from, to, port, receiver) in paths {
            let payload = format!("{phase} {path}");
            let script = format!(
                "import socket\ns = socket.socket({}, socket.SOCK_DGRAM)\ns.sendto(b'{payload}', ('{to}', {port}))\n",
                f.python()
            );
            lab.exec_ok(from, &["python3", "-c", &script]);
            let expected = forwarding || from == "host" || (path == "hairpin" && hairpin_bridged);
            assert_eq!(
                arrives(receiver, &payload, expected),
                expected,
                "{dp}, forwarding {phase}: a datagram {path} (from {from} to {})",
                f.at(to, port)
            );
        }
    };
    check("on", true);
    let set = |value: &str| {
        lab.exec_ok("host", &["sysctl", "-w", &format!("{}={value}", f.sysctl)]);
        thread::sleep(CACHED);
    };
    set("0");
    check("off", false);
    set("1");
    check("on again", true);
}

/// Whether `payload` reaches `receiver`: waited for 5 s when it is `expected`, 1 s
/// when not. Other datagrams are skipped.
fn arrives(receiver: &UdpSocket, payload: &str, expected: bool) -> bool {
    let wait = if expected { 5 } else { 1 };
    receiver
        .set_read_timeout(Some(Duration::from_secs(wait)))
        .unwrap();
    let mut buf = [0u8; 64];
    while let Ok((n, _)) = receiver.recv_from(&mut buf) {
        if &buf[..n] == payload.as_bytes() {
            return true;
        }
    }
    false
}

/// With `udp 5300:53` published from container `web` at `ctr`, on `lab` (a sandbox
/// lab): a datagram from wan to the published port arrives, but neither on its tracked
/// flow nor as a new one while the lab host has a blackhole route to the container, or
/// a rule that prohibits what comes in by the uplink (or, in by the uplink, UDP to the
/// container's port 53); with them gone, it arrives again. IPv4: a container's hairpin
/// datagram to its own published port, from its own address, which a rule prohibits.
/// The kernel refuses such a packet in its route lookup after DNAT; the eBPF fast path
/// asks the same lookup before it carries one in (a change seen within a second).
pub fn routes_and_rules_hold(lab: &Lab, dp: &str, f: &Family, ctr: &str) {
    let server = udp(&lab.ns("web"), &f.at(f.any, 53));
    server
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let to = f.at(f.uplink, 5300);
    let client = |port: u16| udp(&lab.ns("wan"), &f.at(f.any, port));
    let mut buf = [0u8; 32];
    let mut arrives = |client: &UdpSocket, what: &[u8]| -> bool {
        client.send_to(what, &to).unwrap();
        match server.recv_from(&mut buf) {
            Ok((n, _)) => {
                assert_eq!(&buf[..n], what);
                true
            }
            Err(_) => false,
        }
    };
    let family = if f.v6() { "-6" } else { "-4" };
    let host = |args: &[&str]| {
        lab.exec_ok("host", &[&["ip", family], args].concat());
        thread::sleep(CACHED);
    };
    let tracked = client(5555);
    assert!(arrives(&tracked, b"first"), "{dp}: the first datagram");
    let blackhole = format!("{ctr}/{}", if f.v6() { 128 } else { 32 });
    host(&["route", "add", "blackhole", &blackhole]);
    assert!(
        !arrives(&tracked, b"tracked"),
        "{dp}: a tracked flow to a container behind a blackhole route"
    );
    assert!(
        !arrives(&client(5556), b"new"),
        "{dp}: a new flow to a container behind a blackhole route"
    );
    host(&["route", "del", "blackhole", &blackhole]);
    assert!(
        arrives(&tracked, b"again"),
        "{dp}: the blackhole route gone"
    );
    host(&["rule", "add", "iif", "eth0", "prohibit", "pref", "100"]);
    assert!(
        !arrives(&tracked, b"prohibited"),
        "{dp}: a tracked flow in by the uplink, prohibited by a rule"
    );
    assert!(
        !arrives(&client(5557), b"prohibited too"),
        "{dp}: a new flow in by the uplink, prohibited by a rule"
    );
    host(&["rule", "del", "pref", "100"]);
    assert!(arrives(&tracked, b"last"), "{dp}: the rule gone");
    // A rule on what the kernel's lookup sees after DNAT: the protocol and the
    // container's port.
    host(&[
        "rule", "add", "iif", "eth0", "ipproto", "udp", "dport", "53", "prohibit", "pref", "100",
    ]);
    assert!(
        !arrives(&tracked, b"to port 53"),
        "{dp}: a tracked flow in by the uplink to a port a rule prohibits"
    );
    assert!(
        !arrives(&client(5558), b"to port 53 too"),
        "{dp}: a new flow in by the uplink to a port a rule prohibits"
    );
    host(&["rule", "del", "pref", "100"]);
    if f.v6() {
        return;
    }
    // Hairpin: the container's own address is what the lookup sees, before the
    // source NAT that gives it the bridge's (IPv6 hairpin is bridged on the classic
    // datapaths, and never asks a route on eBPF's fast path).
    let bridge = lab.state().bridge;
    let own = udp(&lab.ns("web"), &f.at(f.any, 6000));
    assert!(arrives(&own, b"hairpin"), "{dp}: hairpin");
    host(&[
        "rule", "add", "from", ctr, "iif", &bridge, "prohibit", "pref", "100",
    ]);
    assert!(
        !arrives(&own, b"quarantined"),
        "{dp}: hairpin from a container a rule prohibits"
    );
    host(&["rule", "del", "pref", "100"]);
}
