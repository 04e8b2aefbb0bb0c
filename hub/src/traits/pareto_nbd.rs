//! Pareto/NBD (Schmittlein, Morrison & Colombo 1987; the expressions follow Fader &
//! Hardie, "A Note on Deriving the Pareto/NBD Model and Related Expressions", 2005):
//! while alive, a customer buys at Poisson rate λ ~ Gamma(r, α); the lifetime is
//! exponential with rate μ ~ Gamma(s, β). Time is in whatever unit the caller uses.
//!
//! The likelihood's hypergeometric term A₀ is evaluated as the tail integral
//! F(u) = ∫_u^∞ (α+y)^−(r+x) (β+y)^−(s+1) dy, since s·A₀/(r+s+x) = s·(F(t_x) − F(T)).
//! F(u) = (α+u)^−(r+x) (β+u)^−s Φ(ρ_u)/(r+s+x) with ρ_u = (β+u)/(α+u) and
//! Φ(ρ) = ₂F₁(1, r+x; r+s+x+1; 1−ρ), a bounded series of positive terms in the larger
//! of α, β as base (the note's trick, after Euler's transformation). When that series
//! would converge slowly (α and β far apart and u small) Φ comes from its integral
//! form instead, so neither regime gives NaN or a wrong answer.

use serde::Serialize;

use super::bgnbd::{fit_log_parameters, inverse_one_plus_exp, runs_by_x, FitError, Observation};
use super::special::{expm1_over, ln_gamma};

/// Fitted Pareto/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ParetoNbd {
    pub r: f64,
    pub alpha: f64,
    pub s: f64,
    pub beta: f64,
}

/// The fit keeps β/α within e^±8 (about 3,000): further out the likelihood is flat (the
/// dropout process hardly matters next to the purchase process, or the reverse) and Φ
/// only costs more. Without it a population drawn from BG/NBD sent the search along
/// the s, β → ∞ ridge for minutes.
const RATIO_LOG_BOUND: f64 = 8.0;

/// Up to this argument Φ is summed as its power series (≤ 23 terms of ratio < z).
const SERIES_MAX_Z: f64 = 0.2;

/// Up to this argument Φ comes from Gauss's continued fraction, whose error shrinks by
/// (1−√(1−z))/(1+√(1−z)) a level (55 levels at z = 0.9, ~600 at 0.999, where the
/// series would need 350 and 37 000 terms); beyond, from its integral form.
const FRACTION_MAX_Z: f64 = 0.999;

impl ParetoNbd {
    /// ln L(r, α, s, β | x, t_x, T) =
    /// ln[Γ(r+x)α^r β^s/Γ(r) · ((α+T)^−(r+x) (β+T)^−s + s/(r+s+x) · A₀)].
    pub fn log_likelihood(&self, o: Observation) -> f64 {
        let x = f64::from(o.x);
        let head = ln_gamma(self.r + x) - ln_gamma(self.r);
        let (ln_alpha, ln_beta) = (self.alpha.ln(), self.beta.ln());
        let ln_odds = self.ln_dropout_odds(o, &mut self.phi(o), None);
        head + self.r * ln_alpha + self.s * ln_beta + self.ln_alive_branch(o) + softplus(ln_odds)
    }

    /// P(alive at T | x, t_x, T) = 1/(1 + (s/(r+s+x)) (α+T)^(r+x) (β+T)^s A₀).
    pub fn p_alive(&self, o: Observation) -> f64 {
        inverse_one_plus_exp(self.ln_dropout_odds(o, &mut self.phi(o), None))
    }

    /// E[purchases in (T, T + horizon] | x, t_x, T] =
    /// (r+x)(β+T)/((α+T)(s−1)) · [1 − ((β+T)/(β+T+t))^(s−1)] · P(alive),
    /// with [1 − e^((s−1)l)]/(s−1) = −l·expm1((s−1)l)/((s−1)l), l = ln((β+T)/(β+T+t)),
    /// so s = 1 (where it becomes ln((β+T+t)/(β+T))) is no special case. Always `Some`
    /// for finite inputs; the `Option` matches the other models.
    pub fn expected_purchases(&self, o: Observation, horizon: f64) -> Option<f64> {
        self.expected_given_p_alive(o, horizon, self.p_alive(o))
    }

    /// P(alive) and the expected purchases together: P(alive) (two Φ) is computed once.
    pub fn predict(&self, o: Observation, horizon: f64) -> (f64, Option<f64>) {
        let p = self.p_alive(o);
        (p, self.expected_given_p_alive(o, horizon, p))
    }

