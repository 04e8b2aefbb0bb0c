//! The cut gate (pure): holds a receipt's cut for at most a budget, so a coupon block can
//! be printed right before it (DESIGN.md principle 1: the till never waits for us).
//!
//! What is held, and why nothing else is:
//! - Bytes before a cut are forwarded by the same [`CutGate::feed`] call that received them.
//! - A chunk that ends in a command header that may still become a cut (`ESC`, `GS`,
//!   `GS V`, `GS V m` waiting for `n`) keeps those few bytes until the next byte tells.
//!   This costs the printer nothing: it cannot execute an incomplete command either.
//! - A complete cut command, and everything after it, waits for that cut's decision, at
//!   most `budget` after the cut arrived.
//!
//! Cuts are found by an internal [`EscPosParser`], so a `GS V` inside raster data, a
//! barcode, a 2D-code payload or any command argument is never taken for a cut.
//!
//! Several cuts: every cut is announced as soon as it arrives ([`GateOutput::held_cuts`])
//! and has its own deadline (arrival + budget). Decisions may come in any order; released
//! are always the cuts at the front of the stream, in order. A later cut cannot leave
//! before an earlier one, but its deadline is never earlier, so no byte waits longer than
//! `budget` after the cut that holds it arrived.
//!
//! Real-time status requests (`DLE EOT`, ...) behind a held cut wait with it, at most the
//! budget.
//!
//! Notices ([`CutGate::queue_notice`], e.g. "coupon refused" for the cashier) go out only
//! where nothing is mid-receipt: right after a released cut's command (before the next
//! receipt's first byte), or at once when the POS is idle at such a point (everything it
//! sent so far ends with a cut, or it has sent nothing yet). A notice is never split and
//! never lands inside a POS command or receipt.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::codepage::CodePage;
use super::commands::{Effect, COMMANDS};
use super::parser::{command_len, EscPosParser, PrintEvent};

/// How long a cut waits for its coupon decision by default.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(50);
/// Held POS bytes beyond this release everything unchanged, so a POS that streams a
/// large job right after a cut cannot make the agent grow without bound.
pub const DEFAULT_MAX_HELD_BYTES: usize = 1 << 20;

/// One cut the gate held: its place in the POS stream and its number in arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CutId {
    seq: u64,
    offset: u64,
    partial: bool,
}

impl CutId {
    /// 0 for the first cut the gate held, then 1, 2, ...
    pub fn seq(self) -> u64 {
        self.seq
    }

    /// Offset of the cut command's first byte in the POS stream (the bytes fed so far),
    /// the same as [`PrintEvent::Cut`]'s `offset` from a parser fed the same bytes.
    pub fn offset(self) -> u64 {
        self.offset
    }

    pub fn partial(self) -> bool {
        self.partial
    }
}

/// How a held cut was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutOutcome {
    /// The coupon block was written right before the cut.
    CouponPrinted,
    /// Decided in time without a block (no coupon for this receipt).
    Declined,
    /// No decision within the budget.
    TimedOut,
    /// Held bytes exceeded the cap; released without waiting for a decision.
    Overflow,
    /// Released by [`CutGate::release_all`] (the session ends) without a decision.
    Flushed,
}

/// A held cut that left the gate in this call, with everything before the next cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleasedCut {
    pub cut: CutId,
    pub outcome: CutOutcome,
}

/// Why [`CutGate::on_decision`] did not apply a decision. Its block, if any, is dropped:
/// a coupon is never printed late.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The cut's budget was over when the decision came.
    Late,
    /// The gate does not hold this cut (already released, or never held).
    Stale,
    /// The cut already has a decision.
    AlreadyDecided,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectedDecision {
    pub cut: CutId,
    pub reason: RejectReason,
    /// Whether a coupon block was dropped (worth logging: a coupon decided, not printed).
    pub dropped_block: bool,
}

/// What one call into the gate produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateOutput {
    /// Write these bytes to the printer now, in this order.
    pub forward: Vec<u8>,
    /// Cuts that arrived in this call and are now held, in stream order: ask for a coupon
    /// decision for each and answer with [`CutGate::on_decision`].
    pub held_cuts: Vec<CutId>,
    /// Held cuts released in this call, in stream order.
    pub released: Vec<ReleasedCut>,
    /// Set by [`CutGate::on_decision`] when the decision was not applied.
    pub rejected: Option<RejectedDecision>,
    /// Queued notices written in this call (whole, in `forward`).
    pub notices: usize,
}

#[derive(Debug)]
enum Decision {
    Pending,
    Made {
        block: Option<Vec<u8>>,
        outcome: CutOutcome,
    },
}

#[derive(Debug)]
struct HeldCut {
    id: CutId,
    deadline: Instant,
    decision: Decision,
}

