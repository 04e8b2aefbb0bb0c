//! BG/CNBD-k and MBG/CNBD-k (Platzer & Reutterer 2016, "Ticking away the moments"):
//! BG/NBD resp. MBG/NBD with regular purchases. While alive, the gaps between purchases
//! are Erlang-k with rate λ (λ ~ Gamma(r, α) across customers, mean gap k/λ); after each
//! repeat purchase (and, for MBG/CNBD-k, also at time 0) the customer drops out with
//! probability p ~ Beta(a, b). k = 1 is BG/NBD resp. MBG/NBD. Time is in days.
//!
//! For a fixed k the individual likelihood's regularity term (k−1)·Σ ln gaps does not
//! depend on (r, α, a, b): the fit for one k runs on the grouped (x, t_x, T) like the
//! other models, and k is chosen on full log-likelihoods, which need only the
//! population's total Σ ln gaps.

use serde::Serialize;

use super::bgnbd::{
    fit_log_parameters, inverse_one_plus_exp, log_add_exp, runs_by_x, FitError, Observation,
};
use super::special::ln_gamma;

/// Fitted BG/CNBD-k (or MBG/CNBD-k) parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CnbdK {
    pub k: u32,
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    /// MBG/CNBD-k when true
    pub dropout_at_zero: bool,
}

/// The phases an alive customer may have completed since the last purchase are
/// 0..k, so at most `MAX_K` of them.
const PHASES: usize = CnbdK::MAX_K as usize;

/// Most steps the prediction's sum over the phase count may take before it gives up.
const MAX_PREDICTION_TERMS: f64 = 100_000.0;

/// Log-parameters a warm start may take (the fit keeps them within ±15).
const START_BOUND: f64 = 14.5;

/// What P(alive) and the prediction share for one customer: the posterior over the
/// number of Erlang phases completed since the last purchase, given alive at T.
struct AliveState {
    /// r + kx: the shape of λ's posterior with no phase counted.
    shape: f64,
    /// P(alive at T).
    p_alive: f64,
    /// P(j phases completed | alive), j < k.
    weights: [f64; PHASES],
}

impl CnbdK {
    pub const MAX_K: u32 = 12;

    fn k(&self) -> usize {
        self.k.clamp(1, Self::MAX_K) as usize
    }

    /// 1 for MBG/CNBD-k (the drop-out at time 0 counts as one more chance), else 0.
    fn extra_chance(&self) -> f64 {
        if self.dropout_at_zero {
            1.0
        } else {
            0.0
        }
    }

    /// ln of a/(b+x−1+m): the Beta part of the dropped-out branch over the alive one,
    /// or None when the customer cannot have dropped out (BG, x = 0).
    fn ln_dead_ratio(&self, x: u32) -> Option<f64> {
        (self.dropout_at_zero || x > 0)
            .then(|| self.a.ln() - (self.b + f64::from(x) - 1.0 + self.extra_chance()).ln())
    }

    /// The part of ln L that depends on x only (without the regularity term):
    /// −x ln((k−1)!) + ln B(a, b+x+m) − ln B(a, b) + lnΓ(r+kx) − lnΓ(r) + r ln α.
    fn ln_x_terms(&self, x: u32, ln_factorial: f64, fixed: &FixedTerms) -> f64 {
        let xf = f64::from(x);
        let shape = self.r + self.k() as f64 * xf;
        let bx = self.b + xf + self.extra_chance();
        -xf * ln_factorial + ln_gamma(bx) - ln_gamma(self.a + bx) + ln_gamma(shape) + fixed.0
    }

    fn fixed_terms(&self) -> FixedTerms {
        FixedTerms(
            ln_gamma(self.a + self.b) - ln_gamma(self.b) - ln_gamma(self.r)
                + self.r * self.alpha.ln(),
        )
    }