    fn expected_given_p_alive(&self, o: Observation, horizon: f64, p_alive: f64) -> Option<f64> {
        if horizon <= 0.0 {
            return Some(0.0);
        }
        let x = f64::from(o.x);
        let l = -(horizon / (self.beta + o.t)).ln_1p();
        let per_alive = (self.r + x) / (self.alpha + o.t)
            * (self.beta + o.t)
            * (-l)
            * expm1_over((self.s - 1.0) * l);
        let e = per_alive * p_alive;
        (e.is_finite()).then_some(e.max(0.0))
    }

    fn phi(&self, o: Observation) -> Phi {
        Phi::new(self.r + f64::from(o.x), self.s)
    }

    /// ln[(α+T)^−(r+x) (β+T)^−s]: the likelihood of being alive at T (without the
    /// constant Γ(r+x)α^r β^s/Γ(r)).
    fn ln_alive_branch(&self, o: Observation) -> f64 {
        -(self.r + f64::from(o.x)) * (self.alpha + o.t).ln() - self.s * (self.beta + o.t).ln()
    }

    /// ln R, R = s (F(t_x) − F(T)) / ((α+T)^−(r+x) (β+T)^−s): the odds of having died
    /// before T. `phi_at_t_x` may pass Φ(ρ_{t_x}) when the caller already has it.
    fn ln_dropout_odds(&self, o: Observation, phi: &mut Phi, phi_at_t_x: Option<f64>) -> f64 {
        let m = self.r + f64::from(o.x);
        let Self { alpha, s, beta, .. } = *self;
        let phi_t = phi.at((beta + o.t) / (alpha + o.t));
        let phi_t_x = phi_at_t_x.unwrap_or_else(|| phi.at((beta + o.t_x) / (alpha + o.t_x)));
        // F(t_x)/F(T) · Φ_T/Φ_tx = e^excess ≥ 1
        let excess = m * ((o.t - o.t_x) / (alpha + o.t_x)).ln_1p()
            + s * ((o.t - o.t_x) / (beta + o.t_x)).ln_1p();
        ln_dropout_odds_from(m, s, excess, phi_t_x, phi_t)
    }

    /// Maximum likelihood on (observation, count) pairs: identical observations are
    /// grouped by the caller so a million customers cost as much as their distinct
    /// (x, t_x, T) triples.
    pub fn fit(data: &[(Observation, u64)]) -> Result<ParetoNbd, FitError> {
        let likelihood = GroupedLikelihood::new(data);
        fit_log_parameters(
            data,
            |ln_t| [0.0, ln_t, 0.0, ln_t],
            |p| (p[3] - p[1]).abs() <= RATIO_LOG_BOUND,
            |p| ParetoNbd {
                r: p[0].exp(),
                alpha: p[1].exp(),
                s: p[2].exp(),
                beta: p[3].exp(),
            },
            |m| likelihood.sum(m),
        )
    }

    /// Σ count · ln L over grouped observations.
    pub fn total_log_likelihood(&self, data: &[(Observation, u64)]) -> f64 {
        GroupedLikelihood::new(data).sum(self)
    }
}

/// ln R from its parts: R = s/(m+s) · (e^excess Φ_tx − Φ_T). Rounding can make the
/// difference slightly negative when t_x ≈ T; it is then 0 (R = 0, ln R = −∞).
fn ln_dropout_odds_from(m: f64, s: f64, excess: f64, phi_t_x: f64, phi_t: f64) -> f64 {
    let q = (-excess).exp() * phi_t / phi_t_x;
    if q.is_nan() || q >= 1.0 {
        return f64::NEG_INFINITY;
    }
    (s / (m + s)).ln() + excess + phi_t_x.ln() + (-q).ln_1p()
}

/// Φ(ρ) = ₂F₁(1, m; m+s+1; 1−ρ) for ρ > 0, so that
/// ∫_u^∞ (α+y)^−m (β+y)^−(s+1) dy = (α+u)^−m (β+u)^−s Φ((β+u)/(α+u)) / (m+s).
#[cfg(test)]
pub(crate) fn phi(m: f64, s: f64, rho: f64) -> f64 {
    Phi::new(m, s).at(rho)
}

/// Φ for one (m, s), i.e. one x: the coefficients of its series and continued fraction
/// are kept and reused across the rows of a fit.
pub(crate) struct Phi {
    m: f64,
    s: f64,
    alpha_base: Coefficients,
    beta_base: Coefficients,
}

