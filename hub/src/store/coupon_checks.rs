//! A scanned coupon code checked against the hub's numbering and redemptions: the
//! check itself is the pure model in `coupons::verify`; the store answers its lookups.

use chrono::NaiveDate;
use till360_shared::wire::CouponVerdict;

use super::numbering;
use super::sql::{Sql, SqlExt};
use super::StoreError;
use crate::coupons::verify::{self, code_digits, CodeCheck};
use crate::sql_params;

/// Checks a code's format, its till and campaign numbers and its MAC.
pub fn check_code(db: &dyn Sql, master: &[u8], code: &str) -> Result<CodeCheck, StoreError> {
    verify::check_code(
        master,
        code,
        |till| numbering::till_of_number(db, till),
        |campaign| numbering::campaign_of_number(db, campaign),
    )
}

/// The hub's answer to a till asking about a code (`CouponCheck`) on `today`.
pub fn coupon_verdict(
    db: &dyn Sql,
    master: &[u8],
    code: &str,
    today: NaiveDate,
) -> Result<CouponVerdict, StoreError> {
    let check = check_code(db, master, code)?;
    verify::coupon_verdict(&check, today, || {
        db.exists(
            "SELECT 1 FROM redemptions WHERE code = ?1 AND status = 'genuine' LIMIT 1",
            sql_params![code_digits(code)],
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::for_each_engine;
    use till360_shared::coupon::{derive_till_key, mint, CouponFields};
    use till360_shared::AgentId;

    const MASTER: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
    }

    #[test]
    fn codes_are_checked_against_the_numbering_and_the_redemptions() {
        for_each_engine(|database| {
            let conn = database.get().unwrap();
            let db: &dyn Sql = &*conn;
            db.execute(
                "INSERT INTO till_numbers (number, store, till) VALUES (5, 'S001', 'T01')",
                sql_params![],
            )
            .unwrap();
            db.execute(
                "INSERT INTO campaign_numbers (number, campaign_id) VALUES (2, 'big-basket')",
                sql_params![],
            )
            .unwrap();
            let key = derive_till_key(MASTER, "S001", "T01");
            let code = mint(&key, &CouponFields::new(2, 5, day(9), 1).unwrap());

            match check_code(db, MASTER, code.as_str()).unwrap() {
                CodeCheck::Genuine {
                    issuer,
                    campaign_id,
                    ..
                } => assert_eq!(
                    (issuer, campaign_id.as_str()),
                    (AgentId::new("S001", "T01"), "big-basket")
                ),
                other => panic!("{other:?}"),
            }
            assert_eq!(
                coupon_verdict(db, MASTER, &code.grouped(), day(1)).unwrap(),
                CouponVerdict::Valid
            );
            assert_eq!(
                coupon_verdict(db, MASTER, code.as_str(), day(10)).unwrap(),
                CouponVerdict::Expired
            );
            let unknown_till = mint(&key, &CouponFields::new(2, 77, day(9), 1).unwrap());
            assert!(matches!(
                check_code(db, MASTER, unknown_till.as_str()).unwrap(),
                CodeCheck::Forged(reason) if reason.contains("till number 77")
            ));
            let unknown_campaign = mint(&key, &CouponFields::new(3, 5, day(9), 1).unwrap());
            assert!(matches!(
                check_code(db, MASTER, unknown_campaign.as_str()).unwrap(),
                CodeCheck::Forged(reason) if reason.contains("campaign number 3")
            ));

            // Scanned as the grouped form, redeemed as digits: the same code.
            db.execute(
                "INSERT INTO redemptions (store, till, seq, code, at_ms, offset_min, status)
                 VALUES ('S002', 'T01', 4, ?1, 0, 60, 'genuine')",
                sql_params![code.as_str()],
            )
            .unwrap();
            assert_eq!(
                coupon_verdict(db, MASTER, &code.grouped(), day(1)).unwrap(),
                CouponVerdict::AlreadyRedeemed
            );
        });
    }
}
