//! How sure the fitted purchase model is: its parameters' uncertainty by the Laplace
//! approximation (the curvature of the log-likelihood at the fit gives a normal
//! distribution of the log-parameters), sampled a fixed number of times with a seeded
//! generator; every customer's p_alive and expected purchases are computed under each
//! sample and the central 80 % of them is the interval. Provisional traits (population
//! defaults, no fit) get the spread of a prior around the defaults instead: wide, as
//! it should be when the data say little.

use super::bgnbd::Observation;
use super::model::PurchaseModel;
use super::simulate::Rng;

/// Parameter samples per fit: enough for a stable 10th/90th percentile of a smooth
/// function, few enough for a million customers.
pub const SAMPLES: usize = 32;

/// The share of the samples the interval spans.
pub const LEVEL: f64 = 0.8;

/// The prior's standard deviation of each log-parameter around the population defaults
/// (a factor of about 1.65 either way).
pub const PRIOR_LOG_SD: f64 = 0.5;

/// Step of the finite differences, in log-parameter units.
const STEP: f64 = 1e-3;

/// Why no interval could be given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UncertaintyError {
    #[error("the log-likelihood is not curved at the fit (its Hessian is not positive definite)")]
    NotCurved,
    #[error("the log-likelihood is not finite around the fit")]
    NotFinite,
}

/// `SAMPLES` parameter sets around a fitted model, drawn from the Laplace
/// approximation of its likelihood on `data`, each observation standing for `weight`
/// customers (a sample's curvature scaled up to the population's).
pub fn laplace_samples(
    model: &PurchaseModel,
    data: &[(Observation, u64)],
    weight: f64,
    seed: u64,
) -> Result<Vec<PurchaseModel>, UncertaintyError> {
    let centre: [f64; 4] = model.parameters().map(|(_, v)| v.ln());
    let nll = |p: [f64; 4]| -weight * model.with_log_parameters(p).total_log_likelihood(data);
    let hessian = hessian(nll, centre)?;
    let covariance = invert(hessian).ok_or(UncertaintyError::NotCurved)?;
    let lower = cholesky(covariance).ok_or(UncertaintyError::NotCurved)?;
    Ok(draw(model, centre, &lower, seed))
}

/// `SAMPLES` parameter sets around the population defaults, each log-parameter normal
/// with [`PRIOR_LOG_SD`].
pub fn prior_samples(model: &PurchaseModel, seed: u64) -> Vec<PurchaseModel> {
    let centre: [f64; 4] = model.parameters().map(|(_, v)| v.ln());
    let mut lower = [[0.0; 4]; 4];
    for (i, row) in lower.iter_mut().enumerate() {
        row[i] = PRIOR_LOG_SD;
    }
    draw(model, centre, &lower, seed)
}

fn draw(
    model: &PurchaseModel,
    centre: [f64; 4],
    lower: &[[f64; 4]; 4],
    seed: u64,
) -> Vec<PurchaseModel> {
    let mut rng = Rng::new(seed);
    (0..SAMPLES)
        .map(|_| {
            let z: [f64; 4] = std::array::from_fn(|_| rng.normal());
            let p: [f64; 4] = std::array::from_fn(|i| {
                centre[i] + (0..=i).map(|j| lower[i][j] * z[j]).sum::<f64>()
            });
            model.with_log_parameters(p)
        })
        .collect()
}

/// The central [`LEVEL`] of `values` (sorted in place): (low, high). `None` if empty.
pub fn interval(values: &mut [f64]) -> Option<[f64; 2]> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - LEVEL) / 2.0;
    Some([quantile(values, tail), quantile(values, 1.0 - tail)])
}

