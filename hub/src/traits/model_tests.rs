//! Likelihoods and predictions of the candidate models against independent references.
//!
//! The reference is a numerical integration, written here, of the individual-level
//! model over its mixing distributions: no closed form of the code under test is used.
//! Every positive variable is integrated in logs (λ = e^v, p = σ(w)), where the
//! integrands are analytic in a strip and decay exponentially both ways, so the plain
//! trapezoidal rule converges geometrically; the same machinery reproduces BG/NBD,
//! whose closed form is pinned by hand in `tests.rs`, as a check of the reference.

use super::bgnbd::{BgNbd, FitError, Observation};
use super::mbgnbd::MbgNbd;
use super::pareto_nbd::{phi, phi_by_quadrature, phi_continued_fraction, ParetoNbd};
use super::simulate::Rng;
use super::special::{hyp2f1, ln_gamma};

fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= tolerance
}

/// |actual − expected| ≤ tol · max(|expected|, floor).
macro_rules! assert_rel {
    ($actual:expr, $expected:expr, $tol:expr, $($what:tt)*) => {{
        let (a, e): (f64, f64) = ($actual, $expected);
        assert!(
            close(a, e, $tol * e.abs().max(1e-300)),
            "{} = {a:e}, expected {e:e} (relative {:e} > {:e}); {}",
            stringify!($actual),
            ((a - e) / e).abs(),
            $tol,
            format!($($what)*)
        );
    }};
}

/// Fader, Hardie & Lee (2005), BG/NBD on CDNOW, weeks.
const BG_CDNOW_WEEKS: BgNbd = BgNbd {
    r: 0.243,
    alpha: 4.414,
    a: 0.793,
    b: 2.426,
};

/// Fader, Hardie & Lee's note (2005), Pareto/NBD on CDNOW, weeks.
const PARETO_CDNOW_WEEKS: ParetoNbd = ParetoNbd {
    r: 0.5534,
    alpha: 10.5776,
    s: 0.6061,
    beta: 11.6650,
};

/// The hand-made observations of the brief, plus a customer seen just now.
const OBSERVATIONS: [(u32, f64, f64); 6] = [
    (0, 0.0, 5.0),
    (1, 2.0, 5.0),
    (3, 4.5, 10.0),
    (20, 300.0, 400.0),
    (2, 30.43, 38.86),
    (5, 12.0, 12.0),
];

const HORIZONS: [f64; 3] = [1.0, 10.0, 52.0];

fn obs((x, t_x, t): (u32, f64, f64)) -> Observation {
    Observation { x, t_x, t }
}

/// Quadrature nodes (value, weight) for a Gamma(shape, rate) variable λ, in v = ln λ:
/// weight = step · density(λ) · λ. The grid covers integrands density · λ^k e^{−cλ}
/// for k ∈ [k_lo, k_hi], c ∈ [rate, c_hi] to e^−40 of their peak; the step resolves
/// the sharpest peak (curvature shape + k_hi in v) to ~e^−79.
pub(super) fn gamma_nodes(
    shape: f64,
    rate: f64,
    k_lo: f64,
    k_hi: f64,
    c_hi: f64,
) -> Vec<(f64, f64)> {
    let (lo_power, hi_power) = (shape + k_lo, shape + k_hi);
    let lo = (lo_power / c_hi).ln() - 40.0 / lo_power - 5.0;
    let hi = ((hi_power + 10.0 * hi_power.sqrt() + 60.0) / rate).ln();
    let step = (0.5 / hi_power.sqrt()).min(0.2);
    let ln_norm = shape * rate.ln() - ln_gamma(shape);
    let n = ((hi - lo) / step).ceil() as usize;
    (0..=n)
        .map(|j| {
            let v = lo + j as f64 * step;
            let lambda = v.exp();
            (lambda, step * (ln_norm + shape * v - rate * lambda).exp())
        })
        .collect()
}

