//! One agent connection as a pure state machine: messages in, steps out. The IO task
//! in `connection.rs` performs the steps (store calls, frames) and nothing else.
//!
//! The erasure downlink (`shared::sync::ErasureDownlink`) runs beside the uplink:
//! after `Welcome`, [`HubSession::poll_erasures`] says which part of the erasure log
//! to read and [`HubSession::erasure_frame`] turns the rows into the frame to send.

use till360_shared::codec::CodecError;
use till360_shared::sync::ErasureDownlink;
use till360_shared::wire::{Message, Refusal};
use till360_shared::{AgentId, CardNumber, Event};

use crate::store::{IngestOutcome, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingHello,
    Streaming,
}

/// What the connection task must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The hello matched the certificate: read the high-water mark, answer `Welcome`.
    Welcome {
        journal_last_seq: u64,
        software: String,
    },
    /// Commit these events for the certificate's agent, then answer with [`HubSession::after_ingest`].
    Ingest(Vec<Event>),
    /// Send `Refused` and close the connection.
    Refuse { reason: Refusal, detail: String },
    /// The agent has applied erasures up to this version (its subscribe, or an
    /// `ErasuresApplied`); nothing to answer.
    ErasuresApplied { up_to_version: u64 },
}

/// Cards per `Erasures` frame.
pub const ERASURE_BATCH: usize = 500;
/// Erasure versions sent but not yet applied by the agent, at most.
pub const ERASURE_WINDOW: u64 = 4 * ERASURE_BATCH as u64;

/// The answer to a finished store call; `close` means "after sending, close".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub message: Message,
    pub close: bool,
}

#[derive(Debug)]
pub struct HubSession {
    agent: AgentId,
    phase: Phase,
    /// `Welcome` was sent: downlink frames may follow.
    welcomed: bool,
    erasures: ErasureDownlink,
    /// The campaign version the agent subscribed with (`None`: not subscribed).
    campaign_version: Option<u64>,
    /// The `Campaigns` frame went out on this connection (once per connection).
    campaigns_sent: bool,
    /// The digest version the agent subscribed with (`None`: not subscribed).
    digest_version: Option<u64>,
}

impl HubSession {
    /// `agent` is the identity from the client certificate.
    pub fn new(agent: AgentId) -> Self {
        Self {
            agent,
            phase: Phase::AwaitingHello,
            welcomed: false,
            erasures: ErasureDownlink::new(ERASURE_BATCH, ERASURE_WINDOW),
            campaign_version: None,
            campaigns_sent: false,
            digest_version: None,
        }
    }

    /// Whether a `Campaigns` frame may be due: after `Welcome`, to a subscribed agent,
    /// not yet sent on this connection (the frame's version decides, see
    /// [`Self::campaigns_due`]).
    pub fn campaigns_pending(&self) -> bool {
        self.welcomed && !self.campaigns_sent && self.campaign_version.is_some()
    }

    /// The campaign frame could not be built (the database failed).
    pub fn campaigns_unavailable(&self, err: StoreError) -> Reply {
        unavailable(err)
    }

    /// Whether the till's campaign frame (at `hub_version`) must be sent now: after
    /// `Welcome`, to a subscribed agent holding another version, once.
    pub fn campaigns_due(&self, hub_version: u64) -> bool {
        self.welcomed
            && !self.campaigns_sent
            && self
                .campaign_version
                .is_some_and(|held| held != hub_version)
    }

    /// The `Campaigns` frame is being sent.
    pub fn campaigns_sent(&mut self) {
        self.campaigns_sent = true;
    }

    /// What to read from the erasure log standing at `hub_version`: erasures after the
    /// returned version, at most the returned count (see `ErasureDownlink::poll`).
    pub fn poll_erasures(&self, hub_version: u64) -> Option<(u64, usize)> {
        if !self.welcomed {
            return None;
        }
        self.erasures.poll(hub_version)
    }

    /// The `Erasures` frame for rows read after [`Self::poll_erasures`].
    pub fn erasure_frame(
        &mut self,
        rows: Vec<(u64, CardNumber)>,
        hub_version: u64,
    ) -> Option<Message> {
        self.erasures.frame(rows, hub_version)
    }