impl Phi {
    pub(crate) fn new(m: f64, s: f64) -> Self {
        let c = m + s + 1.0;
        Self {
            m,
            s,
            alpha_base: Coefficients::new(m, c),
            beta_base: Coefficients::new(s + 1.0, c),
        }
    }

    /// For ρ ≤ 1 (α ≥ β) the series in z = 1−ρ; for ρ > 1 Pfaff's transformation
    /// Φ = ₂F₁(1, s+1; m+s+1; 1−1/ρ)/ρ (β as the base). Both have positive terms with
    /// ratio below z: the series near ρ = 1, Gauss's continued fraction further out,
    /// and the integral form [`phi_by_quadrature`] far from ρ = 1.
    pub(crate) fn at(&mut self, rho: f64) -> f64 {
        let (base, z, scale) = if rho <= 1.0 {
            (&mut self.alpha_base, 1.0 - rho, 1.0)
        } else {
            (&mut self.beta_base, 1.0 - 1.0 / rho, 1.0 / rho)
        };
        let value = if z <= SERIES_MAX_Z {
            base.series(z)
        } else if z <= FRACTION_MAX_Z {
            base.fraction(z)
        } else {
            None
        };
        match value {
            Some(v) => scale * v,
            None => phi_by_quadrature(self.m, self.s, rho),
        }
    }
}

/// ₂F₁(1, b; c; z) for 0 ≤ z < 1, b < c: the ratios of its series and the
/// coefficients of its continued fraction, computed once as far as needed.
struct Coefficients {
    b: f64,
    c: f64,
    ratios: Vec<f64>,
    fraction: Vec<f64>,
}

/// Most series terms or continued-fraction levels before giving up on them.
const MAX_LEVELS: usize = 20_000;

impl Coefficients {
    fn new(b: f64, c: f64) -> Self {
        Self {
            b,
            c,
            ratios: Vec::new(),
            fraction: Vec::new(),
        }
    }

    /// Σ (b)_k/(c)_k z^k: positive terms with ratio (b+k)/(c+k)·z < z.
    fn series(&mut self, z: f64) -> Option<f64> {
        let (mut term, mut sum) = (1.0, 1.0);
        for k in 0..MAX_LEVELS {
            if k == self.ratios.len() {
                let kf = k as f64;
                self.ratios.push((self.b + kf) / (self.c + kf));
            }
            term *= self.ratios[k] * z;
            sum += term;
            if term <= 1e-17 * sum {
                return Some(sum);
            }
        }
        None
    }

    /// Gauss's continued fraction for ₂F₁(a+1, b; c; z)/₂F₁(a, b; c−1; z) at a = 0:
    /// 1/(1 + k₁z/(1 + k₂z/(1 + …))), k_{2n+1} = −(c−1+n)(b+n)/((c−1+2n)(c+2n)),
    /// k_{2n} = −n(c−1+n−b)/((c−2+2n)(c−1+2n)); all k < 0 and → −1/4. Evaluated by
    /// the modified Lentz method.
    fn fraction(&mut self, z: f64) -> Option<f64> {
        const TINY: f64 = 1e-300;
        let c0 = self.c - 1.0;
        let (mut f, mut big_c, mut d) = (1.0f64, 1.0f64, 0.0f64);
        for j in 1..MAX_LEVELS {
            if j > self.fraction.len() {
                let n = (j / 2) as f64;
                self.fraction.push(if j % 2 == 1 {
                    -(c0 + n) * (self.b + n) / ((c0 + 2.0 * n) * (c0 + 2.0 * n + 1.0))
                } else {
                    -n * (c0 + n - self.b) / ((c0 + 2.0 * n - 1.0) * (c0 + 2.0 * n))
                });
            }
            let a = self.fraction[j - 1] * z;
            d = 1.0 + a * d;
            if d.abs() < TINY {
                d = TINY;
            }
            big_c = 1.0 + a / big_c;
            if big_c.abs() < TINY {
                big_c = TINY;
            }
            d = 1.0 / d;
            let delta = big_c * d;
            f *= delta;
            if !f.is_finite() {
                return None;
            }
            if (delta - 1.0).abs() < 1e-16 {
                return Some(1.0 / f);
            }
        }
        None
    }
}

/// ₂F₁(1, b; c; z) for 0 < z < 1, b < c, by the continued fraction alone (for tests).
#[cfg(test)]
pub(crate) fn phi_continued_fraction(b: f64, c: f64, z: f64) -> Option<f64> {
    Coefficients::new(b, c).fraction(z)
}