/// Quadrature nodes (p, weight) for p ~ Beta(a, b), in w = logit p:
/// weight = step · density(p) · p(1−p). Covers integrands with p^{a'} (1−p)^{b'},
/// a' ∈ [a, a+1], b' ∈ [b, b+extra].
fn beta_nodes(a: f64, b: f64, extra: f64) -> Vec<(f64, f64)> {
    let lo = (a / (b + extra)).ln() - 40.0 / a - 5.0;
    let hi = ((a + 1.0) / b).ln() + 40.0 / b + 5.0;
    let sharpest = (a + 1.0).min(b + extra);
    let step = (0.5 / sharpest.sqrt()).min(0.2);
    let ln_norm = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b);
    let n = ((hi - lo) / step).ceil() as usize;
    (0..=n)
        .map(|j| {
            let w = lo + j as f64 * step;
            // ln p and ln(1−p) without cancellation.
            let ln_p = -(-w).exp().ln_1p();
            let ln_q = -w.exp().ln_1p();
            (ln_p.exp(), step * (ln_norm + a * ln_p + b * ln_q).exp())
        })
        .collect()
}

/// ∫∫ L, P(alive) and E[Y(t)] by quadrature, given the individual-level branches.
struct Reference {
    likelihood: f64,
    p_alive: f64,
    expected: Vec<f64>,
}

/// BG/NBD and MBG/NBD: λ ~ Gamma(r, α), p ~ Beta(a, b). `dropout_at_zero` chooses the
/// MBG/NBD individual likelihood (1−p)^{x+1} λ^x e^{−λT} + p(1−p)^x λ^x e^{−λt_x} over
/// BG/NBD's (1−p)^x λ^x e^{−λT} + [x>0] p(1−p)^{x−1} λ^x e^{−λt_x}. An alive customer
/// expects (1 − e^{−λpt})/p purchases in the next t.
fn beta_gamma_reference(
    (r, alpha, a, b): (f64, f64, f64, f64),
    dropout_at_zero: bool,
    o: Observation,
    horizons: &[f64],
) -> Reference {
    let x = f64::from(o.x);
    let t_max = horizons.iter().copied().fold(0.0, f64::max);
    let lambdas = gamma_nodes(r, alpha, x, x + 1.0, o.t + t_max);
    let ps = beta_nodes(a, b, x + 1.0);
    let (mut total, mut alive) = (0.0, 0.0);
    let mut expected = vec![0.0; horizons.len()];
    for &(lambda, wl) in &lambdas {
        let ln_lx = x * lambda.ln();
        let at_t = (ln_lx - lambda * o.t).exp();
        let at_t_x = (ln_lx - lambda * o.t_x).exp();
        for &(p, wp) in &ps {
            let w = wl * wp;
            let q = 1.0 - p;
            let (alive_branch, dead_branch) = if dropout_at_zero {
                (q.powf(x + 1.0) * at_t, p * q.powf(x) * at_t_x)
            } else if o.x > 0 {
                (q.powf(x) * at_t, p * q.powf(x - 1.0) * at_t_x)
            } else {
                (at_t, 0.0)
            };
            total += w * (alive_branch + dead_branch);
            alive += w * alive_branch;
            for (e, &t) in expected.iter_mut().zip(horizons) {
                *e += w * alive_branch * -(-lambda * p * t).exp_m1() / p;
            }
        }
    }
    Reference {
        likelihood: total,
        p_alive: alive / total,
        expected: expected.into_iter().map(|e| e / total).collect(),
    }
}

