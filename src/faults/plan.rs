//! The fault policy as a seeded state machine, without sockets or clocks: a datagram
//! goes in with `now`, the plan decides to drop, delay, hold back or copy it, and
//! [`FaultPlan::poll_release`] hands out what is due. The same seed and the same inputs
//! give the same decisions, so a failing run can be replayed.

#![deny(clippy::disallowed_methods)]

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::sim::SimRng;

/// Which way a datagram travels through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    ToHub,
    ToAgent,
}

/// Faults applied to one direction. Percentages are clamped to 0..=100.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectionFaults {
    pub loss_percent: u64,
    /// Chance that a datagram is sent twice (each copy with its own delay).
    pub duplicate_percent: u64,
    /// Chance that a datagram is held back by up to `reorder_window`, so later ones
    /// overtake it.
    pub reorder_percent: u64,
    pub reorder_window: Duration,
    /// Added to every datagram.
    pub delay: Duration,
    /// Up to this much more, uniformly (jitter alone can also reorder).
    pub jitter: Duration,
}

impl DirectionFaults {
    /// Lossy mobile uplink: the "30 % loss, duplication and reordering".
    pub fn hostile() -> Self {
        Self {
            loss_percent: 30,
            duplicate_percent: 10,
            reorder_percent: 10,
            reorder_window: Duration::from_millis(8),
            delay: Duration::from_millis(1),
            jitter: Duration::from_millis(2),
        }
    }
}

/// What happens to datagrams, counted per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionCounters {
    /// Datagrams received from the sender.
    pub received: u64,
    /// Datagrams handed out for sending (copies included).
    pub released: u64,
    /// Datagrams dropped (loss, blackhole, or queued when a blackhole began).
    pub dropped: u64,
    /// Of `dropped`, those a blackhole took (the rest is random loss).
    pub blackholed: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Datagrams held back for reordering.
    pub held_back: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounters {
    pub to_hub: DirectionCounters,
    pub to_agent: DirectionCounters,
}

impl FaultCounters {
    pub fn get(&self, direction: Direction) -> &DirectionCounters {
        match direction {
            Direction::ToHub => &self.to_hub,
            Direction::ToAgent => &self.to_agent,
        }
    }

    fn get_mut(&mut self, direction: Direction) -> &mut DirectionCounters {
        match direction {
            Direction::ToHub => &mut self.to_hub,
            Direction::ToAgent => &mut self.to_agent,
        }
    }
}

/// A datagram due for sending. `flow` is the caller's name for the agent it belongs
/// to (the proxy keeps one upstream socket per agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub direction: Direction,
    pub flow: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
struct Scheduled {
    at: Instant,
    // Arrival order breaks ties, so equal release times keep the order datagrams came in.
    order: u64,
    release: Release,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.order == other.order
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap and the earliest release must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .at
            .cmp(&self.at)
            .then_with(|| other.order.cmp(&self.order))
    }
}

/// The fault policy for both directions plus the run-time blackhole switch.
#[derive(Debug)]
pub struct FaultPlan {
    rng: SimRng,
    to_hub: DirectionFaults,
    to_agent: DirectionFaults,
    blackhole: bool,
    queue: BinaryHeap<Scheduled>,
    next_order: u64,
    counters: FaultCounters,
}

impl FaultPlan {
    /// A plan that passes everything unchanged until faults are set.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SimRng::new(seed),
            to_hub: DirectionFaults::default(),
            to_agent: DirectionFaults::default(),
            blackhole: false,
            queue: BinaryHeap::new(),
            next_order: 0,
            counters: FaultCounters::default(),
        }
    }

    /// The same faults both ways.
    pub fn symmetric(seed: u64, faults: DirectionFaults) -> Self {
        let mut plan = Self::new(seed);
        plan.set_faults(Direction::ToHub, faults.clone());
        plan.set_faults(Direction::ToAgent, faults);
        plan
    }

    pub fn set_faults(&mut self, direction: Direction, faults: DirectionFaults) {
        match direction {
            Direction::ToHub => self.to_hub = faults,
            Direction::ToAgent => self.to_agent = faults,
        }
    }

    pub fn faults(&self, direction: Direction) -> &DirectionFaults {
        match direction {
            Direction::ToHub => &self.to_hub,
            Direction::ToAgent => &self.to_agent,
        }
    }

    /// Sets the loss of one direction, keeping its other faults.
    pub fn set_loss(&mut self, direction: Direction, percent: u64) {
        match direction {
            Direction::ToHub => self.to_hub.loss_percent = percent,
            Direction::ToAgent => self.to_agent.loss_percent = percent,
        }
    }

    /// While on, nothing passes either way; what is queued when it begins is dropped
    /// too (it would otherwise arrive after the outage began).
    pub fn set_blackhole(&mut self, on: bool) {
        self.blackhole = on;
        if on {
            for s in self.queue.drain() {
                let c = self.counters.get_mut(s.release.direction);
                c.dropped += 1;
                c.blackholed += 1;
            }
        }
    }

    pub fn blackhole(&self) -> bool {
        self.blackhole
    }

    pub fn counters(&self) -> FaultCounters {
        self.counters
    }

    /// Datagrams waiting for their release time.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Decides the fate of one datagram received at `now`.
    pub fn handle_datagram(
        &mut self,
        direction: Direction,
        flow: u64,
        payload: Vec<u8>,
        now: Instant,
    ) {
        let faults = self.faults(direction).clone();
        let counters = self.counters.get_mut(direction);
        counters.received += 1;
        if self.blackhole {
            counters.dropped += 1;
            counters.blackholed += 1;
            return;
        }
        if self.rng.chance(faults.loss_percent) {
            counters.dropped += 1;
            return;
        }
        let copies = if self.rng.chance(faults.duplicate_percent) {
            counters.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = now + faults.delay + self.random_up_to(faults.jitter);
            if self.rng.chance(faults.reorder_percent) {
                self.counters.get_mut(direction).held_back += 1;
                at += self.random_up_to(faults.reorder_window);
            }
            let order = self.next_order;
            self.next_order += 1;
            self.queue.push(Scheduled {
                at,
                order,
                release: Release {
                    direction,
                    flow,
                    payload: payload.clone(),
                },
            });
        }
    }

    /// The next datagram due at `now`, earliest first.
    pub fn poll_release(&mut self, now: Instant) -> Option<Release> {
        if self.queue.peek().is_some_and(|s| s.at <= now) {
            let s = self.queue.pop()?;
            self.counters.get_mut(s.release.direction).released += 1;
            Some(s.release)
        } else {
            None
        }
    }

    /// When the earliest queued datagram is due (for the IO loop's wait).
    pub fn next_release_at(&self) -> Option<Instant> {
        self.queue.peek().map(|s| s.at)
    }

    fn random_up_to(&mut self, max: Duration) -> Duration {
        // Capped at an hour so `range` cannot overflow on an absurd setting.
        let micros = u64::try_from(max.as_micros())
            .unwrap_or(u64::MAX)
            .min(3_600_000_000);
        Duration::from_micros(self.rng.range(0, micros))
    }
}
