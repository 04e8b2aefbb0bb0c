//! Is a coupon code genuine? The hub holds the master secret, so it can check the MAC of
//! a code from any till: the code names a till number and a campaign number (assigned in
//! `store::numbering`); the till's key is derived from the master secret for that
//! till's store/till names. Pure: the numbers are resolved by lookups the caller
//! passes (`store::coupon_checks` passes the store's).

use chrono::NaiveDate;
use till360_shared::coupon::{derive_till_key, parse, verify, CouponFields};
use till360_shared::wire::CouponVerdict;
use till360_shared::AgentId;

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

/// Checks a code's format, its till and campaign numbers (`till_of`, `campaign_of`:
/// what each number was assigned to, if anything) and its MAC.
pub fn check_code<E>(
    master: &[u8],
    code: &str,
    till_of: impl FnOnce(u16) -> Result<Option<AgentId>, E>,
    campaign_of: impl FnOnce(u16) -> Result<Option<String>, E>,
) -> Result<CodeCheck, E> {
    let fields = match parse(code) {
        Ok(fields) => fields,
        Err(e) => return Ok(CodeCheck::Forged(e.to_string())),
    };
    let Some(issuer) = till_of(fields.till())? else {
        return Ok(CodeCheck::Forged(format!(
            "till number {} was never assigned",
            fields.till()
        )));
    };
    let Some(campaign_id) = campaign_of(fields.campaign())? else {
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

pub use crate::profile::code_digits;

/// The hub's answer to a till asking about a code (`CouponCheck`), given its signature
/// check: forged, expired on `today` (the asking till's local date), already redeemed
/// (`already_redeemed`: a genuine redemption of the code is on record; asked only of a
/// genuine code in date), or valid.
pub fn coupon_verdict<E>(
    check: &CodeCheck,
    today: NaiveDate,
    already_redeemed: impl FnOnce() -> Result<bool, E>,
) -> Result<CouponVerdict, E> {
    let fields = match check {
        CodeCheck::Forged(_) => return Ok(CouponVerdict::Forged),
        CodeCheck::Genuine { fields, .. } => fields,
    };
    if fields.check_not_expired(today).is_err() {
        return Ok(CouponVerdict::Expired);
    }
    Ok(if already_redeemed()? {
        CouponVerdict::AlreadyRedeemed
    } else {
        CouponVerdict::Valid
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use till360_shared::coupon::mint;

    const MASTER: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
    const TILL_NUMBER: u16 = 0;
    const CAMPAIGN_NUMBER: u16 = 3;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
    }

    /// The hub's numbering: till 0 is S001/T01, campaign 3 is big-basket.
    fn check(code: &str) -> CodeCheck {
        check_code(
            MASTER,
            code,
            |n| Ok::<_, Infallible>((n == TILL_NUMBER).then(|| AgentId::new("S001", "T01"))),
            |n| Ok((n == CAMPAIGN_NUMBER).then(|| "big-basket".to_string())),
        )
        .unwrap()
    }

    fn verdict(code: &str, today: NaiveDate, redeemed: bool) -> CouponVerdict {
        coupon_verdict(&check(code), today, || Ok::<_, Infallible>(redeemed)).unwrap()
    }

    #[test]
    fn genuine_forged_expired_and_redeemed_codes() {
        let key = derive_till_key(MASTER, "S001", "T01");
        let fields = CouponFields::new(CAMPAIGN_NUMBER, TILL_NUMBER, day(9), 1).unwrap();
        let code = mint(&key, &fields);

        match check(code.as_str()) {
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
            verdict(&code_digits(&code.grouped()), day(1), false),
            CouponVerdict::Valid
        );
        assert_eq!(
            verdict(code.as_str(), day(10), false),
            CouponVerdict::Expired
        );
        assert_eq!(
            verdict(code.as_str(), day(1), true),
            CouponVerdict::AlreadyRedeemed
        );

        // Signed with another till's key, or naming an unknown till or campaign: forged.
        let other_key = derive_till_key(MASTER, "S001", "T02");
        let forged = mint(&other_key, &fields);
        assert_eq!(
            verdict(forged.as_str(), day(1), false),
            CouponVerdict::Forged
        );
        let unknown_till = mint(
            &key,
            &CouponFields::new(CAMPAIGN_NUMBER, 77, day(9), 1).unwrap(),
        );
        assert!(matches!(
            check(unknown_till.as_str()),
            CodeCheck::Forged(reason) if reason.contains("till number 77")
        ));
        let unknown_campaign = mint(&key, &CouponFields::new(4, TILL_NUMBER, day(9), 1).unwrap());
        assert!(matches!(
            check(unknown_campaign.as_str()),
            CodeCheck::Forged(reason) if reason.contains("campaign number 4")
        ));
        let mut typo = code.as_str().to_string().into_bytes();
        typo[5] = if typo[5] == b'9' { b'0' } else { typo[5] + 1 };
        assert_eq!(
            verdict(std::str::from_utf8(&typo).unwrap(), day(1), false),
            CouponVerdict::Forged
        );
    }

    #[test]
    fn the_redemption_lookup_is_asked_only_of_a_genuine_code_in_date() {
        let key = derive_till_key(MASTER, "S001", "T01");
        let code = mint(
            &key,
            &CouponFields::new(CAMPAIGN_NUMBER, TILL_NUMBER, day(9), 1).unwrap(),
        );
        let asked = std::cell::Cell::new(0);
        let lookup = || {
            asked.set(asked.get() + 1);
            Ok::<_, Infallible>(false)
        };
        coupon_verdict(&check(code.as_str()), day(10), lookup).unwrap();
        coupon_verdict(&check("123"), day(1), lookup).unwrap();
        assert_eq!(asked.get(), 0);
        coupon_verdict(&check(code.as_str()), day(1), lookup).unwrap();
        assert_eq!(asked.get(), 1);
    }
}
