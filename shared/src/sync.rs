//! The sync protocol as two state machines over messages (no sockets, no clocks).
//!
//! Agent side ([`UplinkSession`]): send `Hello`, wait for `Welcome { acked_seq }`, then
//! stream journal events after `acked_seq` in batches with at most `window` events
//! unacknowledged; every `Ack` lets the journal compact. A reconnect starts a new
//! session from the hub's `acked_seq`, so nothing is skipped and nothing is resent twice
//! into the hub's commit (the hub drops seqs at or below its high-water mark).
//!
//! Hub side ([`plan_ingest`]): given the stored high-water mark and a batch, which
//! events are new, which are replays, and whether the batch leaves a gap.

use thiserror::Error;

use crate::event::{AgentId, Event};
use crate::wire::{Message, Refusal};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SyncError {
    #[error("unexpected {got} message while {state}")]
    Unexpected {
        got: &'static str,
        state: &'static str,
    },
    #[error("hub acknowledged seq {acked} but only {sent} was sent")]
    AckBeyondSent { acked: u64, sent: u64 },
    #[error("hub acknowledged seq {acked}, below its earlier acknowledgement {previous}")]
    AckWentBack { acked: u64, previous: u64 },
    #[error("hub says it has seq {hub} but this journal only reached {journal}: journal lost data or the till was re-provisioned")]
    HubAhead { hub: u64, journal: u64 },
    #[error("hub refused: {reason:?}: {detail}")]
    Refused { reason: Refusal, detail: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingWelcome,
    Streaming,
}

/// What the uplink should do after handling a hub message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkEvent {
    /// The hub has committed everything up to this seq: the journal may compact it.
    Acked(u64),
}

/// The agent's half of one connection.
#[derive(Debug, Clone)]
pub struct UplinkSession {
    agent: AgentId,
    phase: Phase,
    acked: u64,
    sent: u64,
    journal_last: u64,
    window: u64,
    max_batch: usize,
}

impl UplinkSession {
    /// `journal_last` is the highest seq in the journal now; `window` bounds the
    /// unacknowledged events in flight and `max_batch` the events per frame.
    pub fn new(agent: AgentId, journal_last: u64, window: u64, max_batch: usize) -> Self {
        Self {
            agent,
            phase: Phase::AwaitingWelcome,
            acked: 0,
            sent: 0,
            journal_last,
            window: window.max(1),
            max_batch: max_batch.max(1),
        }
    }

    pub fn hello(&self, software: &str) -> Message {
        Message::Hello {
            agent: self.agent.clone(),
            journal_last_seq: self.journal_last,
            software: software.to_string(),
        }
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn is_streaming(&self) -> bool {
        self.phase == Phase::Streaming
    }

    /// The journal grew (new events were committed locally).
    pub fn journal_advanced(&mut self, journal_last: u64) {
        self.journal_last = self.journal_last.max(journal_last);
    }

    pub fn handle(&mut self, msg: Message) -> Result<Option<UplinkEvent>, SyncError> {
        match (self.phase, msg) {
            (_, Message::Refused { reason, detail }) => Err(SyncError::Refused { reason, detail }),
            (Phase::AwaitingWelcome, Message::Welcome { acked_seq }) => {
                if acked_seq > self.journal_last {
                    return Err(SyncError::HubAhead {
                        hub: acked_seq,
                        journal: self.journal_last,
                    });
                }
                self.phase = Phase::Streaming;
                self.acked = acked_seq;
                self.sent = acked_seq;
                Ok(Some(UplinkEvent::Acked(acked_seq)))
            }
            (Phase::Streaming, Message::Ack { acked_seq }) => {
                if acked_seq > self.sent {
                    return Err(SyncError::AckBeyondSent {
                        acked: acked_seq,
                        sent: self.sent,
                    });
                }
                if acked_seq < self.acked {
                    return Err(SyncError::AckWentBack {
                        acked: acked_seq,
                        previous: self.acked,
                    });
                }
                self.acked = acked_seq;
                Ok(Some(UplinkEvent::Acked(acked_seq)))
            }
            (phase, other) => Err(SyncError::Unexpected {
                got: other.name(),
                state: match phase {
                    Phase::AwaitingWelcome => "awaiting welcome",
                    Phase::Streaming => "streaming",
                },
            }),
        }
    }

    /// The next range of seqs to read from the journal and send, as
    /// `(first_seq, max_count)`, or `None` when there is nothing to send or the window
    /// is full.
    pub fn poll_batch(&self) -> Option<(u64, usize)> {
        if self.phase != Phase::Streaming || self.sent >= self.journal_last {
            return None;
        }
        let in_flight = self.sent - self.acked;
        if in_flight >= self.window {
            return None;
        }
        let room = (self.window - in_flight).min(self.journal_last - self.sent);
        Some((self.sent + 1, (room as usize).min(self.max_batch)))
    }

    /// Records that events up to `last_seq` were written to the connection.
    pub fn on_sent(&mut self, last_seq: u64) {
        self.sent = self.sent.max(last_seq);
    }
}

/// How the hub should treat one incoming batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestPlan {
    /// Index into the batch of the first event to merge; events before it are replays.
    pub first_new: usize,
    /// The agent's high-water mark after this batch commits.
    pub new_high_water: u64,
}

