//! `netlab metrics --listen ADDR:PORT`: `/metrics` over HTTP/1.1, one request at a
//! time, each answered with a fresh scrape and the connection closed. The standard
//! library's TCP listener is all it takes: Prometheus sends one GET per scrape.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use super::{Format, Labs};
use crate::error::{Error, Result};

/// The longest request head read (a scrape's is a few hundred bytes).
const MAX_HEAD: usize = 16 * 1024;

/// Serves scrapes of `labs` until the process is killed.
pub fn serve(addr: SocketAddr, labs: &Labs) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| Error::Invalid(format!("cannot listen on {addr}: {e}")))?;
    eprintln!("netlab metrics: serving http://{addr}/metrics");
    // A client that goes away, or sends nonsense, costs only its own answer.
    for s in listener.incoming().flatten() {
        let _ = answer(s, labs);
    }
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
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Request::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Request::Bad;
    }
    if method != "GET" && method != "HEAD" {
        return Request::BadMethod;
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return Request::NotFound;
    }
    let openmetrics = lines.any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("accept")
                && value.contains("application/openmetrics-text")
        })
    });
    Request::Metrics(if openmetrics {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    })
}

fn read_head(s: &TcpStream) -> std::io::Result<String> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            return Ok(head);
        }
        head.push_str(&line);
        if head.len() > MAX_HEAD {
            return Ok(String::new());
        }
    }
}

fn answer(mut s: TcpStream, labs: &Labs) -> std::io::Result<()> {
    let head = read_head(&s)?;
    let head_only = head.starts_with("HEAD ");
    let (status, content_type, body) = match parse(&head) {
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
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(&body);
    }
    s.write_all(out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let get = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
        assert_eq!(parse(get), Request::Metrics(Format::Prometheus));
        let om = "GET /metrics?x=1 HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n";
        assert_eq!(parse(om), Request::Metrics(Format::OpenMetrics));
        assert_eq!(parse("GET / HTTP/1.1\r\n"), Request::NotFound);
        assert_eq!(parse("POST /metrics HTTP/1.1\r\n"), Request::BadMethod);
        assert_eq!(parse("GET /metrics\r\n"), Request::Bad);
        assert_eq!(parse(""), Request::Bad);
    }
}
