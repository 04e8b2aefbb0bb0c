//! MBG/NBD (Batislam, Denizel & Filiztekin 2007; the "central variant" of Hoppe &
//! Wagner 2007): BG/NBD, except that a customer may also drop out right after the
//! first purchase. Purchases follow a Poisson process with rate λ ~ Gamma(r, α); at
//! time 0 and after each repeat purchase the customer drops out with probability
//! p ~ Beta(a, b). Unlike BG/NBD, a customer with no repeat purchase may be dead, so
//! P(alive) is below 1 for x = 0 too. Time is in whatever unit the caller uses.

use serde::Serialize;

use super::bgnbd::{
    fit_log_parameters, inverse_one_plus_exp, log_add_exp, runs_by_x, FitError, Observation,
};
use super::special::{expm1_over, ln_gamma, series, MAX_SERIES_TERMS};

/// Fitted MBG/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MbgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

impl MbgNbd {
    /// ln L(r, α, a, b | x, t_x, T) = ln[B(a, b+x+1)/B(a,b) · Γ(r+x)α^r/(Γ(r)(α+T)^(r+x)) +
    /// B(a+1, b+x)/B(a,b) · Γ(r+x)α^r/(Γ(r)(α+t_x)^(r+x))]: alive at T, or dropped out
    /// right after the last purchase (the first one too). Both Beta ratios share Γ(a+b)Γ(b+x)/(Γ(b)Γ(a+b+x+1)), leaving (b+x) and a.
    pub fn log_likelihood(&self, o: Observation) -> f64 {
        let x = f64::from(o.x);
        let Self { r, alpha, a, b } = *self;
        let common =
            ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln() + ln_gamma(a + b) + ln_gamma(b + x)
                - ln_gamma(b)
                - ln_gamma(a + b + x + 1.0);
        common + alive_or_not(a.ln(), (b + x).ln(), r + x, alpha, o)
    }

    /// P(alive at T | x, t_x, T) = 1 / (1 + a/(b+x) · ((α+T)/(α+t_x))^(r+x)).
    pub fn p_alive(&self, o: Observation) -> f64 {
        inverse_one_plus_exp(self.ln_dropout_odds(o))
    }

    /// ln of a/(b+x) · ((α+T)/(α+t_x))^(r+x): the odds of having dropped out.
    fn ln_dropout_odds(&self, o: Observation) -> f64 {
        let x = f64::from(o.x);
        self.a.ln() - (self.b + x).ln()
            + (self.r + x) * ((self.alpha + o.t).ln() - (self.alpha + o.t_x).ln())
    }

    /// E[purchases in (T, T + horizon] | x, t_x, T] =
    /// (a+b+x)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x+1; a+b+x; z)] · P(alive),
    /// z = t/(α+T+t): an alive customer is a BG/NBD customer with p ~ Beta(a, b+x+1).
    ///
    /// As in `BgNbd::expected_purchases`, Euler's transformation turns the ₂F₁ into
    /// (1−z)^(a−1−r−x) ₂F₁(a+b−r, a−1; a+b+x; z); its second parameter a − 1 cancels
    /// the 1/(a − 1) exactly, so a ≈ 1 and large x stay accurate. `None` if the series
    /// does not converge.
    pub fn expected_purchases(&self, o: Observation, horizon: f64) -> Option<f64> {
        if horizon <= 0.0 {
            return Some(0.0);
        }
        let x = f64::from(o.x);
        let Self { r, alpha, a, b } = *self;
        let c = a + b + x;
        let z = horizon / (alpha + o.t + horizon);
        // l = ln(1 − z) = ln((α+T)/(α+T+t)) < 0
        let l = -(horizon / (alpha + o.t)).ln_1p();
        let p1 = a + b - r; // C − A
                            // g = Σ_{k≥1} (p1)_k (a)_{k−1} / ((c)_k k!) z^k, so ₂F₁(p1, a−1; c; z) = 1 + (a−1) g.
        let mut term = p1 * z / c;
        let mut g = term;
        if term != 0.0 {
            series(&mut g, &mut term, MAX_SERIES_TERMS, |k| {
                let k = (k + 1) as f64;
                (p1 + k) * (a + k - 1.0) / ((c + k) * (k + 1.0)) * z
            })?;
        }
        let y = (a - 1.0) * l;
        // [1 − (1−z)^(a−1) (1 + (a−1) g)] / (a − 1)
        let bracket = -l * expm1_over(y) - y.exp() * g;
        let e = c * bracket * self.p_alive(o);
        (e.is_finite()).then_some(e.max(0.0))
    }

    /// Maximum likelihood on (observation, count) pairs, grouped like `BgNbd::fit`.
    pub fn fit(data: &[(Observation, u64)]) -> Result<MbgNbd, FitError> {
        let likelihood = GroupedLikelihood::new(data);
        fit_log_parameters(
            data,
            |ln_t| [0.0, ln_t, 0.0, 0.0],
            |_| true,
            |p| MbgNbd {
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

/// ln[(b+x)(α+T)^−(r+x) + a(α+t_x)^−(r+x)]: the alive and the dropped-out branch of
/// the likelihood, without their common factor.
fn alive_or_not(ln_a: f64, ln_b_x: f64, r_x: f64, alpha: f64, o: Observation) -> f64 {
    log_add_exp(
        ln_b_x - r_x * (alpha + o.t).ln(),
        ln_a - r_x * (alpha + o.t_x).ln(),
    )
}

/// An observation and its count.
type Row = (Observation, f64);

/// Observations sorted by x, so the ln Γ terms that depend only on x are computed once
/// per distinct x per evaluation.
struct GroupedLikelihood {
    by_x: Vec<(u32, Vec<Row>)>,
}

impl GroupedLikelihood {
    fn new(data: &[(Observation, u64)]) -> Self {
        Self {
            by_x: runs_by_x(data),
        }
    }

    fn sum(&self, m: &MbgNbd) -> f64 {
        let MbgNbd { r, alpha, a, b } = *m;
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
            let common = ln_gamma(r + xf) - lg_r + r * ln_alpha + lg_ab + ln_gamma(b + xf)
                - lg_b
                - ln_gamma(a + b + xf + 1.0);
            let ln_b_x = (b + xf).ln();
            for &(o, n) in rows {
                total += n * (common + alive_or_not(ln_a, ln_b_x, r + xf, alpha, o));
            }
        }
        total
    }
}