/// Pareto/NBD: λ ~ Gamma(r, α), μ ~ Gamma(s, β); individual likelihood
/// λ^x e^{−(λ+μ)T} + λ^x μ/(λ+μ) (e^{−(λ+μ)t_x} − e^{−(λ+μ)T}); an alive customer
/// expects λ/μ (1 − e^{−μt}) purchases in the next t.
fn pareto_reference(m: &ParetoNbd, o: Observation, horizons: &[f64]) -> Reference {
    let x = f64::from(o.x);
    let t_max = horizons.iter().copied().fold(0.0, f64::max);
    let lambdas = gamma_nodes(m.r, m.alpha, x, x + 1.0, o.t + t_max);
    let mus = gamma_nodes(m.s, m.beta, 0.0, 1.0, o.t + t_max);
    let gap = o.t - o.t_x;
    let (mut total, mut alive) = (0.0, 0.0);
    let mut expected = vec![0.0; horizons.len()];
    for &(lambda, wl) in &lambdas {
        let lx = (x * lambda.ln()).exp();
        for &(mu, wm) in &mus {
            let w = wl * wm;
            let rate = lambda + mu;
            let alive_branch = lx * (-rate * o.t).exp();
            // μ/(λ+μ) (e^{−(λ+μ)t_x} − e^{−(λ+μ)T}), without cancellation for T ≈ t_x.
            let died = if gap > 0.0 {
                mu * (-rate * o.t_x).exp() * -(-rate * gap).exp_m1() / rate
            } else {
                0.0
            };
            total += w * (alive_branch + lx * died);
            alive += w * alive_branch;
            for (e, &t) in expected.iter_mut().zip(horizons) {
                *e += w * alive_branch * lambda * -(-mu * t).exp_m1() / mu;
            }
        }
    }
    Reference {
        likelihood: total,
        p_alive: alive / total,
        expected: expected.into_iter().map(|e| e / total).collect(),
    }
}

/// Tolerance of the closed forms against the quadrature (the brief asks ~1e−6).
const QUADRATURE_TOLERANCE: f64 = 1e-8;

#[test]
fn the_reference_quadrature_reproduces_bgnbd() {
    let models = [
        BG_CDNOW_WEEKS,
        BgNbd {
            r: 2.0,
            alpha: 10.0,
            a: 3.0,
            b: 5.0,
        },
    ];
    for m in models {
        for case in OBSERVATIONS {
            let o = obs(case);
            let q = beta_gamma_reference((m.r, m.alpha, m.a, m.b), false, o, &HORIZONS);
            let tol = QUADRATURE_TOLERANCE;
            assert_rel!(m.log_likelihood(o).exp(), q.likelihood, tol, "{m:?} {o:?}");
            assert_rel!(m.p_alive(o), q.p_alive, tol, "{m:?} {o:?}");
            for (&t, e) in HORIZONS.iter().zip(q.expected) {
                let closed = m.expected_purchases(o, t).unwrap();
                assert_rel!(closed, e, tol, "{m:?} {o:?} t = {t}");
            }
        }
    }
}

fn mbg_models() -> [MbgNbd; 4] {
    [
        // BG/NBD's CDNOW values as a realistic point.
        MbgNbd {
            r: 0.243,
            alpha: 4.414,
            a: 0.793,
            b: 2.426,
        },
        MbgNbd {
            r: 2.0,
            alpha: 10.0,
            a: 3.0,
            b: 5.0,
        },
        // a = 1 exactly: the 1/(a−1) of the prediction is removable.
        MbgNbd {
            r: 0.7,
            alpha: 3.0,
            a: 1.0,
            b: 0.6,
        },
        MbgNbd {
            r: 1.3,
            alpha: 25.0,
            a: 0.4,
            b: 9.0,
        },
    ]
}

#[test]
fn mbgnbd_likelihood_p_alive_and_expectation_match_the_quadrature() {
    for m in mbg_models() {
        for case in OBSERVATIONS {
            let o = obs(case);
            let q = beta_gamma_reference((m.r, m.alpha, m.a, m.b), true, o, &HORIZONS);
            let tol = QUADRATURE_TOLERANCE;
            assert_rel!(m.log_likelihood(o).exp(), q.likelihood, tol, "{m:?} {o:?}");
            assert_rel!(m.p_alive(o), q.p_alive, tol, "{m:?} {o:?}");
            for (&t, e) in HORIZONS.iter().zip(q.expected) {
                let closed = m.expected_purchases(o, t).unwrap();
                assert_rel!(closed, e, tol, "{m:?} {o:?} t = {t}");
            }
        }
    }
}

#[test]
fn mbgnbd_customers_without_repeat_purchases_may_be_dead() {
    // The difference from BG/NBD: x = 0 is no guarantee of being alive, and the
    // longer the silence the less likely.
    let m = mbg_models()[0];
    let silent = |t: f64| m.p_alive(obs((0, 0.0, t)));
    assert!(silent(1.0) < 1.0);
    assert!(silent(50.0) < silent(5.0));
    // At T = 0 only the dropout at the first purchase counts: P = E[1 − p] = b/(a+b).
    assert_rel!(silent(0.0), m.b / (m.a + m.b), 1e-14, "T = 0");
}

