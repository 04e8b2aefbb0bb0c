use std::collections::BTreeSet;

use super::*;

fn id(kind: IdKind, value: &str) -> Identifier {
    Identifier {
        kind,
        value: value.into(),
    }
}

#[test]
fn emails_are_trimmed_lower_cased_and_checked() {
    assert_eq!(
        normalise_email("  Anna.DeVries@Example.NL ").unwrap(),
        "anna.devries@example.nl"
    );
    for bad in [
        "anna",
        "@example.nl",
        "anna@example",
        "a b@example.nl",
        "a@@x.nl",
        "a@x..nl",
    ] {
        assert!(normalise_email(bad).is_err(), "{bad}");
    }
    assert_eq!(
        normalise_email("  "),
        Err(IdentifierError::Empty("e-mail address"))
    );
}

#[test]
fn phones_become_e164_with_the_default_country() {
    assert_eq!(normalise_phone("06 1234 5678", 31).unwrap(), "+31612345678");
    assert_eq!(
        normalise_phone("+31 (0)6-1234-5678", 31).unwrap(),
        "+31612345678"
    );
    assert_eq!(
        normalise_phone("+31 6-1234-5678", 49).unwrap(),
        "+31612345678"
    );
    assert_eq!(
        normalise_phone("0031 6 12345678", 49).unwrap(),
        "+31612345678"
    );
    assert_eq!(
        normalise_phone("030/123.45.67", 49).unwrap(),
        "+49301234567"
    );
    assert!(normalise_phone("12", 31).is_err());
    assert!(normalise_phone("06 1234 5678 ext 2", 31).is_err());
    assert!(normalise_phone("+0612345678", 31).is_err());
}

#[test]
fn customer_numbers_and_cards_normalise() {
    assert_eq!(normalise_customer_no(" C-001 ").unwrap(), "C-001");
    assert!(normalise_customer_no(" ").is_err());
    let card = Identifier::parse(IdKind::Card, " 4006381333931 ", 31).unwrap();
    assert_eq!(card.value, "4006381333931");
    assert!(Identifier::parse(IdKind::Card, "4006381333932", 31).is_err());
    // A card's id is the till's id for it.
    let parsed = till360_shared::CardNumber::parse("4006381333931").unwrap();
    assert_eq!(card.profile_id(), crate::profile::profile_id_for(&parsed));
    // Pinned: ids are stored, so every hub version must give the same one.
    assert_eq!(card.profile_id(), "p-510a01430e59e890");
    assert_ne!(
        id(IdKind::CustomerNo, "4006381333931").profile_id(),
        card.profile_id()
    );
}

/// Import summaries and logs show these errors: they name the problem, never the value
/// (a mistyped e-mail or phone is still someone's).
#[test]
fn errors_never_repeat_the_value() {
    let long = "C".repeat(80);
    let cases = [
        (
            "anna.jansen@example",
            normalise_email("anna.jansen@example").unwrap_err(),
        ),
        (
            "anna jansen@example.nl",
            normalise_email("anna jansen@example.nl").unwrap_err(),
        ),
        ("06-1234", normalise_phone("06-1234", 31).unwrap_err()),
        (
            "+31 6 1234 5678 999 12",
            normalise_phone("+31 6 1234 5678 999 12", 31).unwrap_err(),
        ),
        (long.as_str(), normalise_customer_no(&long).unwrap_err()),
    ];
    for (value, err) in cases {
        let shown = err.to_string();
        assert!(!shown.contains(value.trim()), "{shown}");
        assert!(
            !shown.contains("jansen") && !shown.contains("1234"),
            "{shown}"
        );
    }
}

#[test]
fn components_join_rows_and_take_the_smallest_id() {
    let (c1, e, k1, k2, c2) = (
        id(IdKind::CustomerNo, "C1"),
        id(IdKind::Email, "a@x.nl"),
        id(IdKind::Card, "4006381333931"),
        id(IdKind::Card, "96385074"),
        id(IdKind::CustomerNo, "C2"),
    );
    let nodes: BTreeSet<Identifier> = [&c1, &e, &k1, &k2, &c2].into_iter().cloned().collect();
    let rows = vec![vec![c1.clone(), e.clone()], vec![e.clone(), k1.clone()]];
    let comps = components(&nodes, &rows);
    assert_eq!(comps.len(), 3);
    let joined = comps.iter().find(|c| c.members.contains(&c1)).unwrap();
    assert_eq!(joined.members.len(), 3);
    let min = [&c1, &e, &k1].iter().map(|i| i.profile_id()).min().unwrap();
    assert_eq!(joined.profile_id, min);
    // Row order and node order do not matter; identifiers outside the nodes are ignored.
    let mut reversed = rows.clone();
    reversed.reverse();
    reversed.push(vec![
        id(IdKind::Email, "blocked@x.nl"),
        k2.clone(),
        c2.clone(),
    ]);
    let again = components(&nodes, &reversed);
    assert_eq!(again.len(), 2);
    assert!(again.iter().any(|c| c.members
        == comps
            .iter()
            .find(|c| c.members.contains(&c1))
            .unwrap()
            .members));
}
