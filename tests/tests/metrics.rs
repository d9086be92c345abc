//! `netlab metrics` with the clients operators use: `promtool check metrics` on its
//! output, node_exporter's textfile convention (a file never seen half written), and a
//! Prometheus server scraping `netlab metrics --listen` inside the sandbox, queried for
//! each drop reason a test can provoke, a SYN flood and a UDP scan.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use aya::{
    maps::{HashMap, MapData},
    programs::SchedClassifier,
};
use netlab::datapath::ebpf::pins;
use netlab_common::{
    conntrack::{CtEntry, CtKey, ZONE_FROM_CTR},
    maps as names,
    proto::IPPROTO_TCP,
    stats::{DROP_NAMES, DropReason},
};
use netlab_tests::{
    INTERNET, Lab, SIDE_ADDR, SideHost, TempDir, UPLINK_ADDR, link_of,
    packet::{Ipv4, TCP, skb_on, with_macs},
    race,
    sockets::{accept, tcp_connect, tcp_connect_from, tcp_listen, tcp_segment},
};

/// Prometheus' own programs (`prometheus`, `promtool`): from `NETLAB_PROMETHEUS`, the
/// unpacked package `cargo xtask test` passes, else from PATH.
fn prometheus_tool(name: &str) -> PathBuf {
    match std::env::var_os("NETLAB_PROMETHEUS") {
        Some(dir) => PathBuf::from(dir).join(name),
        None => PathBuf::from(name),
    }
}

/// `promtool check metrics` on `text`: its findings, empty when it has none.
fn promtool(text: &str) -> String {
    let mut child = Command::new(prometheus_tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package: cargo xtask setup unpacks it, cargo xtask test passes it as NETLAB_PROMETHEUS)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() || !findings.is_empty(),
        "promtool failed silently"
    );
    if out.status.success() {
        String::new()
    } else {
        findings
    }
}

/// The lines of a scrape that belong to `lab`.
fn lines_of<'a>(text: &'a str, lab: &str) -> Vec<&'a str> {
    let tag = format!("lab=\"{lab}\"");
    text.lines().filter(|l| l.contains(&tag)).collect()
}

/// The value of the series of `text` that starts with `series` (name and labels as
/// printed), if there is one.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Sends one hand-made frame from a container's `eth0` (AF_PACKET, Python's standard
/// library): `truncated` (an IPv4 header cut short), `bad_ip_header` (a header length
/// of 16 bytes), `fragment` (a later fragment whose first was never sent) or
/// `vlan_tagged` (a datagram behind two priority tags), from address argv[2] to wan, to
/// the gateway's MAC argv[3].
const RAW_FRAME: &str = r#"
import socket, struct, sys
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
def ip(src, dst, proto, payload, ihl=5, frag=0):
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(payload), 1, frag, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload
kind = sys.argv[1]
src = sys.argv[2]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
gateway = bytes.fromhex(sys.argv[3].replace(":", ""))
eth = gateway + s.getsockname()[4] + b"\x08\x00"
if kind == "truncated":
    frame = eth + b"\x45\x00\x00"
elif kind == "vlan_tagged":  # two tags of VLAN id 0, 802.1ad then 802.1Q
    tags = b"\x88\xa8\x00\x00\x81\x00\x00\x00\x08\x00"
    frame = eth[:12] + tags + ip(src, "203.0.113.1", 17, b"\0" * 8)
elif kind == "bad_ip_header":
    frame = eth + ip(src, "203.0.113.1", 17, b"\0" * 8, ihl=4)
else:  # fragment: a later fragment (offset 64 bytes), its first never sent
    frame = eth + ip(src, "203.0.113.1", 17, b"\0" * 16, frag=8)
s.send(frame)
"#;

/// A lab with masquerade, a published port used, and a drop of direct access.
fn busy_lab() -> Lab {
    let lab = Lab::sandbox(&[]);
    lab.ok(&["run", "a"]);
    let _server = lab.http_server("a", 8000);
    lab.ok(&["publish", "a", "8080:8000"]);
    lab.exec_ok("a", &["ping", "-c", "1", "-W", "5", "203.0.113.1"]);
    lab.curl("wan", "http://198.51.100.2:8080/");
    direct_access(&lab);
    lab
}

/// wan sends to a container's own address (a route to the lab's subnet, as a
/// neighbour on the uplink LAN could have): dropped as `direct_access`.
fn direct_access(lab: &Lab) {
    lab.exec_ok(
        "wan",
        &[
            "ip",
            "route",
            "replace",
            "172.18.0.0/16",
            "via",
            "198.51.100.2",
        ],
    );
    let _ = lab.exec("wan", &["ping", "-c", "1", "-W", "1", "172.18.0.2"]);
}

