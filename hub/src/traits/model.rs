//! The candidate purchase models behind one interface: which customers are alive and
//! how many purchase days they will have in the next N days. BG/NBD is the baseline;
//! the hub picks among the candidates by back-test (`selection`).

use serde::Serialize;

use super::bgnbd::{BgNbd, FitError, Observation};
use super::cnbd::CnbdK;
use super::mbgnbd::MbgNbd;
use super::pareto_nbd::ParetoNbd;

/// A kind of purchase model, before it is fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    BgNbd,
    MbgNbd,
    ParetoNbd,
    /// BG/NBD with Erlang-k gaps between purchases (k chosen by likelihood).
    BgCnbdK,
    /// MBG/NBD with Erlang-k gaps between purchases.
    MbgCnbdK,
}

impl ModelKind {
    /// Every candidate, the baseline first.
    pub const ALL: [ModelKind; 5] = [
        ModelKind::BgNbd,
        ModelKind::MbgNbd,
        ModelKind::ParetoNbd,
        ModelKind::BgCnbdK,
        ModelKind::MbgCnbdK,
    ];

    /// The name in exports, the API and the back-test report.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::BgNbd => "bgnbd",
            ModelKind::MbgNbd => "mbgnbd",
            ModelKind::ParetoNbd => "pareto_nbd",
            ModelKind::BgCnbdK => "bgcnbd_k",
            ModelKind::MbgCnbdK => "mbgcnbd_k",
        }
    }

    /// The name in the literature.
    pub fn label(self) -> &'static str {
        match self {
            ModelKind::BgNbd => "BG/NBD",
            ModelKind::MbgNbd => "MBG/NBD",
            ModelKind::ParetoNbd => "Pareto/NBD",
            ModelKind::BgCnbdK => "BG/CNBD-k",
            ModelKind::MbgCnbdK => "MBG/CNBD-k",
        }
    }
}

/// A fitted purchase model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum PurchaseModel {
    BgNbd(BgNbd),
    MbgNbd(MbgNbd),
    ParetoNbd(ParetoNbd),
    /// BG/CNBD-k or, with `dropout_at_zero`, MBG/CNBD-k.
    CnbdK(CnbdK),
}

/// A fit this close to the bounds of its (log) parameters ran into a corner of the
/// parameter space: it describes the sample's accident, not its customers.
const DEGENERATE_LOG_PARAMETER: f64 = 14.0;

impl PurchaseModel {
    /// Maximum likelihood on grouped observations; `sum_ln_gaps` is Σ ln(gap days)
    /// over the same customers, which only the Erlang-k models read (to choose k).
    pub fn fit(
        kind: ModelKind,
        data: &[(Observation, u64)],
        sum_ln_gaps: f64,
    ) -> Result<Self, FitError> {
        Ok(match kind {
            ModelKind::BgNbd => Self::BgNbd(BgNbd::fit(data)?),
            ModelKind::MbgNbd => Self::MbgNbd(MbgNbd::fit(data)?),
            ModelKind::ParetoNbd => Self::ParetoNbd(ParetoNbd::fit(data)?),
            ModelKind::BgCnbdK => Self::CnbdK(CnbdK::fit(data, sum_ln_gaps, false)?),
            ModelKind::MbgCnbdK => Self::CnbdK(CnbdK::fit(data, sum_ln_gaps, true)?),
        })
    }

    pub fn kind(&self) -> ModelKind {
        match self {
            Self::BgNbd(_) => ModelKind::BgNbd,
            Self::MbgNbd(_) => ModelKind::MbgNbd,
            Self::ParetoNbd(_) => ModelKind::ParetoNbd,
            Self::CnbdK(m) if m.dropout_at_zero => ModelKind::MbgCnbdK,
            Self::CnbdK(_) => ModelKind::BgCnbdK,
        }
    }

