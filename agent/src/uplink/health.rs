//! The till's health report to the hub (`Message::Health`), pure: what to report and
//! when a report is worth a frame.

#![deny(clippy::disallowed_methods)]

use till360_shared::wire::TillHealth;

use crate::journal::JournalStatus;

/// Journal growth worth a new report.
const BYTES_STEP: u64 = 1 << 20;
/// Backlog growth worth a new report.
const PENDING_STEP: u64 = 1_000;

/// The health the journal's status shows.
pub fn of_status(status: &JournalStatus) -> TillHealth {
    TillHealth {
        journal_bytes: status.bytes,
        journal_max_bytes: status.max_bytes,
        quota_exceeded: status.quota_exceeded,
        quarantined: status.quarantined,
        pending: status.pending,
        unbalanced_receipts: status.unbalanced_receipts,
        unrecognised_scans: status.unrecognised_scans,
    }
}

/// Whether `now` must be sent, given the last report on this connection: always the
/// first; then when an alarm changes, or the journal or its backlog moved by a step.
pub fn report_due(last: Option<&TillHealth>, now: &TillHealth) -> bool {
    let Some(last) = last else {
        return true;
    };
    last.quota_exceeded != now.quota_exceeded
        || last.quarantined != now.quarantined
        || last.unbalanced_receipts != now.unbalanced_receipts
        || last.unrecognised_scans != now.unrecognised_scans
        || last.journal_max_bytes != now.journal_max_bytes
        || last.journal_bytes.abs_diff(now.journal_bytes) >= BYTES_STEP
        || last.pending.abs_diff(now.pending) >= PENDING_STEP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_report_and_alarms_go_out_small_changes_do_not() {
        let base = TillHealth {
            journal_bytes: 10 << 20,
            journal_max_bytes: 1 << 30,
            quota_exceeded: false,
            quarantined: 0,
            pending: 5,
            unbalanced_receipts: 0,
            unrecognised_scans: 0,
        };
        assert!(report_due(None, &base));
        assert!(!report_due(Some(&base), &base));
        let grown_a_bit = TillHealth {
            journal_bytes: base.journal_bytes + 4096,
            pending: 50,
            ..base
        };
        assert!(!report_due(Some(&base), &grown_a_bit));
        for changed in [
            TillHealth {
                quota_exceeded: true,
                ..base
            },
            TillHealth {
                quarantined: 1,
                ..base
            },
            TillHealth {
                journal_bytes: base.journal_bytes + (2 << 20),
                ..base
            },
            TillHealth {
                pending: 5_000,
                ..base
            },
            TillHealth {
                unbalanced_receipts: 1,
                ..base
            },
            TillHealth {
                unrecognised_scans: 1,
                ..base
            },
        ] {
            assert!(report_due(Some(&base), &changed), "{changed:?}");
        }
    }
}
