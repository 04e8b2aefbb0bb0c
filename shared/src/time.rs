//! Timestamps: UTC instants that keep the till's UTC offset (DESIGN.md principle 6).

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// A UTC instant in milliseconds since the Unix epoch, with the till's local offset kept
/// so local wall-clock time (what the receipt says) can always be reconstructed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp {
    pub unix_ms: i64,
    /// Offset of the till's local time from UTC, in minutes (+60 for CET).
    pub offset_min: i16,
}

impl Timestamp {
    pub fn from_unix_ms(unix_ms: i64, offset_min: i16) -> Self {
        Self {
            unix_ms,
            offset_min,
        }
    }

    pub fn from_utc(utc: DateTime<Utc>, offset_min: i16) -> Self {
        Self {
            unix_ms: utc.timestamp_millis(),
            offset_min,
        }
    }

    /// The instant in UTC. Values outside years 1..=9999 (only from corrupt input)
    /// clamp to that range, so converting to any local offset cannot overflow.
    pub fn utc(&self) -> DateTime<Utc> {
        // 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z.
        const MIN_MS: i64 = -62_135_596_800_000;
        const MAX_MS: i64 = 253_402_300_799_999;
        Utc.timestamp_millis_opt(self.unix_ms.clamp(MIN_MS, MAX_MS))
            .single()
            .unwrap_or_default()
    }

    /// The instant in the till's local time.
    pub fn local(&self) -> DateTime<FixedOffset> {
        let offset = FixedOffset::east_opt(i32::from(self.offset_min) * 60)
            .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset is valid"));
        self.utc().with_timezone(&offset)
    }

    /// RFC 3339 in the till's local offset, e.g. `2026-11-25T09:14:03.120+01:00`.
    pub fn to_rfc3339(&self) -> String {
        self.local()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_local_offset() {
        let ts = Timestamp::from_unix_ms(1_764_060_000_000, 60);
        assert_eq!(ts.to_rfc3339(), "2025-11-25T09:40:00.000+01:00");
        assert_eq!(ts.utc().timestamp_millis(), 1_764_060_000_000);
    }

    #[test]
    fn corrupt_extremes_clamp_instead_of_panicking() {
        for (ms, off) in [(i64::MAX, i16::MAX), (i64::MIN, i16::MIN), (i64::MAX, 840)] {
            let ts = Timestamp::from_unix_ms(ms, off);
            let year = chrono::Datelike::year(&ts.utc());
            assert!((1..=9999).contains(&year), "{year}");
            // Local time may step into year 10000 or 0 but never overflows.
            assert!(!ts.to_rfc3339().is_empty());
        }
    }
}
