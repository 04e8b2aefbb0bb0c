//! Traits for a whole population as of a date: summaries, RFM quintiles, the fitted
//! models and every customer's scores. Pure: no IO, `as_of` passed in.

use chrono::NaiveDate;
use serde::Serialize;

use super::behaviour::{behaviour, Label};
use super::bgnbd::{BgNbd, Observation};
use super::correction::Correction;
use super::gamma_gamma::GammaGamma;
use super::history::{day_number, CustomerHistory};
use super::model::{ModelKind, PurchaseModel};
use super::panel::Panel;
use super::pareto_ggg::{self, Hyper};
use super::rfm::quintile_scores;
use super::selection::{
    chosen, learn_window, select, Candidate, Predictor, Sampled, Selection, TrainError, Trainer,
    PARETO_GGG,
};
use super::uncertainty::{interval, laplace_samples, prior_samples, LEVEL, SAMPLES};

/// Bumped when the meaning of a stored trait or the models change.
pub const MODEL_VERSION: &str = "selected-btyd+gamma-gamma/4";

/// The population defaults used below the data a fit needs: BG/NBD as Fader, Hardie &
/// Lee (2005) fitted it on the CDNOW sample (r 0.243, α 4.414 weeks, a 0.793, b 2.426),
/// α in days. A customer who bought today is then alive with 0.75 after one repeat
/// purchase, and more after more.
pub const DEFAULT_BGNBD: BgNbd = BgNbd {
    r: 0.243,
    alpha: 4.414 * 7.0,
    a: 0.793,
    b: 2.426,
};

/// What a fit needs: fewer customers, or fewer with a repeat purchase day, and the
/// models are not fitted; the defaults are used and the traits are provisional.
pub const MIN_FIT_CUSTOMERS: usize = 50;
pub const MIN_FIT_REPEAT_CUSTOMERS: usize = 20;

/// One customer's traits (only customers with a purchase on or before `as_of`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerTraits {
    pub purchases: u32,
    pub spend_cents: i64,
    pub frequency: u32,
    pub recency_days: u32,
    pub t_days: u32,
    /// Model inputs and outputs in cents are estimates (floats inside the models);
    /// they leave the hub as whole cents, as all money does (DESIGN.md principle 6).
    #[serde(serialize_with = "whole_cents")]
    pub monetary_cents: f64,
    pub days_since_last: u32,
    pub rfm_r: u8,
    pub rfm_f: u8,
    pub rfm_m: u8,
    pub rfm: String,
    /// Model outputs: `None` when the population could not support a fit (see
    /// `Models::notes`).
    pub p_alive: Option<f64>,
    pub churn_risk: Option<f64>,
    pub expected_purchases: Option<f64>,
    #[serde(serialize_with = "whole_cents_opt")]
    pub expected_spend_cents: Option<f64>,
    #[serde(serialize_with = "whole_cents_opt")]
    pub clv_cents: Option<f64>,
    pub favourite_categories: Vec<String>,
    pub categories: Vec<String>,
    pub stores: Vec<String>,
    pub sale_share: Option<f64>,
    pub label: Option<Label>,
    pub store_share: f64,
    pub online_share: f64,
    /// The models behind p_alive, expected purchases and CLV are the population defaults,
    /// not a fit (`Models::provisional` says why).
    pub provisional: bool,
    /// The central 80 % of p_alive, expected purchases and CLV under the model's own
    /// uncertainty (`Models::interval` says how it was found).
    pub p_alive_interval: Option<[f64; 2]>,
    pub expected_purchases_interval: Option<[f64; 2]>,
    #[serde(serialize_with = "whole_cents_pair")]
    pub clv_interval_cents: Option<[f64; 2]>,
}

/// Rounds an estimated amount to whole cents (values are finite by construction).
pub fn round_cents(value: f64) -> i64 {
    value.round() as i64
}

fn whole_cents<S: serde::Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(round_cents(*value))
}