    pub fn agent(&self) -> &AgentId {
        &self.agent
    }

    pub fn handle(&mut self, msg: Message) -> Step {
        match (self.phase, msg) {
            (
                Phase::AwaitingHello,
                Message::Hello {
                    agent,
                    journal_last_seq,
                    software,
                },
            ) => {
                if agent != self.agent {
                    return Step::Refuse {
                        reason: Refusal::IdentityMismatch,
                        detail: format!(
                            "hello claims agent {agent}, the certificate says {}",
                            self.agent
                        ),
                    };
                }
                self.phase = Phase::Streaming;
                Step::Welcome {
                    journal_last_seq,
                    software,
                }
            }
            (Phase::Streaming, Message::Events(events)) => Step::Ingest(events),
            (
                Phase::Streaming,
                Message::Subscribe {
                    erasure_version,
                    campaign_version,
                    digest_version,
                },
            ) => match self.erasures.subscribe(erasure_version) {
                Ok(()) => {
                    self.campaign_version = Some(campaign_version);
                    self.digest_version = Some(digest_version);
                    Step::ErasuresApplied {
                        up_to_version: erasure_version,
                    }
                }
                Err(err) => protocol_error(err),
            },
            (Phase::Streaming, Message::ErasuresApplied { up_to_version }) => {
                match self.erasures.on_applied(up_to_version) {
                    Ok(()) => Step::ErasuresApplied { up_to_version },
                    Err(err) => protocol_error(err),
                }
            }
            (phase, other) => Step::Refuse {
                reason: Refusal::ProtocolError,
                detail: format!(
                    "unexpected {} message {}",
                    other.name(),
                    match phase {
                        Phase::AwaitingHello => "before hello",
                        Phase::Streaming => "while streaming",
                    }
                ),
            },
        }
    }

    /// A frame that cannot be decoded ends the connection: the stream is not trusted.
    pub fn decode_error(&self, err: &CodecError) -> Step {
        Step::Refuse {
            reason: Refusal::ProtocolError,
            detail: err.to_string(),
        }
    }

    /// The answer to the hello once the store has (or has not) read the high-water mark.
    pub fn after_hello(&mut self, high_water: Result<u64, StoreError>) -> Reply {
        match high_water {
            Ok(acked_seq) => {
                self.welcomed = true;
                Reply {
                    message: Message::Welcome { acked_seq },
                    close: false,
                }
            }
            Err(err) => unavailable(err),
        }
    }

    /// The erasure log could not be read: the agent retries on a new connection.
    pub fn erasures_unavailable(&self, err: StoreError) -> Reply {
        unavailable(err)
    }

    /// The answer to a batch once the store has committed (or refused) it.
    pub fn after_ingest(&self, outcome: Result<IngestOutcome, StoreError>) -> Reply {
        match outcome {
            Ok(Ok(acked_seq)) => Reply {
                message: Message::Ack { acked_seq },
                close: false,
            },
            Ok(Err((reason, detail))) => Reply {
                message: Message::Refused { reason, detail },
                close: true,
            },
            Err(err) => unavailable(err),
        }
    }
}

fn protocol_error(err: impl std::fmt::Display) -> Step {
    Step::Refuse {
        reason: Refusal::ProtocolError,
        detail: err.to_string(),
    }
}

