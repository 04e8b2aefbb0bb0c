//! BG/NBD ("Counting your customers the easy way", Fader, Hardie & Lee 2005): purchases
//! follow a Poisson process with rate λ ~ Gamma(r, α); after each repeat purchase the
//! customer drops out with probability p ~ Beta(a, b). Time is in whatever unit the
//! caller uses (the hub uses days).

use serde::Serialize;

use super::optimize::minimize;
use super::special::{expm1_over, ln_gamma, series, MAX_SERIES_TERMS};

/// One customer's repeat-purchase summary: `x` repeat purchases, the last at `t_x`,
/// observed for `t` since the first purchase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub x: u32,
    pub t_x: f64,
    pub t: f64,
}

/// Fitted BG/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// Why the model could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("no customers to fit on")]
    NoCustomers,
    #[error("no customer has a repeat purchase, so the dropout process cannot be estimated")]
    NoRepeatPurchases,
    #[error("the likelihood did not reach a finite optimum")]
    NotFinite,
}

/// Log-parameters are kept within ±BOUND (e^15 ≈ 3.3 M) so a degenerate population
/// drives the fit to a finite corner instead of to infinity.
const LOG_BOUND: f64 = 15.0;

impl BgNbd {
    /// ln L(r, α, a, b | x, t_x, T), as in the paper's equation (6).
    pub fn log_likelihood(&self, o: Observation) -> f64 {
        let x = f64::from(o.x);
        let Self { r, alpha, a, b } = *self;
        let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
        let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
        let a3 = -(r + x) * (alpha + o.t).ln();
        if o.x == 0 {
            return a1 + a2 + a3;
        }
        let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + o.t_x).ln();
        a1 + a2 + log_add_exp(a3, a4)
    }

    /// P(alive at T | x, t_x, T).
    pub fn p_alive(&self, o: Observation) -> f64 {
        if o.x == 0 {
            return 1.0;
        }
        inverse_one_plus_exp(self.ln_dropout_odds(o))
    }

    /// ln of a/(b+x−1) · ((α+T)/(α+t_x))^(r+x): the odds of having dropped out.
    fn ln_dropout_odds(&self, o: Observation) -> f64 {
        let x = f64::from(o.x);
        self.a.ln() - (self.b + x - 1.0).ln()
            + (self.r + x) * ((self.alpha + o.t).ln() - (self.alpha + o.t_x).ln())
    }

    /// E[purchases in (T, T + horizon] | x, t_x, T] (the paper's equation (10)).
    ///
    /// Evaluated through Euler's transformation ₂F₁(A,B;C;z) = (1−z)^(C−A−B)
    /// ₂F₁(C−A,C−B;C;z), whose second parameter is a − 1: factoring it out cancels the
    /// 1/(a − 1) of the formula exactly, so a ≈ 1 and large x stay accurate and the
    /// series has small parameters. `None` if the series does not converge.
    pub fn expected_purchases(&self, o: Observation, horizon: f64) -> Option<f64> {
        if horizon <= 0.0 {
            return Some(0.0);
        }
        let x = f64::from(o.x);
        let Self { r, alpha, a, b } = *self;
        let c = a + b + x - 1.0;
        let z = horizon / (alpha + o.t + horizon);
        // L = ln(1 − z) = ln((α+T)/(α+T+t)) < 0
        let l = ((alpha + o.t) / (alpha + o.t + horizon)).ln();
        let p1 = a + b - 1.0 - r; // C − A
                                  // G = Σ_{k≥1} (p1)_k (a)_{k−1} / ((C)_k k!) z^k, so that ₂F₁(p1, a−1; C; z) = 1 + (a−1) G.
        let mut term = p1 * z / c;
        let mut g = term;
        if term != 0.0 {
            series(&mut g, &mut term, MAX_SERIES_TERMS, |k| {
                let k = (k + 1) as f64;
                (p1 + k) * (a + k - 1.0) / ((c + k) * (k + 1.0)) * z
            })?;
        }
        let y = (a - 1.0) * l;
        let bracket = -l * expm1_over(y) - y.exp() * g;
        let denominator = if o.x == 0 {
            1.0
        } else {
            1.0 + self.ln_dropout_odds(o).exp()
        };
        let e = c * bracket / denominator;
        (e.is_finite()).then_some(e.max(0.0))
    }

    /// Maximum likelihood on (observation, count) pairs: identical observations are
    /// grouped by the caller so a million customers cost as much as their distinct
    /// (x, t_x, T) triples.
    pub fn fit(data: &[(Observation, u64)]) -> Result<BgNbd, FitError> {
        let likelihood = GroupedLikelihood::new(data);
        fit_log_parameters(
            data,
            |ln_t| [0.0, ln_t, 0.0, 0.0],
            |_| true,
            |p| BgNbd {
                r: p[0].exp(),
                alpha: p[1].exp(),
                a: p[2].exp(),
                b: p[3].exp(),
            },
            |m| likelihood.sum(m),
        )
    }

    /// Σ count · ln L over grouped observations.
    pub fn total_log_likelihood(&self, data: &[(Observation, u64)]) -> f64 {
        GroupedLikelihood::new(data).sum(self)
    }
}