/// The output passes `promtool check metrics` in Prometheus' text format, says what
/// the lab is, and carries its counters, drops, tables, flows and mapping; the
/// OpenMetrics form ends as OpenMetrics must.
#[test]
fn metrics_pass_promtool_and_carry_the_labs_figures() {
    let lab = busy_lab();
    // Every lab's (the other tests' too), as an operator's scrape would be.
    let text = lab.ok(&["metrics"]);
    let findings = promtool(&text);
    assert!(
        findings.is_empty(),
        "promtool check metrics:\n{findings}\n{text}"
    );
    let name = &lab.name;
    let mine = lines_of(&text, name).join("\n");
    let has = |series: &str| value(&mine, series).unwrap_or_else(|| panic!("{series}:\n{mine}"));
    assert_eq!(
        has(&format!(
            "netlab_lab_info{{lab=\"{name}\",datapath=\"ebpf\",device=\"veth\"}}"
        )),
        1.0
    );
    assert!(
        has(&format!(
            "netlab_datapath_drops_total{{lab=\"{name}\",reason=\"direct_access\"}}"
        )) >= 1.0
    );
    assert!(
        has(&format!(
            "netlab_conntrack_new_flows_total{{lab=\"{name}\",reason=\"masquerade\"}}"
        )) >= 1.0
    );
    assert!(
        has(&format!(
            "netlab_conntrack_new_flows_total{{lab=\"{name}\",reason=\"published\"}}"
        )) >= 1.0
    );
    assert!(
        has(&format!(
            "netlab_conntrack_table_max_entries{{lab=\"{name}\",table=\"CT\"}}"
        )) > 0.0
    );
    assert!(has(&format!("netlab_nat_ports{{lab=\"{name}\"}}")) == 10_000.0);
    assert!(
        has(&format!(
            "netlab_published_connections_total{{lab=\"{name}\",container=\"a\",host_ip=\"\",host_port=\"8080\",proto=\"tcp\"}}"
        )) >= 1.0
    );
    assert!(mine.contains("netlab_conntrack_flows{"), "{mine}");
    // Every drop reason but the retired one, each a series of its own.
    for (i, reason) in DROP_NAMES.iter().enumerate().skip(1) {
        let series = format!("netlab_datapath_drops_total{{lab=\"{name}\",reason=\"{reason}\"}}");
        let retired = i == DropReason::NoConfig as usize;
        assert_eq!(value(&mine, &series).is_none(), retired, "{series}");
    }
    let om = lab.ok(&["metrics", "--openmetrics"]);
    assert!(om.ends_with("# EOF\n"), "{om}");
}

/// `--textfile DIR`: the lab's file, in the text format, replaced whole: a reader
/// polling it while it is written again and again never sees a partial file.
#[test]
fn the_textfile_is_never_seen_half_written() {
    let lab = busy_lab();
    let dir = TempDir::new("metrics");
    let file = dir.0.join(format!("netlab_{}.prom", lab.name));
    lab.ok(&["metrics", "--labs", &lab.name, "--textfile", dir.path()]);
    let first = std::fs::read_to_string(&file).expect("the lab's textfile");
    assert!(promtool(&first).is_empty(), "{first}");
    let info = format!("netlab_lab_info{{lab=\"{}\"", lab.name);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let text = std::fs::read_to_string(&file).expect("read");
                assert!(text.contains(&info) && text.ends_with('\n'), "{text}");
                reads += 1;
            }
            reads
        });
        for _ in 0..20 {
            lab.ok(&["metrics", "--labs", &lab.name, "--textfile", dir.path()]);
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().expect("reader") > 0);
    });
    let left: Vec<_> = std::fs::read_dir(&dir.0)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.iter()
            .all(|n| n == ".netlab_textfiles" || n.starts_with("netlab_") && n.ends_with(".prom")),
        "temporary files left: {left:?}"
    );
    let e = lab.fails(&["metrics", "--textfile", "/nonexistent/dir"]);
    assert!(e.contains("no such directory"), "{e}");
    let e = lab.fails(&["metrics", "--textfile", "/etc/hostname"]);
    assert!(e.contains("not a directory"), "{e}");
    let e = lab.fails(&["metrics", "--labs", "nosuchlab", "--textfile", dir.path()]);
    assert!(e.contains("lab nosuchlab is not up"), "{e}");
    // A lab that is up is written even when another one named is not (a timer naming
    // both goes on for the one that is up; before, it wrote nothing); the other is
    // said, and the run fails.
    let file = dir.0.join(format!("netlab_{}.prom", lab.name));
    std::fs::remove_file(&file).unwrap();
    let both = format!("{},nosuchlab", lab.name);
    let out = lab.run(&["metrics", "--labs", &both, "--textfile", dir.path()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("lab nosuchlab is not up"), "{err}");
    assert!(file.exists(), "{err}");
    let e = lab.fails(&["metrics", "--labs", ""]);
    assert!(e.contains("names no lab"), "{e}");
}