/// Linear interpolation between order statistics of sorted `values`.
fn quantile(values: &[f64], q: f64) -> f64 {
    let position = q * (values.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(values.len() - 1);
    let weight = position - below as f64;
    values[below] * (1.0 - weight) + values[above] * weight
}

/// The Hessian of `f` at `x` by central differences.
#[allow(clippy::needless_range_loop)] // the indices are the formula's (i, j)
fn hessian(f: impl Fn([f64; 4]) -> f64, x: [f64; 4]) -> Result<[[f64; 4]; 4], UncertaintyError> {
    let at = |moves: &[(usize, f64)]| {
        let mut p = x;
        for &(i, d) in moves {
            p[i] += d;
        }
        f(p)
    };
    let f0 = at(&[]);
    if !f0.is_finite() {
        return Err(UncertaintyError::NotFinite);
    }
    let h = STEP;
    let mut out = [[0.0; 4]; 4];
    for i in 0..4 {
        out[i][i] = (at(&[(i, h)]) - 2.0 * f0 + at(&[(i, -h)])) / (h * h);
        for j in 0..i {
            let v = (at(&[(i, h), (j, h)]) - at(&[(i, h), (j, -h)]) - at(&[(i, -h), (j, h)])
                + at(&[(i, -h), (j, -h)]))
                / (4.0 * h * h);
            out[i][j] = v;
            out[j][i] = v;
        }
    }
    if out.iter().flatten().all(|v| v.is_finite()) {
        Ok(out)
    } else {
        Err(UncertaintyError::NotFinite)
    }
}

/// The inverse of a symmetric 4×4 matrix by Gauss–Jordan with partial pivoting.
fn invert(mut a: [[f64; 4]; 4]) -> Option<[[f64; 4]; 4]> {
    let mut inv = [[0.0; 4]; 4];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for col in 0..4 {
        let pivot = (col..4).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let d = a[col][col];
        for k in 0..4 {
            a[col][k] /= d;
            inv[col][k] /= d;
        }
        for row in 0..4 {
            if row != col {
                let factor = a[row][col];
                for k in 0..4 {
                    a[row][k] -= factor * a[col][k];
                    inv[row][k] -= factor * inv[col][k];
                }
            }
        }
    }
    Some(inv)
}

/// The lower Cholesky factor of a positive definite matrix; `None` if it is not.
fn cholesky(a: [[f64; 4]; 4]) -> Option<[[f64; 4]; 4]> {
    let mut l = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = a[i][i] - sum;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i][j] = d.sqrt();
            } else {
                l[i][j] = (a[i][j] - sum) / l[j][j];
            }
        }
    }
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traits::bgnbd::BgNbd;
    use crate::traits::panel::group;
    use crate::traits::simulate;

    #[test]
    fn quantiles_interpolate_between_order_statistics() {
        let mut v: Vec<f64> = (0..=10).rev().map(f64::from).collect();
        let [low, high] = interval(&mut v).unwrap();
        assert!(
            (low - 1.0).abs() < 1e-12 && (high - 9.0).abs() < 1e-12,
            "{low} {high}"
        );
        assert_eq!(interval(&mut [2.0]), Some([2.0, 2.0]));
        assert_eq!(interval(&mut []), None);
    }

    #[test]
    fn matrix_helpers_by_hand() {
        let a = [
            [4.0, 2.0, 0.0, 0.0],
            [2.0, 3.0, 0.0, 0.0],
            [0.0, 0.0, 2.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let inv = invert(a).unwrap();
        // [[4,2],[2,3]]⁻¹ = [[3,−2],[−2,4]] / 8
        assert!((inv[0][0] - 0.375).abs() < 1e-12 && (inv[0][1] + 0.25).abs() < 1e-12);
        assert!((inv[2][2] - 0.5).abs() < 1e-12);
        let l = cholesky(a).unwrap();
        assert!((l[0][0] - 2.0).abs() < 1e-12 && (l[1][0] - 1.0).abs() < 1e-12);
        assert!((l[1][1] - 2f64.sqrt()).abs() < 1e-12);
        let mut not_pd = a;
        not_pd[3][3] = -1.0;
        assert_eq!(cholesky(not_pd), None);
    }

    /// The Laplace spread shrinks like 1/√n: four times the customers, about half the
    /// width, and the truth's p_alive lies inside the interval.
    #[test]
    fn intervals_narrow_with_more_data_and_cover_the_truth() {
        let truth = simulate::CDNOW_DAYS;
        let o = Observation {
            x: 3,
            t_x: 200.0,
            t: 300.0,
        };
        let width = |customers: usize, weight: f64| {
            let mut rng = simulate::Rng::new(9);
            let data =
                group((0..customers).map(|_| simulate::observation(&mut rng, &truth, 365.0)));
            let fit = PurchaseModel::BgNbd(BgNbd::fit(&data).unwrap());
            let samples = laplace_samples(&fit, &data, weight, 1).unwrap();
            let mut p: Vec<f64> = samples.iter().map(|m| m.p_alive(o)).collect();
            let [low, high] = interval(&mut p).unwrap();
            (low, high)
        };
        let (l1, h1) = width(2_000, 1.0);
        let (l4, h4) = width(8_000, 1.0);
        let ratio = (h4 - l4) / (h1 - l1);
        assert!(
            ratio > 0.3 && ratio < 0.75,
            "{ratio}: {l1}..{h1} vs {l4}..{h4}"
        );
        // A sample of 2,000 standing for 8,000 is as sure as the 8,000.
        let (ls, hs) = width(2_000, 4.0);
        let ratio = (hs - ls) / (h4 - l4);
        assert!(
            ratio > 0.7 && ratio < 1.4,
            "{ratio}: {ls}..{hs} vs {l4}..{h4}"
        );
        let true_p = truth.p_alive(o);
        assert!(l1 < true_p && true_p < h1, "{true_p} not in {l1}..{h1}");
    }

    #[test]
    fn the_prior_spread_is_wide_and_centred_on_the_defaults() {
        let defaults = PurchaseModel::BgNbd(crate::traits::population::DEFAULT_BGNBD);
        let samples = prior_samples(&defaults, 3);
        assert_eq!(samples.len(), SAMPLES);
        let mut r: Vec<f64> = samples
            .iter()
            .map(|m| m.parameters()[0].1.ln() - defaults.parameters()[0].1.ln())
            .collect();
        let [low, high] = interval(&mut r).unwrap();
        // ±1.28 sd for the central 80 %: roughly ±0.64, with sampling noise.
        assert!(
            low < -0.3 && high > 0.3 && low > -1.2 && high < 1.2,
            "{low} {high}"
        );
    }
}
