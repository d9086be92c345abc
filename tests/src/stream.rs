//! A TCP connection that keeps transferring in the background while a test puts the
//! datapath under pressure: it must never stall or reset.

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::wait_for;

const CHUNK: usize = 4096;

pub struct Stream {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    writer: JoinHandle<std::io::Result<u64>>,
    reader: JoinHandle<std::io::Result<u64>>,
}

impl Stream {
    /// Sends from `from` to `to` (the two ends of one connection), a chunk every
    /// millisecond, until [`Stream::finish`].
    pub fn start(mut from: TcpStream, mut to: TcpStream) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        to.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    from.write_all(&[0x5a; CHUNK])?;
                    sent += CHUNK as u64;
                    std::thread::sleep(Duration::from_millis(1));
                }
                from.shutdown(std::net::Shutdown::Write)?;
                Ok(sent)
            })
        };
        let reader = {
            let received = received.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; CHUNK];
                loop {
                    let n = to.read(&mut buf)?;
                    if n == 0 {
                        return Ok(received.load(Ordering::Relaxed));
                    }
                    received.fetch_add(n as u64, Ordering::Relaxed);
                }
            })
        };
        Stream {
            stop,
            received,
            writer,
            reader,
        }
    }

    /// Whether another 256 KiB arrive within 10 s.
    pub fn advances(&self) -> bool {
        let before = self.received.load(Ordering::Relaxed);
        wait_for(Duration::from_secs(10), || {
            self.received.load(Ordering::Relaxed) >= before + (256 << 10)
        })
    }

    /// Stops the sender and checks that every byte sent arrived, without an error on
    /// either end. Returns the bytes moved.
    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.writer.join().unwrap().expect("the sender failed");
        let got = self.reader.join().unwrap().expect("the receiver failed");
        assert_eq!(got, sent, "bytes lost");
        got
    }
}
