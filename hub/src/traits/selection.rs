//! Model selection without peeking: every candidate is fitted on the calibration window
//! up to a past window (the same season a year before, or the window's last part),
//! predicts that window, and the one with the lowest per-customer mean absolute error
//! among those whose total is within 10 % wins (BG/NBD, the baseline, wins ties). The same
//! machinery scores candidates in `till360-hub traits backtest`.

use std::collections::HashMap;

use serde::Serialize;

use super::bgnbd::{FitError, Observation};
use super::correction::Correction;
use super::model::{ModelKind, PurchaseModel};
use super::panel::{group, Covariates, Panel};
use super::pareto_ggg::{self, GggCustomer, Hyper, Prediction};

/// A candidate: a purchase model, with or without the learned correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Candidate {
    pub kind: ModelKind,
    pub corrected: bool,
}

impl Candidate {
    pub const BASELINE: Candidate = Candidate {
        kind: ModelKind::BgNbd,
        corrected: false,
    };

    /// Every candidate, the baseline first.
    pub fn all() -> Vec<Candidate> {
        let mut all = Vec::new();
        for corrected in [false, true] {
            for kind in ModelKind::ALL {
                all.push(Candidate { kind, corrected });
            }
        }
        all
    }

    /// `bgnbd`, `pareto_nbd+correction`, …
    pub fn name(&self) -> String {
        if self.corrected {
            format!("{}+correction", self.kind.name())
        } else {
            self.kind.name().to_string()
        }
    }
}

/// A candidate fitted as of a day, ready to predict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Predictor {
    pub model: PurchaseModel,
    /// Present for corrected candidates.
    pub correction: Option<Correction>,
}

impl Predictor {
    pub fn candidate(&self) -> Candidate {
        Candidate {
            kind: self.model.kind(),
            corrected: self.correction.is_some(),
        }
    }

    /// Expected purchase days in the next `horizon` days; `None` if the model's series
    /// did not converge.
    pub fn expected_purchases(
        &self,
        o: Observation,
        covariates: Covariates,
        horizon: f64,
    ) -> Option<f64> {
        let expected = self.model.expected_purchases(o, horizon)?;
        Some(match &self.correction {
            Some(c) => c.apply(&Correction::features(
                o,
                expected,
                self.model.p_alive(o),
                covariates,
                horizon,
            )),
            None => expected,
        })
    }
}

/// How well a predictor did on a window it had not seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    pub model: String,
    pub customers: usize,
    /// Per-customer mean absolute and root mean squared error, in purchase days.
    pub mae: f64,
    pub rmse: f64,
    pub predicted_total: f64,
    pub actual_total: u64,
    /// (predicted − actual) / actual, in percent.
    pub total_error_percent: f64,
    /// Of the customers with the top 10 % predictions, the share that were in the
    /// actual top 10 % (ties at its edge count as in).
    pub top_decile_precision: f64,
    /// Customers whose prediction could not be computed (counted as 0).
    pub unconverged: usize,
    /// The fitted model's parameters (`k 3, r …` for CNBD-k), as [`describe`] writes
    /// them; empty for pairs scored without a model.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub parameters: String,
}

/// Why a candidate could not be trained.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainError {
    #[error("{model} not fitted: {error}")]
    NotFitted {
        model: &'static str,
        error: FitError,
    },
    /// The fit ran to the edge of the parameter space: it describes the sample's
    /// accident, not its customers.
    #[error("the {model} fit ran into a corner of its parameters ({parameters})")]
    Degenerate {
        model: &'static str,
        parameters: String,
    },
    #[error("no correction could be learned for {0}")]
    NoCorrection(String),
}

/// Fits models and corrections as of given days, each fit once.
pub struct Trainer<'a> {
    panel: &'a Panel,
    observations: HashMap<i64, ObservationsAt>,
    fits: HashMap<(ModelKind, i64), Result<PurchaseModel, TrainError>>,
}

/// Every customer's observation at a day, and the same grouped for the fits.
struct ObservationsAt {
    each: Vec<Option<Observation>>,
    /// Every customer, grouped (the population counts).
    grouped: Vec<(Observation, u64)>,
    /// What the fits take: every customer, or above [`MAX_FIT_CUSTOMERS`] a systematic
    /// sample of them, grouped.
    fit_sample: Vec<(Observation, u64)>,
    /// Σ ln(gap days) over the customers in `fit_sample` (what BG/CNBD-k's choice of
    /// k needs besides the grouped observations).
    fit_sum_ln_gaps: f64,
    /// Customers per sampled customer (1 without sampling).
    weight: f64,
}

