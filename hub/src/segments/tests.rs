use super::*;

fn tables(text: &str) -> Vec<toml::Table> {
    #[derive(serde::Deserialize)]
    struct File {
        segment: Vec<toml::Table>,
    }
    toml::from_str::<File>(text).unwrap().segment
}

fn regular() -> Subject {
    let mut s = Subject::default();
    s.set_number(NumericField::Frequency, Some(4.0));
    s.set_number(NumericField::ChurnRisk, Some(0.7));
    s.set_number(NumericField::RfmR, Some(2.0));
    s.consents.insert("email".into(), true);
    s.consents.insert("sms".into(), false);
    s.add_category("Wine");
    s.stores.insert("S001".into());
    s.labels.insert("sale_hunter".into());
    s
}

const AT_RISK: &str = r#"
[[segment]]
id = "at-risk-regulars"
name = "Regulars about to leave"
where = ["frequency >= 3", "churn_risk >= 0.6", "consent.email = true", "category = wine", "store = S001"]
"#;

#[test]
fn all_conditions_must_hold() {
    let segments = compile(&tables(AT_RISK)).unwrap();
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].id, "at-risk-regulars");
    assert_eq!(segments[0].name, "Regulars about to leave");
    assert_eq!(segments[0].conditions.len(), 5);
    let mut s = regular();
    assert!(segments[0].matches(&s));

    s.set_number(NumericField::ChurnRisk, Some(0.59));
    assert!(!segments[0].matches(&s), "churn risk below the bound");

    let mut s = regular();
    s.consents.insert("email".into(), false);
    assert!(!segments[0].matches(&s), "no e-mail consent");

    let mut s = regular();
    s.consents.remove("email");
    assert!(!segments[0].matches(&s), "a missing consent is not granted");

    let mut s = regular();
    s.stores.clear();
    s.stores.insert("S002".into());
    assert!(!segments[0].matches(&s), "other store only");
}

#[test]
fn every_operator_compares_as_written() {
    let s = regular(); // frequency 4
    let cases = [
        ("frequency = 4", true),
        ("frequency != 4", false),
        ("frequency < 4", false),
        ("frequency <= 4", true),
        ("frequency > 3.5", true),
        ("frequency >= 4.5", false),
        ("frequency>=4", true),
        ("  rfm_r   <   3 ", true),
    ];
    for (text, expected) in cases {
        let c = parse_condition(text).unwrap();
        assert_eq!(c.holds(&s), expected, "{text}");
    }
}

#[test]
fn a_missing_trait_never_matches() {
    let s = regular(); // no p_alive (e.g. no model fitted)
    for text in ["p_alive < 0.5", "p_alive >= 0.5", "p_alive != 0.3"] {
        assert!(!parse_condition(text).unwrap().holds(&s), "{text}");
    }
    let mut s = regular();
    s.set_number(NumericField::PAlive, Some(f64::NAN));
    assert_eq!(s.number(NumericField::PAlive), None, "NaN is not a value");
}

#[test]
fn set_conditions_and_negations() {
    let s = regular();
    let cases = [
        ("category = WINE", true),
        ("category = \"wine\"", true),
        ("category != wine", false),
        ("category = cheese", false),
        ("category != cheese", true),
        ("store = S001", true),
        ("store != S001", false),
        ("store = s001", false),
        ("label = sale_hunter", true),
        ("label = new_collection_buyer", false),
        ("label != new_collection_buyer", true),
        ("consent.email = true", true),
        ("consent.email != true", false),
        ("consent.sms = false", true),
        ("consent.post = false", true),
        ("consent.post != false", false),
    ];
    for (text, expected) in cases {
        let c = parse_condition(text).unwrap();
        assert_eq!(c.holds(&s), expected, "{text}");
    }
}

#[test]
fn bad_conditions_name_the_segment_condition_and_reason() {
    let cases = [
        ("colour = red", "unknown field `colour`"),
        ("frequency => 3", "bad operator `=>`"),
        ("frequency == 3", "bad operator `==`"),
        ("frequency 3", "missing operator"),
        ("frequency >= three", "bad number `three`"),
        ("frequency >= inf", "bad number `inf`"),
        ("frequency >=", "missing value"),
        ("category > wine", "only = and != apply"),
        ("consent.email = maybe", "bad value `maybe`"),
        ("consent.fax = true", "unknown consent purpose `fax`"),
        (">= 3", "expected `field op value`"),
    ];
    for (condition, reason) in cases {
        let text = format!(
            "[[segment]]\nid = \"ok\"\n[[segment]]\nid = \"vip\"\nwhere = [\"frequency >= 1\", {condition:?}]\n"
        );
        let err = compile(&tables(&text)).unwrap_err();
        assert_eq!(err.index, 2, "{condition}");
        assert_eq!(err.id.as_deref(), Some("vip"));
        assert_eq!(err.condition.as_deref(), Some(condition));
        let msg = err.to_string();
        assert!(
            msg.contains(reason) && msg.contains("#2") && msg.contains("\"vip\""),
            "{condition}: {msg}"
        );
    }
}

#[test]
fn bad_tables_are_refused() {
    let err = compile(&tables(
        "[[segment]]\nid = \"a\"\n[[segment]]\nid = \"a\"\n",
    ))
    .unwrap_err();
    assert_eq!((err.index, err.id.as_deref()), (2, Some("a")));
    assert!(err.to_string().contains("duplicate id"), "{err}");

    let err = compile(&tables("[[segment]]\nname = \"x\"\n")).unwrap_err();
    assert!(err.to_string().contains("missing key `id`"), "{err}");

    let err = compile(&tables("[[segment]]\nid = \"a;b\"\n")).unwrap_err();
    assert!(err.to_string().contains("only letters"), "{err}");

    let err = compile(&tables("[[segment]]\nid = \"a\"\nwher = []\n")).unwrap_err();
    assert!(err.to_string().contains("unknown key `wher`"), "{err}");

    let err = compile(&tables(
        "[[segment]]\nid = \"a\"\nwhere = \"frequency > 1\"\n",
    ))
    .unwrap_err();
    assert!(err.to_string().contains("must be an array"), "{err}");

    let err = compile(&tables("[[segment]]\nid = \"a\"\nwhere = [3]\n")).unwrap_err();
    assert!(err.to_string().contains("must be a string"), "{err}");
}

#[test]
fn an_empty_where_matches_everybody_and_name_defaults_to_id() {
    let segments = compile(&tables("[[segment]]\nid = \"all\"\n")).unwrap();
    assert_eq!(segments[0].name, "all");
    assert!(segments[0].matches(&Subject::default()));
    assert!(compile(&[]).unwrap().is_empty());
}