fn whole_cents_opt<S: serde::Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_some(&round_cents(*v)),
        None => s.serialize_none(),
    }
}

fn whole_cents_pair<S: serde::Serializer>(
    value: &Option<[f64; 2]>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some([low, high]) => s.serialize_some(&[round_cents(*low), round_cents(*high)]),
        None => s.serialize_none(),
    }
}

/// How the intervals were found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntervalMethod {
    /// The share of the parameter samples an interval spans.
    pub level: f64,
    pub samples: usize,
    /// `laplace`: the fit's own curvature; `prior`: a spread around the population
    /// defaults (provisional traits); `posterior`: Pareto/GGG's MCMC draws.
    pub source: &'static str,
}

/// The fitted models and why one is missing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Models {
    pub version: &'static str,
    pub as_of: NaiveDate,
    pub horizon_days: u32,
    pub margin_percent: f64,
    /// The baseline's parameters as of the date (the defaults when provisional).
    pub bgnbd: Option<BgNbd>,
    /// The model behind p_alive and expected purchases: the candidate the selection
    /// chose, fitted on all the data, or BG/NBD; `None` when Pareto/GGG won.
    pub purchase_model: Option<Predictor>,
    /// Pareto/GGG's hyperparameters (posterior means), when it won the selection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pareto_ggg: Option<Hyper>,
    /// How the model was chosen (absent when there was no choice to make: see notes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selection: Option<Selection>,
    pub gamma_gamma: Option<GammaGamma>,
    /// How the intervals of p_alive, expected purchases and CLV were found; `None`
    /// without intervals (see notes).
    pub interval: Option<IntervalMethod>,
    /// Customers with a purchase as of the date, and those with a repeat purchase day.
    pub customers: usize,
    pub repeat_customers: usize,
    /// Why the traits are provisional (the models are the population defaults), if
    /// they are; also among the notes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisional: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Models {
    /// The name of the model behind p_alive and expected purchases (`bgnbd`,
    /// `pareto_nbd+correction`, `pareto_ggg`, …), if there is one.
    pub fn purchase_model_name(&self) -> Option<String> {
        match (&self.pareto_ggg, &self.purchase_model) {
            (Some(_), _) => Some(PARETO_GGG.to_string()),
            (None, Some(p)) => Some(p.candidate().name()),
            (None, None) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Population {
    pub models: Models,
    /// Parallel to the input histories; `None` for customers without purchases yet.
    pub customers: Vec<Option<CustomerTraits>>,
}

/// Computes every customer's traits as of the end of `as_of`, fitting BG/NBD and
/// Gamma–Gamma on the same data. Never fails: a model the data cannot support is
/// left out (its outputs are `None`) and the reason is noted.
pub fn compute(
    histories: &[CustomerHistory],
    as_of: NaiveDate,
    horizon_days: u32,
    margin_percent: f64,
) -> Population {
    let as_of_day = day_number(as_of);
    // Every purchase is read once, into the panel; the summaries come from it.
    let panel = Panel::new(histories);
    let summaries: Vec<_> = (0..panel.len())
        .map(|i| panel.summary(i, as_of_day))
        .collect();
    let active: Vec<usize> = (0..histories.len())
        .filter(|&i| summaries[i].is_some())
        .collect();
    let column = |f: &dyn Fn(&super::rfm::Summary) -> f64| -> Vec<f64> {
        active
            .iter()
            .filter_map(|&i| summaries[i].as_ref().map(f))
            .collect()
    };
    let r_scores = quintile_scores(&column(&|s| -f64::from(s.days_since_last)));
    let f_scores = quintile_scores(&column(&|s| f64::from(s.purchases)));
    let m_scores = quintile_scores(&column(&|s| s.spend_cents as f64));

    let mut spends: Vec<(u32, f64)> = Vec::new();
    for s in summaries.iter().flatten() {
        if s.frequency > 0 {
            spends.push((s.frequency, s.monetary_cents));
        }
    }

    let mut trainer = Trainer::new(&panel);
    let mut notes = Vec::new();
    let repeaters = spends.len();
    let choice = if active.is_empty() {
        notes.push(format!("no customer has a purchase on or before {as_of}"));
        Choice::default()
    } else {
        choose(
            &mut trainer,
            as_of_day,
            horizon_days,
            active.len(),
            repeaters,
            &mut notes,
        )
    };
    let provisional = choice.provisional.clone();
    let gamma_gamma = if active.is_empty() || provisional.is_some() {
        None
    } else {
        GammaGamma::fit(&spends)
            .map_err(|e| {
                notes.push(format!(
                    "Gamma-Gamma not fitted (needs customers with a repeat purchase and positive spend): {e}"
                ))
            })
            .ok()
    };

    let horizon = f64::from(horizon_days);
    // Pareto/GGG's predictions, by input index.
    let mut sampled = vec![None; histories.len()];
    for (i, p) in choice.sampled.iter().flat_map(|s| &s.predictions) {
        sampled[*i] = Some(*p);
    }
    let (intervals, interval) = match (&choice.sampled, &choice.predictor) {
        // Pareto/GGG's intervals are its posterior draws'.
        (Some(_), _) => {
            let out = sampled
                .iter()
                .map(|p| p.map(|p| (p.p_alive_interval, p.expected_purchases_interval)))
                .collect();
            let method = IntervalMethod {
                level: LEVEL,
                samples: pareto_ggg::Settings::default().draws as usize,
                source: "posterior",
            };
            (out, Some(method))
        }
        (None, Some(predictor)) => uncertain(
            &mut trainer,
            predictor,
            provisional.is_some(),
            as_of_day,
            horizon,
            &mut notes,
        ),
        (None, None) => (vec![None; histories.len()], None),
    };
    let mut customers: Vec<Option<CustomerTraits>> = vec![None; histories.len()];
    let mut unconverged = 0usize;
    for (rank, &i) in active.iter().enumerate() {
        let Some(s) = summaries[i] else { continue };
        let observation = Observation {
            x: s.frequency,
            t_x: f64::from(s.recency_days),
            t: f64::from(s.t_days),
        };
        let (p_alive, expected_purchases) = match (sampled[i], choice.predictor) {
            (Some(p), _) => (Some(p.p_alive), Some(p.expected_purchases)),
            (None, Some(m)) => {
                let e = m.expected_purchases(observation, panel.covariates(i, as_of_day), horizon);
                if e.is_none() {
                    unconverged += 1;
                }
                (Some(m.model.p_alive(observation)), e)
            }
            (None, None) => (None, None),
        };
        let expected_spend = match gamma_gamma {
            Some(g) => Some(g.expected_spend(s.frequency, s.monetary_cents)),
            // Provisional: the customer's own spend per purchase stands in.
            None if provisional.is_some() => {
                Some(s.spend_cents as f64 / f64::from(s.purchases.max(1)))
            }
            None => None,
        };
        let clv = match (expected_purchases, expected_spend) {
            (Some(e), Some(m)) => Some(e * m * margin_percent / 100.0).filter(|v| v.is_finite()),
            _ => None,
        };
        let (p_alive_interval, expected_purchases_interval) = match intervals[i] {
            Some((p, e)) => (Some(p), Some(e)),
            None => (None, None),
        };
        let clv_interval_cents = match (expected_purchases_interval, expected_spend) {
            (Some([low, high]), Some(m)) => {
                let scale = m * margin_percent / 100.0;
                Some([low * scale, high * scale]).filter(|v| v.iter().all(|c| c.is_finite()))
            }
            _ => None,
        };
        let purchases = histories[i]
            .purchases
            .iter()
            .filter(|p| p.local_day() <= as_of_day);
        let b = behaviour(purchases);
        let (r, f, m) = (r_scores[rank], f_scores[rank], m_scores[rank]);
        customers[i] = Some(CustomerTraits {
            purchases: s.purchases,
            spend_cents: s.spend_cents,
            frequency: s.frequency,
            recency_days: s.recency_days,
            t_days: s.t_days,
            monetary_cents: s.monetary_cents,
            days_since_last: s.days_since_last,
            rfm_r: r,
            rfm_f: f,
            rfm_m: m,
            rfm: format!("{r}{f}{m}"),
            p_alive,
            churn_risk: p_alive.map(|p| 1.0 - p),
            expected_purchases,
            expected_spend_cents: expected_spend.filter(|v| v.is_finite()),
            clv_cents: clv,
            favourite_categories: b.favourite_categories,
            categories: b.categories,
            stores: b.stores,
            sale_share: b.sale_share,
            label: b.label,
            store_share: b.store_share,
            online_share: b.online_share,
            provisional: provisional.is_some(),
            p_alive_interval,
            expected_purchases_interval,
            clv_interval_cents,
        });
    }
    if unconverged > 0 {
        notes.push(format!(
            "expected purchases left out for {unconverged} customers (series did not converge)"
        ));
    }
    Population {
        models: Models {
            version: MODEL_VERSION,
            as_of,
            horizon_days,
            margin_percent,
            bgnbd: choice.bgnbd,
            purchase_model: choice.predictor,
            pareto_ggg: choice.sampled.map(|s| s.hyper),
            selection: choice.selection,
            gamma_gamma,
            interval,
            customers: active.len(),
            repeat_customers: spends.len(),
            provisional,
            notes,
        },
        customers,
    }
}

/// The purchase model for the traits and how it came to be.
#[derive(Debug, Default)]
struct Choice {
    predictor: Option<Predictor>,
    /// Pareto/GGG, when it won (`predictor` is then `None`).
    sampled: Option<Sampled>,
    bgnbd: Option<BgNbd>,
    selection: Option<Selection>,
    provisional: Option<String>,
}

/// The selected candidate fitted on everything up to `as_of_day`; BG/NBD when there is
/// no choice to make or the winner cannot be fitted on all the data; the population
/// defaults (provisional) below the data a fit needs or when BG/NBD's fit is degenerate.
fn choose(
    trainer: &mut Trainer<'_>,
    as_of_day: i64,
    horizon_days: u32,
    customers: usize,
    repeaters: usize,
    notes: &mut Vec<String>,
) -> Choice {
    let mut defaults = |why: String| {
        let reason = format!(
            "provisional: {why}; the population defaults are used (BG/NBD of the CDNOW \
             study) and the customer's own spend per purchase"
        );
        notes.push(reason.clone());
        Choice {
            predictor: Some(Predictor {
                model: PurchaseModel::BgNbd(DEFAULT_BGNBD),
                correction: None,
            }),
            sampled: None,
            bgnbd: Some(DEFAULT_BGNBD),
            selection: None,
            provisional: Some(reason),
        }
    };
    if customers < MIN_FIT_CUSTOMERS || repeaters < MIN_FIT_REPEAT_CUSTOMERS {
        return defaults(format!(
            "{customers} customers, {repeaters} of them with a repeat purchase, are too few \
             to fit the models (they need {MIN_FIT_CUSTOMERS} and {MIN_FIT_REPEAT_CUSTOMERS})"
        ));
    }
    let baseline = match trainer.fit(ModelKind::BgNbd, as_of_day) {
        Ok(PurchaseModel::BgNbd(m)) => Some(m),
        Ok(_) => None,
        Err(TrainError::Degenerate { parameters, .. }) => {
            return defaults(format!(
                "the BG/NBD fit ran into a corner of its parameters ({parameters})"
            ))
        }
        Err(e) => {
            notes.push(e.to_string());
            return Choice::default();
        }
    };
    let selection = select(trainer, as_of_day, horizon_days)
        .map_err(|why| notes.push(why))
        .ok();
    // Pareto/GGG, when it won, sampled on everything; BG/NBD if that fails.
    let mut sampled = None;
    if selection.as_ref().is_some_and(|s| s.chosen == PARETO_GGG) {
        match trainer.sample_pareto_ggg(as_of_day, horizon_days) {
            Ok(s) => sampled = Some(s),
            Err(why) => notes.push(format!("{PARETO_GGG}: {why}: BG/NBD is used")),
        }
    }
    let candidate = selection.as_ref().map_or(Candidate::BASELINE, chosen);
    let window = learn_window(trainer.panel(), as_of_day, horizon_days);
    let predictor = if sampled.is_some() {
        None
    } else {
        match trainer.train(candidate, as_of_day, window) {
            Ok(p) => Some(p),
            Err(e) => {
                notes.push(format!("{e}: BG/NBD is used"));
                trainer.train(Candidate::BASELINE, as_of_day, window).ok()
            }
        }
    };
    if let Some(s) = &selection {
        notes.push(format!(
            "model: {} chosen by back-test, fitted to {} and scored on the {} days after \
             (MAE {:.1} % below BG/NBD's)",
            s.chosen, s.calibration_end, s.holdout_days, s.mae_gain_percent
        ));
    }
    Choice {
        predictor,
        sampled,
        bgnbd: baseline,
        selection,
        provisional: None,
    }
}

/// Per customer (by input index): the intervals of p_alive and expected purchases under
/// parameter samples of the predictor's model (Laplace around a fit, the prior around
/// provisional defaults). Customers are visited in order of their observation so each
/// distinct (x, t_x, T) is evaluated once per sample.
fn uncertain(
    trainer: &mut Trainer<'_>,
    predictor: &Predictor,
    provisional: bool,
    day: i64,
    horizon: f64,
    notes: &mut Vec<String>,
) -> (Vec<Option<Intervals>>, Option<IntervalMethod>) {
    let panel = trainer.panel();
    let mut out = vec![None; panel.len()];
    // Seeded by the date: the same data give the same intervals.
    let seed = day as u64;
    let (samples, source) = if provisional {
        (prior_samples(&predictor.model, seed), "prior")
    } else {
        let (data, weight) = trainer.fit_sample(day);
        match laplace_samples(&predictor.model, data, weight, seed) {
            Ok(samples) => (samples, "laplace"),
            Err(e) => {
                notes.push(format!("no intervals: {e}"));
                return (out, None);
            }
        }
    };
    let mut order: Vec<(Observation, usize)> = trainer
        .each(day)
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.map(|o| (o, i)))
        .collect();
    order.sort_by(|a, b| {
        (a.0.x, a.0.t_x, a.0.t)
            .partial_cmp(&(b.0.x, b.0.t_x, b.0.t))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut base: Vec<(f64, Option<f64>)> = Vec::with_capacity(samples.len());
    let mut current: Option<Observation> = None;
    let (mut ps, mut es) = (Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES));
    for (o, i) in order {
        if current != Some(o) {
            base.clear();
            base.extend(samples.iter().map(|m| m.predict(o, horizon)));
            current = Some(o);
        }
        ps.clear();
        es.clear();
        for &(p, e) in &base {
            ps.push(p);
            if let Some(e) = e {
                es.push(match &predictor.correction {
                    Some(c) => c.apply(&Correction::features(
                        o,
                        e,
                        p,
                        panel.covariates(i, day),
                        horizon,
                    )),
                    None => e,
                });
            }
        }
        if let (Some(p), Some(e)) = (interval(&mut ps), interval(&mut es)) {
            out[i] = Some((p, e));
        }
    }
    let method = IntervalMethod {
        level: LEVEL,
        samples: SAMPLES,
        source,
    };
    (out, Some(method))
}

/// (p_alive, expected purchases) intervals of one customer.
type Intervals = ([f64; 2], [f64; 2]);
