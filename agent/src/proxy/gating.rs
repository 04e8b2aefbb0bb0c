//! The coupon gate as the POS side runs it: cuts held for the till core's decisions.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use crate::escpos::gate::{CutGate, CutId, GateOutput};

use super::{CouponGate, CutDecision};

/// Longest single wait for a decision, so a stop is seen promptly whatever the budget.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// The gate and the cuts it holds, kept for the whole life of the proxy (POS and
/// printer reconnects included), so its stream offsets stay those of the till core's
/// parser.
pub(super) struct Gating {
    pub(super) gate: CutGate,
    decisions: Receiver<CutDecision>,
    notices: Option<Receiver<Vec<u8>>>,
    /// Held cuts not yet released, in stream order.
    held: VecDeque<CutId>,
    /// The till core dropped its end: cuts pass without waiting.
    decider_gone: bool,
}

impl Gating {
    pub(super) fn new(gate: CouponGate) -> Self {
        Self {
            gate: CutGate::new(gate.budget),
            decisions: gate.decisions,
            notices: gate.notices,
            held: VecDeque::new(),
            decider_gone: false,
        }
    }

    /// Hands the notices that arrived to the gate; what it may write now is returned.
    pub(super) fn take_notices(&mut self) -> GateOutput {
        let mut all = GateOutput::default();
        let Some(notices) = &self.notices else {
            return all;
        };
        let mut closed = false;
        loop {
            match notices.try_recv() {
                Ok(notice) => {
                    let out = self.gate.queue_notice(notice);
                    all.forward.extend_from_slice(&out.forward);
                    all.notices += out.notices;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            self.notices = None;
        }
        all
    }

    pub(super) fn feed(&mut self, bytes: &[u8]) -> GateOutput {
        let out = self.gate.feed(bytes, Instant::now());
        self.held.extend(out.held_cuts.iter().copied());
        out
    }

    /// Waits for one decision (or the earliest deadline) and applies it.
    pub(super) fn wait_for_decision(&mut self) -> GateOutput {
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

    pub(super) fn forget_released(&mut self, out: &GateOutput) {
        for released in &out.released {
            self.held.retain(|c| *c != released.cut);
        }
    }
}
