//! A correction learned from the customers' own recent past: a purchase model's
//! prediction is re-weighted by a few features (did they ever come back, how alive,
//! how many repeat days, how much online and on sale, how many categories, how many of
//! their coupons they redeemed and whether they hold one, their own naive rate), with weights fitted by least
//! squares to what the customers did in a past window, predicted from what was known
//! before it. Ridge-shrunk towards "no
//! correction", so a small or noisy window changes little.

use serde::Serialize;

use super::bgnbd::Observation;
use super::panel::Covariates;

pub const FEATURES: usize = 11;

/// What each weight multiplies (the feature names, for the report).
pub const FEATURE_NAMES: [&str; FEATURES] = [
    "expected",
    "expected*never_returned",
    "expected*p_alive",
    "expected*ln(1+x)",
    "expected*online_share",
    "expected*sale_share",
    "expected*ln(1+categories)",
    "expected*coupon_response",
    "coupon_response*live_coupons",
    "horizon*rate",
    "horizon*rate*p_alive",
];

/// The weights; `IDENTITY` leaves the model's prediction as it is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Correction {
    pub weights: [f64; FEATURES],
}

/// How strongly the weights are pulled towards no correction, relative to the data's
/// own scale (the mean of XᵀX's non-zero diagonal).
const RIDGE: f64 = 1e-3;

impl Correction {
    pub const IDENTITY: Correction = Correction {
        weights: [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    };

    /// The features of one customer: the model's `expected` purchase days over
    /// `horizon` days and its `p_alive`, with the observation and covariates they came
    /// from. Rates are per day, so a correction learned over one horizon carries over to
    /// another.
    pub fn features(
        o: Observation,
        expected: f64,
        p_alive: f64,
        covariates: Covariates,
        horizon: f64,
    ) -> [f64; FEATURES] {
        let x = f64::from(o.x);
        let rate = x / (o.t + 1.0);
        [
            expected,
            expected * f64::from(u8::from(o.x == 0)),
            expected * p_alive,
            expected * (1.0 + x).ln(),
            expected * covariates.online_share,
            expected * covariates.sale_share,
            expected * f64::from(covariates.categories).ln_1p(),
            expected * covariates.coupon_response,
            // A coupon in hand brings a customer who redeems back within its days,
            // whatever the horizon: added, not scaled by the prediction.
            covariates.coupon_response * f64::from(covariates.live_coupons),
            horizon * rate,
            horizon * rate * p_alive,
        ]
    }

    /// Least squares of `target` on `features`, shrunk towards [`IDENTITY`](Self::IDENTITY).
    /// `None` without rows or when the system is singular even with the shrinkage.
    pub fn learn(rows: &[([f64; FEATURES], f64)]) -> Option<Correction> {
        if rows.is_empty() {
            return None;
        }
        let mut xtx = [[0.0; FEATURES]; FEATURES];
        let mut xty = [0.0; FEATURES];
        for (f, y) in rows {
            for i in 0..FEATURES {
                xty[i] += f[i] * y;
                for j in 0..FEATURES {
                    xtx[i][j] += f[i] * f[j];
                }
            }
        }
        // Over the features the data have: a covariate nobody has (no coupons printed)
        // leaves the shrinkage of the others as it was.
        let present: Vec<f64> = (0..FEATURES)
            .map(|i| xtx[i][i])
            .filter(|d| *d > 0.0)
            .collect();
        let scale = present.iter().sum::<f64>() / present.len().max(1) as f64;
        let lambda = RIDGE * scale.max(f64::MIN_POSITIVE);
        for i in 0..FEATURES {
            xtx[i][i] += lambda;
            xty[i] += lambda * Self::IDENTITY.weights[i];
        }
        let weights = solve(xtx, xty)?;
        weights
            .iter()
            .all(|w| w.is_finite())
            .then_some(Correction { weights })
    }

    /// The corrected prediction (never below zero).
    pub fn apply(&self, features: &[f64; FEATURES]) -> f64 {
        let v: f64 = self.weights.iter().zip(features).map(|(w, f)| w * f).sum();
        if v.is_finite() {
            v.max(0.0)
        } else {
            0.0
        }
    }
}

/// Solves `a · w = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: [[f64; FEATURES]; FEATURES], mut b: [f64; FEATURES]) -> Option<[f64; FEATURES]> {
    for col in 0..FEATURES {
        let pivot = (col..FEATURES).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..FEATURES {
            let factor = a[row][col] / a[col][col];
            let pivot_row = a[col];
            for (k, v) in a[row].iter_mut().enumerate().skip(col) {
                *v -= factor * pivot_row[k];
            }
            b[row] -= factor * b[col];
        }
    }
    let mut w = [0.0; FEATURES];
    for row in (0..FEATURES).rev() {
        let tail: f64 = (row + 1..FEATURES).map(|k| a[row][k] * w[k]).sum();
        w[row] = (b[row] - tail) / a[row][row];
    }
    Some(w)
}