    /// Full ln L of one customer, `sum_ln_gaps` = Σ ln of the customer's gaps between
    /// purchases (days).
    pub fn log_likelihood(&self, o: Observation, sum_ln_gaps: f64) -> f64 {
        let k = self.k();
        let ln_factorial = ln_gamma(k as f64);
        let regular = if k > 1 {
            (k as f64 - 1.0) * sum_ln_gaps
        } else {
            0.0
        };
        regular
            + self.ln_x_terms(o.x, ln_factorial, &self.fixed_terms())
            + self.ln_branches(
                o,
                self.r + k as f64 * f64::from(o.x),
                self.ln_dead_ratio(o.x),
            )
    }

    /// −(r+kx) ln(α+T) + ln(S1 + S2): the alive branch (S2, no purchase in the last
    /// T − t_x days) and the dropped-out one (S1), without their common factor.
    fn ln_branches(&self, o: Observation, shape: f64, ln_dead: Option<f64>) -> f64 {
        let alpha_t = self.alpha + o.t;
        let ln_s2 = ln_phase_sum(shape, (o.t - o.t_x).max(0.0) / alpha_t, self.k());
        let ln_alive = ln_s2 - shape * alpha_t.ln();
        match ln_dead {
            None => ln_alive,
            Some(ratio) => log_add_exp(ln_alive, ratio - shape * (self.alpha + o.t_x).ln()),
        }
    }

    /// P(alive at T | x, t_x, T) = 1 / (1 + S1/S2) (BG: 1 for x = 0).
    pub fn p_alive(&self, o: Observation) -> f64 {
        self.alive_state(o).p_alive
    }

    fn alive_state(&self, o: Observation) -> AliveState {
        let k = self.k();
        let shape = self.r + k as f64 * f64::from(o.x);
        let alpha_t = self.alpha + o.t;
        let gap = (o.t - o.t_x).max(0.0);
        let z = gap / alpha_t;
        // Terms (shape)_j z^j / j!, j < k: linear while they fit, in logs otherwise.
        let mut weights = [0.0; PHASES];
        let mut term = 1.0;
        let mut sum = 0.0;
        for (j, w) in weights.iter_mut().enumerate().take(k) {
            if j > 0 {
                term *= (shape + j as f64 - 1.0) / j as f64 * z;
            }
            *w = term;
            sum += term;
        }
        let ln_s2 = if sum.is_finite() {
            for w in weights.iter_mut().take(k) {
                *w /= sum;
            }
            sum.ln()
        } else {
            let ln_terms = ln_phase_terms(shape, z, k);
            let ln_s2 = ln_sum_exp(&ln_terms[..k]);
            for (w, l) in weights.iter_mut().zip(&ln_terms).take(k) {
                *w = (l - ln_s2).exp();
            }
            ln_s2
        };
        let p_alive = match self.ln_dead_ratio(o.x) {
            None => 1.0,
            Some(ratio) => {
                // ln S1 − ln S2, S1 = a/(b+x−1+m) · ((α+T)/(α+t_x))^(r+kx).
                let ln_s1 = ratio + shape * (gap / (self.alpha + o.t_x)).ln_1p();
                inverse_one_plus_exp(ln_s1 - ln_s2)
            }
        };
        AliveState {
            shape,
            p_alive,
            weights,
        }
    }

    /// E[purchases in (T, T + horizon] | x, t_x, T], exactly (not BTYDplus's scaled
    /// BG/NBD approximation). Given alive at T, j phases completed since the last
    /// purchase (weights ∝ (r+kx)_j z^j / j!), λ ~ Gamma(r+kx+j, α+T), so the phases N
    /// in the next `horizon` days are negative binomial (shape r+kx+j,
    /// q = horizon/(α+T+horizon)); ⌊(j+N)/k⌋ purchases are due, each after the first
    /// only if the customer did not drop out after the previous one:
    /// g(m) = Σ_{i<m} E[(1−p)^i], p ~ Beta(a, b+x+m₀). `None` if the sum over N does
    /// not converge within a sane number of terms.
    pub fn expected_purchases(&self, o: Observation, horizon: f64) -> Option<f64> {
        self.predict(o, horizon).1
    }

