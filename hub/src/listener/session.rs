//! One agent connection as a pure state machine: messages in, steps out. The IO task
//! in `connection.rs` performs the steps (store calls, frames) and nothing else.

use till360_shared::codec::CodecError;
use till360_shared::wire::{Message, Refusal};
use till360_shared::{AgentId, Event};

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
}

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
}

impl HubSession {
    /// `agent` is the identity from the client certificate.
    pub fn new(agent: AgentId) -> Self {
        Self {
            agent,
            phase: Phase::AwaitingHello,
        }
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
    pub fn after_hello(&self, high_water: Result<u64, StoreError>) -> Reply {
        match high_water {
            Ok(acked_seq) => Reply {
                message: Message::Welcome { acked_seq },
                close: false,
            },
            Err(err) => unavailable(err),
        }
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

    #[test]
    fn store_results_become_replies() {
        let s = HubSession::new(AgentId::new("S1", "T1"));
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
