//! BG/CNBD-k and MBG/CNBD-k against BG/NBD and MBG/NBD (k = 1), against an independent
//! quadrature of the individual-level model, against simulated customers, and at the
//! edges of the parameter space.

use super::bgnbd::{BgNbd, FitError, Observation};
use super::cnbd::CnbdK;
use super::mbgnbd::MbgNbd;
use super::model_tests::gamma_nodes;
use super::simulate::Rng;
use super::special::ln_gamma;

/// |actual − expected| ≤ tol · |expected|.
macro_rules! assert_rel {
    ($actual:expr, $expected:expr, $tol:expr, $($what:tt)*) => {{
        let (a, e): (f64, f64) = ($actual, $expected);
        assert!(
            (a - e).abs() <= $tol * e.abs().max(1e-300),
            "{} = {a:e}, expected {e:e} (relative {:e} > {:e}); {}",
            stringify!($actual),
            ((a - e) / e).abs(),
            $tol,
            format!($($what)*)
        );
    }};
}

fn obs(x: u32, t_x: f64, t: f64) -> Observation {
    Observation { x, t_x, t }
}

fn cnbd(k: u32, (r, alpha, a, b): (f64, f64, f64, f64), dropout_at_zero: bool) -> CnbdK {
    CnbdK {
        k,
        r,
        alpha,
        a,
        b,
        dropout_at_zero,
    }
}

// ---------------------------------------------------------------------------------
// 1. k = 1 is BG/NBD resp. MBG/NBD.