/// Holds cuts in an ESC/POS byte stream until their coupon decision (or the budget) and
/// inserts the decided coupon blocks right before them. Sans-IO: the caller passes bytes,
/// decisions and `now`, and writes [`GateOutput::forward`] to the printer.
#[derive(Debug)]
pub struct CutGate {
    budget: Duration,
    max_held_bytes: usize,
    parser: EscPosParser,
    /// POS bytes not yet forwarded: stream offsets `forwarded_to .. parser.offset()`.
    unforwarded: Vec<u8>,
    forwarded_to: u64,
    /// Held cuts in stream order; the front one, if any, is always undecided.
    cuts: VecDeque<HeldCut>,
    next_seq: u64,
    /// Notices waiting for a point where nothing is mid-receipt.
    notices: VecDeque<Vec<u8>>,
    /// Stream offset right after the last released cut command (0: the stream start).
    boundary: u64,
}

impl CutGate {
    pub fn new(budget: Duration) -> Self {
        Self {
            budget,
            max_held_bytes: DEFAULT_MAX_HELD_BYTES,
            // The code page only affects decoded text, which the gate does not use.
            parser: EscPosParser::new(CodePage::Cp437),
            unforwarded: Vec::new(),
            forwarded_to: 0,
            cuts: VecDeque::new(),
            next_seq: 0,
            notices: VecDeque::new(),
            boundary: 0,
        }
    }

    /// Queues a notice for the printer: written at once if the POS is idle between
    /// receipts, else right after the next cut that leaves the gate.
    pub fn queue_notice(&mut self, notice: Vec<u8>) -> GateOutput {
        let mut out = GateOutput::default();
        if !notice.is_empty() {
            self.notices.push_back(notice);
        }
        self.flush(&mut out);
        out
    }

    /// Notices queued and not yet written.
    pub fn pending_notices(&self) -> usize {
        self.notices.len()
    }

    /// Caps the POS bytes held behind cuts (default [`DEFAULT_MAX_HELD_BYTES`]).
    pub fn with_max_held_bytes(mut self, max: usize) -> Self {
        self.max_held_bytes = max;
        self
    }

    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// POS bytes the gate holds now (behind a cut, or an incomplete command that may be one).
    pub fn held_bytes(&self) -> usize {
        self.unforwarded.len()
    }

    /// Whether a cut is waiting for its decision.
    pub fn is_holding_cut(&self) -> bool {
        !self.cuts.is_empty()
    }