    /// P(alive at T | x, t_x, T).
    pub fn p_alive(&self, o: Observation) -> f64 {
        match self {
            Self::BgNbd(m) => m.p_alive(o),
            Self::MbgNbd(m) => m.p_alive(o),
            Self::ParetoNbd(m) => m.p_alive(o),
            Self::CnbdK(m) => m.p_alive(o),
        }
    }

    /// E[purchase days in (T, T + horizon] | x, t_x, T]; `None` if a series did not
    /// converge.
    pub fn expected_purchases(&self, o: Observation, horizon: f64) -> Option<f64> {
        match self {
            Self::BgNbd(m) => m.expected_purchases(o, horizon),
            Self::MbgNbd(m) => m.expected_purchases(o, horizon),
            Self::ParetoNbd(m) => m.expected_purchases(o, horizon),
            Self::CnbdK(m) => m.expected_purchases(o, horizon),
        }
    }

    /// P(alive) and the expected purchase days over `horizon` together (what the
    /// intervals take per parameter draw; Pareto/NBD's and CNBD-k's P(alive) is then
    /// computed once).
    pub fn predict(&self, o: Observation, horizon: f64) -> (f64, Option<f64>) {
        match self {
            Self::ParetoNbd(m) => m.predict(o, horizon),
            Self::CnbdK(m) => m.predict(o, horizon),
            _ => (self.p_alive(o), self.expected_purchases(o, horizon)),
        }
    }

    /// The four continuous parameters, as named in the literature (CNBD-k's k is fixed
    /// by its fit).
    pub fn parameters(&self) -> [(&'static str, f64); 4] {
        match *self {
            Self::BgNbd(BgNbd { r, alpha, a, b })
            | Self::MbgNbd(MbgNbd { r, alpha, a, b })
            | Self::CnbdK(CnbdK { r, alpha, a, b, .. }) => {
                [("r", r), ("alpha", alpha), ("a", a), ("b", b)]
            }
            Self::ParetoNbd(ParetoNbd { r, alpha, s, beta }) => {
                [("r", r), ("alpha", alpha), ("s", s), ("beta", beta)]
            }
        }
    }

    /// The same model with other parameter values, given as logarithms in the order of
    /// [`parameters`](Self::parameters) (how the uncertainty of a fit is sampled).
    pub fn with_log_parameters(&self, log: [f64; 4]) -> Self {
        let [p0, p1, p2, p3] = log.map(f64::exp);
        match self {
            Self::BgNbd(_) => Self::BgNbd(BgNbd {
                r: p0,
                alpha: p1,
                a: p2,
                b: p3,
            }),
            Self::MbgNbd(_) => Self::MbgNbd(MbgNbd {
                r: p0,
                alpha: p1,
                a: p2,
                b: p3,
            }),
            Self::ParetoNbd(_) => Self::ParetoNbd(ParetoNbd {
                r: p0,
                alpha: p1,
                s: p2,
                beta: p3,
            }),
            Self::CnbdK(m) => Self::CnbdK(CnbdK {
                r: p0,
                alpha: p1,
                a: p2,
                b: p3,
                ..*m
            }),
        }
    }

    pub fn total_log_likelihood(&self, data: &[(Observation, u64)]) -> f64 {
        match self {
            Self::BgNbd(m) => m.total_log_likelihood(data),
            Self::MbgNbd(m) => m.total_log_likelihood(data),
            Self::ParetoNbd(m) => m.total_log_likelihood(data),
            // Without the (k − 1) Σ ln gaps term, a constant for the four parameters.
            Self::CnbdK(m) => m.total_log_likelihood(data),
        }
    }

    /// A parameter ran to the edge of what the optimiser allows: the data cannot
    /// identify the model.
    pub fn is_degenerate(&self) -> bool {
        self.parameters()
            .iter()
            .any(|(_, v)| !v.is_finite() || v.ln().abs() >= DEGENERATE_LOG_PARAMETER)
    }
}
