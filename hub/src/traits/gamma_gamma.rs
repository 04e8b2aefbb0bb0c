//! Gamma–Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV"; Fader & Hardie's
//! note "The Gamma-Gamma Model of Monetary Value"): each transaction value is
//! Gamma(p, ν) with ν ~ Gamma(q, γ) per customer, independent of the purchase process.

use serde::Serialize;

use super::bgnbd::FitError;
use super::optimize::minimize;
use super::special::ln_gamma;

/// Fitted Gamma–Gamma parameters (γ in the unit of the spend, cents in the hub).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

const LOG_BOUND: f64 = 25.0;

impl GammaGamma {
    /// ln f(m̄ | x) for a customer with `x` repeat purchases of mean value `m` (> 0).
    pub fn log_likelihood(&self, x: u32, m: f64) -> f64 {
        let Self { p, q, gamma } = *self;
        let x = f64::from(x);
        let px = p * x;
        ln_gamma(px + q) - ln_gamma(px) - ln_gamma(q)
            + q * gamma.ln()
            + (px - 1.0) * m.ln()
            + px * x.ln()
            - (px + q) * (gamma + m * x).ln()
    }

    /// E[spend per transaction | x, m̄]: a weighted mean of the population mean and the
    /// customer's own mean. Customers without repeat purchases get the population mean.
    pub fn expected_spend(&self, x: u32, m: f64) -> f64 {
        let Self { p, q, gamma } = *self;
        let x = f64::from(x);
        let m = if x > 0.0 { m.max(0.0) } else { 0.0 };
        p * (gamma + x * m) / (p * x + q - 1.0)
    }

    /// The population's mean spend per transaction, pγ/(q − 1).
    pub fn population_mean(&self) -> f64 {
        self.expected_spend(0, 0.0)
    }

    /// Maximum likelihood on customers with at least one repeat purchase and a positive
    /// mean spend (others carry no information here and are skipped). q is kept above 1
    /// (q = 1 + e^θ) so the expected spend is finite.
    pub fn fit(data: &[(u32, f64)]) -> Result<GammaGamma, FitError> {
        let mut rows: Vec<(u32, f64)> = data
            .iter()
            .copied()
            .filter(|(x, m)| *x > 0 && m.is_finite() && *m > 0.0)
            .collect();
        if rows.is_empty() {
            return Err(FitError::NoRepeatPurchases);
        }
        rows.sort_by_key(|(x, _)| *x);
        // Per distinct x: (x, count, Σ ln m, first row, end row).
        let mut groups: Vec<(f64, f64, f64, usize, usize)> = Vec::new();
        for (i, (x, m)) in rows.iter().enumerate() {
            match groups.last_mut() {
                Some(g) if g.0 == f64::from(*x) => {
                    g.1 += 1.0;
                    g.2 += m.ln();
                    g.4 = i + 1;
                }
                _ => groups.push((f64::from(*x), 1.0, m.ln(), i, i + 1)),
            }
        }
        let n = rows.len() as f64;
        let mean = rows.iter().map(|(_, m)| m).sum::<f64>() / n;
        let start = [0.0, 0.0, mean.ln()];
        let best = minimize(
            |t| {
                if t.iter().any(|v| v.abs() > LOG_BOUND) {
                    return f64::INFINITY;
                }
                let (p, q, gamma) = (t[0].exp(), 1.0 + t[1].exp(), t[2].exp());
                let (lg_q, ln_gamma_) = (ln_gamma(q), gamma.ln());
                let mut total = 0.0;
                for &(x, count, sum_ln_m, from, to) in &groups {
                    let px = p * x;
                    total += count
                        * (ln_gamma(px + q) - ln_gamma(px) - lg_q + q * ln_gamma_ + px * x.ln())
                        + (px - 1.0) * sum_ln_m;
                    let mut tail = 0.0;
                    for (_, m) in &rows[from..to] {
                        tail += (gamma + m * x).ln();
                    }
                    total -= (px + q) * tail;
                }
                -total / n
            },
            &start,
            1.0,
            20_000,
        );
        if !best.value.is_finite() {
            return Err(FitError::NotFinite);
        }
        let t = &best.point;
        Ok(GammaGamma {
            p: t[0].exp(),
            q: 1.0 + t[1].exp(),
            gamma: t[2].exp(),
        })
    }
}