fn unavailable(err: StoreError) -> Reply {
    Reply {
        message: Message::Refused {
            reason: Refusal::Unavailable,
            detail: format!("the hub cannot commit right now: {err}"),
        },
        close: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(store: &str) -> Message {
        Message::Hello {
            agent: AgentId::new(store, "T1"),
            journal_last_seq: 9,
            software: "t".into(),
        }
    }

    #[test]
    fn hello_must_match_certificate_and_come_first() {
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        assert!(matches!(
            s.handle(Message::Events(vec![])),
            Step::Refuse {
                reason: Refusal::ProtocolError,
                ..
            }
        ));
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        assert!(matches!(
            s.handle(hello("S2")),
            Step::Refuse {
                reason: Refusal::IdentityMismatch,
                ..
            }
        ));
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        assert!(matches!(
            s.handle(hello("S1")),
            Step::Welcome {
                journal_last_seq: 9,
                ..
            }
        ));
        assert_eq!(s.handle(Message::Events(vec![])), Step::Ingest(vec![]));
        assert!(matches!(
            s.handle(hello("S1")),
            Step::Refuse {
                reason: Refusal::ProtocolError,
                ..
            }
        ));
    }

    fn erasure_rows(versions: std::ops::RangeInclusive<u64>) -> Vec<(u64, CardNumber)> {
        versions
            .map(|v| (v, CardNumber::parse("4006381333931").unwrap()))
            .collect()
    }

    #[test]
    fn campaigns_are_due_once_after_welcome_for_another_version() {
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        s.handle(hello("S1"));
        assert!(!s.campaigns_due(5), "not subscribed");
        s.handle(Message::Subscribe {
            erasure_version: 0,
            campaign_version: 3,
            digest_version: 0,
        });
        assert!(!s.campaigns_due(5), "no welcome yet");
        s.after_hello(Ok(0));
        assert!(!s.campaigns_due(3), "the agent holds this version");
        assert!(s.campaigns_due(5));
        s.campaigns_sent();
        assert!(!s.campaigns_due(5), "once per connection");
    }

    #[test]
    fn erasures_flow_only_after_welcome_and_subscribe() {
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        assert!(matches!(
            s.handle(Message::Subscribe {
                erasure_version: 0,
                campaign_version: 0,
                digest_version: 0,
            }),
            Step::Refuse {
                reason: Refusal::ProtocolError,
                ..
            }
        ));
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        s.handle(hello("S1"));
        assert_eq!(
            s.handle(Message::Subscribe {
                erasure_version: 2,
                campaign_version: 0,
                digest_version: 0,
            }),
            Step::ErasuresApplied { up_to_version: 2 }
        );
        assert_eq!(s.poll_erasures(5), None, "not before the welcome is sent");
        s.after_hello(Ok(0));
        assert_eq!(s.poll_erasures(5), Some((2, ERASURE_BATCH)));
        assert_eq!(
            s.erasure_frame(erasure_rows(3..=5), 5),
            Some(Message::Erasures {
                cards: vec![CardNumber::parse("4006381333931").unwrap(); 3],
                up_to_version: 5
            })
        );
        assert_eq!(s.poll_erasures(5), None, "up to date");
        assert_eq!(
            s.handle(Message::ErasuresApplied { up_to_version: 5 }),
            Step::ErasuresApplied { up_to_version: 5 }
        );
        assert!(matches!(
            s.handle(Message::ErasuresApplied { up_to_version: 6 }),
            Step::Refuse {
                reason: Refusal::ProtocolError,
                ..
            }
        ));
    }

    #[test]
    fn a_peer_that_never_subscribes_gets_no_erasures() {
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        s.handle(hello("S1"));
        s.after_hello(Ok(0));
        assert_eq!(s.poll_erasures(100), None);
    }

    #[test]
    fn store_results_become_replies() {
        let mut s = HubSession::new(AgentId::new("S1", "T1"));
        assert_eq!(
            s.after_ingest(Ok(Ok(5))),
            Reply {
                message: Message::Ack { acked_seq: 5 },
                close: false
            }
        );
        let refused = s.after_ingest(Ok(Err((Refusal::SequenceGap, "gap".into()))));
        assert!(refused.close);
        assert!(matches!(
            refused.message,
            Message::Refused {
                reason: Refusal::SequenceGap,
                ..
            }
        ));
        let down = s.after_ingest(Err(StoreError::WriterGone));
        assert!(down.close);
        assert!(matches!(
            down.message,
            Message::Refused {
                reason: Refusal::Unavailable,
                ..
            }
        ));
        assert_eq!(
            s.after_hello(Ok(3)).message,
            Message::Welcome { acked_seq: 3 }
        );
    }
}