    /// (P(alive), expected purchases in the next `horizon` days), sharing the work.
    pub fn predict(&self, o: Observation, horizon: f64) -> (f64, Option<f64>) {
        let state = self.alive_state(o);
        if horizon.is_nan() {
            return (state.p_alive, None);
        }
        if horizon <= 0.0 || state.p_alive == 0.0 {
            return (state.p_alive, Some(0.0));
        }
        let e = self
            .expected_if_alive(o, &state, horizon)
            .map(|e| e * state.p_alive)
            .filter(|e| e.is_finite())
            .map(|e| e.max(0.0));
        (state.p_alive, e)
    }

    /// E[purchases in the next `horizon` days | alive at T].
    fn expected_if_alive(&self, o: Observation, state: &AliveState, horizon: f64) -> Option<f64> {
        let k = self.k();
        let kf = k as f64;
        let alpha_t = self.alpha + o.t;
        // q = t/(α+T+t), 1 − q = (α+T)/(α+T+t)
        let ln_1mq = -(horizon / alpha_t).ln_1p();
        let one_minus_q = ln_1mq.exp();
        let q = horizon / (alpha_t + horizon);
        if !(q > 0.0 && q < 1.0 && one_minus_q > 0.0) {
            return None;
        }
        let ln_q = q.ln();
        let shapes: [f64; PHASES] = std::array::from_fn(|j| state.shape + j as f64);
        let last = shapes[k - 1];
        let odds = q / one_minus_q;
        let top_mean = last * odds;
        let top_sd = (top_mean / one_minus_q).sqrt();
        // Where to start the sum over n: at 0 unless the mass there underflows; then
        // 15 standard deviations below the smallest mean (the left tail of a negative
        // binomial is lighter than the normal's).
        let n_lo = if last * ln_1mq > -600.0 {
            0.0
        } else {
            let mean = state.shape * odds;
            let sd = (mean / one_minus_q).sqrt();
            (mean - 15.0 * sd).max(0.0).floor()
        };
        // Past the mean the terms shrink by about q per step: ~40/(1 − q) steps at least.
        let span = (top_mean + 40.0 * top_sd + 50.0).max(60.0 / one_minus_q) - n_lo;
        if span.is_nan() || span > MAX_PREDICTION_TERMS {
            return None;
        }
        // P_j(n) = w_j · NB(n; shape_j, q), the first from ln Γ, the next by
        // NB_{j+1}(n) = NB_j(n) (shape_j + n)/shape_j (1 − q).
        let mut mass = [0.0; PHASES];
        let mut nb = if n_lo > 0.0 {
            ln_gamma(state.shape + n_lo) - ln_gamma(state.shape) - ln_gamma(n_lo + 1.0)
                + state.shape * ln_1mq
                + n_lo * ln_q
        } else {
            state.shape * ln_1mq
        }
        .exp();
        for ((p, w), shape) in mass.iter_mut().zip(&state.weights).zip(&shapes).take(k) {
            *p = w * nb;
            nb *= (shape + n_lo) / shape * one_minus_q;
        }
        // g(m) and E[(1−p)^m] = c_m, p ~ Beta(a, b'), by c_{m+1} = c_m (b'+m)/(a+b'+m).
        let b1 = self.b + f64::from(o.x) + self.extra_chance();
        let a = self.a;
        let mut m = 0.0;
        let (mut g, mut c) = (0.0, 1.0);
        let first_m = (n_lo / kf).floor();
        if first_m > 50.0 && (a - 1.0).abs() > 1e-3 {
            // Σ_{i<m} B(a, b'+i) = B(a−1, b') − B(a−1, b'+m), over B(a, b').
            c = (ln_gamma(b1 + first_m) - ln_gamma(b1) + ln_gamma(a + b1)
                - ln_gamma(a + b1 + first_m))
            .exp();
            g = ((a + b1 - 1.0) - c * (a + b1 + first_m - 1.0)) / (a - 1.0);
            m = first_m;
        }
        while m < first_m {
            if a > 1.0 && c * (a + b1 + m - 1.0) / (a - 1.0) <= 1e-16 * g {
                // g is at its limit before the first n with mass.
                return Some(g + c * (a + b1 + m - 1.0) / (a - 1.0));
            }
            g += c;
            c *= (b1 + m) / (a + b1 + m);
            m += 1.0;
        }
        let mut n = n_lo;
        let mut rho = (n_lo - first_m * kf) as usize;
        let mut total = 0.0;
        let mut steps = 0.0;
        // Σ_{i≥m} c_i = c_m (a+b'+m−1)/(a−1) for a > 1: once that is negligible, g is
        // at its limit for every n to come, which then take the mass not yet seen.
        let mut seen = 0.0f64;
        loop {
            if a > 1.0 {
                let rest = c * (a + b1 + m - 1.0) / (a - 1.0);
                if rest <= 1e-16 * g {
                    total += (g + rest) * (1.0 - seen).max(0.0);
                    break;
                }
            }
            // j + ρ < k: ⌊(j+n)/k⌋ = m; otherwise m + 1.
            let split = k - rho;
            let below: f64 = mass[..split].iter().sum();
            let above: f64 = mass[split..k].iter().sum();
            total += g * below + (g + c) * above;
            let all = below + above;
            seen += all;
            // The tail beyond n: terms shrink at least by ρ_max per step, and
            // g(⌊(j+n+i)/k⌋) ≤ m + 2 + i/k.
            let ratio = ((last + n) / (n + 1.0) * q).max(q);
            if n > top_mean && ratio < 1.0 {
                let tail = all * ratio / (1.0 - ratio) * (m + 2.0 + 1.0 / ((1.0 - ratio) * kf));
                if tail <= 1e-12 * total || all == 0.0 {
                    break;
                }
            }
            if !total.is_finite() || steps > MAX_PREDICTION_TERMS {
                return None;
            }
            let f = q / (n + 1.0);
            for (p, shape) in mass.iter_mut().zip(&shapes).take(k) {
                *p *= (shape + n) * f;
            }
            n += 1.0;
            steps += 1.0;
            rho += 1;
            if rho == k {
                rho = 0;
                g += c;
                c *= (b1 + m) / (a + b1 + m);
                m += 1.0;
            }
        }
        Some(total)
    }

