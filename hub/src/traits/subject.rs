//! The bridge from traits and consents to what segments are evaluated against.

use crate::segments::{NumericField, Subject};

use super::history::ConsentRow;
use super::population::CustomerTraits;

/// The segment subject of one profile. Consents set after `consents_until_ms` (when
/// given: a point-in-time export) do not count, so a later grant is never used early.
pub fn subject(
    traits: Option<&CustomerTraits>,
    consents: &[ConsentRow],
    consents_until_ms: Option<i64>,
) -> Subject {
    let mut s = Subject::default();
    for c in consents {
        let in_time = consents_until_ms.is_none_or(|until| c.at_ms < until);
        s.consents.insert(c.purpose.clone(), c.granted && in_time);
    }
    let Some(t) = traits else {
        return s;
    };
    let numbers = [
        (NumericField::Frequency, Some(f64::from(t.frequency))),
        (NumericField::RecencyDays, Some(f64::from(t.recency_days))),
        (NumericField::TDays, Some(f64::from(t.t_days))),
        (NumericField::MonetaryCents, Some(t.monetary_cents)),
        (NumericField::PAlive, t.p_alive),
        (NumericField::ExpectedPurchases, t.expected_purchases),
        (NumericField::ClvCents, t.clv_cents),
        (NumericField::ChurnRisk, t.churn_risk),
        (NumericField::SaleShare, t.sale_share),
        (NumericField::OnlineShare, Some(t.online_share)),
        (NumericField::RfmR, Some(f64::from(t.rfm_r))),
        (NumericField::RfmF, Some(f64::from(t.rfm_f))),
        (NumericField::RfmM, Some(f64::from(t.rfm_m))),
    ];
    for (field, value) in numbers {
        s.set_number(field, value);
    }
    for c in &t.categories {
        s.add_category(c);
    }
    s.stores.extend(t.stores.iter().cloned());
    if let Some(label) = t.label {
        s.labels.insert(label.name().to_string());
    }
    s
}