/// Above this many customers the models are fitted on a systematic sample of this size:
/// the parameters are as good to a few decimals, and a fit's time stops growing with
/// the population. Predictions and scores still cover everyone.
pub const MAX_FIT_CUSTOMERS: usize = 50_000;

impl<'a> Trainer<'a> {
    pub fn new(panel: &'a Panel) -> Self {
        Self {
            panel,
            observations: HashMap::new(),
            fits: HashMap::new(),
        }
    }

    fn at(&mut self, day: i64) -> &ObservationsAt {
        let panel = self.panel;
        self.observations.entry(day).or_insert_with(|| {
            let (each, grouped) = panel.observations(day);
            let known: Vec<(usize, Observation)> = each
                .iter()
                .enumerate()
                .filter_map(|(i, o)| o.map(|o| (i, o)))
                .collect();
            // Every k-th customer in input order (profile id order: unrelated to
            // behaviour); every customer up to the limit.
            let step = known.len().div_ceil(MAX_FIT_CUSTOMERS).max(1);
            let sample: Vec<(usize, Observation)> = known.iter().step_by(step).copied().collect();
            let weight = if sample.is_empty() {
                1.0
            } else {
                known.len() as f64 / sample.len() as f64
            };
            let fit_sum_ln_gaps = sample.iter().map(|&(i, _)| panel.sum_ln_gaps(i, day)).sum();
            let fit_sample = if step == 1 {
                grouped.clone()
            } else {
                group(sample.into_iter().map(|(_, o)| o))
            };
            ObservationsAt {
                each,
                grouped,
                fit_sample,
                fit_sum_ln_gaps,
                weight,
            }
        })
    }

    pub fn panel(&self) -> &'a Panel {
        self.panel
    }

    /// Every customer's observation at the end of `day` (`None` before the first
    /// purchase), by input index.
    pub fn each(&mut self, day: i64) -> &[Option<Observation>] {
        &self.at(day).each
    }

    /// The observations at the end of `day` the fits take (grouped; a sample above
    /// [`MAX_FIT_CUSTOMERS`]), and how many customers each stands for.
    pub fn fit_sample(&mut self, day: i64) -> (&[(Observation, u64)], f64) {
        let at = self.at(day);
        (&at.fit_sample, at.weight)
    }

    /// Customers with a purchase on or before `day`, and those of them with a repeat
    /// purchase day.
    pub fn population(&mut self, day: i64) -> (usize, usize) {
        let at = self.at(day);
        let customers = at.grouped.iter().map(|(_, n)| *n as usize).sum();
        let repeaters = at
            .grouped
            .iter()
            .filter(|(o, _)| o.x > 0)
            .map(|(_, n)| *n as usize)
            .sum();
        (customers, repeaters)
    }

    /// `kind` fitted on what was known at the end of `day`. A degenerate fit is an
    /// error: it describes the sample's accident.
    pub fn fit(&mut self, kind: ModelKind, day: i64) -> Result<PurchaseModel, TrainError> {
        if let Some(fit) = self.fits.get(&(kind, day)) {
            return fit.clone();
        }
        let at = self.at(day);
        let fit = PurchaseModel::fit(kind, &at.fit_sample, at.fit_sum_ln_gaps)
            .map_err(|error| TrainError::NotFitted {
                model: kind.label(),
                error,
            })
            .and_then(|m| {
                // Only the baseline's corner means "too little data" (the traits then
                // fall back to the defaults); a candidate at the edge of its box (e.g.
                // Pareto/NBD with s, β → ∞: one dropout rate for all) is still a model,
                // and the back-test judges it.
                if kind == ModelKind::BgNbd && m.is_degenerate() {
                    Err(TrainError::Degenerate {
                        model: kind.label(),
                        parameters: describe(&m),
                    })
                } else {
                    Ok(m)
                }
            });
        self.fits.insert((kind, day), fit.clone());
        fit
    }

    /// `candidate` as of the end of `day`. A corrected candidate learns its correction
    /// on `window`: the model fitted at its start predicting what the customers did in
    /// its days (see [`learn_window`]); `None` leaves corrected candidates untrainable.
    pub fn train(
        &mut self,
        candidate: Candidate,
        day: i64,
        window: Option<Window>,
    ) -> Result<Predictor, TrainError> {
        let model = self.fit(candidate.kind, day)?;
        if !candidate.corrected {
            return Ok(Predictor {
                model,
                correction: None,
            });
        }
        let Some(Window { start, days }) = window else {
            return Err(TrainError::NoCorrection(candidate.name()));
        };
        let end = start + i64::from(days);
        let earlier = self.fit(candidate.kind, start)?;
        let horizon = f64::from(days);
        let panel = self.panel;
        let rows: Vec<_> = self
            .at(start)
            .each
            .iter()
            .enumerate()
            .filter_map(|(i, o)| {
                let o = (*o)?;
                let expected = earlier.expected_purchases(o, horizon)?;
                let features = Correction::features(
                    o,
                    expected,
                    earlier.p_alive(o),
                    panel.covariates(i, start),
                    horizon,
                );
                Some((
                    features,
                    f64::from(panel.purchase_days_between(i, start, end)),
                ))
            })
            .collect();
        let correction =
            Correction::learn(&rows).ok_or_else(|| TrainError::NoCorrection(candidate.name()))?;
        Ok(Predictor {
            model,
            correction: Some(correction),
        })
    }

    /// Scores `predictor`, trained as of the end of `day`, on the customers known then
    /// against their purchase days in the `horizon_days` after it.
    pub fn score(&mut self, predictor: &Predictor, day: i64, horizon_days: u32) -> Score {
        let panel = self.panel;
        let horizon = f64::from(horizon_days);
        let until = day + i64::from(horizon_days);
        let mut unconverged = 0;
        let pairs: Vec<(f64, f64)> = self
            .at(day)
            .each
            .iter()
            .enumerate()
            .filter_map(|(i, o)| {
                let o = (*o)?;
                let predicted = predictor
                    .expected_purchases(o, panel.covariates(i, day), horizon)
                    .unwrap_or_else(|| {
                        unconverged += 1;
                        0.0
                    });
                Some((
                    predicted,
                    f64::from(panel.purchase_days_between(i, day, until)),
                ))
            })
            .collect();
        Score {
            parameters: describe(&predictor.model),
            ..score(predictor.candidate().name(), &pairs, unconverged)
        }
    }
}

