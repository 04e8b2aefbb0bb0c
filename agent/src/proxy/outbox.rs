//! Bytes on their way to the printer, between the POS side and the printer side.
//!
//! While the printer is there, the outbox is a short hand-over and the POS side waits
//! for room only when the printer falls [`HELD_LIMIT`] behind (as a slow printer would
//! make the POS wait). While the printer is absent, bytes are held in order up to the
//! limit; beyond it they are refused (counted, logged by the caller): the held bytes stay
//! a clean prefix of the stream, printed in order once the printer is back, and the POS
//! learns through `DLE EOT` that the printer is off line.

#![deny(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How many bytes are held for an absent printer (thousands of receipts).
pub const HELD_LIMIT: usize = 4 * 1024 * 1024;
/// Longest single wait, so stops and state changes are seen promptly.
const WAIT_SLICE: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(super) struct Outbox {
    bytes: Mutex<VecDeque<u8>>,
    changed: Condvar,
    limit: usize,
}

impl Outbox {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            bytes: Mutex::new(VecDeque::new()),
            changed: Condvar::new(),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<u8>> {
        // A panicking holder leaves whole bytes behind; carry on with them.
        self.bytes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `bytes` for the printer. Returns how many were refused: only when the
    /// printer is absent (`online` false) and the held bytes reach the limit, or when
    /// `keep_going` turns false while waiting for room.
    pub(super) fn push(
        &self,
        bytes: &[u8],
        online: &AtomicBool,
        keep_going: &dyn Fn() -> bool,
    ) -> usize {
        let mut rest = bytes;
        let mut queue = self.lock();
        while !rest.is_empty() {
            let room = self.limit.saturating_sub(queue.len());
            let take = room.min(rest.len());
            queue.extend(&rest[..take]);
            rest = &rest[take..];
            if take > 0 {
                self.changed.notify_all();
            }
            if rest.is_empty() || !online.load(Ordering::SeqCst) || !keep_going() {
                break;
            }
            // A printer that is there but behind: wait for it like a real one would.
            queue = self
                .changed
                .wait_timeout(queue, WAIT_SLICE)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        rest.len()
    }

    /// Waits a short while for bytes; whether there are some.
    pub(super) fn wait_for_bytes(&self) -> bool {
        let mut queue = self.lock();
        if queue.is_empty() {
            queue = self
                .changed
                .wait_timeout(queue, WAIT_SLICE)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        !queue.is_empty()
    }

    /// Takes up to `max` bytes (none if there are none).
    pub(super) fn take(&self, max: usize) -> Vec<u8> {
        let mut queue = self.lock();
        let n = max.min(queue.len());
        let taken: Vec<u8> = queue.drain(..n).collect();
        if n > 0 {
            self.changed.notify_all();
        }
        taken
    }

    /// Puts bytes the printer did not take back in front, to go first next time.
    pub(super) fn put_back(&self, bytes: &[u8]) {
        let mut queue = self.lock();
        for &byte in bytes.iter().rev() {
            queue.push_front(byte);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Wakes a waiting side (a state change it should look at).
    pub(super) fn nudge(&self) {
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_in_order_and_refuses_beyond_the_limit_while_offline() {
        let outbox = Outbox::new(10);
        let offline = AtomicBool::new(false);
        assert_eq!(outbox.push(b"abcdef", &offline, &|| true), 0);
        assert_eq!(outbox.push(b"ghijkl", &offline, &|| true), 2, "kl refused");
        assert_eq!(outbox.take(4), b"abcd");
        outbox.put_back(b"cd");
        assert_eq!(outbox.take(100), b"cdefghij");
        assert!(outbox.take(100).is_empty());
    }

    #[test]
    fn an_online_printer_makes_the_pos_wait_not_lose_bytes() {
        let outbox = std::sync::Arc::new(Outbox::new(4));
        let online = AtomicBool::new(true);
        let printer = {
            let outbox = std::sync::Arc::clone(&outbox);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while got.len() < 26 {
                    outbox.wait_for_bytes();
                    got.extend(outbox.take(3));
                }
                got
            })
        };
        let alphabet: Vec<u8> = (b'a'..=b'z').collect();
        assert_eq!(outbox.push(&alphabet, &online, &|| true), 0);
        assert_eq!(printer.join().unwrap(), alphabet);
    }
}