/// The prediction as printed (with the plain ₂F₁ series), for a ≠ 1.
fn mbg_expected_literal(m: &MbgNbd, o: Observation, t: f64) -> f64 {
    let x = f64::from(o.x);
    let MbgNbd { r, alpha, a, b } = *m;
    let z = t / (alpha + o.t + t);
    let f = hyp2f1(r + x, b + x + 1.0, a + b + x, z).unwrap();
    let head =
        (a + b + x) / (a - 1.0) * (1.0 - ((alpha + o.t) / (alpha + o.t + t)).powf(r + x) * f);
    let odds = a / (b + x) * ((alpha + o.t) / (alpha + o.t_x)).powf(r + x);
    head / (1.0 + odds)
}

#[test]
fn mbgnbd_expectation_agrees_with_the_printed_formula_and_is_continuous_at_a_1() {
    for m in mbg_models().into_iter().filter(|m| m.a != 1.0) {
        for case in OBSERVATIONS {
            let o = obs(case);
            for t in HORIZONS {
                let stable = m.expected_purchases(o, t).unwrap();
                let literal = mbg_expected_literal(&m, o, t);
                assert_rel!(stable, literal, 1e-9, "{m:?} {o:?} t = {t}");
            }
        }
    }
    let o = obs((3, 20.0, 30.0));
    let at = |a: f64| {
        MbgNbd {
            a,
            ..mbg_models()[0]
        }
        .expected_purchases(o, 39.0)
        .unwrap()
    };
    let exact = at(1.0);
    assert!(exact.is_finite() && exact > 0.0);
    assert_rel!(at(1.0 - 1e-9), exact, 1e-7, "a just below 1");
    assert_rel!(at(1.0 + 1e-9), exact, 1e-7, "a just above 1");
}

fn pareto_models() -> [ParetoNbd; 5] {
    [
        PARETO_CDNOW_WEEKS,
        // β ≪ α: Φ's series argument near 1 at small t_x, the integral form takes over.
        ParetoNbd {
            r: 2.0,
            alpha: 60.0,
            s: 0.4,
            beta: 0.5,
        },
        // β ≫ α: the β-based series, and its integral form.
        ParetoNbd {
            r: 0.8,
            alpha: 0.3,
            s: 1.7,
            beta: 80.0,
        },
        // α = β: Φ ≡ 1.
        ParetoNbd {
            r: 1.2,
            alpha: 7.0,
            s: 2.5,
            beta: 7.0,
        },
        // s = 1: the prediction's removable singularity.
        ParetoNbd {
            r: 0.9,
            alpha: 5.0,
            s: 1.0,
            beta: 8.0,
        },
    ]
}

#[test]
fn pareto_nbd_likelihood_p_alive_and_expectation_match_the_quadrature() {
    for m in pareto_models() {
        for case in OBSERVATIONS {
            let o = obs(case);
            let q = pareto_reference(&m, o, &HORIZONS);
            let tol = QUADRATURE_TOLERANCE;
            assert_rel!(m.log_likelihood(o).exp(), q.likelihood, tol, "{m:?} {o:?}");
            assert_rel!(m.p_alive(o), q.p_alive, tol, "{m:?} {o:?}");
            for (&t, e) in HORIZONS.iter().zip(q.expected) {
                let closed = m.expected_purchases(o, t).unwrap();
                assert_rel!(closed, e, tol, "{m:?} {o:?} t = {t}");
            }
        }
    }
}