    /// POS bytes as they arrive, split anywhere. Releases cuts whose budget is over first.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) -> GateOutput {
        let mut out = GateOutput::default();
        self.parser.feed(bytes);
        self.unforwarded.extend_from_slice(bytes);
        while let Some(event) = self.parser.poll() {
            if let PrintEvent::Cut { offset, partial } = event {
                self.hold(offset, partial, now, &mut out);
            }
        }
        self.expire(now);
        self.flush(&mut out);
        if self.unforwarded.len() > self.max_held_bytes {
            self.decide_all_pending(CutOutcome::Overflow);
            self.flush(&mut out);
        }
        out
    }

    /// The coupon decision for `cut`: `Some(block)` prints `block` right before the cut if
    /// the cut's budget is not over; `None` releases the cut without a coupon.
    pub fn on_decision(&mut self, cut: CutId, block: Option<Vec<u8>>, now: Instant) -> GateOutput {
        let mut out = GateOutput::default();
        let block = block.filter(|b| !b.is_empty());
        let reject = |reason| RejectedDecision {
            cut,
            reason,
            dropped_block: block.is_some(),
        };
        match self.cuts.iter_mut().find(|held| held.id == cut) {
            None => out.rejected = Some(reject(RejectReason::Stale)),
            Some(held) if now >= held.deadline => out.rejected = Some(reject(RejectReason::Late)),
            Some(HeldCut {
                decision: Decision::Made { .. },
                ..
            }) => out.rejected = Some(reject(RejectReason::AlreadyDecided)),
            Some(held) => {
                let outcome = if block.is_some() {
                    CutOutcome::CouponPrinted
                } else {
                    CutOutcome::Declined
                };
                held.decision = Decision::Made { block, outcome };
            }
        }
        self.expire(now);
        self.flush(&mut out);
        out
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next: the earliest
    /// deadline of an undecided cut. `None` while no cut is held.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.cuts
            .iter()
            .filter(|held| matches!(held.decision, Decision::Pending))
            .map(|held| held.deadline)
            .min()
    }

    /// Releases every cut whose budget is over (no coupon) and the bytes behind it.
    pub fn handle_timeout(&mut self, now: Instant) -> GateOutput {
        let mut out = GateOutput::default();
        self.expire(now);
        self.flush(&mut out);
        out
    }

    /// Releases everything held, unchanged and without waiting (the POS or printer session
    /// ends). Decided coupon blocks are still printed. A cut completed later by bytes
    /// released here passes through ungated.
    pub fn release_all(&mut self) -> GateOutput {
        let mut out = GateOutput::default();
        self.decide_all_pending(CutOutcome::Flushed);
        self.flush(&mut out);
        let rest = self.unforwarded.len();
        self.forward_front(rest, &mut out);
        out
    }

    fn hold(&mut self, offset: u64, partial: bool, now: Instant, out: &mut GateOutput) {
        if offset < self.forwarded_to {
            // Its first bytes were already written (only after release_all): nothing can
            // go before it any more, so it passes through like any other byte.
            return;
        }
        let id = CutId {
            seq: self.next_seq,
            offset,
            partial,
        };
        self.next_seq += 1;
        // A budget too large for the clock would hold forever: release at once instead.
        let deadline = now.checked_add(self.budget).unwrap_or(now);
        self.cuts.push_back(HeldCut {
            id,
            deadline,
            decision: Decision::Pending,
        });
        out.held_cuts.push(id);
    }

    fn expire(&mut self, now: Instant) {
        for held in &mut self.cuts {
            if matches!(held.decision, Decision::Pending) && now >= held.deadline {
                held.decision = Decision::Made {
                    block: None,
                    outcome: CutOutcome::TimedOut,
                };
            }
        }
    }

    fn decide_all_pending(&mut self, outcome: CutOutcome) {
        for held in &mut self.cuts {
            if matches!(held.decision, Decision::Pending) {
                held.decision = Decision::Made {
                    block: None,
                    outcome,
                };
            }
        }
    }

    /// Forwards everything that may go: up to the first undecided cut, inserting the
    /// blocks of decided cuts before them; with no cut held, all but a trailing header
    /// that may still become a cut.
    fn flush(&mut self, out: &mut GateOutput) {
        loop {
            let limit = match self.cuts.front() {
                Some(held) => held.id.offset,
                None => self.parser.offset() - self.trailing_cut_prefix_len() as u64,
            };
            let count = limit.saturating_sub(self.forwarded_to);
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            self.forward_front(count, out);
            let Some(front) = self.cuts.front() else {
                // Idle right after a cut (or before any byte): a safe point.
                if self.forwarded_to == self.parser.offset() && self.forwarded_to == self.boundary {
                    self.write_notices(out);
                }
                return;
            };
            if matches!(front.decision, Decision::Pending) {
                return;
            }
            let Some(held) = self.cuts.pop_front() else {
                return;
            };
            if let Decision::Made { block, outcome } = held.decision {
                if let Some(block) = block {
                    out.forward.extend_from_slice(&block);
                }
                out.released.push(ReleasedCut {
                    cut: held.id,
                    outcome,
                });
                if !self.notices.is_empty() {
                    // The cut command itself, then the notices: after the receipt, before
                    // whatever the POS sends next.
                    let cut_len = command_len(&self.unforwarded).unwrap_or(0);
                    self.forward_front(cut_len, out);
                    self.boundary = self.forwarded_to;
                    self.write_notices(out);
                } else {
                    self.boundary =
                        held.id.offset + command_len(&self.unforwarded).unwrap_or(0) as u64;
                }
            }
        }
    }

    fn write_notices(&mut self, out: &mut GateOutput) {
        for notice in self.notices.drain(..) {
            out.forward.extend_from_slice(&notice);
            out.notices += 1;
        }
    }

    /// Moves up to `count` bytes from the front of `unforwarded` to `out.forward`.
    fn forward_front(&mut self, count: usize, out: &mut GateOutput) {
        let count = count.min(self.unforwarded.len());
        if count == 0 {
            return;
        }
        if count == self.unforwarded.len() && out.forward.is_empty() {
            // The common case, a chunk without a cut: hand over the buffer, no copy.
            out.forward = std::mem::take(&mut self.unforwarded);
        } else {
            out.forward.extend(self.unforwarded.drain(..count));
        }
        self.forwarded_to += count as u64;
    }

    /// How many bytes at the end of the stream the parser keeps as an incomplete command
    /// header that may still turn out to be a cut (0 if none, or if it cannot be one).
    fn trailing_cut_prefix_len(&self) -> usize {
        let pending = self.parser.buffered_len();
        if pending == 0 || pending > self.unforwarded.len() {
            // Its start is already forwarded, so it was not a possible cut.
            return 0;
        }
        let tail = &self.unforwarded[self.unforwarded.len() - pending..];
        if could_start_cut(tail) {
            pending
        } else {
            0
        }
    }
}

/// Whether an incomplete command header may still become a cut, per the command table.
/// (Inside multi-record data the parser may also keep a few bytes that only look like a
/// header; holding them costs nothing, the printer waits for the rest of that data too.)
fn could_start_cut(header: &[u8]) -> bool {
    let Some((&prefix, rest)) = header.split_first() else {
        return false;
    };
    COMMANDS
        .iter()
        .filter(|command| {
            command.prefix == prefix
                && matches!(command.effect, Effect::Cut { .. } | Effect::CutByMode)
        })
        .any(|command| {
            let n = command.code.len().min(rest.len());
            command.code[..n] == rest[..n]
        })
}

#[cfg(test)]
mod tests {
    use super::could_start_cut;

    #[test]
    fn cut_prefixes_come_from_the_command_table() {
        for header in [&b"\x1b"[..], b"\x1d", b"\x1dV", b"\x1dVA", b"\x1dVf"] {
            assert!(could_start_cut(header), "{header:?}");
        }
        for header in [
            &b""[..],
            b"\x1b(",
            b"\x1bc",
            b"\x1d(",
            b"\x1d(k",
            b"\x10",
            b"\x1c",
        ] {
            assert!(!could_start_cut(header), "{header:?}");
        }
    }
}