/// Φ(ρ) = (m+s)/ρ ∫_{−∞}^{∞} e^{ψ(v)} dv, ψ(v) = v − m ln(1+e^v) − (s+1) ln(1+e^v/ρ)
/// (the tail integral with y = (α+u)e^v, the constant (s+1) ln ρ taken out so large
/// s loses no digits). The integrand is analytic in the strip |Im v| < π and decays
/// exponentially both ways, so the trapezoidal rule converges geometrically in
/// 1/step: at step 0.2 the error is ~e^{−π²/0.2}. ψ is concave with ψ'' ≥ −1 at its
/// peak, and beyond the bends of both ln(1+·) terms it is linear to double precision
/// (slopes 1 and −(m+s)), so the rule's sums over both tails are geometric series,
/// added in closed form: the grid stays short even when m + s is tiny.
pub(crate) fn phi_by_quadrature(m: f64, s: f64, rho: f64) -> f64 {
    let ln_rho = rho.ln();
    let psi = |v: f64| v - m * softplus(v) - (s + 1.0) * softplus(v - ln_rho);
    let step = 0.2;
    // Past this distance from the bends the neglected curvature is below e^−40.
    let margin = 40.0 + m.max(s + 1.0).max(1.0).ln();
    let (lo, hi) = (ln_rho.min(0.0) - margin, ln_rho.max(0.0) + margin);
    // Peak of the concave ψ by bisection on ψ' = 1 − m σ(v) − (s+1) σ(v − ln ρ).
    let slope = |v: f64| 1.0 - m * sigmoid(v) - (s + 1.0) * sigmoid(v - ln_rho);
    let (mut a, mut b) = (lo, hi);
    for _ in 0..100 {
        let mid = 0.5 * (a + b);
        if slope(mid) > 0.0 {
            a = mid;
        } else {
            b = mid;
        }
    }
    let centre = 0.5 * (a + b);
    let peak = psi(centre);
    // Σ e^{ψ(v_j) − peak} over the grid v_j = centre + j·step, walking out from the
    // peak until the terms no longer matter or the linear tail starts.
    let mut sum = 1.0;
    for direction in [1.0, -1.0] {
        let mut j = 1.0;
        loop {
            let v = centre + direction * j * step;
            let term = (psi(v) - peak).exp();
            if v >= hi || v <= lo {
                // From here on e^{ψ} falls by e^{−|slope|·step} per step.
                let rate = if direction > 0.0 { m + s } else { 1.0 };
                sum += term / -(-rate * step).exp_m1();
                break;
            }
            sum += term;
            if term < 1e-18 * sum {
                break;
            }
            j += 1.0;
        }
    }
    ((m + s).ln() - ln_rho + peak + (step * sum).ln()).exp()
}

fn sigmoid(v: f64) -> f64 {
    inverse_one_plus_exp(-v)
}

/// ln(1 + e^l) without overflow; 0 at l = −∞.
fn softplus(l: f64) -> f64 {
    if l > 0.0 {
        l + (-l).exp().ln_1p()
    } else {
        l.exp().ln_1p()
    }
}

/// An observation and its count.
type Row = (Observation, f64);

/// Observations sorted by x and then t_x, so the ln Γ terms that depend only on x are
/// computed once per distinct x, and Φ at t_x once per distinct (x, t_x) (all the
/// customers without a repeat purchase share t_x = 0).
struct GroupedLikelihood {
    by_x: Vec<(u32, Vec<Row>)>,
}

impl GroupedLikelihood {
    fn new(data: &[(Observation, u64)]) -> Self {
        Self {
            by_x: runs_by_x(data),
        }
    }

    fn sum(&self, model: &ParetoNbd) -> f64 {
        let ParetoNbd { r, alpha, s, beta } = *model;
        let constant = r * alpha.ln() + s * beta.ln() - ln_gamma(r);
        let mut total = 0.0;
        for (x, rows) in &self.by_x {
            let m = r + f64::from(*x);
            let head = constant + ln_gamma(m);
            let mut phi = Phi::new(m, s);
            let mut cached: Option<(f64, f64)> = None;
            for &(o, n) in rows {
                let phi_t_x = match cached {
                    Some((t_x, value)) if t_x == o.t_x => value,
                    _ => {
                        let value = phi.at((beta + o.t_x) / (alpha + o.t_x));
                        cached = Some((o.t_x, value));
                        value
                    }
                };
                let ln_odds = model.ln_dropout_odds(o, &mut phi, Some(phi_t_x));
                total += n * (head + model.ln_alive_branch(o) + softplus(ln_odds));
            }
        }
        total
    }
}
