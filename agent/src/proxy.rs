//! The POS ↔ printer pass-through (DESIGN.md principle 1: the till never waits for us).
//!
//! Two dedicated OS threads per session: POS → printer (read the POS, write the bytes to
//! the printer at once, then hand a copy to the tap) and printer → POS (status replies to
//! DLE EOT, GS r, GS a go back unchanged). No parsing, no journal, no async on this path:
//! the tap is an unbounded channel, so a slow or dead consumer never holds up a byte.
//! When either device goes away, the session ends, both ports are reopened with a
//! backoff, and bytes the printer did not take are written first on the new one.
//!
//! With a [`CouponGate`], the POS → printer thread runs a [`CutGate`]: a receipt's cut
//! waits at most the budget for the till core's coupon decision, which arrives on the
//! gate's `decisions` channel as `(cut offset, block)`. Bytes before a cut still leave at
//! once. While a cut is held the thread waits on that channel, not on the POS: bytes the
//! POS sends meanwhile stay in the kernel buffer for at most the budget. A till core that
//! is gone (channel closed) cannot hold anything up: its cuts pass at once. The gate is
//! kept across sessions, so its stream offsets stay those of the till core's parser,
//! which sees every POS byte exactly once through the tap.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::escpos::gate::{CutGate, CutId, CutOutcome, GateOutput};
use crate::ports::{reopen_backoff, write_fully, Port, PortError, PortSpec};

const CHUNK: usize = 4096;
/// Longest single wait for a decision, so a stop is seen promptly whatever the budget.
const WAIT_SLICE: Duration = Duration::from_millis(100);
/// How long a session that ends may still try to print the bytes its gate held.
const FLUSH_GRACE: Duration = Duration::from_millis(500);

/// What the proxy tells the till core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapEvent {
    /// POS bytes, each exactly once and in order, as they arrived (after the bytes that
    /// could leave were written to the printer).
    Bytes(Vec<u8>),
    /// A held cut left the gate: with the coupon block (`CouponPrinted`) or without.
    CutReleased { offset: u64, outcome: CutOutcome },
}

/// The till core's decision for the cut at a stream offset: a coupon block to print
/// right before it, or `None`.
pub type CutDecision = (u64, Option<Vec<u8>>);

/// Holding cuts for coupon decisions.
#[derive(Debug)]
pub struct CouponGate {
    /// How long a cut waits for its decision at most.
    pub budget: Duration,
    /// Decisions from the till core, answering the cuts it saw through the tap.
    pub decisions: Receiver<CutDecision>,
}

