//! Bulk TCP transfers checked end to end: the sender hashes the random bytes it sends,
//! the receiver hashes what it reads, and the two sha256 digests must match.
//!
//! On veth, TCP segments normally leave as CHECKSUM_PARTIAL and the receiving stack
//! trusts them, so a wrong checksum update in the NAT would go unnoticed.
//! [`checksums_in_software`] turns the sender's tx checksum offload off: every segment
//! then carries a checksum computed in full, and the receiver verifies it (a bad one is
//! dropped and counted in `InCsumErrors`, and the transfer stalls).

use std::time::Duration;

use crate::{Background, Lab, wait_for};

/// One end of a transfer, in Python (hashlib's sha256 is C, and fast): `MODE ADDR PORT
/// BYTES`, MODE one of `listen-send`, `listen-recv`, `connect-send`, `connect-recv`.
/// Prints `BYTES SHA256 PEER_ADDRESS` when the transfer is over.
const END: &str = r#"
import hashlib, os, socket, sys
mode, addr, port, want = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if mode.startswith("listen"):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)
    s.settimeout(30)
    c, peer = s.accept()
else:
    c = socket.create_connection((addr, port), timeout=30)
    peer = c.getpeername()
c.settimeout(60)
h, n = hashlib.sha256(), 0
if mode.endswith("send"):
    while n < want:
        d = os.urandom(min(want - n, 1 << 20))
        c.sendall(d)
        h.update(d)
        n += len(d)
    c.shutdown(socket.SHUT_WR)
    c.recv(1)
else:
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while True:
        k = c.recv_into(buf)
        if k == 0:
            break
        h.update(view[:k])
        n += k
print(n, h.hexdigest(), peer[0], flush=True)
"#;

/// Turns tx checksum offload (and with it TSO) off on `ifname` in namespace `ns`, and
/// checks that it is off.
pub fn checksums_in_software(lab: &Lab, ns: &str, ifname: &str) {
    lab.exec_ok(ns, &["ethtool", "-K", ifname, "tx", "off"]);
    let features = lab.exec_ok(ns, &["ethtool", "-k", ifname]);
    assert!(
        features.contains("tx-checksumming: off"),
        "tx checksum offload still on in {ns}: {features}"
    );
}

/// What one end saw: the number of bytes, their sha256, and the peer's address.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    pub bytes: u64,
    pub sha256: String,
    pub peer: String,
}

fn parse(who: &str, ok: bool, out: &str) -> Seen {
    assert!(ok, "the {who} failed: {out}");
    let line = out.lines().last().unwrap_or_default();
    let mut w = line.split_whitespace();
    match (w.next().and_then(|n| n.parse().ok()), w.next(), w.next()) {
        (Some(bytes), Some(sha), Some(peer)) => Seen {
            bytes,
            sha256: sha.to_string(),
            peer: peer.to_string(),
        },
        _ => panic!("the {who} printed {out:?}"),
    }
}

/// One TCP connection between two namespaces of a lab: a listener on
/// `listen_addr:listen_port` in `listener`, a client in `client` connecting to
/// `connect_addr:connect_port` (a published port, or the listener's own).
pub struct Transfer<'a> {
    pub listener: &'a str,
    pub listen_addr: &'a str,
    pub listen_port: u16,
    pub client: &'a str,
    pub connect_addr: &'a str,
    pub connect_port: u16,
}

impl Transfer<'_> {
    /// Moves `bytes` random bytes; `client_sends` says which way. Returns (sender,
    /// receiver) as each saw it.
    pub fn run(&self, lab: &Lab, bytes: u64, client_sends: bool) -> (Seen, Seen) {
        let (lmode, cmode) = if client_sends {
            ("listen-recv", "connect-send")
        } else {
            ("listen-send", "connect-recv")
        };
        let n = bytes.to_string();
        let port = self.listen_port;
        let server: Background = lab.spawn(
            self.listener,
            &[
                "python3",
                "-c",
                END,
                lmode,
                self.listen_addr,
                &port.to_string(),
                &n,
            ],
        );
        let listening = wait_for(Duration::from_secs(10), || {
            lab.exec_ok(self.listener, &["ss", "-Htln"])
                .contains(&format!(":{port} "))
        });
        assert!(listening, "no listener on {port} in {}", self.listener);
        let out = lab.exec(
            self.client,
            &[
                "python3",
                "-c",
                END,
                cmode,
                self.connect_addr,
                &self.connect_port.to_string(),
                &n,
            ],
        );
        let client_seen = parse(
            "client",
            out.status.success(),
            &format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
        let (ok, text) = server.wait(Duration::from_secs(60));
        let server_seen = parse("listener", ok, &text);
        if client_sends {
            (client_seen, server_seen)
        } else {
            (server_seen, client_seen)
        }
    }

    /// [`Transfer::run`], asserting that every byte arrived intact.
    pub fn intact(&self, lab: &Lab, bytes: u64, client_sends: bool) -> (Seen, Seen) {
        let (sent, got) = self.run(lab, bytes, client_sends);
        assert_eq!(sent.bytes, bytes, "the sender stopped short");
        assert_eq!(
            (got.bytes, &got.sha256),
            (sent.bytes, &sent.sha256),
            "the bytes that arrived are not the bytes sent"
        );
        (sent, got)
    }
}
