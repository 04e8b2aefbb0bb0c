//! The total-queue check: what the tills printed against what the hub committed.
//! Pure counting; the caller reads the hub's database.

#![deny(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::fmt;

/// One receipt as printed at a till, or as committed at the hub.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReceiptKey {
    pub store: String,
    pub till: String,
    pub receipt_no: String,
}

impl ReceiptKey {
    pub fn new(store: &str, till: &str, receipt_no: &str) -> Self {
        Self {
            store: store.to_string(),
            till: till.to_string(),
            receipt_no: receipt_no.to_string(),
        }
    }
}

impl fmt::Display for ReceiptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} #{}", self.store, self.till, self.receipt_no)
    }
}

/// The verdict; exactly-once means `lost`, `duplicated` and `unexpected` are all empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TotalQueue {
    pub printed: usize,
    pub at_hub: usize,
    /// Printed more often than the hub has it (usually: not at the hub at all).
    pub lost: Vec<ReceiptKey>,
    /// At the hub more often than printed, with the hub's count.
    pub duplicated: Vec<(ReceiptKey, usize)>,
    /// At the hub, never printed.
    pub unexpected: Vec<ReceiptKey>,
}

impl TotalQueue {
    /// Counts both sides as multisets, so a receipt printed twice must be there twice.
    pub fn count(
        printed: impl IntoIterator<Item = ReceiptKey>,
        at_hub: impl IntoIterator<Item = ReceiptKey>,
    ) -> TotalQueue {
        let mut tally: BTreeMap<ReceiptKey, (usize, usize)> = BTreeMap::new();
        let mut out = TotalQueue::default();
        for k in printed {
            out.printed += 1;
            tally.entry(k).or_default().0 += 1;
        }
        for k in at_hub {
            out.at_hub += 1;
            tally.entry(k).or_default().1 += 1;
        }
        for (key, (printed, hub)) in tally {
            if printed == 0 {
                out.unexpected.push(key);
            } else if hub > printed {
                out.duplicated.push((key, hub));
            } else if hub < printed {
                out.lost.push(key);
            }
        }
        out
    }

    pub fn is_exactly_once(&self) -> bool {
        self.lost.is_empty() && self.duplicated.is_empty() && self.unexpected.is_empty()
    }
}

impl fmt::Display for TotalQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "printed {}, at hub {}: lost {}, duplicated {}, unexpected {}",
            self.printed,
            self.at_hub,
            self.lost.len(),
            self.duplicated.len(),
            self.unexpected.len()
        )?;
        let examples = self
            .lost
            .iter()
            .take(3)
            .map(|k| format!("lost {k}"))
            .chain(
                self.duplicated
                    .iter()
                    .take(3)
                    .map(|(k, n)| format!("{k} {n} times")),
            )
            .chain(
                self.unexpected
                    .iter()
                    .take(3)
                    .map(|k| format!("unexpected {k}")),
            );
        for e in examples {
            write!(f, "; {e}")?;
        }
        Ok(())
    }
}
