//! The simulated network between tills and hub: one QUIC-like connection at a time per
//! till, each a pair of ordered streams with latency and latency spikes. What QUIC lets
//! through is what is simulated: within a live stream frames arrive in order, once;
//! messages are lost, duplicated and reordered across connections. A cut or a partition
//! kills the connection: frames in flight may still arrive, or not, and the hub's
//! session of a dead connection lives on until the hub notices (its idle timeout), so
//! it may commit and acknowledge a batch while the agent already talks on a new
//! connection, whose resend of the same events is then a duplicate.

#![deny(clippy::disallowed_methods)]

use crate::sim::SimRng;

/// One connection's state as the network sees it.
#[derive(Debug, Clone)]
pub struct Connection {
    pub till: usize,
    /// The hub incarnation it was made with: a hub restart kills it.
    pub hub_incarnation: u64,
    /// The hub has closed it or noticed it dead: frames still arriving are dropped.
    pub hub_gone: bool,
    /// A frame in flight when it died was lost this way (to the hub, to the till): a
    /// stream delivers a prefix, so every later frame that way is lost too.
    pub lost: [bool; 2],
    /// When it died (cut, closed, hub crash): frames sent after never arrive; frames
    /// sent before may still arrive.
    pub dead_at: Option<i64>,
    /// Delivery times of the last frame each way (a stream keeps its order).
    pub last_to_hub: i64,
    pub last_to_till: i64,
}

/// Network behaviour by seed: latency and spikes (per mille of frames).
#[derive(Debug, Clone)]
pub struct NetworkModel {
    pub latency_ms: (u64, u64),
    pub spike_per_mille: u64,
    pub spike_ms: (u64, u64),
}

impl NetworkModel {
    pub fn of_seed(rng: &mut SimRng, faults: bool) -> NetworkModel {
        if !faults {
            return NetworkModel {
                latency_ms: (1, 5),
                spike_per_mille: 0,
                spike_ms: (0, 0),
            };
        }
        NetworkModel {
            latency_ms: (1, rng.range(5, 80)),
            spike_per_mille: rng.range(0, 30),
            spike_ms: (200, rng.range(500, 9_000)),
        }
    }

    /// When a frame sent at `now` on `conn` arrives (`to_hub`: direction): after its
    /// latency, never before a frame sent earlier the same way.
    pub fn deliver(&self, rng: &mut SimRng, conn: &mut Connection, to_hub: bool, now: i64) -> i64 {
        let mut latency = rng.range(self.latency_ms.0, self.latency_ms.1) as i64;
        if rng.below(1000) < self.spike_per_mille {
            latency += rng.range(self.spike_ms.0, self.spike_ms.1) as i64;
        }
        let last = if to_hub {
            &mut conn.last_to_hub
        } else {
            &mut conn.last_to_till
        };
        let at = (now + latency).max(*last);
        *last = at;
        at
    }
}

impl Connection {
    /// Whether a frame sent at `sent_at` still arrives: always on a live connection;
    /// on a dead one, never if sent after it died, else by `coin` (true: lost) until
    /// one is lost that way, and never after.
    pub fn arrives(&mut self, to_hub: bool, sent_at: i64, coin: bool) -> bool {
        let Some(dead) = self.dead_at else {
            return true;
        };
        let lost = &mut self.lost[usize::from(to_hub)];
        if *lost || sent_at >= dead || coin {
            *lost = true;
            return false;
        }
        true
    }
}
