//! The latency the proxy adds per chunk: POS pty write → printer pty read, next to a
//! direct pty-to-pty copy thread measured in the same run (goal: p99 within 1 ms).
//!
//! Two pty pairs per path; the bench holds the masters (the POS writes one, the printer
//! reads the other), the path under test opens the slaves by name through the agent's
//! port layer. The direct path is one thread doing `read_chunk` → `write_fully`; the
//! proxy path is [`Proxy`] without a coupon gate, its tap drained by a thread as the
//! till core would. One 64-byte chunk is in flight at a time; the clock starts before
//! the write to the POS master and stops when the last byte is read from the printer
//! master. The two paths take turns in blocks, so machine noise hits both alike.
//!
//! `cargo bench -p till360-agent --bench proxy_latency [-- CHUNKS]` (default 10,000
//! chunks per path).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use nix::pty::openpty;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use till360_agent::ports::{write_fully, PortSpec};
use till360_agent::proxy::{Proxy, TapEvent};

const CHUNK: usize = 64;
const BLOCK: usize = 500;

struct Pty {
    master: File,
    _slave: OwnedFd,
    path: PathBuf,
}

impl Pty {
    fn new() -> Pty {
        let pair = openpty(None, None).expect("openpty");
        let mut termios = tcgetattr(&pair.slave).expect("tcgetattr");
        cfmakeraw(&mut termios);
        tcsetattr(&pair.slave, SetArg::TCSANOW, &termios).expect("tcsetattr");
        let path = std::fs::read_link(format!("/proc/self/fd/{}", pair.slave.as_raw_fd()))
            .expect("pty path");
        Pty {
            master: File::from(pair.master),
            _slave: pair.slave,
            path,
        }
    }

    fn spec(&self) -> PortSpec {
        PortSpec::Path {
            path: self.path.clone(),
            baud: 115_200,
        }
    }
}

/// One path under test: its POS and printer masters.
struct Path {
    pos: Pty,
    printer: Pty,
}

impl Path {
    /// Writes one chunk to the POS and times it until the printer has all of it.
    fn time_chunk(&mut self, chunk: &[u8], buf: &mut [u8]) -> Duration {
        let start = Instant::now();
        self.pos.master.write_all(chunk).expect("POS write");
        let mut got = 0;
        while got < chunk.len() {
            let n = self.printer.master.read(buf).expect("printer read");
            assert!(n > 0, "printer pty closed");
            assert!(buf[..n] == chunk[got..got + n], "bytes changed on the way");
            got += n;
        }
        start.elapsed()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn report(label: &str, times: &mut [Duration]) -> (Duration, Duration) {
    times.sort();
    let (p50, p99) = (percentile(times, 0.50), percentile(times, 0.99));
    println!(
        "{label:<28} n={:>6}  p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>9.1} µs",
        times.len(),
        micros(p50),
        micros(p99),
        micros(*times.last().expect("timed chunks")),
    );
    (p50, p99)
}

fn main() {
    let chunks: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);

    // Direct copy: the port layer and one thread, nothing else.
    let mut direct = Path {
        pos: Pty::new(),
        printer: Pty::new(),
    };
    let copying = Arc::new(AtomicBool::new(true));
    let copier = {
        let mut from = direct.pos.spec().open().expect("open direct POS");
        let mut to = direct.printer.spec().open().expect("open direct printer");
        let copying = Arc::clone(&copying);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            let keep_going = || copying.load(Ordering::SeqCst);
            while keep_going() {
                if let Ok(Some(n)) = from.read_chunk(&mut buf) {
                    write_fully(to.as_mut(), &buf[..n], &keep_going).expect("direct write");
                }
            }
        })
    };

    // The proxy, its tap drained as the till core would.
    let mut proxied = Path {
        pos: Pty::new(),
        printer: Pty::new(),
    };
    let (tap_tx, tap_rx) = mpsc::channel::<TapEvent>();
    let drain = std::thread::spawn(move || tap_rx.iter().count());
    let proxy = Proxy::start(proxied.pos.spec(), proxied.printer.spec(), tap_tx, None)
        .expect("start proxy");

    let mut buf = vec![0u8; 4096];
    let mut payload = [0u8; CHUNK];
    // Warm-up: both paths open and moving bytes.
    for i in 0..200u32 {
        payload.fill(b'a' + (i % 26) as u8);
        direct.time_chunk(&payload, &mut buf);
        proxied.time_chunk(&payload, &mut buf);
    }
    let mut direct_times = Vec::with_capacity(chunks);
    let mut proxy_times = Vec::with_capacity(chunks);
    let mut i = 0u32;
    while proxy_times.len() < chunks {
        let block = BLOCK.min(chunks - proxy_times.len());
        for _ in 0..block {
            i = i.wrapping_add(1);
            payload.fill(b'a' + (i % 26) as u8);
            payload[0] = (i >> 8) as u8;
            direct_times.push(direct.time_chunk(&payload, &mut buf));
        }
        for _ in 0..block {
            i = i.wrapping_add(1);
            payload.fill(b'a' + (i % 26) as u8);
            payload[0] = (i >> 8) as u8;
            proxy_times.push(proxied.time_chunk(&payload, &mut buf));
        }
    }
    proxy.stop();
    copying.store(false, Ordering::SeqCst);
    copier.join().expect("copy thread");
    let tapped = drain.join().expect("tap drain");

    println!("proxy_latency: {chunks} chunks of {CHUNK} bytes per path, one in flight");
    let (d50, d99) = report("direct pty-to-pty copy", &mut direct_times);
    let (p50, p99) = report("proxy (no coupon gate)", &mut proxy_times);
    let added = |proxy: Duration, direct: Duration| micros(proxy) - micros(direct);
    println!(
        "proxy adds                   p50 {:>8.1} µs  p99 {:>8.1} µs  (goal: p99 within 1000 µs): {}",
        added(p50, d50),
        added(p99, d99),
        if added(p99, d99) <= 1000.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    println!("tap events: {tapped}");
}
