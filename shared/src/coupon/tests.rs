use super::*;
use proptest::prelude::*;

const MASTER: &[u8] = b"a master secret of thirty-two b!";

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn sample() -> (TillKey, CouponFields) {
    let key = derive_till_key(MASTER, "S001", "T01");
    let fields = CouponFields::new(17, 301, date(2026, 12, 9), 42).unwrap();
    (key, fields)
}

/// Rebuilds a code from a 23-digit number with a correct check digit, as a forger would.
fn with_check_digit(number: &str) -> String {
    let check = check_digit::damm(number.bytes().map(|b| b - b'0'));
    format!("{number}{check}")
}

fn fields_strategy() -> impl Strategy<Value = CouponFields> {
    (
        0..=CouponFields::MAX_CAMPAIGN,
        0..=CouponFields::MAX_TILL,
        0u64..=8191,
        0..=CouponFields::MAX_SERIAL,
    )
        .prop_map(|(campaign, till, day, serial)| {
            let expires = CouponFields::first_expiry() + chrono::Days::new(day);
            CouponFields::new(campaign, till, expires, serial).unwrap()
        })
}

#[test]
fn minted_code_is_24_digits_and_verifies_to_its_fields() {
    let (key, fields) = sample();
    let code = mint(&key, &fields);
    assert_eq!(code.as_str().len(), CODE_LEN);
    assert!(code.as_str().bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(verify(&key, code.as_str()), Ok(fields));
    assert_eq!(parse(code.as_str()), Ok(fields));
    assert_eq!(fields.campaign(), 17);
    assert_eq!(fields.till(), 301);
    assert_eq!(fields.expires(), date(2026, 12, 9));
    assert_eq!(fields.serial(), 42);
}

/// Pins the format: agents and the hub of different versions must agree on every code.
#[test]
fn golden_code_is_stable() {
    let (key, fields) = sample();
    assert_eq!(mint(&key, &fields).as_str(), GOLDEN_CODE);
}

/// Computed independently (Python `hmac`/`hashlib`, same layout) to cross-check this code.
const GOLDEN_CODE: &str = "003142727359438298402594";

#[test]
fn grouped_form_is_readable_and_parses() {
    let (key, fields) = sample();
    let code = mint(&key, &fields);
    let grouped = code.grouped();
    assert_eq!(grouped.len(), CODE_LEN + 5);
    assert_eq!(grouped.split(' ').count(), 6);
    assert_eq!(grouped.replace(' ', ""), code.as_str());
    assert_eq!(verify(&key, &grouped), Ok(fields));
}

#[test]
fn code_of_another_till_or_master_is_refused() {
    let (key, fields) = sample();
    let code = mint(&key, &fields);
    let other_till = derive_till_key(MASTER, "S001", "T02");
    let other_master = derive_till_key(b"another master secret, 32 bytes!", "S001", "T01");
    assert_eq!(
        verify(&other_till, code.as_str()),
        Err(CouponError::BadSignature)
    );
    assert_eq!(
        verify(&other_master, code.as_str()),
        Err(CouponError::BadSignature)
    );
}

#[test]
fn key_derivation_separates_store_and_till_names() {
    let a = derive_till_key(MASTER, "S1", "23");
    let b = derive_till_key(MASTER, "S12", "3");
    assert_ne!(a.as_bytes(), b.as_bytes());
    assert_eq!(
        a.as_bytes(),
        derive_till_key(MASTER, "S1", "23").as_bytes(),
        "derivation is deterministic"
    );
    assert_eq!(format!("{a:?}"), "TillKey(..)", "Debug hides the key");
}

#[test]
fn fields_with_a_copied_mac_are_refused() {
    // A forger who knows one genuine code changes the serial and keeps the MAC.
    let (key, fields) = sample();
    let genuine = mint(&key, &fields);
    let mac = u128::from(key.mac(fields.payload(), MAC_BITS));
    let other = CouponFields::new(17, 301, date(2026, 12, 9), 43).unwrap();
    let number = (u128::from(other.payload()) << MAC_BITS) | mac;
    let forged = with_check_digit(&format!("{number:023}"));
    assert_ne!(forged, genuine.as_str());
    assert_eq!(parse(&forged), Ok(other), "well-formed");
    assert_eq!(verify(&key, &forged), Err(CouponError::BadSignature));
}

#[test]
fn malformed_input_is_refused_with_the_reason() {
    let (key, fields) = sample();
    let code = mint(&key, &fields).as_str().to_string();
    assert_eq!(parse(""), Err(CouponError::WrongLength(0)));
    assert_eq!(parse(&code[..23]), Err(CouponError::WrongLength(23)));
    assert_eq!(
        parse(&format!("{code}0")),
        Err(CouponError::WrongLength(25))
    );
    assert_eq!(
        parse(&format!("{}x{}", &code[..3], &code[4..])),
        Err(CouponError::NotADigit {
            found: 'x',
            position: 3
        })
    );
    assert_eq!(
        parse(&format!("{}٣{}", &code[..3], &code[4..])),
        Err(CouponError::NotADigit {
            found: '٣',
            position: 3
        }),
        "only ASCII digits"
    );
    assert_eq!(
        parse(&"1".repeat(10_000)),
        Err(CouponError::WrongLength(10_000))
    );
    // A number of 2^76 or more is a future format, even with a good check digit.
    assert_eq!(
        parse(&with_check_digit(&"9".repeat(23))),
        Err(CouponError::UnknownFormat)
    );
    assert_eq!(
        verify(&key, &with_check_digit(&"8".repeat(23))),
        Err(CouponError::UnknownFormat)
    );
}

#[test]
fn fields_out_of_range_are_refused() {
    let expires = date(2026, 1, 1);
    assert!(matches!(
        CouponFields::new(4096, 0, expires, 0),
        Err(CouponError::OutOfRange { max: 4095, .. })
    ));
    assert!(matches!(
        CouponFields::new(0, 8192, expires, 0),
        Err(CouponError::OutOfRange { max: 8191, .. })
    ));
    assert!(matches!(
        CouponFields::new(0, 0, expires, 4096),
        Err(CouponError::OutOfRange { max: 4095, .. })
    ));
    assert!(matches!(
        CouponFields::new(0, 0, date(2023, 12, 31), 0),
        Err(CouponError::OutOfRange { value: -1, .. })
    ));
    let last = CouponFields::last_expiry();
    assert_eq!(last, date(2046, 6, 5));
    assert!(CouponFields::new(0, 0, last, 0).is_ok());
    assert!(CouponFields::new(0, 0, last.succ_opt().unwrap(), 0).is_err());
}

#[test]
fn extremes_round_trip() {
    let key = derive_till_key(MASTER, "S9", "T9");
    for fields in [
        CouponFields::new(0, 0, CouponFields::first_expiry(), 0).unwrap(),
        CouponFields::new(
            CouponFields::MAX_CAMPAIGN,
            CouponFields::MAX_TILL,
            CouponFields::last_expiry(),
            CouponFields::MAX_SERIAL,
        )
        .unwrap(),
    ] {
        let code = mint(&key, &fields);
        assert_eq!(code.as_str().len(), CODE_LEN);
        assert_eq!(verify(&key, code.as_str()), Ok(fields));
    }
}

#[test]
fn expiry_is_a_separate_check_inclusive_of_the_last_day() {
    let (key, fields) = sample();
    let verified = verify(&key, mint(&key, &fields).as_str()).unwrap();
    assert_eq!(verified.check_not_expired(date(2026, 11, 25)), Ok(()));
    assert_eq!(verified.check_not_expired(date(2026, 12, 9)), Ok(()));
    assert_eq!(
        verified.check_not_expired(date(2026, 12, 10)),
        Err(CouponError::Expired {
            expires: date(2026, 12, 9)
        })
    );
}

proptest! {
    #[test]
    fn mint_verify_round_trips(fields in fields_strategy(), master in any::<[u8; 32]>()) {
        let key = derive_till_key(&master, "S001", "T01");
        let code = mint(&key, &fields);
        prop_assert_eq!(code.as_str().len(), CODE_LEN);
        prop_assert_eq!(verify(&key, code.as_str()), Ok(fields));
    }

    /// Every position, every other digit (and a blank): refused (by the check digit, never by chance).
    #[test]
    fn any_single_digit_change_is_refused(fields in fields_strategy(), master in any::<[u8; 32]>()) {
        let key = derive_till_key(&master, "S001", "T01");
        let code = mint(&key, &fields);
        let digits: Vec<char> = code.as_str().chars().collect();
        for position in 0..CODE_LEN {
            for replacement in '0'..='9' {
                if replacement == digits[position] {
                    continue;
                }
                let mut changed = digits.clone();
                changed[position] = replacement;
                let changed: String = changed.into_iter().collect();
                prop_assert_eq!(parse(&changed), Err(CouponError::CheckDigit), "{}", changed);
                prop_assert!(verify(&key, &changed).is_err());
            }
            // A digit lost to a blank (spaces are allowed between groups) is a short code.
            let mut blanked = digits.clone();
            blanked[position] = ' ';
            let blanked: String = blanked.into_iter().collect();
            prop_assert_eq!(verify(&key, &blanked), Err(CouponError::WrongLength(CODE_LEN - 1)));
        }
    }

    #[test]
    fn adjacent_swaps_are_refused(fields in fields_strategy(), position in 0..CODE_LEN - 1) {
        let key = derive_till_key(MASTER, "S001", "T01");
        let code = mint(&key, &fields);
        let mut digits: Vec<char> = code.as_str().chars().collect();
        prop_assume!(digits[position] != digits[position + 1]);
        digits.swap(position, position + 1);
        let swapped: String = digits.into_iter().collect();
        prop_assert!(verify(&key, &swapped).is_err());
    }

    /// A forger with the right format but not the key: any MAC other than the true one fails.
    #[test]
    fn wrong_mac_is_refused(fields in fields_strategy(), mac in 0u32..(1 << MAC_BITS)) {
        let key = derive_till_key(MASTER, "S001", "T01");
        prop_assume!(mac != key.mac(fields.payload(), MAC_BITS));
        let number = (u128::from(fields.payload()) << MAC_BITS) | u128::from(mac);
        let forged = with_check_digit(&format!("{number:023}"));
        prop_assert_eq!(parse(&forged), Ok(fields));
        prop_assert_eq!(verify(&key, &forged), Err(CouponError::BadSignature));
    }

    #[test]
    fn parse_never_panics(input in ".{0,80}") {
        let _ = parse(&input);
    }

    #[test]
    fn parse_never_panics_on_digit_soup(input in "[0-9 ]{20,30}") {
        let key = derive_till_key(MASTER, "S001", "T01");
        let _ = verify(&key, &input);
    }
}