/// Pareto/GGG's name in reports, the API and the export. It is not a [`Candidate`]:
/// its predictions come from an MCMC over every customer, not from a formula of
/// (x, t_x, T), so it is sampled per day and horizon, and only up to
/// [`pareto_ggg::MAX_CUSTOMERS`] customers.
pub const PARETO_GGG: &str = "pareto_ggg";

/// Pareto/GGG sampled as of a day: each known customer's prediction, by input index.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub hyper: Hyper,
    pub predictions: Vec<(usize, Prediction)>,
}

impl Trainer<'_> {
    /// Pareto/GGG sampled on what was known at the end of `day`, predicting the
    /// `horizon_days` after it; `Err` says why not.
    pub fn sample_pareto_ggg(&mut self, day: i64, horizon_days: u32) -> Result<Sampled, String> {
        let panel = self.panel;
        let at = self.at(day);
        // Counted first: above the limit, nobody's gaps are read.
        let count = at.each.iter().flatten().count();
        if count > pareto_ggg::MAX_CUSTOMERS {
            return Err(format!(
                "{count} customers are more than its sampler's limit of {}",
                pareto_ggg::MAX_CUSTOMERS
            ));
        }
        let known: Vec<(usize, GggCustomer)> = at
            .each
            .iter()
            .enumerate()
            .filter_map(|(i, o)| {
                o.map(|o| {
                    let customer = GggCustomer {
                        x: o.x,
                        t_x: o.t_x,
                        t: o.t,
                        sum_ln_gaps: panel.sum_ln_gaps(i, day),
                    };
                    (i, customer)
                })
            })
            .collect();
        let customers: Vec<GggCustomer> = known.iter().map(|(_, c)| *c).collect();
        let settings = pareto_ggg::Settings {
            // Seeded by the day: the same data give the same draws.
            seed: day as u64,
            ..pareto_ggg::Settings::default()
        };
        let posterior = pareto_ggg::sample(&customers, f64::from(horizon_days), &settings)
            .map_err(|e| format!("not fitted: {e}"))?;
        Ok(Sampled {
            hyper: posterior.hyper,
            predictions: known
                .iter()
                .map(|(i, _)| *i)
                .zip(posterior.predictions)
                .collect(),
        })
    }

    /// Pareto/GGG sampled at the end of `day` and scored, like [`score`](Self::score),
    /// on the `horizon_days` after it.
    pub fn score_pareto_ggg(&mut self, day: i64, horizon_days: u32) -> Result<Score, String> {
        let sampled = self.sample_pareto_ggg(day, horizon_days)?;
        let until = day + i64::from(horizon_days);
        let pairs: Vec<(f64, f64)> = sampled
            .predictions
            .iter()
            .map(|(i, p)| {
                let actual = self.panel.purchase_days_between(*i, day, until);
                (p.expected_purchases, f64::from(actual))
            })
            .collect();
        Ok(Score {
            parameters: describe_hyper(&sampled.hyper),
            ..score(PARETO_GGG.to_string(), &pairs, 0)
        })
    }
}

