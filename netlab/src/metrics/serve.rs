//! `netlab metrics --listen ADDR:PORT`: `/metrics` over HTTP/1.1, each request
//! answered with a fresh scrape and the connection closed, each connection on a thread
//! of its own (a few at once at most), so that a slow or idle client holds up no one
//! else's scrape. A client has five seconds to send its request head and ten to take
//! the answer; when every slot is taken, the connection that has waited longest on its
//! client (for its request, or to take its answer) is closed to make room: idle
//! connections, or ones that never read (a local process holding sixteen open), cannot
//! keep a scrape out; nor can one client opening connection after connection: while
//! the slots are full, the client holding more than four gives up its oldest, whatever
//! its age. The standard library's TCP listener is all
//! it takes: Prometheus sends one GET per scrape.

use std::{
    collections::VecDeque,
    io::{Read, Write},
    net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use super::{Format, Labs};
use crate::error::{Error, Result};

/// The longest request head read (a scrape's is a few hundred bytes).
const MAX_HEAD: usize = 16 * 1024;
/// How long a client has to send its request head, all of it.
const HEAD_TIME: Duration = Duration::from_secs(5);
/// How long a client has to take the answer, all of it.
const ANSWER_TIME: Duration = Duration::from_secs(10);
/// Connections served at once. A connection past it takes the place of the oldest of
/// a client holding more than [`MAX_PER_SOURCE`], or else of the one that has waited
/// longest on its client, if that one has waited [`EVICTABLE_AFTER`] at least;
/// otherwise it is closed at once.
const MAX_CLIENTS: usize = 16;
/// How long a connection waits on its client before a new one may take its place: a
/// scraper's request arrives well within it, so a flood of new connections evicts idle
/// ones, never a scrape about to be read.
const EVICTABLE_AFTER: Duration = Duration::from_millis(250);

/// Connections one client may have waiting while every slot is taken: past it, a new
/// connection (its own or another's) takes the place of that client's oldest, whatever
/// its age, so that one client opening connection after connection (faster than
/// [`EVICTABLE_AFTER`] frees a slot) churns its own slots, and keeps no other client's
/// scrape out. Below it, nothing is closed but by [`EVICTABLE_AFTER`].
const MAX_PER_SOURCE: usize = 4;

/// Who a connection is from, for [`MAX_PER_SOURCE`]: its address; an IPv6 one by its
/// /64 (one host has all of it), every loopback address as one (a local process may
/// take any of 127.0.0.0/8).
fn source(peer: Option<SocketAddr>) -> u128 {
    match peer.map(|p| p.ip()) {
        None => u128::MAX,
        Some(ip) if ip.is_loopback() => 0,
        Some(IpAddr::V4(a)) => 1 << 64 | u128::from(u32::from(a)),
        Some(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
            Some(v4) if v4.is_loopback() => 0,
            Some(v4) => 1 << 64 | u128::from(u32::from(v4)),
            None => u128::from(a) >> 64 << 64 | 2,
        },
    }
}

/// A connection waiting on its client: its id, a handle to close it by, its client
/// ([`source`]), and since when it waits.
type Conn = (u64, TcpStream, u128, Instant);

/// The connections waiting on their client, for its request head or to take the
/// answer, oldest first.
#[derive(Default)]
struct Waiting {
    next: u64,
    conns: VecDeque<Conn>,
}

impl Waiting {
    fn add(&mut self, s: &TcpStream) -> Option<u64> {
        let handle = s.try_clone().ok()?;
        self.next += 1;
        let from = source(s.peer_addr().ok());
        self.conns
            .push_back((self.next, handle, from, Instant::now()));
        Some(self.next)
    }

    fn remove(&mut self, id: u64) {
        self.conns.retain(|(i, ..)| *i != id);
    }

    /// Makes room for one more connection when every slot is taken: closes the oldest
    /// of the client holding the most, if it holds more than [`MAX_PER_SOURCE`]; else
    /// the one that has waited longest, if long enough ([`Self::evict_oldest`]). False
    /// when neither.
    fn make_room(&mut self) -> bool {
        let mut held: std::collections::HashMap<u128, usize> = Default::default();
        for c in &self.conns {
            *held.entry(c.2).or_default() += 1;
        }
        let top = held.into_iter().max_by_key(|&(_, n)| n);
        if let Some((from, n)) = top
            && n > MAX_PER_SOURCE
            && let Some(i) = self.conns.iter().position(|c| c.2 == from)
            && let Some((_, s, ..)) = self.conns.remove(i)
        {
            let _ = s.shutdown(Shutdown::Both);
            return true;
        }
        self.evict_oldest()
    }

    /// Closes the connection that has waited longest, if it has waited long enough to
    /// be evicted; false when none has.
    fn evict_oldest(&mut self) -> bool {
        match self.conns.front() {
            Some((.., since)) if since.elapsed() >= EVICTABLE_AFTER => {
                if let Some((_, s, ..)) = self.conns.pop_front() {
                    let _ = s.shutdown(Shutdown::Both);
                }
                true
            }
            _ => false,
        }
    }
}

/// Serves scrapes of `labs` until the process is killed.
pub fn serve(addr: SocketAddr, labs: &Labs) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| Error::Invalid(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().unwrap_or(addr);
    eprintln!("netlab metrics: serving http://{bound}/metrics");
    let clients = AtomicUsize::new(0);
    let waiting = Mutex::new(Waiting::default());
    std::thread::scope(|scope| {
        for s in listener.incoming().flatten() {
            let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
            // The evicted connection's thread ends as soon as its read fails; until
            // then one thread more than MAX_CLIENTS runs.
            if clients.load(Ordering::Acquire) >= MAX_CLIENTS && !w.make_room() {
                continue;
            }
            clients.fetch_add(1, Ordering::AcqRel);
            let id = w.add(&s);
            drop(w);
            let (clients, waiting) = (&clients, &waiting);
            scope.spawn(move || {
                // A client that goes away, or sends nonsense, costs only its own answer.
                let head = read_head(&s);
                let lock = || waiting.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(id) = id {
                    lock().remove(id);
                }
                if let Ok(head) = head {
                    let out = answer(&head, labs);
                    // Waiting on the client again while it takes the answer, and
                    // closes.
                    let id = lock().add(&s);
                    if write_within(&s, out.as_bytes(), ANSWER_TIME).is_ok() {
                        close_gently(&s);
                    }
                    if let Some(id) = id {
                        lock().remove(id);
                    }
                }
                clients.fetch_sub(1, Ordering::AcqRel);
            });
        }
    });
    Ok(())
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Metrics(Format),
    NotFound,
    BadMethod,
    Bad,
}

/// Reads a request head: its request line, and whether `Accept` asks for OpenMetrics.
pub fn parse(head: &str) -> Request {
    let mut lines = head.lines();
    let Some(line) = lines.next() else {
        return Request::Bad;
    };
    let mut words = line.split_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Request::Bad;
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Request::Bad;
    }
    if method != "GET" && method != "HEAD" {
        return Request::BadMethod;
    }
    // The absolute form (`http://host:port/metrics`, a proxy's) names the same path.
    let origin = match target.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => {
            rest.find('/').map_or("/", |i| &rest[i..])
        }
        _ => target,
    };
    let path = origin.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return Request::NotFound;
    }
    let accept: Vec<&str> = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("accept"))
        .map(|(_, value)| value)
        .collect();
    Request::Metrics(if prefers_openmetrics(&accept.join(",")) {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    })
}