/// A lab taken down leaves no figures behind: the next `--textfile` run removes the file
/// it wrote of that lab, and only that: a file of the same shape netlab did not write,
/// and one put in place of netlab's, stay.
#[test]
fn a_lab_taken_down_takes_its_textfile_with_it() {
    let (a, b) = (Lab::sandbox(&[]), Lab::sandbox(&[]));
    let dir = TempDir::new("metrics");
    let file = |lab: &str| dir.0.join(format!("netlab_{lab}.prom"));
    let (file_a, file_b) = (file(&a.name), file(&b.name));
    // Someone else's file, named as a lab's would be.
    let foreign = file("nosuchlab");
    std::fs::write(&foreign, "x 1\n").unwrap();
    let both = format!("{},{}", a.name, b.name);
    // A directory someone made at b's file name fails the run, not a's file.
    std::fs::create_dir(&file_b).unwrap();
    let out = a.run(&["metrics", "--labs", &both, "--textfile", dir.path()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&b.name), "{err}");
    assert!(file_a.is_file(), "{err}");
    std::fs::remove_dir(&file_b).unwrap();
    a.ok(&["metrics", "--labs", &both, "--textfile", dir.path()]);
    assert!(file_a.exists() && file_b.exists());
    // b's file replaced by someone: no longer netlab's.
    let copy = dir.0.join("copy");
    std::fs::copy(&file_b, &copy).unwrap();
    std::fs::rename(&copy, &file_b).unwrap();
    for lab in [a, b] {
        lab.ok(&["down"]);
        lab.forget();
    }
    let other = Lab::sandbox(&[]);
    let out = other.run(&["metrics", "--labs", &other.name, "--textfile", dir.path()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let removed = format!("removed {} (its lab is gone)", file_a.display());
    assert!(err.contains(&removed), "{err}");
    assert!(!file_a.exists(), "{err}");
    assert!(
        file_b.exists(),
        "a file netlab did not write was removed: {err}"
    );
    assert!(
        foreign.exists(),
        "a file netlab did not write was removed: {err}"
    );
    assert!(file(&other.name).exists(), "{err}");
    // Once the last lab it wrote is gone, its record goes too, even in a run that
    // fails (a timer naming a lab that is gone).
    let other_name = other.name.clone();
    other.ok(&["down"]);
    other.forget();
    let out = netlab_tests::netlab(&["metrics", "--labs", &other_name, "--textfile", dir.path()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let mut left: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let b_name = file_b.file_name().unwrap().to_string_lossy().into_owned();
    let mut want = vec![b_name, "netlab_nosuchlab.prom".to_string()];
    want.sort();
    assert_eq!(left, want);
}

/// A scrape is answered while other clients hold connections to `--listen` open
/// without a word, more of them than it serves at once (16; five clients of four, none
/// holding more than its share): each connection is served on its own, and when all
/// are taken the one that has waited longest for its request head (a quarter of a
/// second at least) makes room.
#[test]
fn an_idle_client_holds_up_no_scrape() {
    let lab = Lab::sandbox(&[]);
    let addr = "198.51.100.2:9465";
    let _exporter = exporter(&lab, addr);
    let wan = lab.ns("wan");
    let server: SocketAddrV4 = addr.parse().unwrap();
    let idle: Vec<_> = (21..26)
        .flat_map(|n| {
            let from = Ipv4Addr::new(203, 0, 113, n);
            netlab_tests::run_in_ns_ok(
                &wan,
                &["ip", "addr", "add", &format!("{from}/32"), "dev", "wan0"],
            );
            (0..4).map(move |_| SocketAddrV4::new(from, 0))
        })
        .map(|from| tcp_connect_from(&wan, from, server, Duration::from_secs(3)).expect("connect"))
        .collect();
    // They hold every slot (the last ones may have taken the places of the first).
    let held = netlab_tests::wait_for(Duration::from_secs(5), || {
        let out = lab.exec_ok(
            "host",
            &["ss", "-Htn", "state", "established", "sport", "= :9465"],
        );
        out.lines().count() >= 16
    });
    assert!(held, "the idle clients do not hold the slots");
    // A connection that finds every slot taken by ones that have not waited a quarter
    // of a second yet is closed at once; a scraper tries again, as Prometheus does.
    let scrape = || {
        let mut scrape = tcp_connect(&lab.ns("wan"), addr);
        scrape.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        scrape
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: lab\r\n\r\n")
            .ok()?;
        let mut answer = String::new();
        scrape.read_to_string(&mut answer).ok()?;
        Some(answer).filter(|a| !a.is_empty())
    };
    let mut answer = None;
    netlab_tests::wait_for(Duration::from_secs(4), || {
        answer = scrape();
        answer.is_some()
    });
    let answer = answer.expect("no answer while idle clients waited");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("netlab_"), "{answer}");
    drop(idle);
}

/// A scrape is answered while another client opens connection after connection (a
/// thousand a second, from another address) and never sends a word: that client's new
/// connections take the places of its own old ones (four wait at most), not the
/// scraper's. Before, once every slot was younger than a quarter of a second a new
/// connection was closed at once, and such a flood kept every scrape out (a review:
/// 0 of 30 at 2,000 a second).
#[test]
fn a_flood_of_new_connections_holds_up_no_scrape() {
    let lab = Lab::sandbox(&[]);
    let addr = "198.51.100.2:9467";
    let _exporter = exporter(&lab, addr);
    let flood = r#"
import socket, time
conns = []
end = time.time() + 30
while time.time() < end:
    s = socket.socket()
    s.bind(("203.0.113.1", 0))
    s.setblocking(False)
    try:
        s.connect(("198.51.100.2", 9467))
    except BlockingIOError:
        pass
    conns.append(s)
    if len(conns) > 200:
        conns.pop(0).close()
    time.sleep(0.001)
"#;
    let mut flooder = lab.spawn("wan", &["python3", "-c", flood]);
    // The flood reaches the server and holds its slots.
    let flooding = netlab_tests::wait_for(Duration::from_secs(5), || {
        let out = lab.exec_ok(
            "host",
            &["ss", "-Htn", "state", "established", "sport", "= :9467"],
        );
        out.lines().filter(|l| l.contains("203.0.113.1:")).count() >= 16
    });
    assert!(
        flooding && flooder.running(),
        "the flood does not hold the slots"
    );
    // Five scrapes from wan's other address, each answered at its first try.
    for n in 0..5 {
        let mut scrape = tcp_connect(&lab.ns("wan"), addr);
        scrape
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        scrape
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: lab\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        let _ = scrape.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200 OK") && answer.contains("netlab_"),
            "scrape {n} during the flood: {answer:?}"
        );
    }
    assert!(flooder.running(), "the flood stopped before the scrapes");
}

/// A client that sends more after its request (a stray line, a pipelined second
/// request) and reads slowly still gets the whole answer: the server shuts its side and
/// drains the client's before it closes. Before, the kernel reset the connection for
/// the unread input, and the client lost what it had not read yet (a review: 4,368
/// bytes of 29,059).
#[test]
fn a_client_that_sends_more_gets_the_whole_answer() {
    let lab = Lab::sandbox(&[]);
    // 200 mappings, one series each: an answer larger than the client's buffer.
    container_with_ports(&lab, 200);
    let addr = "198.51.100.2:9468";
    let _exporter = exporter(&lab, addr);
    let client = r#"
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("198.51.100.2", 9468))
s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
time.sleep(0.1)
s.sendall(b"\r\n")
time.sleep(0.5)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
head, _, body = data.partition(b"\r\n\r\n")
length = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
print(int(length.split(b":")[1]), len(body))
"#;
    let out = lab.exec_ok("wan", &["python3", "-c", client]);
    let mut words = out.split_whitespace().map(|w| w.parse::<usize>().unwrap());
    let (length, got) = (words.next().unwrap(), words.next().unwrap());
    assert!(length > 20_000, "{out}");
    assert_eq!(got, length, "the client got part of the answer: {out}");
}

/// A scrape is answered while 16 connections (as many as it serves at once, from four
/// clients: one keeps four waiting at most) have asked and never read their answer,
/// an answer larger than their socket buffers take: a connection waiting on its client
/// to take the answer makes room too.
#[test]
fn clients_that_never_read_hold_up_no_scrape() {
    let lab = Lab::sandbox(&[]);
    // 400 mappings, one series each: an answer of about 130 KB.
    container_with_ports(&lab, 400);
    let addr = "198.51.100.2:9466";
    let _exporter = exporter(&lab, addr);
    // Four clients of four each (a client keeps four waiting at most).
    for n in 11..15 {
        let addr = format!("203.0.113.{n}/32");
        netlab_tests::run_in_ns_ok(&lab.ns("wan"), &["ip", "addr", "add", &addr, "dev", "wan0"]);
    }
    let script = r#"
import socket, time
conns = []
for i in range(16):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    s.bind(("203.0.113.%d" % (11 + i // 4), 0))
    s.connect(("198.51.100.2", 9466))
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    conns.append(s)
time.sleep(60)
"#;
    let mut readers = lab.spawn("wan", &["python3", "-c", script]);
    // The 16 hold the server's slots once their answers sit unread in the queues.
    let held = netlab_tests::wait_for(Duration::from_secs(10), || {
        let out = lab.exec_ok(
            "host",
            &["ss", "-Htn", "state", "established", "sport", "= :9466"],
        );
        out.lines()
            .filter(|l| !l.split_whitespace().nth(1).unwrap_or("0").starts_with('0'))
            .count()
            >= 16
    });
    assert!(
        held && readers.running(),
        "the non-reading clients did not fill the slots"
    );
    // Tried again as a scraper does (a connection closed at once while the slots'
    // holders are newer than a quarter of a second).
    let answered = netlab_tests::wait_for(Duration::from_secs(4), || {
        lab.curl("wan", &format!("http://{addr}/metrics")) == "200"
    });
    assert!(answered, "no answer while 16 clients did not read");
}

/// Container `a` with `n` ports published (10000:80 on), one series each: a scrape's
/// answer as large as needed.
fn container_with_ports(lab: &Lab, n: u16) {
    lab.ok(&["run", "a"]);
    let specs: Vec<String> = (0..n).map(|i| format!("{}:80", 10000 + i)).collect();
    let mut publish = vec!["publish", "a"];
    publish.extend(specs.iter().map(String::as_str));
    lab.ok(&publish);
}

/// `netlab metrics --labs LAB --listen ADDR` in the lab host, once it listens.
fn exporter(lab: &Lab, addr: &str) -> netlab_tests::Background {
    let bin = netlab_tests::netlab_bin();
    let exporter = lab.spawn(
        "host",
        &[
            bin.to_str().expect("path"),
            "metrics",
            "--labs",
            &lab.name,
            "--listen",
            addr,
        ],
    );
    let port = addr.rsplit_once(':').expect("ADDR:PORT").1;
    assert!(
        netlab_tests::wait_for(Duration::from_secs(10), || lab
            .exec_ok("host", &["ss", "-Htln"])
            .contains(&format!(":{port} "))),
        "the exporter never listened"
    );
    exporter
}

/// The exporter in the lab host, and a Prometheus server in wan scraping it every two
/// seconds; each query of the tests waits for the figure to arrive (no fixed sleep).
fn scraped(lab: &Lab) -> (netlab_tests::Background, Prometheus<'_>) {
    let exporter = exporter(lab, "198.51.100.2:9464");
    (exporter, Prometheus::start(lab, "198.51.100.2:9464"))
}

/// Every drop reason a test can provoke, each provoked once in a live lab and found by
/// its reason in Prometheus (15 of the 16 still in use): `direct_access`, `spoofed_source`,
/// `tcp_no_flow`, `unsupported_protocol`, `ports_exhausted`, `invalid_rst`,
/// `invalid_tcp_flags`, `unwatched`, `no_address`, `half_flow`, `ct_insert_failed` (two
/// flows racing on two CPUs for the lab's one NAT port), and from hand-made frames `truncated`,
/// `bad_ip_header`, `fragment`, `vlan_tagged`. The sixteenth, `rewrite_failed` (the
/// kernel's store or checksum helper failing on a packet whose headers the program has
/// read already), cannot be caused at will without breaking the kernel: its own lab's
/// fault point provokes it ([`prometheus_sees_rewrite_failed_at_its_fault_point`]).
/// `no_config` is retired (the configuration is a read-only global of the programs,
/// never missing).
#[test]
fn prometheus_sees_each_drop_reason_a_test_can_provoke() {
    // One NAT port: a second masqueraded flow to the same place finds none.
    let lab = Lab::sandbox(&["--nat-ports", "20000-20000"]);
    let name = lab.name.clone();
    lab.ok(&["run", "a"]);
    let _web = lab.http_server("a", 8000);
    lab.ok(&["publish", "a", "8080:8000", "9000:7020"]);
    let (_exporter, prom) = scraped(&lab);

    direct_access(&lab);
    let from_a: [(&str, &[&str]); 4] = [
        // Another address than its own.
        ("spoofed_source", &["-a", "172.18.0.99", "-S", "-p", "80"]),
        // A segment of no flow that cannot open one.
        ("tcp_no_flow", &["-A", "-p", "80"]),
        // GRE: not masqueraded.
        ("unsupported_protocol", &["-0", "-H", "47"]),
        // A second UDP flow to the same place: the one NAT port is taken.
        (
            "ports_exhausted",
            &["--udp", "-p", "53", "-s", "4001", "-k"],
        ),
    ];
    lab.exec_ok(
        "a",
        &[
            "hping3",
            "-q",
            "--udp",
            "-p",
            "53",
            "-s",
            "4000",
            "-k",
            "-c",
            "1",
            "203.0.113.1",
        ],
    );
    for (_, args) in from_a {
        let mut cmd = vec!["hping3", "-q", "-c", "1"];
        cmd.extend_from_slice(args);
        cmd.push("203.0.113.1");
        // hping3 exits 1 when nothing answers, which is the point.
        let _ = lab.exec("a", &cmd);
    }
    lab.exec_ok("a", &["ping", "-c", "1", "-W", "2", "172.18.0.1"]);
    let neigh = lab.exec_ok("a", &["ip", "neigh", "show", "172.18.0.1"]);
    let gateway = neigh.split_whitespace().nth(4).expect("the gateway's MAC");
    let raw = ["truncated", "bad_ip_header", "fragment", "vlan_tagged"];
    for kind in raw {
        lab.exec_ok(
            "a",
            &["python3", "-c", RAW_FRAME, kind, "172.18.0.2", gateway],
        );
    }
    invalid_rst(&lab);
    half_flow(&lab);
    let raced = ct_insert_failed(&lab);
    // Last: the `netlab publish` in it watches every interface the lab host has.
    unwatched_and_no_address(&lab);

    for reason in ["direct_access"]
        .into_iter()
        .chain(from_a.iter().map(|(r, _)| *r))
        .chain(raw)
        .chain([
            "invalid_rst",
            "invalid_tcp_flags",
            "half_flow",
            "unwatched",
            "no_address",
        ])
        .chain(raced.then_some("ct_insert_failed"))
    {
        let q = format!("netlab_datapath_drops_total{{lab=\"{name}\",reason=\"{reason}\"}}");
        assert!(prom.reaches(&q, 1.0), "no {reason} drop in Prometheus");
    }
}

/// `rewrite_failed`, in a dual-stack lab brought up with the tests' fault point
/// (`up --fault rewrite_failed`: every rewrite fails before it changes anything): a
/// container's ping over each family is dropped where its masquerade is written,
/// counted, and found in Prometheus. A lab without the fault point never counts one
/// (`masquerade`'s gigabyte through the NAT, and the lab above).
#[test]
fn prometheus_sees_rewrite_failed_at_its_fault_point() {
    let lab = Lab::sandbox(&["--ipv6", "--fault", "rewrite_failed"]);
    assert!(
        lab.ok(&["status"]).contains("fault      rewrite_failed"),
        "status does not say the lab fails on purpose"
    );
    let status: serde_json::Value =
        serde_json::from_str(&lab.ok(&["status", "--json"])).expect("json");
    assert_eq!(status["fault"], "rewrite_failed");
    lab.ok(&["run", "a"]);
    let (_exporter, prom) = scraped(&lab);
    let pings = [
        vec!["ping", "-c", "1", "-W", "2", "203.0.113.1"],
        vec!["ping", "-6", "-c", "1", "-W", "2", "2001:db8:113::1"],
    ];
    for (n, ping) in pings.iter().enumerate() {
        assert!(
            !lab.exec("a", ping).status.success(),
            "{ping:?} was answered"
        );
        assert!(
            lab.stat("drops", "rewrite_failed") > n as u64,
            "{ping:?} was not dropped as rewrite_failed"
        );
    }
    let name = &lab.name;
    let q = format!("netlab_datapath_drops_total{{lab=\"{name}\",reason=\"rewrite_failed\"}}");
    assert!(
        prom.reaches(&q, 2.0),
        "no rewrite_failed drops in Prometheus"
    );
}

/// Two flows racing for one translation on two CPUs: the lab has one NAT port, and
/// its own uplink egress program runs a SYN of container a's from port 1024 on CPU 0
/// and one from port 1025 on CPU 1, to the same place (a new one each time), at once
/// (BPF_PROG_TEST_RUN from two pinned threads, in the lab host), 500 places at a time
/// until the CPU whose reply half goes in second has dropped its packet:
/// `ct_insert_failed` (a loser coming later finds the port taken: `ports_exhausted`).
/// Nothing is sent: a test run only returns the program's verdict. Returns whether it
/// ran (it needs CPUs 0 and 1; without them the test is reported skipped, with why).
fn ct_insert_failed(lab: &Lab) -> bool {
    if let Some(why) = race::unavailable() {
        // The suite counts the test skipped, not passed: a part of it did not run.
        netlab_tests::skip(&format!("its ct_insert_failed part: {why}"));
        return false;
    }
    let host = lab.ns("host");
    let (uplink, uplink_mac) = link_of(&host, "eth0");
    let prog = SchedClassifier::from_pin(
        pins::dir(&lab.name).join(netlab::datapath::ebpf::uplinks::EGRESS_PROG_PIN),
    )
    .expect("the lab's uplink egress program");
    let syn = |i: usize, cpu: usize, batch: usize| {
        with_macs(
            Ipv4::new(Ipv4Addr::new(172, 18, 0, 2), INTERNET, TCP).tcp(
                1024 + cpu as u16,
                40_000 + (batch * BATCH + i) as u16,
                0x02,
                b"",
            ),
            [2, 0, 0, 0, 0, 9],
            uplink_mac,
        )
    };
    let ctx = skb_on(uplink);
    const BATCH: usize = 500;
    for batch in 0..20 {
        race::drops(&prog, Some(&ctx), Some(&host), BATCH, |i, cpu| {
            syn(i, cpu, batch)
        });
        if lab.stat("drops", "ct_insert_failed") >= 1 {
            return true;
        }
    }
    panic!("no race for one translation lost at the insert in 10,000");
}

/// wan's connection to a's listener on 7020 (published as 9000), and a reset with its
/// 4-tuple but a sequence number far outside the window, as
/// `strict::a_reset_outside_the_window_is_ignored` sends: dropped as `invalid_rst`;
/// then a segment with no flags at all: dropped as `invalid_tcp_flags`.
fn invalid_rst(lab: &Lab) {
    let listener = tcp_listen(&lab.ns("a"), "0.0.0.0:7020");
    let mut client = tcp_connect(&lab.ns("wan"), &format!("{UPLINK_ADDR}:9000"));
    let mut conn = accept(&listener);
    // Data both ways first: the flow is established, and each side's window known.
    let mut buf = [0u8; 4];
    client.write_all(b"ping").unwrap();
    conn.read_exact(&mut buf).unwrap();
    conn.write_all(b"pong").unwrap();
    client.read_exact(&mut buf).unwrap();
    let local = match client.local_addr().unwrap() {
        SocketAddr::V4(a) => a,
        other => panic!("{other}"),
    };
    tcp_segment(
        &lab.ns("wan"),
        local,
        SocketAddrV4::new(UPLINK_ADDR, 9000),
        3_000_000_000,
        0,
        0x04,
    );
    tcp_segment(
        &lab.ns("wan"),
        local,
        SocketAddrV4::new(UPLINK_ADDR, 9000),
        1,
        0,
        0x00,
    );
}

/// A published flow of which one half is gone. A client in wan that never answers
/// (203.0.113.9, an address nobody has: a's SYN-ACK goes nowhere) opens a flow to
/// 8080, which stays half open in the LRU table `CT_PENDING`; the container's half is
/// deleted from the lab's pinned table, standing in for an LRU eviction (which a test
/// cannot aim at one flow); the client's next segment cannot open a flow, and finds
/// only its own half: dropped as `half_flow`.
fn half_flow(lab: &Lab) {
    let from_client = |flag: &str| {
        // hping3 exits 1 when nothing answers.
        let _ = lab.exec(
            "wan",
            &[
                "hping3",
                "-q",
                "-c",
                "1",
                flag,
                "-a",
                "203.0.113.9",
                "-s",
                "4200",
                "-k",
                "-p",
                "8080",
                "198.51.100.2",
            ],
        );
    };
    from_client("-S");
    // The container's half: keyed by what a sends back (its own address and port, to
    // the client), in the zone of what containers send.
    let be = |a: &str| u32::from(a.parse::<Ipv4Addr>().expect("address")).to_be();
    let half = CtKey::new(
        be("172.18.0.2"),
        be("203.0.113.9"),
        8000u16.to_be(),
        4200u16.to_be(),
        IPPROTO_TCP,
        ZONE_FROM_CTR,
    );
    let mut pending: HashMap<MapData, CtKey, CtEntry> =
        pins::typed(&lab.name, names::CT_PENDING).expect("open the lab's CT_PENDING");
    assert!(
        netlab_tests::wait_for(Duration::from_secs(10), || pending.get(&half, 0).is_ok()),
        "the client's SYN opened no flow"
    );
    pending.remove(&half).expect("delete the container's half");
    from_client("-A");
}

/// An interface the lab host gets after every netlab command that watches its
/// interfaces (`SideHost`'s `side0`): a's new flow the host would route out by it is
/// dropped as `unwatched`. Then side0 loses its address (the side network still routed
/// to it, with ARP off so that nothing waits for a neighbour) and `netlab publish`
/// watches it: a's new flow leaving by it has no address to be masqueraded behind, and
/// is dropped as `no_address`.
fn unwatched_and_no_address(lab: &Lab) {
    let _side = SideHost::new(lab);
    let side_addr = SIDE_ADDR.to_string();
    let syn = ["hping3", "-q", "-c", "1", "-S", "-p", "7040", &side_addr];
    // hping3 exits 1 when nothing answers, which is the point.
    let _ = lab.exec("a", &syn);
    lab.exec_ok("host", &["ip", "addr", "flush", "dev", "side0"]);
    lab.exec_ok(
        "host",
        &["ip", "route", "add", "192.0.2.0/24", "dev", "side0"],
    );
    lab.exec_ok("host", &["ip", "link", "set", "side0", "arp", "off"]);
    lab.ok(&["publish", "a", "9001:8000"]);
    let _ = lab.exec("a", &syn);
}

/// A SYN flood and a UDP scan of a published range, as Prometheus sees them.
#[test]
fn prometheus_sees_a_syn_flood_and_a_udp_scan() {
    // Half-open flows live 30 s by default; the flood's must outlast a busy machine's
    // slow scrapes.
    let lab = Lab::sandbox(&["--tcp-syn-timeout", "600"]);
    lab.ok(&["run", "a"]);
    let _web = lab.http_server("a", 8000);
    lab.ok(&["publish", "a", "8080:8000", "7000-7099:7000-7099/udp"]);
    let (_exporter, prom) = scraped(&lab);
    let lab_q = |q: &str| q.replace("LAB", &lab.name);

    // 20,000 SYNs from random sources: the flows are half open (the SYN-ACKs go to
    // addresses nobody answers from), and show as such. About 13 % of random sources
    // are martians (0/8, 127/8, 224/4, 240/4), which open no flow, as the kernel
    // refuses them: some 17,300 flows.
    lab.exec_ok(
        "wan",
        &[
            "hping3",
            "-q",
            "-S",
            "--rand-source",
            "-p",
            "8080",
            "-c",
            "20000",
            "-i",
            "u50",
            "198.51.100.2",
        ],
    );
    assert!(
        prom.reaches(
            &lab_q(r#"netlab_conntrack_new_flows_total{lab="LAB",reason="published"}"#),
            16_000.0
        ),
        "the SYN flood's new flows"
    );
    assert!(
        prom.reaches(
            &lab_q(r#"sum(netlab_conntrack_half_open_flows{lab="LAB"})"#),
            16_000.0
        ),
        "the SYN flood's half-open flows"
    );

    // A UDP scan of the published range: a new flow per port.
    lab.exec_ok(
        "wan",
        &[
            "hping3",
            "-q",
            "--udp",
            "-p",
            "++7000",
            "-c",
            "100",
            "-i",
            "u1000",
            "198.51.100.2",
        ],
    );
    assert!(
        prom.reaches(
            &lab_q(r#"sum(netlab_conntrack_flows{lab="LAB",proto="udp"})"#),
            100.0
        ),
        "the UDP scan's flows"
    );
}

/// A Prometheus server in the lab's wan namespace (its own data directory, its API on
/// wan's 127.0.0.1), scraping `target` every two seconds; killed when dropped.
struct Prometheus<'a> {
    lab: &'a Lab,
    _server: netlab_tests::Background,
    _data: TempDir,
}

impl<'a> Prometheus<'a> {
    fn start(lab: &'a Lab, target: &str) -> Prometheus<'a> {
        let data = TempDir::new("metrics");
        let config = data.0.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\nscrape_configs:\n  - job_name: netlab\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let prometheus = prometheus_tool("prometheus");
        let server = lab.spawn(
            "wan",
            &[
                prometheus.to_str().expect("path"),
                &format!("--config.file={}", config.display()),
                &format!("--storage.tsdb.path={}", data.0.join("tsdb").display()),
                "--web.listen-address=127.0.0.1:9090",
            ],
        );
        let up = netlab_tests::wait_for(Duration::from_secs(60), || {
            lab.exec("wan", &["curl", "-sf", "http://127.0.0.1:9090/-/ready"])
                .status
                .success()
        });
        assert!(up, "prometheus did not come up");
        Prometheus {
            lab,
            _server: server,
            _data: data,
        }
    }

    /// The value of an instant query, if it has one.
    fn query(&self, q: &str) -> Option<f64> {
        let out = self.lab.exec(
            "wan",
            &[
                "curl",
                "-s",
                "-G",
                "--data-urlencode",
                &format!("query={q}"),
                "http://127.0.0.1:9090/api/v1/query",
            ],
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Whether the query's value reaches `at_least` within a minute of scrapes.
    fn reaches(&self, q: &str, at_least: f64) -> bool {
        let ok = netlab_tests::wait_for(Duration::from_secs(60), || {
            self.query(q).is_some_and(|v| v >= at_least)
        });
        if !ok {
            eprintln!("{q} = {:?}, expected at least {at_least}", self.query(q));
        }
        ok
    }
}

/// A lab whose state someone else wrote over is left out of a scrape of every lab, and
/// said on stderr (it was left out unsaid).
#[test]
fn a_lab_whose_state_is_unreadable_is_left_out_and_said() {
    struct Gone(std::path::PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let lab = Lab::sandbox(&[]);
    let fake = netlab_tests::unique_lab();
    let dir = std::path::Path::new("/run/netlab").join(&fake);
    std::fs::create_dir_all(&dir).unwrap();
    let _gone = Gone(dir.clone());
    std::fs::write(dir.join("state.json"), "not json").unwrap();
    let out = lab.run(&["metrics"]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let said = format!("lab {fake} left out: its state is unreadable");
    assert!(err.contains(&said), "{err}");
    assert!(!lines_of(&String::from_utf8_lossy(&out.stdout), &lab.name).is_empty());
}

/// A lab whose host namespace was removed behind netlab's back is not scraped as if it
/// were up; the next command on it says it is gone.
#[test]
fn a_lab_whose_namespace_is_gone_is_not_scraped() {
    let lab = Lab::sandbox(&[]);
    let other = Lab::sandbox(&[]);
    // An exporter naming the lab (running on in the namespace) says why it leaves it
    // out once, not at every scrape.
    let exporter = exporter(&lab, "198.51.100.2:9464");
    netlab::netlink::netns::delete(&format!("{}-host", lab.name)).unwrap();
    let text = other.ok(&["metrics"]);
    assert!(lines_of(&text, &lab.name).is_empty(), "{text}");
    assert!(!lines_of(&text, &other.name).is_empty());
    for _ in 0..3 {
        let curl = netlab_tests::curl_status("http://198.51.100.2:9464/metrics");
        assert_eq!(netlab_tests::run_in_ns_ok(&lab.ns("wan"), &curl), "200");
    }
    let said = exporter.finish();
    assert_eq!(
        said.matches("left out: its host namespace is gone").count(),
        1,
        "{said}"
    );
    let err = lab.fails(&["status"]);
    assert!(err.contains("is gone"), "{err}");
    lab.forget();
}

/// Runs at once on one textfile directory (two timers, one per lab) keep each other's
/// record: every file written is recorded, so each goes with its lab. Before, each run
/// saved the record it had read plus its own file, and the last to save dropped the
/// others' (a review): their files then stayed after their labs went.
#[test]
fn textfile_runs_at_once_keep_each_others_record() {
    let labs = [Lab::sandbox(&[]), Lab::sandbox(&[])];
    let dir = TempDir::new("metrics");
    let record = dir.0.join(".netlab_textfiles");
    for round in 0..10 {
        let _ = std::fs::remove_file(&record);
        let runs: Vec<_> = labs
            .iter()
            .flat_map(|l| [l, l])
            .map(|l| {
                // Bounded: a run waiting for ever on the directory's lock fails the
                // test rather than hang it.
                Command::new("timeout")
                    .arg("60")
                    .arg(netlab_tests::netlab_bin())
                    .args(["--lab", &l.name, "metrics", "--labs", &l.name])
                    .args(["--textfile", dir.path()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("netlab metrics")
            })
            .collect();
        for run in runs {
            let out = run.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = std::fs::read_to_string(&record).unwrap_or_default();
        for l in &labs {
            assert!(
                text.lines()
                    .any(|line| line.starts_with(&format!("{} ", l.name))),
                "round {round}: the record lost lab {}: {text:?}",
                l.name
            );
        }
    }
}

/// A connection refused (the SYN answered by a reset) is no eviction: its flow goes at
/// once as `ct_reset_unanswered` counts, and the estimate of flows pushed out of the
/// pending table leaves it out. Before, every refused connection, both ways, added one
/// (a review): a port scan looked like pressure on the table.
#[test]
fn a_refused_connection_is_no_eviction() {
    let lab = Lab::sandbox(&[]);
    // Published, with nothing listening in the container; and a closed port on wan.
    lab.ok(&["run", "a", "-p", "8080:80"]);
    for (from, url) in [
        ("wan", format!("http://{UPLINK_ADDR}:8080/")),
        ("a", format!("http://{INTERNET}:81/")),
    ] {
        let out = lab.exec(from, &["curl", "-s", "-m", "3", &url]);
        assert_eq!(out.status.code(), Some(7), "{from} {url}: {out:?}");
    }
    assert!(lab.stat("counters", "ct_reset_unanswered") >= 2);
    let name = &lab.name;
    let text = lab.ok(&["metrics", "--labs", name]);
    let series = format!("netlab_conntrack_pending_evicted_estimate{{lab=\"{name}\"}}");
    assert_eq!(value(&text, &series), Some(0.0), "{text}");
}