/// Pareto/GGG's hyperparameters as `t 3.1, gamma 1.0, …`.
pub fn describe_hyper(h: &Hyper) -> String {
    [
        ("t", h.t),
        ("gamma", h.gamma),
        ("r", h.r),
        ("alpha", h.alpha),
        ("s", h.s),
        ("beta", h.beta),
    ]
    .iter()
    .map(|(name, v)| format!("{name} {v:.4e}"))
    .collect::<Vec<_>>()
    .join(", ")
}

/// Errors, totals and top-decile precision of (predicted, actual) pairs.
pub fn score(model: String, pairs: &[(f64, f64)], unconverged: usize) -> Score {
    let n = pairs.len().max(1) as f64;
    let mae = pairs.iter().map(|(p, a)| (p - a).abs()).sum::<f64>() / n;
    let rmse = (pairs.iter().map(|(p, a)| (p - a).powi(2)).sum::<f64>() / n).sqrt();
    let predicted_total: f64 = pairs.iter().map(|(p, _)| p).sum();
    let actual_total: f64 = pairs.iter().map(|(_, a)| a).sum();
    let top = pairs.len().div_ceil(10);
    let top_decile_precision = if top == 0 {
        0.0
    } else {
        let mut by_actual: Vec<f64> = pairs.iter().map(|(_, a)| *a).collect();
        by_actual.sort_by(|a, b| b.total_cmp(a));
        let edge = by_actual[top - 1];
        let mut by_predicted: Vec<&(f64, f64)> = pairs.iter().collect();
        // Stable: equal predictions keep the customers' order.
        by_predicted.sort_by(|a, b| b.0.total_cmp(&a.0));
        let hits = by_predicted[..top]
            .iter()
            .filter(|(_, a)| *a >= edge && *a > 0.0)
            .count();
        hits as f64 / top as f64
    };
    Score {
        model,
        customers: pairs.len(),
        mae,
        rmse,
        predicted_total,
        actual_total: actual_total as u64,
        total_error_percent: if actual_total > 0.0 {
            (predicted_total - actual_total) / actual_total * 100.0
        } else {
            0.0
        },
        top_decile_precision,
        unconverged,
        parameters: String::new(),
    }
}