    /// Maximum likelihood for one k on grouped data; `start` = log-parameters
    /// [ln r, ln α, ln a, ln b] to start from (by default r = a = b = 1 and α = mean T/k).
    /// k outside 1..=MAX_K is clamped.
    pub fn fit_k(
        data: &[(Observation, u64)],
        k: u32,
        dropout_at_zero: bool,
        start: Option<[f64; 4]>,
    ) -> Result<CnbdK, FitError> {
        Self::fit_one(data, k, dropout_at_zero, start).map(|(m, _)| m)
    }

    /// The fit and its total log-likelihood (without the regularity term).
    fn fit_one(
        data: &[(Observation, u64)],
        k: u32,
        dropout_at_zero: bool,
        start: Option<[f64; 4]>,
    ) -> Result<(CnbdK, f64), FitError> {
        let k = k.clamp(1, Self::MAX_K);
        let likelihood = GroupedLikelihood::new(data);
        let make = |p: &[f64]| CnbdK {
            k,
            r: p[0].exp(),
            alpha: p[1].exp(),
            a: p[2].exp(),
            b: p[3].exp(),
            dropout_at_zero,
        };
        let fitted = fit_log_parameters(
            data,
            |ln_t| {
                start
                    .filter(|s| s.iter().all(|v| v.is_finite()))
                    .map(|s| s.map(|v| v.clamp(-START_BOUND, START_BOUND)))
                    .unwrap_or([0.0, ln_t - f64::from(k).ln(), 0.0, 0.0])
            },
            |_| true,
            make,
            |m| likelihood.sum(m),
        )?;
        let ll = likelihood.sum(&fitted);
        Ok((fitted, ll))
    }