#[test]
fn pareto_nbd_hypergeometric_term_matches_closed_forms_on_both_paths() {
    // Φ(ρ) = ₂F₁(1, m; m+s+1; 1−ρ). With m = 1, s = 0: −ln ρ/(1−ρ); with m = 1, s = 1:
    // 2[ρ ln ρ + 1 − ρ]/(1−ρ)². Both hold on either side of ρ = 1 (either base) and
    // right up to the ends of the parameter range.
    let log_ratio = |rho: f64| -rho.ln() / (1.0 - rho);
    let second = |rho: f64| 2.0 * (rho * rho.ln() + 1.0 - rho) / (1.0 - rho).powi(2);
    for rho in [1e-13, 1e-6, 0.02, 0.3, 0.7, 0.95, 1.2, 3.0, 50.0, 1e6, 1e13] {
        assert_rel!(phi(1.0, 0.0, rho), log_ratio(rho), 1e-12, "ρ = {rho}");
        assert_rel!(
            phi_by_quadrature(1.0, 0.0, rho),
            log_ratio(rho),
            1e-12,
            "ρ = {rho}"
        );
        assert_rel!(phi(1.0, 1.0, rho), second(rho), 1e-10, "ρ = {rho}");
        assert_rel!(
            phi_by_quadrature(1.0, 1.0, rho),
            second(rho),
            1e-12,
            "ρ = {rho}"
        );
    }
    assert_eq!(phi(3.7, 0.6, 1.0), 1.0, "α = β");
    // The three ways of evaluating Φ agree with each other and with the plain ₂F₁
    // series of `special` (in the larger of α, β as base).
    for (m, s) in [
        (0.55, 0.6),
        (1e-6, 1e-6),
        (300.5, 0.61),
        (2.0, 40.0),
        (0.3, 3e5),
    ] {
        for rho in [0.15, 0.5, 0.7, 0.85, 0.99, 1.1, 1.5, 8.0] {
            let (b, z, scale) = if rho <= 1.0 {
                (m, 1.0 - rho, 1.0)
            } else {
                (s + 1.0, 1.0 - 1.0 / rho, 1.0 / rho)
            };
            let plain = scale * hyp2f1(1.0, b, m + s + 1.0, z).unwrap();
            let what = format!("m = {m}, s = {s}, ρ = {rho}");
            assert_rel!(phi(m, s, rho), plain, 1e-13, "{what}");
            assert_rel!(phi_by_quadrature(m, s, rho), plain, 1e-12, "{what}");
            let fraction = scale * phi_continued_fraction(b, m + s + 1.0, z).unwrap();
            assert_rel!(fraction, plain, 1e-13, "{what}");
        }
    }
}

#[test]
fn pareto_nbd_expectation_is_continuous_through_s_equal_one() {
    let o = obs((3, 20.0, 30.0));
    let at = |s: f64| {
        ParetoNbd {
            s,
            ..PARETO_CDNOW_WEEKS
        }
        .expected_purchases(o, 39.0)
        .unwrap()
    };
    let exact = at(1.0);
    assert!(exact.is_finite() && exact > 0.0);
    for s in [1.0 - 1e-12, 1.0 - 1e-8, 1.0 + 1e-8, 1.0 + 1e-12] {
        assert_rel!(at(s), exact, 1e-7, "s = {s}");
    }
    // ... and the s = 1 limit is what the formula says: (r+x)(β+T)/(α+T)
    // · ln((β+T+t)/(β+T)) · P(alive).
    let m = ParetoNbd {
        s: 1.0,
        ..PARETO_CDNOW_WEEKS
    };
    let limit = (m.r + 3.0) * (m.beta + 30.0) / (m.alpha + 30.0)
        * ((m.beta + 30.0 + 39.0) / (m.beta + 30.0)).ln()
        * m.p_alive(o);
    assert_rel!(exact, limit, 1e-13, "s = 1 limit");
}

