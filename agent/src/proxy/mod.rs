//! The POS ↔ printer pass-through (DESIGN.md principle 1: the till never waits for us).
//!
//! Two sides that live and reconnect independently, each on its own OS thread:
//!
//! - The POS side (`pos-to-printer`) owns the POS port: it reads the POS, runs the
//!   coupon gate, puts what may leave into the outbox for the printer, then hands a copy
//!   to the tap. When the POS port goes away it is reopened (with backoff, one log line
//!   per outage) while the printer side carries on.
//! - The printer side (`printer`) owns the printer port: it writes the outbox to the
//!   printer and, on a `printer-to-pos` thread per connection, relays the printer's
//!   status replies (DLE EOT, GS r, GS a) back to the POS unchanged. When the printer
//!   goes away it is reopened while the POS side carries on.
//!
//! When the outbox is empty and the printer side is not writing, the POS side writes a
//! chunk to the printer itself (one write attempt; what it does not take goes to the
//! outbox), so a chunk costs no thread hop in the common case.
//!
//! No parsing, no journal, no async on this path: the tap is an unbounded channel, so a
//! slow or dead consumer never holds up a byte.
//!
//! An absent printer: POS bytes are held in the outbox, in order, up to
//! [`HELD_LIMIT`] (bytes beyond it are refused with an error log; see `outbox`), and are
//! printed first once it is back, before anything newer. Bytes a write did not get
//! through go back to the front. Meanwhile the POS's real-time status requests
//! (`DLE EOT n`, also the ink and peeler forms `DLE EOT 7/8 a`) are answered at once as
//! an off-line printer answers them (see [`realtime::offline_status`]), so the POS knows;
//! `DLE ENQ n` is recognised and, as by a real printer, not answered. "Absent" means an open failed or the
//! printer went away; before the first attempt has ended requests simply wait for the
//! printer like other bytes. The requests stay in the held bytes
//! (byte-exact delivery), so the printer answers them too once it is back.
//! A TCP printer that closes the connection can lose bytes written in the instant before
//! the close is seen; a tty or device file reports such writes as failed, so nothing is
//! lost there.
//!
//! With a [`CouponGate`], the POS side runs a [`CutGate`](crate::escpos::gate::CutGate):
//! a receipt's cut waits at most the budget for the till core's coupon decision, which
//! arrives on the gate's `decisions` channel as `(cut offset, block)`. Bytes before a
//! cut still leave at once. While a cut is held the POS side waits on that channel, not
//! on the POS: bytes the POS sends meanwhile stay in the kernel buffer for at most the
//! budget. A till core that is gone (channel closed) cannot hold anything up: its cuts
//! pass at once. The gate lives as long as the proxy, so its stream offsets stay those
//! of the till core's parser, which sees every POS byte exactly once through the tap.
//! On stop, what the gate holds is released unchanged and the printer side gets a short
//! grace to print it. Notices from the till core (a refused coupon code) are handed to
//! the gate, which writes each whole right after a cut or while the POS is idle between
//! receipts; the POS side looks for them at least every read timeout.

mod gating;
mod outbox;
mod pos_side;
mod printer_side;
pub mod realtime;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::escpos::gate::{CutOutcome, GateOutput};
use crate::ports::{Port, PortSpec};

pub use outbox::HELD_LIMIT;

use gating::Gating;
use outbox::Outbox;

const CHUNK: usize = 4096;

/// What the proxy tells the till core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapEvent {
    /// POS bytes, each exactly once and in order, as they arrived (after the bytes that
    /// could leave were handed to the printer side).
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
    /// Notices for the cashier (ESC/POS bytes), printed whole at the next point where
    /// nothing is mid-receipt (see `CutGate::queue_notice`).
    pub notices: Option<Receiver<Vec<u8>>>,
}

/// What the two sides share.
struct Shared {
    /// POS bytes for the printer.
    outbox: Outbox,
    /// The printer side has an open printer.
    printer_online: AtomicBool,
    /// The printer side tried and found no printer (not merely "not connected yet"):
    /// only then does the POS side answer status requests for it.
    printer_absent: AtomicBool,
    /// The open printer's writer. Whoever writes holds this lock from taking bytes out
    /// of the outbox until they are written, so bytes never overtake each other.
    printer_writer: Mutex<Option<Box<dyn Port>>>,
    /// Where printer replies and off-line answers go; `None` while the POS is away.
    pos_writer: Mutex<Option<Box<dyn Port>>>,
    /// The POS side stopped and put everything it had into the outbox.
    pos_finished: AtomicBool,
    /// The proxy should stop.
    running: AtomicBool,
}

impl Shared {
    fn running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    fn printer_online(&self) -> bool {
        self.printer_online.load(Ordering::SeqCst)
    }

    fn printer_writer(&self) -> MutexGuard<'_, Option<Box<dyn Port>>> {
        self.printer_writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn pos_writer(&self) -> MutexGuard<'_, Option<Box<dyn Port>>> {
        self.pos_writer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running proxy; [`Proxy::stop`] ends it within a read timeout or so.
pub struct Proxy {
    shared: Arc<Shared>,
    pos_side: Option<JoinHandle<()>>,
    printer_side: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Whether the POS port is open now.
    pub fn pos_open(&self) -> bool {
        self.shared.pos_writer().is_some()
    }

    /// Whether the printer is open (online) now.
    pub fn printer_open(&self) -> bool {
        self.shared.printer_online()
    }

    /// Starts proxying between `pos` and `printer`, copying POS bytes to `tap` after
    /// what could go was handed to the printer side. Ports are opened (and reopened) by
    /// the proxy's threads. Without `gate`, bytes pass through unchanged and never wait.
    pub fn start<T: From<TapEvent> + Send + 'static>(
        pos: PortSpec,
        printer: PortSpec,
        tap: Sender<T>,
        gate: Option<CouponGate>,
    ) -> std::io::Result<Proxy> {
        let shared = Arc::new(Shared {
            outbox: Outbox::new(HELD_LIMIT),
            printer_online: AtomicBool::new(false),
            printer_absent: AtomicBool::new(false),
            printer_writer: Mutex::new(None),
            pos_writer: Mutex::new(None),
            pos_finished: AtomicBool::new(false),
            running: AtomicBool::new(true),
        });
        let printer_side = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new().name("printer".into()).spawn(
                crate::runtime::in_current_span(move || printer_side::run(printer, &shared)),
            )?
        };
        let pos_side = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("pos-to-printer".into())
                .spawn(crate::runtime::in_current_span(move || {
                    let mut link = Link {
                        tap: Some(tap),
                        gating: gate.map(Gating::new),
                    };
                    pos_side::run(pos, &mut link, &shared);
                }))
        };
        let pos_side = match pos_side {
            Ok(handle) => handle,
            Err(e) => {
                shared.pos_finished.store(true, Ordering::SeqCst);
                shared.running.store(false, Ordering::SeqCst);
                let _ = printer_side.join();
                return Err(e);
            }
        };
        Ok(Proxy {
            shared,
            pos_side: Some(pos_side),
            printer_side: Some(printer_side),
        })
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.running.store(false, Ordering::SeqCst);
        self.shared.outbox.nudge();
        // The POS side first: it puts what its gate holds into the outbox, which the
        // printer side then gets a grace to print.
        for (handle, name) in [
            (self.pos_side.take(), "POS"),
            (self.printer_side.take(), "printer"),
        ] {
            if let Some(handle) = handle {
                if handle.join().is_err() {
                    tracing::error!("proxy: {name} side thread panicked");
                }
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Where the POS side reports, and its gate.
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
