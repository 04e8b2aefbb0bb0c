//! The traits' inputs and outputs: purchase histories as of a date (streamed row by
//! row into the pure `traits::history::HistoryBuilder`), the stored segment
//! membership, and a recompute's writes (`profile_traits`, `segment_members`,
//! `traits_runs`) in one transaction.

use std::collections::HashMap;

use chrono::NaiveDate;
use till360_shared::Timestamp;

use super::coupon_kpis::COUPON_PROFILE;
use super::freshness;
use super::sql::{transaction, Row, Sql, TxKind, Value};
use super::StoreError;
use crate::coupons::ledger::COUNTING_STATUSES;
use crate::sql_params;
use crate::traits::history::{end_of_local_day_ms, ConsentRow, HistoryBuilder, HubData};

/// Column `i` moved out of the row as text (no copy: the rows are many).
fn text(row: &mut Row, i: usize) -> Result<String, StoreError> {
    match row.take(i) {
        Value::Text(text) => Ok(text),
        other => Err(StoreError::Corrupt(format!(
            "column {i} holds {other:?}, not text"
        ))),
    }
}

fn blob(row: &mut Row, i: usize) -> Result<Vec<u8>, StoreError> {
    match row.take(i) {
        Value::Blob(bytes) => Ok(bytes),
        // A blob column SQLite was given as text still holds the bytes.
        Value::Text(text) => Ok(text.into_bytes()),
        other => Err(StoreError::Corrupt(format!(
            "column {i} holds {other:?}, not a blob"
        ))),
    }
}

/// Every profile with its cards, consents and the purchases whose local date is on or
/// before `as_of` (point in time). Call inside a read transaction so every table is
/// read from one snapshot.
pub fn load_histories(db: &dyn Sql, as_of: NaiveDate) -> Result<HubData, StoreError> {
    let end_local_ms = end_of_local_day_ms(as_of);
    let mut data = HistoryBuilder::new();
    db.query_each(
        "SELECT profile_id, customer_no FROM profiles ORDER BY profile_id",
        sql_params![],
        &mut |mut r| {
            let profile_id = text(&mut r, 0)?;
            data.profile(profile_id, r.get(1)?);
            Ok(())
        },
    )?;
    db.query_each(
        "SELECT profile_id, value FROM identifiers WHERE kind = 'card' ORDER BY value",
        sql_params![],
        &mut |mut r| {
            let card = text(&mut r, 1)?;
            data.card(&text(&mut r, 0)?, card);
            Ok(())
        },
    )?;
    db.query_each(
        "SELECT profile_id, purpose, granted, at_ms FROM consents ORDER BY profile_id, purpose",
        sql_params![],
        &mut |mut r| {
            let consent = ConsentRow {
                purpose: text(&mut r, 1)?,
                granted: r.get(2)?,
                at_ms: r.get(3)?,
            };
            data.consent(&text(&mut r, 0)?, consent);
            Ok(())
        },
    )?;
    db.query_each(
        "SELECT sku, description, category, sensitive FROM products ORDER BY sku",
        sql_params![],
        &mut |mut r| {
            let sku = text(&mut r, 0)?;
            let description = text(&mut r, 1)?;
            data.product(sku, &description, text(&mut r, 2)?, r.get(3)?);
            Ok(())
        },
    )?;
    db.query_each(
        "SELECT profile_id, store, at_ms, offset_min, total_cents, lines FROM transactions
         WHERE profile_id IS NOT NULL AND unbalanced = 0 AND at_ms + offset_min * 60000 < ?1
         ORDER BY at_ms, store, till, seq",
        sql_params![end_local_ms],
        &mut |mut r| {
            let lines = blob(&mut r, 5)?;
            let store = text(&mut r, 1)?;
            data.receipt(
                &text(&mut r, 0)?,
                store,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                &lines,
            );
            Ok(())
        },
    )?;
    db.query_each(
        "SELECT profile_id, ordered_at_ms, offset_min, total_cents, lines FROM orders
         WHERE profile_id IS NOT NULL AND ordered_at_ms + offset_min * 60000 < ?1
         ORDER BY ordered_at_ms, order_id",
        sql_params![end_local_ms],
        &mut |mut r| {
            let lines = text(&mut r, 4)?;
            data.order(&text(&mut r, 0)?, r.get(1)?, r.get(2)?, r.get(3)?, &lines);
            Ok(())
        },
    )?;
    // Printed coupons (not the control group's) of the profile their card belongs to
    // now, as the campaign KPIs count them, with the first counting scan up to `as_of`.
    db.query_each(
        &format!(
            "SELECT {COUPON_PROFILE}, c.issued_at_ms, c.offset_min, c.expires,
                    (SELECT MIN(r.at_ms + r.offset_min * 60000) FROM redemptions r
                     WHERE r.code = c.code AND r.status IN {COUNTING_STATUSES}
                       AND r.at_ms + r.offset_min * 60000 < ?1)
             FROM coupons c
             WHERE c.control = 0 AND c.issued_at_ms + c.offset_min * 60000 < ?1
             ORDER BY c.issued_at_ms, c.store, c.till, c.seq"
        ),
        sql_params![end_local_ms],
        &mut |r| {
            let profile: Option<String> = r.get(0)?;
            let expires: String = r.get(3)?;
            if let Some(profile) = profile {
                data.coupon(&profile, r.get(1)?, r.get(2)?, &expires, r.get(4)?);
            }
            Ok(())
        },
    )?;
    Ok(data.finish())
}

