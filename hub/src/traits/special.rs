//! Special functions the models need: ln Γ and the Gaussian hypergeometric series.

/// Lanczos coefficients (g = 7, n = 9): ~15 significant digits for x > 0.
const LANCZOS_G: f64 = 7.0;
const LANCZOS: [f64; 9] = [
    0.999_999_999_999_809_9,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_1,
    -176.615_029_162_140_6,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_572e-6,
    1.505_632_735_149_311_6e-7,
];

/// ln |Γ(x)|. NaN for non-positive integers (poles) and NaN input.
pub fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() || (x <= 0.0 && x == x.floor()) {
        return f64::NAN;
    }
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let s = (std::f64::consts::PI * x).sin().abs();
        return std::f64::consts::PI.ln() - s.ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = LANCZOS[0];
    for (i, c) in LANCZOS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + LANCZOS_G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// Most terms a hypergeometric series may take before it is declared unconverged.
pub const MAX_SERIES_TERMS: usize = 200_000;

/// ₂F₁(a, b; c; z) by its power series, for |z| < 1. `None` when `c` hits a pole, `z`
/// is outside the unit disc, or the series has not converged within
/// [`MAX_SERIES_TERMS`] terms (z very close to 1).
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> Option<f64> {
    // Written so NaN is refused too.
    if z.is_nan() || z.abs() >= 1.0 {
        return None;
    }
    let mut term = 1.0;
    let mut sum = 1.0;
    series(&mut sum, &mut term, MAX_SERIES_TERMS, |k| {
        let k = k as f64;
        (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z
    })?;
    Some(sum)
}

/// Adds terms `term_{k+1} = term_k · ratio(k)` (k = 0, 1, …) to `sum` until they stop
/// mattering. The stopping test only applies once terms shrink (|ratio| < 1), so a
/// series whose terms first grow is not cut off early.
pub(crate) fn series(
    sum: &mut f64,
    term: &mut f64,
    max_terms: usize,
    ratio: impl Fn(usize) -> f64,
) -> Option<()> {
    for k in 0..max_terms {
        let q = ratio(k);
        if !q.is_finite() {
            return None;
        }
        *term *= q;
        *sum += *term;
        if !sum.is_finite() {
            return None;
        }
        if q.abs() < 1.0 && term.abs() <= 1e-16 * sum.abs() {
            return Some(());
        }
        if *term == 0.0 {
            return Some(());
        }
    }
    None
}

/// expm1(y) / y, continuous at 0.
pub fn expm1_over(y: f64) -> f64 {
    if y.abs() < 1e-10 {
        1.0 + 0.5 * y
    } else {
        y.exp_m1() / y
    }
}
