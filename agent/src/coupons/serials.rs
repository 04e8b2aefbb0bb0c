//! Coupon serials handed out from blocks reserved in the journal: the first coupon of a
//! block costs one committed transaction, the next ones none, so the cut rarely waits
//! for the disk (a `synchronous=FULL` commit can take milliseconds on a busy disk).

use std::collections::HashMap;
use std::ops::Range;

use chrono::NaiveDate;

/// Serials reserved per journal commit.
pub const SERIAL_BLOCK: u16 = 64;

/// Reserved, not yet used serials per (campaign number, expiry day).
#[derive(Debug, Default)]
pub struct SerialBlocks {
    reserved: HashMap<(u16, NaiveDate), Range<u16>>,
}

impl SerialBlocks {
    /// The next serial for (campaign, expires); `reserve(campaign, expires, count)`
    /// commits a new block when the current one is used up. A campaign's blocks of
    /// earlier expiry days are forgotten when it reserves a later one. `None` if `reserve` gave an empty
    /// block (the journal reports exhaustion as an error instead).
    pub fn next<E>(
        &mut self,
        campaign: u16,
        expires: NaiveDate,
        reserve: impl FnOnce(u16, NaiveDate, u16) -> Result<Range<u16>, E>,
    ) -> Result<Option<u16>, E> {
        let key = (campaign, expires);
        if let Some(serial) = self.reserved.get_mut(&key).and_then(Iterator::next) {
            return Ok(Some(serial));
        }
        let mut block = reserve(campaign, expires, SERIAL_BLOCK)?;
        let serial = block.next();
        // A campaign's expiry day only moves forward (issue day + valid_days): its
        // earlier blocks are done. Other campaigns keep theirs.
        self.reserved
            .retain(|(c, day), _| *c != campaign || *day >= expires);
        self.reserved.insert(key, block);
        Ok(serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
    }

    #[test]
    fn one_reservation_serves_a_block_and_campaigns_have_their_own() {
        let mut blocks = SerialBlocks::default();
        let mut commits = Vec::new();
        let mut next_free: HashMap<(u16, NaiveDate), u16> = HashMap::new();
        let mut take = |blocks: &mut SerialBlocks, c: u16, d: NaiveDate| {
            blocks
                .next(c, d, |c, d, n| {
                    commits.push((c, d));
                    let first = next_free.entry((c, d)).or_default();
                    let range = *first..*first + n;
                    *first += n;
                    Ok::<_, String>(range)
                })
                .unwrap()
                .unwrap()
        };
        let first: Vec<u16> = (0..70).map(|_| take(&mut blocks, 1, day(9))).collect();
        assert_eq!(first, (0..70).collect::<Vec<u16>>(), "no gap, no repeat");
        assert_eq!(take(&mut blocks, 2, day(9)), 0);
        assert_eq!(
            commits.len(),
            3,
            "two blocks for campaign 1, one for campaign 2"
        );
    }

    #[test]
    fn a_failed_reservation_is_the_callers_error() {
        let mut blocks = SerialBlocks::default();
        let out = blocks.next(1, day(9), |_, _, _| {
            Err::<Range<u16>, _>("serials exhausted")
        });
        assert_eq!(out, Err("serials exhausted"));
        let empty = blocks.next(1, day(9), |_, _, _| Ok::<_, String>(5..5));
        assert_eq!(empty, Ok(None));
    }
}
