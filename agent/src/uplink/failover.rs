//! Which hub the uplink dials next (sans-IO). `[hub] address` may list several hubs (or
//! name one host that resolves to several addresses): the agent talks to one at a time,
//! keeps the one that works, and when it fails moves on to the next at once. Only a
//! whole round of hubs failing waits for the backoff, so a dead hub costs one connect
//! timeout, not a growing pause.

/// The rotation over the hubs' addresses as last resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubRotation {
    /// Index (modulo the candidates' count) of the hub to dial next.
    next: usize,
    /// Hubs that failed since one last worked (or since the round began).
    failed_in_round: usize,
}

/// What to do after a failed session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Another hub has not been tried in this round: dial it now.
    TryNext,
    /// Every hub failed: wait for the backoff before the next round.
    Backoff,
}

impl HubRotation {
    /// The candidate to dial among `count` (the addresses as just resolved), if any.
    pub fn choose(&self, count: usize) -> Option<usize> {
        (count > 0).then(|| self.next % count)
    }

    /// The hub dialled last answered and the session was established: it stays first,
    /// and a later failure starts a new round.
    pub fn connected(&mut self) {
        self.failed_in_round = 0;
    }

    /// The session with the hub chosen among `count` failed (or none resolved: `count`
    /// 0): move on to the next one, and say whether the whole round has failed.
    pub fn failed(&mut self, count: usize) -> AfterFailure {
        if count == 0 {
            self.failed_in_round = 0;
            return AfterFailure::Backoff;
        }
        self.next = (self.next % count + 1) % count;
        self.failed_in_round += 1;
        if self.failed_in_round >= count {
            self.failed_in_round = 0;
            AfterFailure::Backoff
        } else {
            AfterFailure::TryNext
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hub_backs_off_after_every_failure() {
        let mut rotation = HubRotation::default();
        for _ in 0..3 {
            assert_eq!(rotation.choose(1), Some(0));
            assert_eq!(rotation.failed(1), AfterFailure::Backoff);
        }
    }

    #[test]
    fn a_dead_hub_is_skipped_at_once_and_the_working_one_kept() {
        let mut rotation = HubRotation::default();
        assert_eq!(rotation.choose(3), Some(0));
        assert_eq!(rotation.failed(3), AfterFailure::TryNext);
        assert_eq!(rotation.choose(3), Some(1));
        rotation.connected();
        // Hub 1 keeps being chosen while it works.
        assert_eq!(rotation.choose(3), Some(1));
        // It dies: hubs 2 and 0 are tried at once, then the round is over.
        assert_eq!(rotation.failed(3), AfterFailure::TryNext);
        assert_eq!(rotation.choose(3), Some(2));
        assert_eq!(rotation.failed(3), AfterFailure::TryNext);
        assert_eq!(rotation.choose(3), Some(0));
        assert_eq!(rotation.failed(3), AfterFailure::Backoff);
        assert_eq!(rotation.choose(3), Some(1));
    }

    #[test]
    fn nothing_resolved_backs_off_and_a_shrunk_list_stays_in_range() {
        let mut rotation = HubRotation::default();
        assert_eq!(rotation.choose(0), None);
        assert_eq!(rotation.failed(0), AfterFailure::Backoff);
        for _ in 0..4 {
            rotation.failed(5);
        }
        assert_eq!(rotation.choose(5), Some(4));
        assert_eq!(rotation.choose(2), Some(0));
        rotation.failed(2);
        assert_eq!(rotation.choose(2), Some(1));
    }
}
