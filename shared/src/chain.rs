//! The journal's hash chain: every event a till journals extends a SHA-256 chain over
//! the previous link and the event's canonical encoding (`codec::to_bytes`), so the hub,
//! recomputing the chain over what it receives, notices a journal edited on the till
//! (an event changed, removed or inserted after it was recorded). The chain is not keyed:
//! it catches edits made with an SQLite tool, not an attacker who rewrites every link
//! (the till's disk holds whatever a key would be).

use sha2::{Digest as _, Sha256};

use crate::codec::{self, CodecError};
use crate::event::Event;

/// A link of the chain (32 bytes of SHA-256).
pub type ChainHash = [u8; 32];

/// The link before the first event of a journal.
pub const GENESIS: ChainHash = [0; 32];

const TAG: &[u8] = b"till360/journal-chain/v1";

/// The link after `event`, given the link before it.
pub fn link(prev: &ChainHash, event: &Event) -> Result<ChainHash, CodecError> {
    Ok(link_bytes(prev, &codec::to_bytes(event)?))
}

/// [`link`] over an event's canonical encoding (`codec::to_bytes(event)`).
pub fn link_bytes(prev: &ChainHash, encoded_event: &[u8]) -> ChainHash {
    let mut hasher = Sha256::new();
    hasher.update(TAG);
    hasher.update(prev);
    hasher.update((encoded_event.len() as u64).to_be_bytes());
    hasher.update(encoded_event);
    hasher.finalize().into()
}

/// The hex form used in logs and the API.
pub fn to_hex(hash: &ChainHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{AgentId, EventKind};
    use crate::time::Timestamp;
    use crate::CardNumber;

    fn scan(seq: u64, card: &str) -> Event {
        Event {
            agent: AgentId::new("S001", "T01"),
            seq,
            recorded_at: Timestamp::from_unix_ms(1_764_000_000_000 + seq as i64, 60),
            kind: EventKind::CardScanned {
                card: CardNumber::parse(card).unwrap(),
            },
        }
    }

    #[test]
    fn any_change_to_an_event_or_the_order_changes_the_chain() {
        let events = [scan(1, "4006381333931"), scan(2, "96385074")];
        let chain = |events: &[Event]| {
            events
                .iter()
                .try_fold(GENESIS, |prev, e| link(&prev, e))
                .unwrap()
        };
        let honest = chain(&events);
        assert_eq!(honest, chain(&events), "deterministic");
        let mut edited = events.clone();
        edited[0].recorded_at = Timestamp::from_unix_ms(1, 60);
        assert_ne!(chain(&edited), honest);
        let swapped = [events[1].clone(), events[0].clone()];
        assert_ne!(chain(&swapped), honest);
        assert_ne!(chain(&events[..1]), honest);
        assert_eq!(to_hex(&GENESIS).len(), 64);
    }
}
