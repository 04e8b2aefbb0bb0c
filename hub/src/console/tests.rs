//! The console's pure parts: what a search text stands for, key moments, and the
//! 360° body's escaping. The pages themselves are tested against a running hub
//! (`hub/tests/console_http.rs`) and in Chromium (`tests/console_browser.rs`).

use chrono::NaiveDate;

use super::customers::{key_moments, next_yearly, queries_for};
use super::i18n::Msg;
use crate::profile::{PersonalView, ProfileView};
use crate::store::ProfileQuery;

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

#[test]
fn a_search_text_tries_what_it_could_be() {
    assert_eq!(
        queries_for("4006381333931"),
        vec![
            ProfileQuery::Card("4006381333931".into()),
            ProfileQuery::CustomerNo("4006381333931".into()),
            ProfileQuery::Phone("4006381333931".into()),
        ]
    );
    assert_eq!(
        queries_for(" ann@example.com "),
        vec![ProfileQuery::Email("ann@example.com".into())]
    );
    assert_eq!(
        queries_for("+31 6 1234 5678"),
        vec![
            ProfileQuery::CustomerNo("+31 6 1234 5678".into()),
            ProfileQuery::Phone("+31 6 1234 5678".into()),
        ]
    );
    assert_eq!(
        queries_for("de Vr"),
        vec![
            ProfileQuery::CustomerNo("de Vr".into()),
            ProfileQuery::NamePrefix("de Vr".into()),
        ]
    );
    // A bad check digit is not a card; short numbers are not phones.
    assert_eq!(
        queries_for("4006381333932"),
        vec![
            ProfileQuery::CustomerNo("4006381333932".into()),
            ProfileQuery::Phone("4006381333932".into()),
        ]
    );
    assert_eq!(
        queries_for("C-1001"),
        vec![
            ProfileQuery::CustomerNo("C-1001".into()),
            ProfileQuery::NamePrefix("C-1001".into()),
        ]
    );
    assert!(queries_for("   ").is_empty());
}

#[test]
fn yearly_days_come_round_with_leap_days_on_the_28th() {
    let today = date("2026-12-05");
    assert_eq!(next_yearly(date("1980-12-05"), today), date("2026-12-05"));
    assert_eq!(next_yearly(date("1980-12-04"), today), date("2027-12-04"));
    assert_eq!(next_yearly(date("1980-12-31"), today), date("2026-12-31"));
    assert_eq!(next_yearly(date("1984-02-29"), today), date("2027-02-28"));
    assert_eq!(
        next_yearly(date("1984-02-29"), date("2028-01-01")),
        date("2028-02-29")
    );
}

fn view(birth: Option<&str>, since: Option<&str>) -> ProfileView {
    let mut v: ProfileView = crate::profile::profile_view(crate::profile::ProfileParts {
        profile_id: "p1".into(),
        ..Default::default()
    });
    v.personal = PersonalView {
        birth_date: birth.map(str::to_string),
        ..PersonalView::default()
    };
    v.loyalty.member_since = since.map(str::to_string);
    v
}

#[test]
fn key_moments_are_the_next_birthday_and_anniversary() {
    let today = date("2026-12-05");
    let moments = key_moments(&view(Some("1990-12-20"), Some("2020-01-10")), today);
    let got: Vec<(Msg, String, i64)> = moments
        .iter()
        .map(|m| (m.what, m.date.to_string(), m.in_days))
        .collect();
    assert_eq!(
        got,
        vec![
            (Msg::Birthday, "2026-12-20".into(), 15),
            (Msg::Anniversary, "2027-01-10".into(), 36),
        ]
    );
    // Joining today is no anniversary yet; bad dates are ignored.
    let moments = key_moments(&view(Some("not a date"), Some("2026-12-05")), today);
    assert_eq!(moments.len(), 1);
    assert_eq!(moments[0].date, date("2027-12-05"));
}