    /// k = 1..=MAX_K, each warm-started from the previous k's fit (α scaled by
    /// (k−1)/k, which keeps the mean gap), stopping once the full log-likelihood
    /// fell twice in a row; the fit of the k with the highest full log-likelihood.
    /// `sum_ln_gaps` = Σ over the customers in `data` (with their counts) of Σ ln gap
    /// days.
    pub fn fit(
        data: &[(Observation, u64)],
        sum_ln_gaps: f64,
        dropout_at_zero: bool,
    ) -> Result<CnbdK, FitError> {
        let mut best: Option<(f64, CnbdK)> = None;
        let mut previous: Option<f64> = None;
        let mut falls = 0;
        let mut start = None;
        let mut error = None;
        for k in 1..=Self::MAX_K {
            match Self::fit_one(data, k, dropout_at_zero, start) {
                Ok((m, ll)) => {
                    let full = ll + f64::from(k - 1) * sum_ln_gaps;
                    if previous.is_some_and(|p| full < p) {
                        falls += 1;
                    } else {
                        falls = 0;
                    }
                    previous = Some(full);
                    if full.is_finite() && best.is_none_or(|(b, _)| full > b) {
                        best = Some((full, m));
                    }
                    let next = f64::from(k + 1);
                    start = Some([
                        m.r.ln(),
                        m.alpha.ln() + (f64::from(k) / next).ln(),
                        m.a.ln(),
                        m.b.ln(),
                    ]);
                    if falls >= 2 {
                        break;
                    }
                }
                // No data: the same for every k.
                Err(e @ (FitError::NoCustomers | FitError::NoRepeatPurchases)) => return Err(e),
                Err(e) => {
                    error = Some(e);
                    start = None;
                }
            }
        }
        best.map(|(_, m)| m)
            .ok_or(error.unwrap_or(FitError::NotFinite))
    }

    /// Σ count · ln L over grouped data WITHOUT the (k−1)·litt term (constant in r, α,
    /// a, b; used for the Laplace approximation of parameter uncertainty).
    pub fn total_log_likelihood(&self, data: &[(Observation, u64)]) -> f64 {
        GroupedLikelihood::new(data).sum(self)
    }
}

/// The terms of ln L shared by every x: ln Γ(a+b) − ln Γ(b) − ln Γ(r) + r ln α.
struct FixedTerms(f64);

/// ln Σ_{j<k} (shape)_j z^j / j!.
fn ln_phase_sum(shape: f64, z: f64, k: usize) -> f64 {
    let mut term = 1.0;
    let mut sum = 1.0;
    for j in 1..k {
        term *= (shape + j as f64 - 1.0) / j as f64 * z;
        sum += term;
    }
    if sum.is_finite() {
        sum.ln()
    } else {
        ln_sum_exp(&ln_phase_terms(shape, z, k)[..k])
    }
}

/// ln of (shape)_j z^j / j!, j < k (for terms too large to keep linear).
fn ln_phase_terms(shape: f64, z: f64, k: usize) -> [f64; PHASES] {
    let mut ln_terms = [f64::NEG_INFINITY; PHASES];
    let ln_z = z.ln();
    let mut acc = 0.0;
    for (j, l) in ln_terms.iter_mut().enumerate().take(k) {
        if j > 0 {
            let jf = j as f64;
            acc += (shape + jf - 1.0).ln() - jf.ln() + ln_z;
        }
        *l = acc;
    }
    ln_terms
}

fn ln_sum_exp(values: &[f64]) -> f64 {
    let m = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m.is_infinite() {
        return m;
    }
    m + values.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// Observations in runs of one x: the ln Γ terms that depend only on x are computed
/// once per distinct x per evaluation.
struct GroupedLikelihood {
    by_x: Vec<(u32, Vec<(Observation, f64)>)>,
}

impl GroupedLikelihood {
    fn new(data: &[(Observation, u64)]) -> Self {
        Self {
            by_x: runs_by_x(data),
        }
    }

    fn sum(&self, m: &CnbdK) -> f64 {
        let fixed = m.fixed_terms();
        let ln_factorial = ln_gamma(m.k() as f64);
        let mut total = 0.0;
        for (x, rows) in &self.by_x {
            let common = m.ln_x_terms(*x, ln_factorial, &fixed);
            let shape = m.r + m.k() as f64 * f64::from(*x);
            let ln_dead = m.ln_dead_ratio(*x);
            for &(o, n) in rows {
                total += n * (common + m.ln_branches(o, shape, ln_dead));
            }
        }
        total
    }
}