/// Maximum likelihood of a four-parameter purchase model on grouped observations, as
/// the models share it: Nelder–Mead on the log-parameters, each within ±[`LOG_BOUND`]
/// and where `feasible`, from `start(ln of the mean T)`; `make` builds the model from
/// log-parameters and `log_likelihood` sums its ln L over `data`.
pub(super) fn fit_log_parameters<M>(
    data: &[(Observation, u64)],
    start: impl FnOnce(f64) -> [f64; 4],
    feasible: impl Fn(&[f64]) -> bool,
    make: impl Fn(&[f64]) -> M,
    log_likelihood: impl Fn(&M) -> f64,
) -> Result<M, FitError> {
    let customers: u64 = data.iter().map(|(_, n)| n).sum();
    if customers == 0 {
        return Err(FitError::NoCustomers);
    }
    if !data.iter().any(|(o, n)| o.x > 0 && *n > 0) {
        return Err(FitError::NoRepeatPurchases);
    }
    let total = customers as f64;
    let mean_t = data.iter().map(|(o, n)| o.t * *n as f64).sum::<f64>() / total;
    let best = minimize(
        |p| {
            if p.iter().any(|v| v.abs() > LOG_BOUND) || !feasible(p) {
                return f64::INFINITY;
            }
            -log_likelihood(&make(p)) / total
        },
        &start(mean_t.max(1.0).ln()),
        1.0,
        20_000,
    );
    if !best.value.is_finite() {
        return Err(FitError::NotFinite);
    }
    Ok(make(&best.point))
}

/// Observations with a count above 0, sorted by x then t_x, in runs of one x: the
/// models' likelihoods compute the terms that depend only on x once per run.
pub(super) fn runs_by_x(data: &[(Observation, u64)]) -> Vec<(u32, Vec<(Observation, f64)>)> {
    let mut sorted: Vec<&(Observation, u64)> = data.iter().filter(|(_, n)| *n > 0).collect();
    sorted.sort_by(|(p, _), (q, _)| p.x.cmp(&q.x).then(p.t_x.total_cmp(&q.t_x)));
    let mut runs: Vec<(u32, Vec<(Observation, f64)>)> = Vec::new();
    for (o, n) in sorted {
        match runs.last_mut() {
            Some((x, rows)) if *x == o.x => rows.push((*o, *n as f64)),
            _ => runs.push((o.x, vec![(*o, *n as f64)])),
        }
    }
    runs
}

/// 1 / (1 + e^l), written so a huge l gives 0 rather than NaN (a probability from
/// log-odds against it).
pub(super) fn inverse_one_plus_exp(l: f64) -> f64 {
    if l > 0.0 {
        let e = (-l).exp();
        e / (1.0 + e)
    } else {
        1.0 / (1.0 + l.exp())
    }
}

/// (t_x, T, count) of the observations with one x.
type Row = (f64, f64, f64);

/// Observations sorted by x, so the ln Γ terms that depend only on x are computed once
/// per distinct x per evaluation.
struct GroupedLikelihood {
    by_x: Vec<(u32, Vec<Row>)>,
}

impl GroupedLikelihood {
    fn new(data: &[(Observation, u64)]) -> Self {
        let mut sorted: Vec<&(Observation, u64)> = data.iter().filter(|(_, n)| *n > 0).collect();
        sorted.sort_by_key(|(o, _)| o.x);
        let mut by_x: Vec<(u32, Vec<Row>)> = Vec::new();
        for (o, n) in sorted {
            match by_x.last_mut() {
                Some((x, rows)) if *x == o.x => rows.push((o.t_x, o.t, *n as f64)),
                _ => by_x.push((o.x, vec![(o.t_x, o.t, *n as f64)])),
            }
        }
        Self { by_x }
    }

    fn sum(&self, m: &BgNbd) -> f64 {
        let BgNbd { r, alpha, a, b } = *m;
        let (lg_r, lg_b, lg_ab, ln_alpha, ln_a) = (
            ln_gamma(r),
            ln_gamma(b),
            ln_gamma(a + b),
            alpha.ln(),
            a.ln(),
        );
        let mut total = 0.0;
        for (x, rows) in &self.by_x {
            let xf = f64::from(*x);
            let a1 = ln_gamma(r + xf) - lg_r + r * ln_alpha;
            let a2 = lg_ab + ln_gamma(b + xf) - lg_b - ln_gamma(a + b + xf);
            let ln_ratio = ln_a - (b + xf - 1.0).ln();
            for &(t_x, t, n) in rows {
                let a3 = -(r + xf) * (alpha + t).ln();
                let ll = if *x == 0 {
                    a3
                } else {
                    log_add_exp(a3, ln_ratio - (r + xf) * (alpha + t_x).ln())
                };
                total += n * (a1 + a2 + ll);
            }
        }
        total
    }
}

/// ln(e^u + e^v) without overflow.
pub(super) fn log_add_exp(u: f64, v: f64) -> f64 {
    let m = u.max(v);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + ((u - m).exp() + (v - m).exp()).ln()
}
