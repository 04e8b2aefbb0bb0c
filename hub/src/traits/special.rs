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

/// Most iterations the incomplete-gamma series or continued fraction may take.
const INCOMPLETE_GAMMA_MAX_ITER: usize = 100_000;

/// ln P(a, x) and ln Q(a, x), the regularised lower and upper incomplete gamma
/// functions (P + Q = 1), for a > 0, x ≥ 0. For x < a + 1 P comes from its series
/// P = e^−x x^a/Γ(a+1) · Σ x^n/((a+1)…(a+n)), otherwise Q from Legendre's continued
/// fraction (modified Lentz), both with the prefactor in logs so neither under- nor
/// overflows; the other one is ln(1 − e^·). NaN for a ≤ 0, x < 0 or NaN input.
pub fn ln_incomplete_gamma(a: f64, x: f64) -> (f64, f64) {
    match incomplete_gamma(a, x) {
        Incomplete::LnP(ln_p) => (ln_p, ln_one_minus_exp(ln_p)),
        Incomplete::LnQ(ln_q) => (ln_one_minus_exp(ln_q), ln_q),
    }
}

/// Whichever of ln P, ln Q the evaluation produced directly.
enum Incomplete {
    LnP(f64),
    LnQ(f64),
}

fn incomplete_gamma(a: f64, x: f64) -> Incomplete {
    incomplete_gamma_with(a, x, ln_gamma(a))
}

/// ln Q(a, x) given ln Γ(a) (callers that vary x at fixed a, or already have it).
pub fn ln_gamma_q_with(a: f64, x: f64, ln_gamma_a: f64) -> f64 {
    match incomplete_gamma_with(a, x, ln_gamma_a) {
        Incomplete::LnP(ln_p) => ln_one_minus_exp(ln_p),
        Incomplete::LnQ(ln_q) => ln_q,
    }
}

fn incomplete_gamma_with(a: f64, x: f64, ln_gamma_a: f64) -> Incomplete {
    if a.is_nan() || x.is_nan() || a <= 0.0 || x < 0.0 || a.is_infinite() {
        return Incomplete::LnQ(f64::NAN);
    }
    if x == 0.0 {
        return Incomplete::LnQ(0.0);
    }
    if x.is_infinite() {
        return Incomplete::LnQ(f64::NEG_INFINITY);
    }
    // ln(e^−x x^a / Γ(a))
    let ln_prefactor = -x + a * x.ln() - ln_gamma_a;
    if x < a + 1.0 {
        let mut term = 1.0 / a;
        let mut sum = term;
        let mut n = 1.0;
        for _ in 0..INCOMPLETE_GAMMA_MAX_ITER {
            term *= x / (a + n);
            sum += term;
            if term <= sum * 1e-17 {
                break;
            }
            n += 1.0;
        }
        Incomplete::LnP((ln_prefactor + sum.ln()).min(0.0))
    } else {
        // Q = prefactor · 1/(x+1−a− 1·(1−a)/(x+3−a− 2·(2−a)/(x+5−a− …)))
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..INCOMPLETE_GAMMA_MAX_ITER {
            let i = i as f64;
            let an = -i * (i - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() <= 1e-16 {
                break;
            }
        }
        Incomplete::LnQ((ln_prefactor + h.ln()).min(0.0))
    }
}

/// ln Q(a, x), the regularised upper incomplete gamma function Γ(a, x)/Γ(a): the
/// probability that a Gamma(a, 1) variable exceeds x.
pub fn ln_gamma_q(a: f64, x: f64) -> f64 {
    match incomplete_gamma(a, x) {
        Incomplete::LnP(ln_p) => ln_one_minus_exp(ln_p),
        Incomplete::LnQ(ln_q) => ln_q,
    }
}

/// ln(1 − e^y) for y ≤ 0, accurate at both ends.
pub fn ln_one_minus_exp(y: f64) -> f64 {
    if y > -std::f64::consts::LN_2 {
        (-y.exp_m1()).ln()
    } else {
        (-y.exp()).ln_1p()
    }
}
