//! A small request/response client and server, netperf's TCP_RR and TCP_CRR in
//! miniature: 1-byte requests and 1-byte responses, on one connection (RR) or on a
//! new connection each (CRR). Sockets are created by threads inside the namespaces
//! (a socket stays in the namespace it was made in); the loops themselves can run
//! anywhere.
//!
//! In CRR the server closes first, after its response, and the client waits for that
//! close: TIME_WAIT stays on the server's side and the client's ephemeral ports are
//! never exhausted, however long the run.

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

/// What a client measured.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub transactions: u64,
    pub elapsed: Duration,
    /// Per transaction, in nanoseconds: request sent (or connect started) to response read.
    pub latencies_ns: Vec<u64>,
}

impl Outcome {
    /// Transactions per second.
    pub fn rate(&self) -> f64 {
        self.transactions as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`th percentile latency in microseconds (nearest rank).
    pub fn percentile_us(&self, p: f64) -> f64 {
        percentile(&self.latencies_ns, p) / 1000.0
    }
}

/// Nearest-rank percentile of unsorted samples; 0 for none.
pub fn percentile(samples: &[u64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1] as f64
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
        let latency = transaction()?;
        out.latencies_ns.push(latency.as_nanos() as u64);
        out.transactions += 1;
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
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