/// A model's parameters as `r 0.243, alpha 30.9, …` (`k 3, r …` for CNBD-k).
pub fn describe(model: &PurchaseModel) -> String {
    let k = match model {
        PurchaseModel::CnbdK(m) => Some(format!("k {}", m.k)),
        _ => None,
    };
    k.into_iter()
        .chain(
            model
                .parameters()
                .iter()
                .map(|(name, v)| format!("{name} {v:.4e}")),
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// The largest error of a window's total purchases a winner may make, in percent,
/// when any candidate stays within it.
pub const MAX_TOTAL_ERROR_PERCENT: f64 = 10.0;

/// The shortest last part of the calibration window worth scoring on.
pub const MIN_SELECTION_DAYS: u32 = 14;

/// What the selection did, for the export, the API and the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    /// The winner's name (`bgnbd` when nothing beat the baseline).
    pub chosen: String,
    /// Every candidate was fitted up to `calibration_end` and scored on the
    /// `holdout_days` after it: the same season a year before, or the end of the
    /// calibration window (see [`learn_window`]).
    pub calibration_end: chrono::NaiveDate,
    pub holdout_days: u32,
    /// The winner's MAE below BG/NBD's, in percent of BG/NBD's (0 if BG/NBD won).
    pub mae_gain_percent: f64,
    pub scores: Vec<Score>,
    /// Candidates that could not be scored, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// A stretch of the past to learn from: the models fitted at the end of `start`
/// predict the `days` after it, which are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub start: i64,
    pub days: u32,
}

/// A year, for the same season of the year before.
const YEAR_DAYS: i64 = 365;

/// The least calibration data before a window a year back (else the window is the end
/// of the calibration window).
const MIN_CALIBRATION_DAYS: i64 = 90;

/// The window to learn from (and to select on) for predictions of `horizon_days` made
/// at the end of `day`, looking at nothing after `day`:
/// - the same season a year before — fitted to `day` − 365, scored on the `horizon_days`
///   after it — when that leaves at least 90 days of data before it and the horizon is a
///   year or less: retail is seasonal, and a window over other months would teach the
///   models the wrong season;
/// - else the end of the calibration window: the horizon, at most a third of the data's
///   span, if that is at least [`MIN_SELECTION_DAYS`].
pub fn learn_window(panel: &Panel, day: i64, horizon_days: u32) -> Option<Window> {
    let first = panel.first_day().filter(|&first| first <= day)?;
    if i64::from(horizon_days) <= YEAR_DAYS && day - YEAR_DAYS - first >= MIN_CALIBRATION_DAYS {
        return Some(Window {
            start: day - YEAR_DAYS,
            days: horizon_days,
        });
    }
    let span = day - first;
    let days = horizon_days.min(u32::try_from(span / 3).unwrap_or(u32::MAX));
    (days >= MIN_SELECTION_DAYS).then(|| Window {
        start: day - i64::from(days),
        days,
    })
}

/// Picks the candidate for predictions as of the end of `as_of_day`, looking only at
/// purchases up to then: every candidate is trained at the start of the
/// [`learn_window`] and scored on its days. `Err` says why there was no choice to make
/// (the caller uses the baseline).
pub fn select(
    trainer: &mut Trainer<'_>,
    as_of_day: i64,
    horizon_days: u32,
) -> Result<Selection, String> {
    let Some(window) = learn_window(trainer.panel, as_of_day, horizon_days) else {
        return Err(format!(
            "model selection needs {MIN_SELECTION_DAYS} days to hold out and the data \
             has too few: BG/NBD is used"
        ));
    };
    let Window { start, days } = window;
    // The corrected candidates learn from a window before this one, and are judged only
    // when it is as long as the one they predict: a correction learned for 60 days is
    // another model than one for 182, and scoring it would judge a recipe that is not
    // the one used.
    let inner = learn_window(trainer.panel, start, days);
    let mut scores = Vec::new();
    let mut skipped = Vec::new();
    for candidate in Candidate::all() {
        if candidate.corrected && inner.is_some_and(|w| w.days < days) {
            skipped.push(format!(
                "{}: the data before {} are too short to learn a {days}-day correction",
                candidate.name(),
                super::history::date_of_day(start)
            ));
            continue;
        }
        match trainer.train(candidate, start, inner) {
            Ok(predictor) => scores.push(trainer.score(&predictor, start, days)),
            Err(why) => skipped.push(format!("{}: {why}", candidate.name())),
        }
    }
    match trainer.score_pareto_ggg(start, days) {
        Ok(score) => scores.push(score),
        Err(why) => skipped.push(format!("{PARETO_GGG}: {why}")),
    }
    let baseline = scores
        .iter()
        .find(|s| s.model == Candidate::BASELINE.name())
        .map(|s| s.mae);
    let best = winner(&scores)
        .ok_or_else(|| format!("no candidate could be fitted: {}", skipped.join("; ")))?;
    let mae_gain_percent = match baseline {
        Some(b) if b > 0.0 => (b - best.mae) / b * 100.0,
        _ => 0.0,
    };
    Ok(Selection {
        chosen: best.model.clone(),
        calibration_end: super::history::date_of_day(start),
        holdout_days: days,
        mae_gain_percent,
        scores,
        skipped,
    })
}

/// The winner among scored candidates: among those whose total is within
/// [`MAX_TOTAL_ERROR_PERCENT`] (all of them if none is), the lowest MAE; the first of
/// equals (the baseline comes first). A campaign is sized on the totals, and MAE alone
/// rewards shrinking every prediction towards the median, which is 0 for most customers.
pub fn winner(scores: &[Score]) -> Option<&Score> {
    let sized = |s: &&Score| s.total_error_percent.abs() <= MAX_TOTAL_ERROR_PERCENT;
    let pool: Vec<&Score> = if scores.iter().any(|s| sized(&s)) {
        scores.iter().filter(sized).collect()
    } else {
        scores.iter().collect()
    };
    pool.into_iter().min_by(|a, b| a.mae.total_cmp(&b.mae))
}

/// The candidate a selection chose (the baseline when Pareto/GGG won: see
/// [`PARETO_GGG`]).
pub fn chosen(selection: &Selection) -> Candidate {
    Candidate::all()
        .into_iter()
        .find(|c| c.name() == selection.chosen)
        .unwrap_or(Candidate::BASELINE)
}