/// Histories as of `as_of`, read in one read transaction.
pub fn histories(db: &dyn Sql, as_of: NaiveDate) -> Result<HubData, StoreError> {
    transaction(db, TxKind::Read, |db| load_histories(db, as_of))
}

/// profile id → segment ids (sorted).
pub type Membership = HashMap<String, Vec<String>>;

/// The segment membership the last recompute stored.
pub fn stored_membership(db: &dyn Sql) -> Result<Membership, StoreError> {
    let mut members = Membership::new();
    db.query_each(
        "SELECT profile_id, segment_id FROM segment_members ORDER BY profile_id, segment_id",
        sql_params![],
        &mut |mut r| {
            let segment = text(&mut r, 1)?;
            members.entry(text(&mut r, 0)?).or_default().push(segment);
            Ok(())
        },
    )?;
    Ok(members)
}

/// Histories as of `as_of` and, when `with_membership`, the stored segment membership,
/// from one snapshot.
pub fn histories_and_membership(
    db: &dyn Sql,
    as_of: NaiveDate,
    with_membership: bool,
) -> Result<(HubData, Option<Membership>), StoreError> {
    transaction(db, TxKind::Read, |db| {
        let data = load_histories(db, as_of)?;
        let stored = if with_membership {
            Some(stored_membership(db)?)
        } else {
            None
        };
        Ok((data, stored))
    })
}

/// A recompute's writes, inside the transaction that replaced the old rows.
pub struct TraitsOutput<'a> {
    db: &'a dyn Sql,
    as_of_ms: i64,
}

impl TraitsOutput<'_> {
    /// Stores a profile's traits (JSON); `false` when the profile is gone (an erase or
    /// a merge since the histories were read wins).
    pub fn traits(&self, profile_id: &str, traits_json: &str) -> Result<bool, StoreError> {
        Ok(self.db.execute(
            "INSERT INTO profile_traits (profile_id, as_of_ms, traits)
             SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM profiles WHERE profile_id = ?1)",
            sql_params![profile_id, self.as_of_ms, traits_json],
        )? > 0)
    }

    /// Makes a profile a member of a segment; `false` when the profile is gone.
    pub fn member(&self, segment_id: &str, profile_id: &str) -> Result<bool, StoreError> {
        Ok(self.db.execute(
            "INSERT INTO segment_members (segment_id, profile_id)
             SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM profiles WHERE profile_id = ?2)",
            sql_params![segment_id, profile_id],
        )? > 0)
    }
}

