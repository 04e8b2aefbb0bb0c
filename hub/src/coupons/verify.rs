//! Is a coupon code genuine? The hub holds the master secret, so it can check the MAC of
//! a code from any till: the code names a till number and a campaign number (assigned in
//! `store::numbering`); the till's key is derived from the master secret for that
//! till's store/till names.

use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension};
use till360_shared::coupon::{derive_till_key, parse, verify, CouponFields};
use till360_shared::wire::CouponVerdict;
use till360_shared::AgentId;

use crate::store::sql::Sql;
use crate::store::{numbering, StoreError};

/// What the signature check of a code says (redemption state aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    /// Signed by the till it names, for a campaign the hub numbered.
    Genuine {
        fields: CouponFields,
        issuer: AgentId,
        campaign_id: String,
    },
    /// Why the code is not genuine (a misread, an unknown till or campaign, a bad MAC).
    Forged(String),
}

/// Checks a code's format, its till and campaign numbers and its MAC.
pub fn check_code(conn: &dyn Sql, master: &[u8], code: &str) -> Result<CodeCheck, StoreError> {
    let fields = match parse(code) {
        Ok(fields) => fields,
        Err(e) => return Ok(CodeCheck::Forged(e.to_string())),
    };
    let Some(issuer) = numbering::till_of_number(conn, fields.till())? else {
        return Ok(CodeCheck::Forged(format!(
            "till number {} was never assigned",
            fields.till()
        )));
    };
    let Some(campaign_id) = numbering::campaign_of_number(conn, fields.campaign())? else {
        return Ok(CodeCheck::Forged(format!(
            "campaign number {} was never assigned",
            fields.campaign()
        )));
    };
    let key = derive_till_key(master, &issuer.store, &issuer.till);
    match verify(&key, code) {
        Ok(fields) => Ok(CodeCheck::Genuine {
            fields,
            issuer,
            campaign_id,
        }),
        Err(e) => Ok(CodeCheck::Forged(e.to_string())),
    }
}

/// A code as the ledger keys it: what was scanned or typed, whitespace removed (people
/// type the grouped form).
pub fn code_digits(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The hub's answer to a till asking about a code (`CouponCheck`): forged, expired on
/// `today` (the asking till's local date), already redeemed (a genuine redemption of
/// the code is on record), or valid.
pub fn coupon_verdict(
    conn: &Connection,
    master: &[u8],
    code: &str,
    today: NaiveDate,
) -> Result<CouponVerdict, StoreError> {
    let fields = match check_code(conn, master, code)? {
        CodeCheck::Forged(_) => return Ok(CouponVerdict::Forged),
        CodeCheck::Genuine { fields, .. } => fields,
    };
    if fields.check_not_expired(today).is_err() {
        return Ok(CouponVerdict::Expired);
    }
    let digits = code_digits(code);
    let redeemed: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM redemptions WHERE code = ?1 AND status = 'genuine' LIMIT 1")?
        .query_row([&digits], |r| r.get(0))
        .optional()?;
    Ok(if redeemed.is_some() {
        CouponVerdict::AlreadyRedeemed
    } else {
        CouponVerdict::Valid
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use till360_shared::coupon::mint;

    const MASTER: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
    }

    #[test]
    fn genuine_forged_expired_and_redeemed_codes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        let till = AgentId::new("S001", "T01");
        let number = numbering::till_number(&conn, &till).unwrap();
        let campaign = numbering::campaign_numbers(&conn, &["big-basket"]).unwrap()[0].1;
        let key = derive_till_key(MASTER, "S001", "T01");
        let fields = CouponFields::new(campaign, number, day(9), 1).unwrap();
        let code = mint(&key, &fields);

        match check_code(&conn, MASTER, code.as_str()).unwrap() {
            CodeCheck::Genuine {
                issuer,
                campaign_id,
                ..
            } => assert_eq!((issuer, campaign_id.as_str()), (till.clone(), "big-basket")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            coupon_verdict(&conn, MASTER, &code.grouped(), day(1)).unwrap(),
            CouponVerdict::Valid
        );
        assert_eq!(
            coupon_verdict(&conn, MASTER, code.as_str(), day(10)).unwrap(),
            CouponVerdict::Expired
        );

        // Signed with another till's key, or naming an unknown till: forged.
        let other_key = derive_till_key(MASTER, "S001", "T02");
        let forged = mint(&other_key, &fields);
        assert_eq!(
            coupon_verdict(&conn, MASTER, forged.as_str(), day(1)).unwrap(),
            CouponVerdict::Forged
        );
        let unknown_till = mint(&key, &CouponFields::new(campaign, 77, day(9), 1).unwrap());
        assert!(matches!(
            check_code(&conn, MASTER, unknown_till.as_str()).unwrap(),
            CodeCheck::Forged(reason) if reason.contains("till number 77")
        ));
        let mut typo = code.as_str().to_string().into_bytes();
        typo[5] = if typo[5] == b'9' { b'0' } else { typo[5] + 1 };
        assert_eq!(
            coupon_verdict(&conn, MASTER, std::str::from_utf8(&typo).unwrap(), day(1)).unwrap(),
            CouponVerdict::Forged
        );

        conn.execute(
            "INSERT INTO redemptions (store, till, seq, code, at_ms, offset_min, status)
             VALUES ('S002', 'T01', 4, ?1, 0, 60, 'genuine')",
            [code.as_str()],
        )
        .unwrap();
        assert_eq!(
            coupon_verdict(&conn, MASTER, code.as_str(), day(1)).unwrap(),
            CouponVerdict::AlreadyRedeemed
        );
    }
}
