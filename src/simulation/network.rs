//! The simulated network between tills and hub: one QUIC-like connection at a time per
//! till, each a pair of ordered streams with latency. Faults: a link cut or a partition
//! kills the connection (frames already in flight may still arrive, or not), latency
//! spikes, and, rarely, a frame duplicated or overtaking the one before it (the
//! protocol must refuse that and start over, never lose or double an event).

#![deny(clippy::disallowed_methods)]

use crate::sim::SimRng;

/// One connection's state as the network sees it.
#[derive(Debug, Clone)]
pub struct Connection {
    pub till: usize,
    /// The hub incarnation it was made with: a hub restart kills it.
    pub hub_incarnation: u64,
    /// When it died (cut, closed, hub crash): frames sent after never arrive; frames
    /// sent before may still arrive.
    pub dead_at: Option<i64>,
    /// Delivery times of the last frame each way (a stream keeps its order).
    pub last_to_hub: i64,
    pub last_to_till: i64,
}

/// How the network treats one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub at: i64,
    pub duplicate_at: Option<i64>,
}

/// Network behaviour by seed: latency and fault rates (per mille of frames).
#[derive(Debug, Clone)]
pub struct NetworkModel {
    pub latency_ms: (u64, u64),
    pub spike_per_mille: u64,
    pub spike_ms: (u64, u64),
    pub duplicate_per_mille: u64,
    pub overtake_per_mille: u64,
}

impl NetworkModel {
    pub fn of_seed(rng: &mut SimRng, faults: bool) -> NetworkModel {
        if !faults {
            return NetworkModel {
                latency_ms: (1, 5),
                spike_per_mille: 0,
                spike_ms: (0, 0),
                duplicate_per_mille: 0,
                overtake_per_mille: 0,
            };
        }
        NetworkModel {
            latency_ms: (1, rng.range(5, 80)),
            spike_per_mille: rng.range(0, 30),
            spike_ms: (200, rng.range(500, 9_000)),
            duplicate_per_mille: rng.range(0, 3),
            overtake_per_mille: rng.range(0, 3),
        }
    }

    /// When a frame sent at `now` on `conn` arrives (`to_hub`: direction).
    pub fn deliver(
        &self,
        rng: &mut SimRng,
        conn: &mut Connection,
        to_hub: bool,
        now: i64,
    ) -> Delivery {
        let mut latency = rng.range(self.latency_ms.0, self.latency_ms.1) as i64;
        if rng.below(1000) < self.spike_per_mille {
            latency += rng.range(self.spike_ms.0, self.spike_ms.1) as i64;
        }
        let last = if to_hub {
            &mut conn.last_to_hub
        } else {
            &mut conn.last_to_till
        };
        let overtakes = rng.below(1000) < self.overtake_per_mille;
        let at = if overtakes {
            // Arrives before frames sent earlier (without moving the stream's tail).
            now + 1
        } else {
            let at = (now + latency).max(*last);
            *last = at;
            at
        };
        let duplicate_at = (rng.below(1000) < self.duplicate_per_mille).then(|| at + 1);
        Delivery { at, duplicate_at }
    }
}