#[test]
fn k1_is_bgnbd_and_mbgnbd() {
    let parameters = [
        (0.243, 4.414, 0.793, 2.426),
        (2.0, 10.0, 3.0, 5.0),
        (0.7, 3.0, 1.0, 0.6),
        (1.3, 25.0, 0.4, 9.0),
        (0.55, 70.0, 1.3, 2.0),
    ];
    let observations = [
        obs(0, 0.0, 5.0),
        obs(0, 0.0, 300.0),
        obs(1, 2.0, 5.0),
        obs(3, 4.5, 10.0),
        obs(20, 300.0, 400.0),
        obs(2, 30.43, 38.86),
        obs(5, 12.0, 12.0),
        obs(60, 100.0, 365.0),
    ];
    for p in parameters {
        let (r, alpha, a, b) = p;
        let bg = BgNbd { r, alpha, a, b };
        let mbg = MbgNbd { r, alpha, a, b };
        for o in observations {
            for dropout_at_zero in [false, true] {
                let m = cnbd(1, p, dropout_at_zero);
                let (ll, alive) = if dropout_at_zero {
                    (mbg.log_likelihood(o), mbg.p_alive(o))
                } else {
                    (bg.log_likelihood(o), bg.p_alive(o))
                };
                // The regularity term vanishes at k = 1, whatever the gaps.
                assert_rel!(m.log_likelihood(o, 17.3), ll, 1e-12, "{m:?} {o:?}");
                assert_rel!(m.p_alive(o), alive, 1e-12, "{m:?} {o:?}");
                for t in [0.5, 7.0, 30.0, 365.0] {
                    let e = if dropout_at_zero {
                        mbg.expected_purchases(o, t)
                    } else {
                        bg.expected_purchases(o, t)
                    }
                    .unwrap();
                    let (alive_too, ours) = m.predict(o, t);
                    assert_eq!(alive_too, m.p_alive(o));
                    assert_rel!(ours.unwrap(), e, 1e-12, "{m:?} {o:?} t = {t}");
                    assert_eq!(m.expected_purchases(o, t), ours);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// 2. Against a 2-D quadrature of the individual-level model.

/// Nodes (ln p, ln(1−p), weight) for p ~ Beta(a, b) in w = logit p, weight = step ·
/// density · p(1−p), for integrands p^{a'} (1−p)^{b'}, a' ∈ [a, a+1], b' ∈ [b, b+extra].
fn p_nodes(a: f64, b: f64, extra: f64) -> Vec<(f64, f64, f64)> {
    let lo = (a / (b + extra)).ln() - 40.0 / a - 5.0;
    let hi = ((a + 1.0) / b).ln() + 40.0 / b + 5.0;
    let step = (0.5 / (a + 1.0).min(b + extra).sqrt()).min(0.2);
    let ln_norm = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b);
    let n = ((hi - lo) / step).ceil() as usize;
    (0..=n)
        .map(|i| {
            let w = lo + i as f64 * step;
            let ln_p = -(-w).exp().ln_1p();
            let ln_q = -w.exp().ln_1p();
            (ln_p, ln_q, step * (ln_norm + a * ln_p + b * ln_q).exp())
        })
        .collect()
}

/// P(Poisson(μ) ≥ n) for n = 0..len, each pmf from its own logarithm.
fn poisson_tails(mu: f64, len: usize) -> Vec<f64> {
    let mut tails = vec![0.0; len + 1];
    let top = len + (12.0 * mu.sqrt()) as usize + 40;
    let mut sum = 0.0;
    for n in (0..=top).rev() {
        let nf = n as f64;
        sum += (-mu + nf * mu.ln() - ln_gamma(nf + 1.0)).exp();
        if n <= len {
            tails[n] = sum;
        }
    }
    tails
}

struct Reference {
    likelihood: f64,
    p_alive: f64,
    expected: Vec<f64>,
}

/// ∫∫ of the individual-level model over λ and p: likelihood (with the regularity term
/// for `litt`), P(alive) and E[Y(t)]. Given λ, p and alive at T, the phase reached since
/// the last purchase is j < k with P ∝ (λs)^j/j!, s = T − t_x; the m-th purchase in the
/// next t days needs N ≥ mk − j phases (N ~ Poisson(λt)) and survival of m − 1 chances.
fn reference(m: &CnbdK, o: Observation, litt: f64, horizons: &[f64]) -> Reference {
    let k = m.k as usize;
    let kf = f64::from(m.k);
    let x = f64::from(o.x);
    let extra = if m.dropout_at_zero { 1.0 } else { 0.0 };
    let s = o.t - o.t_x;
    let t_max = horizons.iter().copied().fold(0.0, f64::max);
    let lambdas = gamma_nodes(m.r, m.alpha, kf * x, kf * x + kf, o.t + t_max);
    let ps = p_nodes(m.a, m.b, x + 1.0);
    let ln_fact = (1..k).map(|i| (i as f64).ln()).sum::<f64>();
    let can_die = m.dropout_at_zero || o.x > 0;
    let (mut total, mut alive) = (0.0, 0.0);
    let mut expected = vec![0.0; horizons.len()];
    for &(lambda, wl) in &lambdas {
        let base = kf * x * lambda.ln() - lambda * o.t_x - x * ln_fact + (kf - 1.0) * litt;
        // Phases since the last purchase: (λs)^j/j!, j < k.
        let mut phases = vec![1.0; k];
        for j in 1..k {
            phases[j] = phases[j - 1] * lambda * s / j as f64;
        }
        let phase_sum: f64 = phases.iter().sum();
        let no_purchase = (-lambda * s).exp() * phase_sum;
        // A_m(t) = Σ_j P(j) P(N ≥ mk − j), m = 1, 2, …
        let due: Vec<Vec<f64>> = horizons
            .iter()
            .map(|&t| {
                let mu = lambda * t;
                let len = (mu + 12.0 * mu.sqrt() + 40.0) as usize + k;
                let tails = poisson_tails(mu, len);
                (1..)
                    .map(|mm: usize| {
                        (0..k)
                            .map(|j| phases[j] / phase_sum * tails.get(mm * k - j).unwrap_or(&0.0))
                            .sum::<f64>()
                    })
                    .take_while(|&v| v > 0.0)
                    .collect()
            })
            .collect();
        for &(ln_p, ln_q, wp) in &ps {
            let w = wl * wp;
            let alive_branch = (base + (x + extra) * ln_q).exp() * no_purchase;
            let dead_branch = if can_die {
                (base + ln_p + (x - 1.0 + extra) * ln_q).exp()
            } else {
                0.0
            };
            total += w * (alive_branch + dead_branch);
            alive += w * alive_branch;
            let survive = ln_q.exp();
            for (e, a_m) in expected.iter_mut().zip(&due) {
                let mut chance = 1.0;
                let mut sum = 0.0;
                for v in a_m {
                    sum += chance * v;
                    chance *= survive;
                }
                *e += w * alive_branch * sum;
            }
        }
    }
    Reference {
        likelihood: total,
        p_alive: alive / total,
        expected: expected.into_iter().map(|e| e / total).collect(),
    }
}

#[test]
fn likelihood_p_alive_and_expectation_match_the_quadrature() {
    let observations = [
        (obs(0, 0.0, 40.0), 0.0),
        (obs(1, 12.0, 60.0), 2.48),
        (obs(3, 50.0, 50.0), 9.2),
        (obs(4, 70.5, 130.0), 12.9),
        (obs(25, 180.0, 200.0), 42.0),
    ];
    let horizons = [10.0, 90.0];
    let parameters = [(0.9, 12.0, 0.8, 3.0), (2.5, 40.0, 1.0, 6.0)];
    for (n, p) in parameters.into_iter().enumerate() {
        for k in [2, 3, 5] {
            for dropout_at_zero in [false, true] {
                // Both variants for each k on the first parameters, one on the second.
                if n == 1 && dropout_at_zero == (k == 3) {
                    continue;
                }
                let m = cnbd(k, p, dropout_at_zero);
                for (o, litt) in observations {
                    let q = reference(&m, o, litt, &horizons);
                    let tol = 1e-7;
                    assert_rel!(
                        m.log_likelihood(o, litt).exp(),
                        q.likelihood,
                        tol,
                        "{m:?} {o:?}"
                    );
                    assert_rel!(m.p_alive(o), q.p_alive, tol, "{m:?} {o:?}");
                    for (&t, e) in horizons.iter().zip(q.expected) {
                        let ours = m.expected_purchases(o, t).unwrap();
                        assert_rel!(ours, e, tol, "{m:?} {o:?} t = {t}");
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Simulated customers.

struct Simulated {
    o: Observation,
    sum_ln_gaps: f64,
    alive_at_t: bool,
    /// Purchases in (T, T + hold-out].
    later: u32,
}

/// One CNBD-k customer from the first purchase at 0: Erlang-k gaps with rate λ ~
/// Gamma(r, α); drop-out with probability p ~ Beta(a, b) after each repeat purchase
/// (and at 0 for MBG); observed to `t`, then followed for `holdout` more.
fn simulate(rng: &mut Rng, m: &CnbdK, t: f64, holdout: f64) -> Simulated {
    let lambda = rng.gamma(m.r, 1.0 / m.alpha);
    let p = rng.beta(m.a, m.b);
    let mut dead_at = (m.dropout_at_zero && rng.uniform() < p).then_some(0.0);
    let (mut x, mut t_x, mut sum_ln_gaps, mut later, mut now) = (0, 0.0, 0.0, 0, 0.0);
    while dead_at.is_none() {
        let gap: f64 = (0..m.k).map(|_| rng.exponential(lambda)).sum();
        now += gap;
        if now > t + holdout {
            break;
        }
        if now <= t {
            x += 1;
            t_x = now;
            sum_ln_gaps += gap.ln();
        } else {
            later += 1;
        }
        if rng.uniform() < p {
            dead_at = Some(now);
        }
    }
    Simulated {
        o: obs(x, t_x, t),
        sum_ln_gaps,
        alive_at_t: dead_at.is_none_or(|d| d > t),
        later,
    }
}

#[test]
fn predictions_match_simulated_customers() {
    let holdout = 180.0;
    for (seed, dropout_at_zero) in [(2016u64, false), (2017, true)] {
        let m = cnbd(3, (1.5, 25.0, 1.2, 5.0), dropout_at_zero);
        let mut rng = Rng::new(seed);
        let (mut bought, mut expected, mut e_var) = (0.0, 0.0, 0.0);
        let (mut alive, mut p_alive, mut p_var) = (0.0, 0.0, 0.0);
        let customers = 4_000;
        for _ in 0..customers {
            let t = 200.0 + 200.0 * rng.uniform();
            let c = simulate(&mut rng, &m, t, holdout);
            let (p, e) = m.predict(c.o, holdout);
            let e = e.unwrap();
            let y = f64::from(c.later);
            bought += y;
            expected += e;
            e_var += (y - e).powi(2);
            let a = if c.alive_at_t { 1.0 } else { 0.0 };
            alive += a;
            p_alive += p;
            p_var += (a - p).powi(2);
        }
        eprintln!(
            "{m:?}: hold-out {bought} vs {expected:.1} (se {:.1}); alive {alive} vs {p_alive:.1} (se {:.1})",
            e_var.sqrt(),
            p_var.sqrt()
        );
        assert!(
            bought > 500.0,
            "too few hold-out purchases to test: {bought}"
        );
        assert!((bought - expected).abs() < 4.0 * e_var.sqrt(), "{m:?}");
        assert!((alive - p_alive).abs() < 4.0 * p_var.sqrt(), "{m:?}");
        // ... and not by the slack of a wide error: within 6 % of the totals.
        assert!((bought / expected - 1.0).abs() < 0.06, "{m:?}");
        assert!((alive / p_alive - 1.0).abs() < 0.06, "{m:?}");
    }
}

/// Customers on a whole-day grid (t_x rounded up), grouped as the hub groups them, and
/// their total Σ ln gaps.
fn grouped(m: &CnbdK, seed: u64, customers: usize, t: f64) -> (Vec<(Observation, u64)>, f64) {
    let mut rng = Rng::new(seed);
    let mut counts = std::collections::BTreeMap::new();
    let mut litt = 0.0;
    for _ in 0..customers {
        let c = simulate(&mut rng, m, t, 0.0);
        litt += c.sum_ln_gaps;
        *counts.entry((c.o.x, c.o.t_x.ceil() as u64)).or_insert(0) += 1;
    }
    let data = counts
        .into_iter()
        .map(|((x, t_x), n)| (obs(x, t_x as f64, t), n))
        .collect();
    (data, litt)
}

fn rel(a: f64, b: f64) -> f64 {
    (a / b - 1.0).abs()
}

#[test]
fn fit_picks_k3_and_recovers_the_parameters() {
    let truth = cnbd(3, (2.0, 40.0, 0.9, 4.0), false);
    let (data, litt) = grouped(&truth, 3, 5_000, 365.0);
    let fit = CnbdK::fit(&data, litt, false).unwrap();
    eprintln!(
        "BG/CNBD-k truth {truth:?}\n          fit   {fit:?} ({} rows)",
        data.len()
    );
    assert_eq!(fit.k, 3, "{fit:?}");
    assert!(rel(fit.r, truth.r) < 0.2, "r {fit:?}");
    assert!(rel(fit.alpha, truth.alpha) < 0.25, "alpha {fit:?}");
    assert!(rel(fit.a, truth.a) < 0.4, "a {fit:?}");
    assert!(rel(fit.b, truth.b) < 0.4, "b {fit:?}");
    let best = fit.total_log_likelihood(&data);
    assert!(best >= truth.total_log_likelihood(&data));
    // fit_k at the chosen k is the same optimum.
    let again = CnbdK::fit_k(&data, 3, false, None).unwrap();
    assert_rel!(again.total_log_likelihood(&data), best, 1e-6, "fit_k");
}

#[test]
fn fit_on_poisson_customers_picks_a_small_k() {
    // k = 1: BG/NBD customers (as MBG/CNBD-k, so the other variant is fitted too).
    let truth = cnbd(1, (0.8, 30.0, 0.9, 4.0), true);
    let (data, litt) = grouped(&truth, 1, 5_000, 365.0);
    let fit = CnbdK::fit(&data, litt, true).unwrap();
    eprintln!("MBG/CNBD-k truth {truth:?}\n           fit   {fit:?}");
    assert!(fit.k <= 2, "{fit:?}");
    let ll = |k: u32| {
        let m = CnbdK::fit_k(&data, k, true, None).unwrap();
        m.total_log_likelihood(&data) + f64::from(k - 1) * litt
    };
    assert!(
        ll(1) > ll(3),
        "k = 3 must lose to k = 1 on Poisson customers"
    );
}

#[test]
fn grouped_likelihood_adds_up_and_fits_refuse_empty_data() {
    let data = [
        (obs(0, 0.0, 10.0), 3),
        (obs(2, 4.0, 10.0), 1),
        (obs(2, 7.0, 10.0), 2),
        (obs(9, 30.0, 31.0), 5),
        (obs(1, 3.0, 3.0), 0),
    ];
    for k in [1, 4, 12] {
        for dropout_at_zero in [false, true] {
            let m = cnbd(k, (1.1, 9.0, 0.7, 2.0), dropout_at_zero);
            let by_one: f64 = data
                .iter()
                .map(|&(o, n)| n as f64 * m.log_likelihood(o, 0.0))
                .sum();
            assert_rel!(m.total_log_likelihood(&data), by_one, 1e-13, "{m:?}");
            // The regularity term is (k − 1) · Σ ln gaps.
            let o = data[3].0;
            let shift = m.log_likelihood(o, 2.5) - m.log_likelihood(o, 0.0);
            assert!((shift - 2.5 * f64::from(k - 1)).abs() < 1e-9, "{m:?}");
        }
    }
    assert_eq!(CnbdK::fit(&[], 0.0, false), Err(FitError::NoCustomers));
    let silent = [(obs(0, 0.0, 10.0), 5)];
    assert_eq!(
        CnbdK::fit(&silent, 0.0, true),
        Err(FitError::NoRepeatPurchases)
    );
}

// ---------------------------------------------------------------------------------
// 5. Edges.

#[test]
fn no_nan_or_panic_at_the_edges() {
    let edge = 15.0f64.exp();
    let values = [1.0 / edge, 0.05, 40.0, edge];
    let cases = [
        (0, 0.0, 0.0),
        (0, 0.0, 1000.0),
        (1, 0.0, 1000.0),
        (1, 1000.0, 1000.0),
        (200, 999.0, 1000.0),
        (200, 1000.0, 1000.0),
        (200, 5.0, 1000.0),
        (500, 0.5, 1.0),
    ];
    for k in [1, 2, 12] {
        for dropout_at_zero in [false, true] {
            for r in values {
                for alpha in values {
                    for a in values {
                        for b in values {
                            let m = cnbd(k, (r, alpha, a, b), dropout_at_zero);
                            for (x, t_x, t) in cases {
                                let o = obs(x, t_x, t);
                                let ll = m.log_likelihood(o, 3.0);
                                assert!(ll.is_finite(), "{m:?} {o:?}: ln L {ll}");
                                let (p, e) = m.predict(o, 365.0);
                                assert!((0.0..=1.0).contains(&p), "{m:?} {o:?}: {p}");
                                assert!(e.is_none_or(|e| e >= 0.0), "{m:?} {o:?}: {e:?}");
                                assert_eq!(m.expected_purchases(o, 0.0), Some(0.0));
                            }
                        }
                    }
                }
            }
        }
    }
    // Ordinary customers get an answer at every k, and a ≈ 1 is no singularity.
    for k in 1..=CnbdK::MAX_K {
        for a in [1.0 - 1e-9, 1.0, 1.0 + 1e-9] {
            let m = cnbd(k, (1.2, 30.0, a, 3.0), k % 2 == 0);
            let e = m.expected_purchases(obs(200, 360.0, 365.0), 365.0).unwrap();
            assert!(e > 0.0 && e.is_finite(), "{m:?}");
            let e0 = m.expected_purchases(obs(0, 0.0, 0.0), 365.0).unwrap();
            assert!(e0 > 0.0 && e0.is_finite(), "{m:?}");
        }
    }
}

#[test]
fn heavy_buyers_match_the_quadrature() {
    // r + kx in the thousands: the prediction's sum over phases starts far from 0
    // (the mass at 0 underflows), and g is taken from its closed form.
    let horizons = [365.0];
    for (k, x, dropout_at_zero) in [(5, 200, false), (12, 200, true)] {
        let m = cnbd(k, (1.5, 30.0, 1.4, 3.0), dropout_at_zero);
        let o = obs(x, 398.5, 400.0);
        // Gaps that put L near 1, so the quadrature's integrand stays within f64 (the
        // code under test only picks the scale; the comparison is of the value).
        let litt = -m.log_likelihood(o, 0.0) / f64::from(k - 1);
        let q = reference(&m, o, litt, &horizons);
        let tol = 1e-7;
        assert_rel!(
            m.log_likelihood(o, litt).exp(),
            q.likelihood,
            tol,
            "{m:?} {o:?}"
        );
        assert_rel!(m.p_alive(o), q.p_alive, tol, "{m:?} {o:?}");
        let ours = m.expected_purchases(o, horizons[0]).unwrap();
        eprintln!("{m:?} {o:?}: P(alive) {}, E {ours}", m.p_alive(o));
        assert_rel!(ours, q.expected[0], tol, "{m:?} {o:?}");
    }
}
