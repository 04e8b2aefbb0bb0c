//! Synthetic customers drawn from known BG/NBD and Gamma–Gamma parameters, for the
//! parameter-recovery tests and the benchmark. A small seeded PRNG keeps the workspace
//! free of `rand` and the data reproducible.

use chrono::NaiveDate;
use till360_shared::Timestamp;

use super::bgnbd::{BgNbd, Observation};
use super::gamma_gamma::GammaGamma;
use super::history::{day_number, Channel, CustomerHistory, Purchase, MS_PER_DAY};

/// BG/NBD as Fader, Hardie & Lee (2005) fitted it on the CDNOW sample (r 0.243,
/// α 4.414 weeks, a 0.793, b 2.426), rounded, α in days: the population the tests and
/// benchmarks draw from when they need "customers like a real shop's".
pub const CDNOW_DAYS: BgNbd = BgNbd {
    r: 0.24,
    alpha: 30.87,
    a: 0.79,
    b: 2.43,
};

/// Gamma–Gamma spend per purchase as Fader, Hardie & Lee (2005) fitted it on CDNOW
/// (p 6.25, q 3.74, γ 15.44 dollars), γ in cents.
pub const CDNOW_SPEND: GammaGamma = GammaGamma {
    p: 6.25,
    q: 3.74,
    gamma: 1544.0,
};

/// xorshift64* (Vigna): fast, seedable, good enough for simulation.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // A zero state would stay zero.
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform on the open interval (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    pub fn exponential(&mut self, rate: f64) -> f64 {
        -self.uniform().ln() / rate
    }

    /// Gamma(shape, scale) by Marsaglia–Tsang; shape < 1 through the boost
    /// G(shape) = G(shape + 1) · U^(1/shape).
    pub fn gamma(&mut self, shape: f64, scale: f64) -> f64 {
        if shape < 1.0 {
            let u = self.uniform();
            return self.gamma(shape + 1.0, scale) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v * scale;
            }
        }
    }

    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a, 1.0);
        let y = self.gamma(b, 1.0);
        x / (x + y)
    }
}

/// Times of one customer's purchases after the first (at 0), within `(0, t]`: a
/// Poisson process with λ ~ Gamma(r, 1/α) that stops after each repeat purchase with
/// probability p ~ Beta(a, b).
pub fn purchase_times(rng: &mut Rng, model: &BgNbd, t: f64) -> Vec<f64> {
    let lambda = rng.gamma(model.r, 1.0 / model.alpha);
    let p = rng.beta(model.a, model.b);
    let mut times = Vec::new();
    let mut now = 0.0;
    loop {
        now += rng.exponential(lambda);
        if now > t {
            return times;
        }
        times.push(now);
        if rng.uniform() < p {
            return times;
        }
    }
}

/// A customer's (x, t_x, T) in continuous time.
pub fn observation(rng: &mut Rng, model: &BgNbd, t: f64) -> Observation {
    let times = purchase_times(rng, model, t);
    Observation {
        x: times.len() as u32,
        t_x: times.last().copied().unwrap_or(0.0),
        t,
    }
}

/// `count` transaction values for one customer: ν ~ Gamma(q, 1/γ), each value
/// Gamma(p, 1/ν).
pub fn spends(rng: &mut Rng, model: &GammaGamma, count: usize) -> Vec<f64> {
    let nu = rng.gamma(model.q, 1.0 / model.gamma);
    (0..count).map(|_| rng.gamma(model.p, 1.0 / nu)).collect()
}

/// `customers` synthetic histories observed until the end of `as_of`, first purchases
/// spread uniformly over the `max_age_days` before it; model time unit = days, spend
/// in cents. Purchases alternate stores S001–S003, every fifth is online, and a third
/// of the customers buy mostly discounted.
pub fn histories(
    seed: u64,
    customers: usize,
    as_of: NaiveDate,
    max_age_days: u32,
    model: &BgNbd,
    spend: &GammaGamma,
) -> Vec<CustomerHistory> {
    let mut rng = Rng::new(seed);
    let end_ms = (day_number(as_of) + 1) * MS_PER_DAY - 1;
    (0..customers)
        .map(|n| {
            let age = rng.uniform() * f64::from(max_age_days);
            let mut times = vec![0.0];
            times.extend(purchase_times(&mut rng, model, age));
            let values = spends(&mut rng, spend, times.len());
            let first_ms = end_ms - (age * MS_PER_DAY as f64) as i64;
            let sale_hunter = n % 3 == 0;
            let purchases = times
                .iter()
                .zip(values)
                .enumerate()
                .map(|(k, (t, value))| {
                    let amount_cents = value.round().max(1.0) as i64;
                    let online = k % 5 == 4;
                    Purchase {
                        at: Timestamp::from_unix_ms(first_ms + (t * MS_PER_DAY as f64) as i64, 0),
                        channel: if online {
                            Channel::Online
                        } else {
                            Channel::Store
                        },
                        store: (!online).then(|| format!("S00{}", 1 + (n + k) % 3)),
                        amount_cents,
                        discounted_cents: if sale_hunter { amount_cents * 3 / 4 } else { 0 },
                        categories: vec![(
                            ["wine", "cheese", "bread"][n % 3].to_string(),
                            amount_cents,
                        )],
                    }
                })
                .collect();
            CustomerHistory {
                profile_id: format!("p{n:07}"),
                customer_no: Some(format!("C{n:07}")),
                cards: vec![format!("2{n:012}")],
                purchases,
                coupons: Vec::new(),
            }
        })
        .collect()
}