/// A running proxy; [`Proxy::stop`] ends it within a read timeout or so.
pub struct Proxy {
    running: Arc<AtomicBool>,
    supervisor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts proxying between `pos` and `printer`, copying POS bytes to `tap` after
    /// what could go was written to the printer. Ports are opened (and reopened) by the
    /// proxy's thread. Without `gate`, bytes pass through unchanged and never wait.
    pub fn start<T: From<TapEvent> + Send + 'static>(
        pos: PortSpec,
        printer: PortSpec,
        tap: Sender<T>,
        gate: Option<CouponGate>,
    ) -> std::io::Result<Proxy> {
        let running = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&running);
        let supervisor = std::thread::Builder::new()
            .name("pos-to-printer".into())
            .spawn(move || {
                let mut link = Link {
                    tap: Some(tap),
                    gating: gate.map(Gating::new),
                };
                supervise(pos, printer, &mut link, flag)
            })?;
        Ok(Proxy {
            running,
            supervisor: Some(supervisor),
        })
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some(handle) = self.supervisor.take() {
            if handle.join().is_err() {
                tracing::error!("proxy thread panicked");
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The gate and the cuts it holds, kept across sessions.
struct Gating {
    gate: CutGate,
    decisions: Receiver<CutDecision>,
    /// Held cuts not yet released, in stream order.
    held: VecDeque<CutId>,
    /// The till core dropped its end: cuts pass without waiting.
    decider_gone: bool,
}

impl Gating {
    fn new(gate: CouponGate) -> Self {
        Self {
            gate: CutGate::new(gate.budget),
            decisions: gate.decisions,
            held: VecDeque::new(),
            decider_gone: false,
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> GateOutput {
        let out = self.gate.feed(bytes, Instant::now());
        self.held.extend(out.held_cuts.iter().copied());
        out
    }

    /// Waits for one decision (or the earliest deadline) and applies it.
    fn wait_for_decision(&mut self) -> GateOutput {
        let Some(deadline) = self.gate.poll_timeout() else {
            return GateOutput::default();
        };
        if self.decider_gone {
            return self.release_undecided();
        }
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(WAIT_SLICE);
        match self.decisions.recv_timeout(wait) {
            Ok((offset, block)) => self.apply(offset, block),
            Err(RecvTimeoutError::Timeout) => self.gate.handle_timeout(Instant::now()),
            Err(RecvTimeoutError::Disconnected) => {
                tracing::error!("proxy: the till core is gone; cuts pass without coupons");
                self.decider_gone = true;
                self.release_undecided()
            }
        }
    }

    fn apply(&mut self, offset: u64, block: Option<Vec<u8>>) -> GateOutput {
        let Some(cut) = self.held.iter().find(|c| c.offset() == offset).copied() else {
            // Its cut already left (timed out): the till core hears so through the tap.
            tracing::debug!("proxy: decision for the cut at {offset} came after its release");
            return GateOutput::default();
        };
        let out = self.gate.on_decision(cut, block, Instant::now());
        if let Some(rejected) = &out.rejected {
            tracing::debug!("proxy: decision not applied: {rejected:?}");
        }
        out
    }

    /// Releases every held cut without a coupon, at once.
    fn release_undecided(&mut self) -> GateOutput {
        let mut all = GateOutput::default();
        let now = Instant::now();
        for cut in self.held.clone() {
            let out = self.gate.on_decision(cut, None, now);
            all.forward.extend_from_slice(&out.forward);
            all.released.extend(out.released);
        }
        all
    }

    fn forget_released(&mut self, out: &GateOutput) {
        for released in &out.released {
            self.held.retain(|c| *c != released.cut);
        }
    }
}

/// Where the POS → printer thread reports, and its gate.
struct Link<T> {
    tap: Option<Sender<T>>,
    gating: Option<Gating>,
}

impl<T: From<TapEvent>> Link<T> {
    fn send(&mut self, event: TapEvent) {
        if let Some(sender) = &self.tap {
            if sender.send(T::from(event)).is_err() {
                // The receipt reader is gone; printing goes on without it.
                tracing::error!("proxy: receipt tap closed; printing continues without capture");
                self.tap = None;
            }
        }
    }

    fn report_released(&mut self, out: &GateOutput) {
        if let Some(gating) = &mut self.gating {
            gating.forget_released(out);
        }
        for released in &out.released {
            self.send(TapEvent::CutReleased {
                offset: released.cut.offset(),
                outcome: released.outcome,
            });
        }
    }
}

fn supervise<T: From<TapEvent>>(
    pos_spec: PortSpec,
    printer_spec: PortSpec,
    link: &mut Link<T>,
    running: Arc<AtomicBool>,
) {
    let keep_going = || running.load(Ordering::SeqCst);
    // POS bytes the gate let go but the printer did not take; written first after a
    // reopen.
    let mut unsent: Vec<u8> = Vec::new();
    let mut attempt = 0u32;
    while keep_going() {
        let ports = pos_spec
            .open()
            .and_then(|pos| Ok((pos, printer_spec.open()?)));
        let (pos, printer) = match ports {
            Ok(ports) => ports,
            Err(e) => {
                if attempt == 0 {
                    tracing::error!("proxy: {e}; retrying");
                } else {
                    tracing::debug!("proxy: {e}; retrying");
                }
                reopen_backoff(attempt, &keep_going);
                attempt = attempt.saturating_add(1);
                continue;
            }
        };
        tracing::info!("proxy: {} -> {}", pos.name(), printer.name());
        match run_session(pos, printer, &mut unsent, link, &running) {
            Ok(()) => {
                attempt = 0;
            }
            Err(e) => {
                tracing::warn!("proxy: {e}; reopening");
                reopen_backoff(attempt, &keep_going);
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// Runs one session until a device goes away (`Err`) or `running` turns false (`Ok`).
fn run_session<T: From<TapEvent>>(
    mut pos: Box<dyn Port>,
    mut printer: Box<dyn Port>,
    unsent: &mut Vec<u8>,
    link: &mut Link<T>,
    running: &Arc<AtomicBool>,
) -> Result<(), PortError> {
    let session_over = Arc::new(AtomicBool::new(false));
    let clone_err = |port: &dyn Port, source| PortError::Io {
        port: port.name().to_string(),
        source,
    };
    let printer_reader = printer
        .try_clone_port()
        .map_err(|e| clone_err(printer.as_ref(), e))?;
    let pos_writer = pos
        .try_clone_port()
        .map_err(|e| clone_err(pos.as_ref(), e))?;
    let replies = {
        let running = Arc::clone(running);
        let session_over = Arc::clone(&session_over);
        std::thread::Builder::new()
            .name("printer-to-pos".into())
            .spawn(move || {
                let result = relay_replies(printer_reader, pos_writer, &running, &session_over);
                session_over.store(true, Ordering::SeqCst);
                result
            })
            .map_err(|e| clone_err(pos.as_ref(), e))?
    };

    let keep_going = || running.load(Ordering::SeqCst) && !session_over.load(Ordering::SeqCst);
    let result = (|| {
        if !unsent.is_empty() {
            let bytes = std::mem::take(unsent);
            write_out(printer.as_mut(), &bytes, unsent, &keep_going)?;
        }
        let mut buf = vec![0u8; CHUNK];
        while keep_going() {
            if let Some(gating) = link.gating.as_mut().filter(|g| g.gate.is_holding_cut()) {
                let out = gating.wait_for_decision();
                let written = write_out(printer.as_mut(), &out.forward, unsent, &keep_going);
                link.report_released(&out);
                written?;
                continue;
            }
            let Some(n) = pos.read_chunk(&mut buf)? else {
                continue;
            };
            let chunk = &buf[..n];
            let (written, out) = match link.gating.as_mut() {
                Some(gating) => {
                    let out = gating.feed(chunk);
                    let written = write_out(printer.as_mut(), &out.forward, unsent, &keep_going);
                    (written, Some(out))
                }
                None => (
                    write_out(printer.as_mut(), chunk, unsent, &keep_going),
                    None,
                ),
            };
            // Tapped after the write: the till core sees a cut only once it is held (so
            // its decision has somewhere to go) and the bytes before it are printing.
            link.send(TapEvent::Bytes(chunk.to_vec()));
            if let Some(out) = out {
                link.report_released(&out);
            }
            written?;
        }
        Ok(())
    })();
    session_over.store(true, Ordering::SeqCst);
    // What the gate still holds goes out unchanged (decided blocks included), behind
    // anything the printer did not take yet.
    if let Some(gating) = link.gating.as_mut() {
        let out = gating.gate.release_all();
        if unsent.is_empty() {
            let grace = Instant::now() + FLUSH_GRACE;
            let in_grace = || Instant::now() < grace;
            if let Err(e) = write_out(printer.as_mut(), &out.forward, unsent, &in_grace) {
                tracing::debug!("proxy: held bytes wait for the next session: {e}");
            }
        } else {
            unsent.extend_from_slice(&out.forward);
        }
        link.report_released(&out);
    }
    let replies_result = replies.join().unwrap_or_else(|_| {
        Err(PortError::Gone {
            port: printer.name().to_string(),
            reason: "reply thread panicked".into(),
        })
    });
    if !running.load(Ordering::SeqCst) {
        // Stopping: whatever interrupted the session is not a device problem.
        return Ok(());
    }
    result?;
    // The POS side ran until the reply side ended the session: report why.
    replies_result?;
    Ok(())
}

/// Writes bytes to the printer. What the printer did not take goes to `unsent` for the
/// next session.
fn write_out(
    printer: &mut dyn Port,
    bytes: &[u8],
    unsent: &mut Vec<u8>,
    keep_going: &dyn Fn() -> bool,
) -> Result<(), PortError> {
    if bytes.is_empty() {
        return Ok(());
    }
    write_fully(printer, bytes, keep_going).map_err(|(written, e)| {
        unsent.extend_from_slice(&bytes[written..]);
        e
    })
}

fn relay_replies(
    mut printer: Box<dyn Port>,
    mut pos: Box<dyn Port>,
    running: &AtomicBool,
    session_over: &AtomicBool,
) -> Result<(), PortError> {
    let keep_going = || running.load(Ordering::SeqCst) && !session_over.load(Ordering::SeqCst);
    let mut buf = vec![0u8; CHUNK];
    while keep_going() {
        let Some(n) = printer.read_chunk(&mut buf)? else {
            continue;
        };
        write_fully(pos.as_mut(), &buf[..n], &keep_going).map_err(|(_, e)| e)?;
    }
    Ok(())
}