#[test]
fn no_nan_at_large_x_or_at_the_edges_of_time_and_parameters() {
    let edge = 15.0f64.exp();
    let values = [1.0 / edge, 0.05, 40.0, edge];
    let cases = [
        (0, 0.0, 0.0),
        (0, 0.0, 1000.0),
        (1, 0.0, 1000.0),
        (1, 1000.0, 1000.0),
        (300, 999.0, 1000.0),
        (300, 1000.0, 1000.0),
        (300, 5.0, 1000.0),
        (500, 0.5, 1.0),
    ];
    for r in values {
        for alpha in values {
            for third in values {
                for fourth in values {
                    let pareto = ParetoNbd {
                        r,
                        alpha,
                        s: third,
                        beta: fourth,
                    };
                    let mbg = MbgNbd {
                        r,
                        alpha,
                        a: third,
                        b: fourth,
                    };
                    for case in cases {
                        let o = obs(case);
                        let ll = pareto.log_likelihood(o);
                        assert!(ll.is_finite(), "{pareto:?} {o:?}: ln L {ll}");
                        let p = pareto.p_alive(o);
                        assert!((0.0..=1.0).contains(&p), "{pareto:?} {o:?}: {p}");
                        let e = pareto.expected_purchases(o, 365.0);
                        assert!(e.is_some_and(|e| e >= 0.0), "{pareto:?} {o:?}: {e:?}");
                        let ll = mbg.log_likelihood(o);
                        assert!(ll.is_finite(), "{mbg:?} {o:?}: ln L {ll}");
                        let p = mbg.p_alive(o);
                        assert!((0.0..=1.0).contains(&p), "{mbg:?} {o:?}: {p}");
                        // The series may refuse (None), but never answer NaN.
                        let e = mbg.expected_purchases(o, 365.0);
                        assert!(e.is_none_or(|e| e >= 0.0), "{mbg:?} {o:?}: {e:?}");
                    }
                }
            }
        }
    }
    // t_x a rounding error below T: the two tail integrals are equal to the last bits.
    for m in pareto_models() {
        for t in [0.3, 1.0, 20.0, 365.25, 1000.0] {
            for ulps in 1..40 {
                let o = obs((7, t * (1.0 - f64::from(ulps) * f64::EPSILON), t));
                let (ll, p) = (m.log_likelihood(o), m.p_alive(o));
                assert!(ll.is_finite() && (0.0..=1.0).contains(&p), "{m:?} {o:?}");
            }
        }
    }
    // A customer who bought at T is alive under Pareto/NBD (death is continuous).
    assert_eq!(PARETO_CDNOW_WEEKS.p_alive(obs((4, 20.0, 20.0))), 1.0);
}

/// (x, t_x, T) of an MBG/NBD customer observed for t: drops out with probability p at
/// the first purchase and after each repeat purchase.
fn simulate_mbg(rng: &mut Rng, m: &MbgNbd, t: f64) -> Observation {
    let lambda = rng.gamma(m.r, 1.0 / m.alpha);
    let p = rng.beta(m.a, m.b);
    let (mut x, mut t_x, mut now) = (0, 0.0, 0.0);
    while rng.uniform() >= p {
        now += rng.exponential(lambda);
        if now > t {
            break;
        }
        x += 1;
        t_x = now;
    }
    Observation { x, t_x, t }
}

/// (x, t_x, T) of a Pareto/NBD customer observed for t: Poisson purchases at rate λ
/// until an exponential lifetime with rate μ ends.
fn simulate_pareto(rng: &mut Rng, m: &ParetoNbd, t: f64) -> Observation {
    let lambda = rng.gamma(m.r, 1.0 / m.alpha);
    let mu = rng.gamma(m.s, 1.0 / m.beta);
    let end = rng.exponential(mu).min(t);
    let (mut x, mut t_x, mut now) = (0, 0.0, 0.0);
    loop {
        now += rng.exponential(lambda);
        if now > end {
            return Observation { x, t_x, t };
        }
        x += 1;
        t_x = now;
    }
}

/// Observations on a whole-day grid, grouped as the hub groups them.
fn grouped(observations: impl Iterator<Item = Observation>) -> Vec<(Observation, u64)> {
    let mut counts = std::collections::BTreeMap::new();
    for o in observations {
        *counts
            .entry((o.x, o.t_x.ceil() as u64, o.t.ceil() as u64))
            .or_insert(0) += 1;
    }
    counts
        .into_iter()
        .map(|((x, t_x, t), n)| {
            (
                Observation {
                    x,
                    t_x: t_x as f64,
                    t: t as f64,
                },
                n,
            )
        })
        .collect()
}

fn rel(a: f64, b: f64) -> f64 {
    (a / b - 1.0).abs()
}