/// Checks a batch against the agent's stored high-water mark: events must be in seq
/// order without gaps and all belong to `agent`. Replayed events (seq ≤ high water)
/// are skipped, which makes a resend after a lost ack a no-op.
pub fn plan_ingest(
    agent: &AgentId,
    high_water: u64,
    batch: &[Event],
) -> Result<IngestPlan, (Refusal, String)> {
    let mut expected = None::<u64>;
    let mut first_new = batch.len();
    for (i, ev) in batch.iter().enumerate() {
        if &ev.agent != agent {
            return Err((
                Refusal::IdentityMismatch,
                format!(
                    "event seq {} claims agent {}, certificate says {}",
                    ev.seq, ev.agent, agent
                ),
            ));
        }
        if let Some(exp) = expected {
            if ev.seq != exp {
                return Err((
                    Refusal::SequenceGap,
                    format!("batch jumps to seq {} where {} was expected", ev.seq, exp),
                ));
            }
        }
        expected = Some(ev.seq + 1);
        if ev.seq > high_water && first_new == batch.len() {
            if ev.seq != high_water + 1 {
                return Err((
                    Refusal::SequenceGap,
                    format!(
                        "seq {} does not follow the committed seq {}",
                        ev.seq, high_water
                    ),
                ));
            }
            first_new = i;
        }
    }
    let new_high_water = batch.last().map_or(high_water, |e| e.seq.max(high_water));
    Ok(IngestPlan {
        first_new,
        new_high_water,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::CardNumber;
    use crate::event::EventKind;
    use crate::time::Timestamp;

    fn agent() -> AgentId {
        AgentId::new("S001", "T01")
    }

    fn ev(seq: u64) -> Event {
        Event {
            agent: agent(),
            seq,
            recorded_at: Timestamp::from_unix_ms(seq as i64, 0),
            kind: EventKind::CardScanned {
                card: CardNumber::parse("4006381333931").unwrap(),
            },
        }
    }

    #[test]
    fn streams_from_welcome_within_window() {
        let mut s = UplinkSession::new(agent(), 10, 4, 3);
        assert_eq!(s.poll_batch(), None, "nothing before welcome");
        assert_eq!(
            s.handle(Message::Welcome { acked_seq: 2 }),
            Ok(Some(UplinkEvent::Acked(2)))
        );
        assert_eq!(s.poll_batch(), Some((3, 3)));
        s.on_sent(5);
        assert_eq!(
            s.poll_batch(),
            Some((6, 1)),
            "window of 4 leaves room for one"
        );
        s.on_sent(6);
        assert_eq!(s.poll_batch(), None, "window full");
        assert_eq!(
            s.handle(Message::Ack { acked_seq: 6 }),
            Ok(Some(UplinkEvent::Acked(6)))
        );
        assert_eq!(s.poll_batch(), Some((7, 3)));
        s.on_sent(10);
        assert_eq!(s.poll_batch(), None, "journal drained");
        s.journal_advanced(11);
        assert_eq!(s.poll_batch(), None, "window: 7..=10 in flight");
    }

    #[test]
    fn refuses_impossible_acks() {
        let mut s = UplinkSession::new(agent(), 5, 10, 10);
        assert!(matches!(
            s.handle(Message::Ack { acked_seq: 1 }),
            Err(SyncError::Unexpected { .. })
        ));
        let mut s = UplinkSession::new(agent(), 5, 10, 10);
        assert!(matches!(
            s.handle(Message::Welcome { acked_seq: 9 }),
            Err(SyncError::HubAhead { .. })
        ));
        let mut s = UplinkSession::new(agent(), 5, 10, 10);
        s.handle(Message::Welcome { acked_seq: 3 }).unwrap();
        s.on_sent(5);
        assert!(matches!(
            s.handle(Message::Ack { acked_seq: 6 }),
            Err(SyncError::AckBeyondSent { .. })
        ));
        assert!(matches!(
            s.handle(Message::Ack { acked_seq: 2 }),
            Err(SyncError::AckWentBack { .. })
        ));
    }

    #[test]
    fn ingest_skips_replays_and_refuses_gaps() {
        let batch: Vec<Event> = (3..=6).map(ev).collect();
        assert_eq!(
            plan_ingest(&agent(), 4, &batch),
            Ok(IngestPlan {
                first_new: 2,
                new_high_water: 6
            })
        );
        assert_eq!(
            plan_ingest(&agent(), 9, &batch),
            Ok(IngestPlan {
                first_new: 4,
                new_high_water: 9
            })
        );
        assert_eq!(
            plan_ingest(&agent(), 1, &batch).unwrap_err().0,
            Refusal::SequenceGap
        );
        let holey = vec![ev(1), ev(3)];
        assert_eq!(
            plan_ingest(&agent(), 0, &holey).unwrap_err().0,
            Refusal::SequenceGap
        );
        let other = AgentId::new("S002", "T01");
        assert_eq!(
            plan_ingest(&other, 0, &[ev(1)]).unwrap_err().0,
            Refusal::IdentityMismatch
        );
    }
}
