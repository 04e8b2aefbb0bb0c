//! The receipt printer: keeps every byte it receives, answers real-time status
//! requests and counts cuts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::escpos::{DLE, EOT, ESC, GS};
use super::pty::{read_timeout, write_all_by, VirtualPort};

/// Status byte for `DLE EOT 1` (printer status): fixed bits 1 and 4 set, online,
/// drawer pin low.
pub const STATUS_ONLINE: u8 = 0x16;
/// Status byte for `DLE EOT 2..4` (offline cause, error cause, paper): nothing wrong.
pub const STATUS_OK: u8 = 0x12;

/// What the printer does in answer to a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrinterAction {
    /// Send this one status byte back.
    Reply(u8),
    Cut,
}

/// The printer's command interpreter, sans IO: it knows each command's length so raster
/// and barcode payloads are skipped rather than read as commands.
#[derive(Debug, Default)]
pub struct PrinterModel {
    pending: Vec<u8>,
}

/// How many bytes the command at the start of `buf` needs; `None` if more must arrive
/// to know.
fn command_len(buf: &[u8]) -> Option<usize> {
    let b = |i: usize| buf.get(i).copied();
    match b(0)? {
        DLE => match b(1)? {
            EOT | 0x05 => Some(3),
            0x14 => Some(5),
            _ => Some(1),
        },
        ESC => match b(1)? {
            b'@' | b'<' | b'i' | b'm' => Some(2),
            b'p' => Some(5),
            b'*' => {
                let (m, nl, nh) = (b(2)?, b(3)?, b(4)?);
                let cols = usize::from(nl) + 256 * usize::from(nh);
                Some(5 + if m >= 32 { cols * 3 } else { cols })
            }
            b'$' | b'\\' => Some(4),
            _ => Some(3),
        },
        GS => match b(1)? {
            b'v' => {
                let (xl, xh, yl, yh) = (b(4)?, b(5)?, b(6)?, b(7)?);
                let x = usize::from(xl) + 256 * usize::from(xh);
                let y = usize::from(yl) + 256 * usize::from(yh);
                Some(8 + x * y)
            }
            b'k' => {
                let m = b(2)?;
                if m <= 6 {
                    let end = buf[3..].iter().position(|&c| c == 0)?;
                    Some(3 + end + 1)
                } else {
                    Some(4 + usize::from(b(3)?))
                }
            }
            b'(' => {
                let (pl, ph) = (b(3)?, b(4)?);
                Some(5 + usize::from(pl) + 256 * usize::from(ph))
            }
            b'V' => match b(2)? {
                65 | 66 | 97 | 98 | 103 | 104 => Some(4),
                _ => Some(3),
            },
            _ => Some(3),
        },
        _ => Some(1),
    }
}

impl PrinterModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds received bytes; returns what the printer does, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<PrinterAction> {
        self.pending.extend_from_slice(bytes);
        let mut actions = Vec::new();
        let mut at = 0;
        while at < self.pending.len() {
            let rest = &self.pending[at..];
            let Some(len) = command_len(rest) else { break };
            if rest.len() < len {
                break;
            }
            match rest {
                [DLE, EOT, n, ..] => actions.push(PrinterAction::Reply(if *n == 1 {
                    STATUS_ONLINE
                } else {
                    STATUS_OK
                })),
                [GS, b'V', ..] | [ESC, b'i', ..] | [ESC, b'm', ..] => {
                    actions.push(PrinterAction::Cut)
                }
                _ => {}
            }
            at += len;
        }
        self.pending.drain(..at);
        actions
    }
}

#[derive(Debug, Default)]
struct Received {
    bytes: Vec<u8>,
    cuts: usize,
    status_replies: usize,
}

/// A printer on the master side of a virtual port, served by a background thread until
/// dropped.
pub struct PrinterSimulator {
    received: Arc<Mutex<Received>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PrinterSimulator {
    pub fn start(port: &VirtualPort) -> std::io::Result<Self> {
        let master = port.try_clone_master()?;
        let received = Arc::new(Mutex::new(Received::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (rx, st) = (received.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("printer-sim".into())
            .spawn(move || {
                let mut model = PrinterModel::new();
                let mut buf = [0u8; 4096];
                while !st.load(Ordering::Relaxed) {
                    let n = match read_timeout(&master, &mut buf, Duration::from_millis(50)) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            // The pty is gone (only at teardown: we hold its slave).
                            tracing::warn!("printer simulator stops: {e}");
                            break;
                        }
                    };
                    if n == 0 {
                        continue;
                    }
                    let actions = model.feed(&buf[..n]);
                    let mut replies = Vec::new();
                    {
                        let mut r = lock(&rx);
                        r.bytes.extend_from_slice(&buf[..n]);
                        for a in &actions {
                            match a {
                                PrinterAction::Cut => r.cuts += 1,
                                PrinterAction::Reply(b) => {
                                    r.status_replies += 1;
                                    replies.push(*b);
                                }
                            }
                        }
                    }
                    if !replies.is_empty() {
                        let deadline = Instant::now() + Duration::from_secs(5);
                        if let Err(e) = write_all_by(&master, &replies, deadline) {
                            tracing::warn!("printer simulator could not answer status: {e}");
                        }
                    }
                }
            })?;
        Ok(Self {
            received,
            stop,
            thread: Some(thread),
        })
    }

    /// Every byte received so far.
    pub fn bytes(&self) -> Vec<u8> {
        lock(&self.received).bytes.clone()
    }

    pub fn byte_count(&self) -> usize {
        lock(&self.received).bytes.len()
    }

    pub fn cuts(&self) -> usize {
        lock(&self.received).cuts
    }

    pub fn status_replies(&self) -> usize {
        lock(&self.received).status_replies
    }

    /// Waits until at least `cuts` cuts arrived; false at the deadline.
    pub fn wait_for_cuts(&self, cuts: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.cuts() >= cuts {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.cuts() >= cuts
    }
}

fn lock(m: &Mutex<Received>) -> MutexGuard<'_, Received> {
    // A panic in the reader thread must not hide what was received before it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for PrinterSimulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