/// Whether an `Accept` value prefers OpenMetrics to the text format: a media range of
/// it with a quality above 0 (`q=0` means "not this one") and at least the text
/// format's (`text/plain`, `text/*` or `*/*`, 0 when none is named); as a client's
/// preference says, whatever the order of the ranges.
fn prefers_openmetrics(accept: &str) -> bool {
    let (mut om, mut text) = (0.0_f64, 0.0_f64);
    for range in accept.split(',') {
        let mut params = range.split(';').map(str::trim);
        let media = params.next().unwrap_or_default().to_ascii_lowercase();
        let q = params
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, v)| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        match media.as_str() {
            "application/openmetrics-text" => om = om.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    om > 0.0 && om >= text
}

/// The request head (up to its empty line), read within [`HEAD_TIME`] altogether: a
/// client trickling a byte at a time gets no longer.
fn read_head(mut s: &TcpStream) -> std::io::Result<String> {
    let deadline = Instant::now() + HEAD_TIME;
    let mut head: Vec<u8> = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        s.set_read_timeout(Some(left))?;
        let n = s.read(&mut buf)?;
        if n == 0 {
            // Closed (or evicted) before its blank line: no request.
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
        let end = [&b"\r\n\r\n"[..], &b"\n\n"[..]]
            .iter()
            .filter_map(|blank| head.windows(blank.len()).position(|w| w == *blank))
            .min();
        if let Some(end) = end {
            head.truncate(end + 1);
            break;
        }
        if head.len() > MAX_HEAD {
            return Ok(String::new());
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Writes `bytes` within `time` altogether: a client that takes them a byte at a time
/// gets no longer.
fn write_within(mut s: &TcpStream, mut bytes: &[u8], time: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + time;
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        s.set_write_timeout(Some(left))?;
        let n = s.write(bytes)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Closes after the answer without losing it: a socket closed with input unread (a
/// client that sent more after its request) is reset by the kernel, which drops what
/// the client has not read yet. So the write side is shut first, and what the client
/// still sends is read and dropped until it closes too (a second at most, 64 KiB).
fn close_gently(mut s: &TcpStream) {
    if s.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < 64 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// The whole HTTP answer to a request head.
fn answer(head: &str, labs: &Labs) -> String {
    let head_only = head.split_whitespace().next() == Some("HEAD");
    let (status, content_type, body) = match parse(head) {
        Request::Metrics(format) => match super::scrape(labs, format) {
            Ok(text) => ("200 OK", format.content_type(), text),
            Err(e) => (
                "500 Internal Server Error",
                "text/plain; charset=utf-8",
                format!("netlab: {e}\n"),
            ),
        },
        Request::NotFound => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "netlab serves /metrics only\n".into(),
        ),
        Request::BadMethod => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "GET /metrics\n".into(),
        ),
        Request::Bad => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "bad request\n".into(),
        ),
    };
    // A 405 says which methods are allowed (RFC 9110).
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(&body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        let at = |a: &str| source(Some(SocketAddr::new(a.parse().unwrap(), 1)));
        assert_eq!(at("127.0.0.1"), at("127.9.9.9"));
        assert_eq!(at("::1"), at("127.0.0.1"));
        assert_eq!(at("2001:db8::1"), at("2001:db8::ffff:2"));
        assert_ne!(at("2001:db8::1"), at("2001:db8:0:1::1"));
        assert_eq!(at("::ffff:198.51.100.1"), at("198.51.100.1"));
        assert_ne!(at("198.51.100.1"), at("198.51.100.2"));
        assert_ne!(at("0.0.0.2"), at("::2"));
    }

    #[test]
    fn requests() {
        let get = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
        assert_eq!(parse(get), Request::Metrics(Format::Prometheus));
        let om = "GET /metrics?x=1 HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n";
        assert_eq!(parse(om), Request::Metrics(Format::OpenMetrics));
        let refused =
            "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;q=0, text/plain\r\n";
        assert_eq!(parse(refused), Request::Metrics(Format::Prometheus));
        assert_eq!(parse("GET / HTTP/1.1\r\n"), Request::NotFound);
        // The absolute form (RFC 9112, 3.2.2).
        let absolute = "GET http://127.0.0.1:9464/metrics HTTP/1.1\r\n";
        assert_eq!(parse(absolute), Request::Metrics(Format::Prometheus));
        assert_eq!(
            parse("GET HTTP://h/metrics?x HTTP/1.1\r\n"),
            Request::Metrics(Format::Prometheus)
        );
        assert_eq!(parse("GET http://h HTTP/1.1\r\n"), Request::NotFound);
        assert_eq!(parse("GET http://h/other HTTP/1.1\r\n"), Request::NotFound);
        assert_eq!(parse("POST /metrics HTTP/1.1\r\n"), Request::BadMethod);
        assert_eq!(parse("GET /metrics\r\n"), Request::Bad);
        assert_eq!(parse(""), Request::Bad);
        assert_eq!(parse("GET /metrics HTTP/1.9\r\n"), Request::Bad);
        assert_eq!(parse("GET /metrics HTTP/1.1 junk\r\n"), Request::Bad);
        // The client's preference, whatever the order: Prometheus set to prefer the
        // text format says so with qualities (before, any OpenMetrics range won).
        let text_first = "GET /metrics HTTP/1.1\r\nAccept: text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4\r\n";
        assert_eq!(parse(text_first), Request::Metrics(Format::Prometheus));
        let prometheus_default = "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n";
        assert_eq!(
            parse(prometheus_default),
            Request::Metrics(Format::OpenMetrics)
        );
        let any = "GET /metrics HTTP/1.1\r\nAccept: */*\r\n";
        assert_eq!(parse(any), Request::Metrics(Format::Prometheus));
    }
}