#[test]
fn mbgnbd_recovers_known_parameters_from_simulated_customers() {
    // Days; each customer observed 200–400 days after the first purchase.
    let truth = MbgNbd {
        r: 0.5,
        alpha: 20.0,
        a: 0.8,
        b: 4.0,
    };
    let mut rng = Rng::new(2007);
    let data = grouped((0..5_000).map(|_| {
        let t = 200.0 + 200.0 * rng.uniform();
        simulate_mbg(&mut rng, &truth, t)
    }));
    let fit = MbgNbd::fit(&data).unwrap();
    eprintln!("MBG/NBD truth {truth:?}\n        fit   {fit:?}");
    assert!(rel(fit.r, truth.r) < 0.15, "r {fit:?}");
    assert!(rel(fit.alpha, truth.alpha) < 0.2, "alpha {fit:?}");
    assert!(rel(fit.a, truth.a) < 0.35, "a {fit:?}");
    assert!(rel(fit.b, truth.b) < 0.35, "b {fit:?}");
    let best = fit.total_log_likelihood(&data);
    assert!(best >= truth.total_log_likelihood(&data));
    for nudge in [0.95, 1.05] {
        let other = MbgNbd {
            a: fit.a * nudge,
            ..fit
        };
        assert!(best >= other.total_log_likelihood(&data));
    }
}

#[test]
fn pareto_nbd_recovers_known_parameters_from_simulated_customers() {
    // CDNOW's Pareto/NBD in days; observed 200–400 days after the first purchase.
    let truth = ParetoNbd {
        r: 0.55,
        alpha: 10.58 * 7.0,
        s: 0.61,
        beta: 11.67 * 7.0,
    };
    let mut rng = Rng::new(1987);
    let data = grouped((0..5_000).map(|_| {
        let t = 200.0 + 200.0 * rng.uniform();
        simulate_pareto(&mut rng, &truth, t)
    }));
    let fit = ParetoNbd::fit(&data).unwrap();
    eprintln!("Pareto/NBD truth {truth:?}\n           fit   {fit:?}");
    assert!(rel(fit.r, truth.r) < 0.15, "r {fit:?}");
    assert!(rel(fit.alpha, truth.alpha) < 0.25, "alpha {fit:?}");
    // The dropout process is seen through few deaths: wide, but not unbounded.
    assert!(rel(fit.s, truth.s) < 0.5, "s {fit:?}");
    assert!(rel(fit.beta, truth.beta) < 0.8, "beta {fit:?}");
    let best = fit.total_log_likelihood(&data);
    assert!(best >= truth.total_log_likelihood(&data));
    for nudge in [0.95, 1.05] {
        let other = ParetoNbd {
            s: fit.s * nudge,
            ..fit
        };
        assert!(best >= other.total_log_likelihood(&data));
    }
}

#[test]
fn grouped_likelihoods_add_up_and_fits_refuse_empty_data() {
    let data: Vec<(Observation, u64)> = OBSERVATIONS
        .iter()
        .enumerate()
        .map(|(n, &case)| (obs(case), n as u64))
        .collect();
    let m = mbg_models()[1];
    let by_one: f64 = data
        .iter()
        .map(|&(o, n)| n as f64 * m.log_likelihood(o))
        .sum();
    assert_rel!(m.total_log_likelihood(&data), by_one, 1e-13, "MBG/NBD");
    for p in pareto_models() {
        let by_one: f64 = data
            .iter()
            .map(|&(o, n)| n as f64 * p.log_likelihood(o))
            .sum();
        assert_rel!(p.total_log_likelihood(&data), by_one, 1e-13, "{p:?}");
    }
    assert_eq!(MbgNbd::fit(&[]), Err(FitError::NoCustomers));
    assert_eq!(ParetoNbd::fit(&[]), Err(FitError::NoCustomers));
    let silent = [(obs((0, 0.0, 10.0)), 5)];
    assert_eq!(MbgNbd::fit(&silent), Err(FitError::NoRepeatPurchases));
    assert_eq!(ParetoNbd::fit(&silent), Err(FitError::NoRepeatPurchases));
}
