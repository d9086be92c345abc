//! A small request/response client and server, netperf's TCP_RR and TCP_CRR in
//! miniature: 1-byte requests and 1-byte responses, on one connection (RR) or on a
//! new connection each (CRR). Sockets are created by threads inside the namespaces
//! (a socket stays in the namespace it was made in); the loops themselves can run
//! anywhere.
//!
//! In CRR the server closes first, after its response, and the client waits for that
//! close: TIME_WAIT stays on the server's side and the client's ephemeral ports are
//! never exhausted, however long the run.

use hdrhistogram::Histogram;
use std::{
    io::{self, ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Many transactions on one connection.
    Rr,
    /// One connection per transaction.
    Crr,
}

/// How long a client waits for a connection or a response before it calls the
/// datapath broken.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a blocked server looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);

/// A server on its own thread, serving one client at a time until stopped.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Makes `accept` on a blocking listener return every `timeout` (Linux honours
/// SO_RCVTIMEO for accept), so that the server notices when it is stopped.
fn accept_timeout(listener: &TcpListener, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Pins the calling thread to one CPU (`taskset` for a thread).
pub fn pin_to(cpu: usize) -> io::Result<()> {
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Server {
    /// Serves on its own thread, pinned to `cpu` if given.
    pub fn start(listener: TcpListener, mode: Mode, cpu: Option<usize>) -> io::Result<Server> {
        accept_timeout(&listener, POLL)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            if let Some(cpu) = cpu {
                let _ = pin_to(cpu);
            }
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = serve(s, mode, &flag);
                    }
                    Err(e) if timed_out(&e) || e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => std::thread::sleep(POLL),
                }
            }
        });
        Ok(Server {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut s: TcpStream, mode: Mode, stop: &AtomicBool) -> io::Result<()> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(POLL))?;
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                s.write_all(&byte)?;
                if mode == Mode::Crr {
                    // Close first: TIME_WAIT stays here.
                    return Ok(());
                }
            }
            Err(e) if timed_out(&e) => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The slowest transaction a latency histogram holds exactly (longer ones are
/// recorded as this): well beyond the clients' I/O timeout.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// An HDR histogram of latencies in nanoseconds, three significant digits: a
/// percentile is exact to 0.1 %, in fixed memory however many transactions there are.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid histogram bounds")
}

/// What a client measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub transactions: u64,
    pub elapsed: Duration,
    /// Per transaction, in nanoseconds: request sent (or connect started) to response read.
    pub latencies: Histogram<u64>,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome {
            transactions: 0,
            elapsed: Duration::ZERO,
            latencies: latency_histogram(),
        }
    }
}

impl Outcome {
    /// Transactions per second.
    pub fn rate(&self) -> f64 {
        self.transactions as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`th percentile latency in microseconds; 0 for none.
    pub fn percentile_us(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        self.latencies.value_at_percentile(p) as f64 / 1000.0
    }

    fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latencies.saturating_record(ns.max(1));
        self.transactions += 1;
    }
}

fn context(what: &str, target: SocketAddr) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{what} {target}: {e}"))
}

/// How long a client runs and how long it warms up before it counts.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub warmup: Duration,
    pub duration: Duration,
}

/// Runs `transaction` for the warm-up, then for the duration; each transaction
/// returns its own latency (what it does after its response is not timed).
fn measure(
    timing: Timing,
    stop: &dyn Fn() -> bool,
    mut transaction: impl FnMut() -> io::Result<Duration>,
) -> io::Result<Outcome> {
    let warm = Instant::now();
    while warm.elapsed() < timing.warmup && !stop() {
        transaction()?;
    }
    let mut out = Outcome::default();
    let start = Instant::now();
    while start.elapsed() < timing.duration && !stop() {
        out.record(transaction()?);
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

/// Request/response on one connection (or until `stop()`). Call it from a thread
/// inside the client's namespace.
pub fn rr_client(
    target: SocketAddr,
    timing: Timing,
    stop: &dyn Fn() -> bool,
) -> io::Result<Outcome> {
    let mut s =
        TcpStream::connect_timeout(&target, IO_TIMEOUT).map_err(context("connect to", target))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut byte = [1u8];
    measure(timing, stop, || {
        let t0 = Instant::now();
        s.write_all(&byte).map_err(context("send to", target))?;
        s.read_exact(&mut byte)
            .map_err(context("response from", target))?;
        Ok(t0.elapsed())
    })
}

/// One connection per request/response (or until `stop()`). Call it from a thread
/// inside the client's namespace: every socket is new. The latency runs from the
/// start of `connect` to the response; waiting for the server's close is not timed
/// but counts in the rate.
pub fn crr_client(
    target: SocketAddr,
    timing: Timing,
    stop: &dyn Fn() -> bool,
) -> io::Result<Outcome> {
    let mut byte = [1u8];
    measure(timing, stop, || {
        let t0 = Instant::now();
        let mut s = TcpStream::connect_timeout(&target, IO_TIMEOUT)
            .map_err(context("connect to", target))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.write_all(&byte).map_err(context("send to", target))?;
        s.read_exact(&mut byte)
            .map_err(context("response from", target))?;
        let latency = t0.elapsed();
        // The server closes first; ours follows, so TIME_WAIT stays on its side.
        let _ = s.read(&mut byte);
        Ok(latency)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_the_histogram() {
        let mut out = Outcome::default();
        assert_eq!(out.percentile_us(50.0), 0.0);
        for us in (1..=100).rev() {
            out.record(Duration::from_micros(us));
        }
        assert_eq!(out.transactions, 100);
        // Three significant digits: within 0.1 % of the nearest-rank value.
        for (p, want) in [(50.0, 50.0), (99.0, 99.0), (100.0, 100.0)] {
            let got = out.percentile_us(p);
            assert!((got - want).abs() <= want * 0.001, "p{p}: {got} vs {want}");
        }
        // Beyond the histogram's range: counted at its top, not lost.
        out.record(Duration::from_secs(3600));
        assert_eq!(out.latencies.len(), 101);
        out.elapsed = Duration::from_secs(2);
        assert!((out.rate() - 50.5).abs() < 1e-9);
    }
}