/// Replaces every row of `profile_traits` and `segment_members` by what `write` stores,
/// and records the run at `now`, in ONE write transaction (run again from the start if
/// it lost a race with another hub).
pub fn replace_all<R>(
    db: &dyn Sql,
    now: Timestamp,
    mut write: impl FnMut(&TraitsOutput<'_>) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    transaction(db, TxKind::Write, |db| {
        db.execute("DELETE FROM profile_traits", sql_params![])?;
        db.execute("DELETE FROM segment_members", sql_params![])?;
        let written = write(&TraitsOutput {
            db,
            as_of_ms: now.unix_ms,
        })?;
        freshness::record_run(db, now)?;
        Ok(written)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::for_each_engine;
    use crate::traits::history::{Channel, CouponIssue};
    use till360_shared::{codec, ReceiptLine};

    const DAY: i64 = 86_400_000;
    /// 2026-03-01 00:00 UTC.
    const MARCH_1: i64 = 1_772_323_200_000;

    fn line(description: &str, sku: Option<&str>, cents: i64) -> ReceiptLine {
        ReceiptLine {
            description: description.into(),
            sku: sku.map(str::to_string),
            quantity_milli: 1000,
            unit_cents: Some(cents),
            amount_cents: cents,
            discount: false,
        }
    }

    fn receipt(db: &dyn Sql, seq: i64, profile: &str, at_ms: i64, unbalanced: i64, lines: &[u8]) {
        db.execute(
            "INSERT INTO transactions (store, till, seq, at_ms, offset_min, profile_id,
                 total_cents, currency, lines, unbalanced)
             VALUES ('S1', 'T01', ?1, ?2, 60, ?3, 1500, 'EUR', ?4, ?5)",
            sql_params![seq, at_ms, profile, lines, unbalanced],
        )
        .unwrap();
    }

    /// p-1: a card, an e-mail consent, wine and a sensitive product on one receipt; a
    /// receipt with unreadable lines; one the till could not balance; one after the
    /// date. p-2: an online order.
    fn hub(db: &dyn Sql) {
        for (profile, customer_no) in [("p-1", Some("C-1")), ("p-2", None)] {
            db.execute(
                "INSERT INTO profiles (profile_id, created_at_ms, created_offset_min, customer_no)
                 VALUES (?1, 0, 0, ?2)",
                sql_params![profile, customer_no],
            )
            .unwrap();
        }
        db.execute(
            "INSERT INTO identifiers (kind, value, profile_id, source, added_at_ms)
             VALUES ('card', '2401000000010', 'p-1', 'till', 0)",
            sql_params![],
        )
        .unwrap();
        db.execute(
            "INSERT INTO consents (profile_id, purpose, granted, source, at_ms)
             VALUES ('p-1', 'email', 1, 'crm', 5)",
            sql_params![],
        )
        .unwrap();
        for (sku, description, category, sensitive) in
            [("W1", "Rioja", "wine", 0), ("M1", "Pills", "pharmacy", 1)]
        {
            db.execute(
                "INSERT INTO products (sku, description, category, sensitive)
                 VALUES (?1, ?2, ?3, ?4)",
                sql_params![sku, description, category, sensitive],
            )
            .unwrap();
        }
        let lines =
            codec::to_bytes(&vec![line("RIOJA", None, 1000), line("x", Some("M1"), 500)]).unwrap();
        receipt(db, 1, "p-1", MARCH_1 - 10 * DAY, 0, &lines);
        receipt(db, 2, "p-1", MARCH_1 - 5 * DAY, 0, b"not lines");
        receipt(db, 3, "p-1", MARCH_1 - 4 * DAY, 1, &lines);
        receipt(db, 4, "p-1", MARCH_1 + 2 * DAY, 0, &lines);
        db.execute(
            "INSERT INTO orders (order_id, profile_id, ordered_at_ms, offset_min, channel,
                 total_cents, currency, lines)
             VALUES ('O-1', 'p-2', ?1, 0, 'web', 2500, 'EUR', ?2)",
            sql_params![
                MARCH_1 - 3 * DAY,
                r#"[{"sku": "W1", "description": "Rioja", "qty": 1, "unit_cents": 2500, "amount_cents": 2500}]"#
            ],
        )
        .unwrap();
    }

    fn march(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
    }

    #[test]
    fn histories_are_read_as_of_a_date_with_categories_but_nothing_sensitive() {
        for_each_engine(|database| {
            let conn = database.get().unwrap();
            let db: &dyn Sql = &*conn;
            hub(db);
            let data = histories(db, march(1)).unwrap();
            let ids: Vec<&str> = data
                .histories
                .iter()
                .map(|h| h.profile_id.as_str())
                .collect();
            assert_eq!(ids, vec!["p-1", "p-2"]);
            let (one, two) = (&data.histories[0], &data.histories[1]);
            assert_eq!(one.customer_no.as_deref(), Some("C-1"));
            assert_eq!(one.cards, vec!["2401000000010".to_string()]);
            assert_eq!(data.consents[0].len(), 1);
            assert!(data.consents[0][0].granted);
            assert_eq!(data.consents[0][0].at_ms, 5);
            // Receipts 1 and 2; 3 is unbalanced, 4 after the date.
            assert_eq!(one.purchases.len(), 2, "{:?}", one.purchases);
            assert_eq!(one.purchases[0].store.as_deref(), Some("S1"));
            assert_eq!(one.purchases[0].at.offset_min, 60);
            assert_eq!(one.purchases[0].amount_cents, 1500);
            assert_eq!(
                one.purchases[0].categories,
                vec![("wine".to_string(), 1000)],
                "by description, without the sensitive line"
            );
            assert_eq!(data.unreadable_lines, 1);
            assert_eq!(two.purchases.len(), 1);
            assert_eq!(two.purchases[0].channel, Channel::Online);
            assert_eq!(
                two.purchases[0].categories,
                vec![("wine".to_string(), 2500)]
            );

            let later = histories(db, march(3)).unwrap();
            assert_eq!(later.histories[0].purchases.len(), 3);
        });
    }

    fn coupon(db: &dyn Sql, seq: i64, control: i64, code: &str, card: Option<&str>, at_ms: i64) {
        db.execute(
            "INSERT INTO coupons (store, till, seq, campaign_id, control, code, card, profile_id,
                 issued_at_ms, offset_min, expires, receipt_seq)
             VALUES ('S1', 'T01', ?1, 'birthday', ?2, ?3, ?4, 'p-2', ?5, 60, '2026-12-31', ?1)",
            sql_params![seq, control, code, card, at_ms],
        )
        .unwrap();
    }

    fn scan(db: &dyn Sql, seq: i64, code: &str, status: &str, at_ms: i64) {
        db.execute(
            "INSERT INTO redemptions (store, till, seq, code, at_ms, offset_min, status, commit_seq)
             VALUES ('S1', 'T02', ?1, ?2, ?3, 60, ?4, ?1)",
            sql_params![seq, code, at_ms, status],
        )
        .unwrap();
    }

    /// The coupons printed for a profile come with the local day they were issued and of
    /// their first counting scan, as of a date: the control group's (never printed), a
    /// scan after the date, a forged or duplicate scan do not count, and a coupon follows
    /// its card to the card's profile now.
    #[test]
    fn histories_carry_each_printed_coupon_and_its_first_counting_redemption() {
        for_each_engine(|database| {
            let conn = database.get().unwrap();
            let db: &dyn Sql = &*conn;
            hub(db);
            // p-2's own coupons (no card): redeemed twice (the first scan counts), a
            // control-group row, one redeemed only after March 1, one scanned as forged.
            coupon(db, 1, 0, "C1", None, MARCH_1 - 20 * DAY);
            scan(db, 1, "C1", "genuine", MARCH_1 - 12 * DAY + 3_600_000);
            scan(db, 2, "C1", "duplicate", MARCH_1 - 11 * DAY);
            scan(db, 3, "C1", "unchecked", MARCH_1 - 10 * DAY);
            coupon(db, 2, 1, "C2", None, MARCH_1 - 19 * DAY);
            scan(db, 4, "C2", "genuine", MARCH_1 - 9 * DAY);
            coupon(db, 3, 0, "C3", None, MARCH_1 - 8 * DAY);
            scan(db, 5, "C3", "genuine", MARCH_1 + DAY);
            coupon(db, 4, 0, "C4", None, MARCH_1 - 7 * DAY);
            scan(db, 6, "C4", "forged", MARCH_1 - 6 * DAY);
            // Printed to p-1's card (recorded at merge for p-2): p-1's now.
            coupon(db, 5, 0, "C5", Some("2401000000010"), MARCH_1 - 2 * DAY);
            // Issued 23:30 UTC on February 28, 00:30 the next day at the till.
            coupon(db, 6, 0, "C6", None, MARCH_1 - 1_800_000);

            let day_of = |ms: i64| (ms + 3_600_000).div_euclid(DAY);
            let expires_day =
                crate::traits::history::day_number(NaiveDate::from_ymd_opt(2026, 12, 31).unwrap());
            let data = histories(db, march(1)).unwrap();
            let (one, two) = (&data.histories[0], &data.histories[1]);
            assert_eq!(
                one.coupons,
                vec![CouponIssue {
                    issued_day: day_of(MARCH_1 - 2 * DAY),
                    expires_day,
                    redeemed_day: None
                }]
            );
            assert_eq!(
                two.coupons,
                vec![
                    CouponIssue {
                        issued_day: day_of(MARCH_1 - 20 * DAY),
                        expires_day,
                        redeemed_day: Some(day_of(MARCH_1 - 12 * DAY + 3_600_000)),
                    },
                    CouponIssue {
                        issued_day: day_of(MARCH_1 - 8 * DAY),
                        expires_day,
                        redeemed_day: None,
                    },
                    CouponIssue {
                        issued_day: day_of(MARCH_1 - 7 * DAY),
                        expires_day,
                        redeemed_day: None,
                    },
                    CouponIssue {
                        issued_day: day_of(MARCH_1 - 1_800_000),
                        expires_day,
                        redeemed_day: None,
                    },
                ]
            );
            // The coupon issued at 00:30 local on March 1 is after February 28.
            let before = histories(db, march(1).pred_opt().unwrap()).unwrap();
            assert_eq!(before.histories[1].coupons.len(), 3);
            // By March 2 the scan of C3 counts.
            let later = histories(db, march(2)).unwrap();
            assert_eq!(
                later.histories[1].coupons[1].redeemed_day,
                Some(day_of(MARCH_1 + DAY))
            );
        });
    }

    #[test]
    fn a_recompute_replaces_every_row_and_skips_profiles_gone_since() {
        for_each_engine(|database| {
            let conn = database.get().unwrap();
            let db: &dyn Sql = &*conn;
            hub(db);
            let first = Timestamp::from_unix_ms(MARCH_1, 0);
            replace_all(db, first, |out| {
                assert!(out.traits("p-1", r#"{"frequency": 1}"#)?);
                assert!(out.traits("p-2", r#"{"frequency": 0}"#)?);
                assert!(out.member("vip", "p-1")?);
                assert!(out.member("vip", "p-2")?);
                assert!(out.member("mail", "p-1")?);
                Ok(())
            })
            .unwrap();
            assert_eq!(freshness::computed_at(db).unwrap(), Some(first));

            let second = Timestamp::from_unix_ms(MARCH_1 + DAY, 0);
            let written = replace_all(db, second, |out| {
                let gone = !out.traits("p-gone", "{}")? && !out.member("vip", "p-gone")?;
                Ok((
                    gone,
                    out.traits("p-1", r#"{"frequency": 2}"#)?,
                    out.member("vip", "p-1")?,
                ))
            })
            .unwrap();
            assert_eq!(written, (true, true, true));
            assert_eq!(freshness::computed_at(db).unwrap(), Some(second));
            let members = stored_membership(db).unwrap();
            assert_eq!(members.len(), 1, "{members:?}");
            assert_eq!(members["p-1"], vec!["vip".to_string()]);

            // A failed recompute leaves the last one in place.
            let failed = replace_all(db, Timestamp::from_unix_ms(MARCH_1 + 2 * DAY, 0), |out| {
                out.traits("p-2", "{}")?;
                Err::<(), _>(StoreError::Corrupt("stop".into()))
            });
            assert!(failed.is_err());
            assert_eq!(freshness::computed_at(db).unwrap(), Some(second));
            let (data, stored) = histories_and_membership(db, march(1), true).unwrap();
            assert_eq!(data.histories.len(), 2);
            assert_eq!(stored.unwrap(), members);
        });
    }
}
