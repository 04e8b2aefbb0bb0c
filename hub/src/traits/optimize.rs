//! Nelder–Mead minimisation (derivative-free; the models are fitted on log-parameters).

/// The best point found.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimum {
    pub point: Vec<f64>,
    pub value: f64,
    pub evaluations: usize,
    pub converged: bool,
}

/// Minimises `f` from `start` with an initial simplex of `step` along each axis.
/// Non-finite values of `f` count as +∞ (outside the feasible region). Restarts from
/// the best point until a restart no longer improves, which guards against the
/// simplex collapsing early.
pub fn minimize(
    mut f: impl FnMut(&[f64]) -> f64,
    start: &[f64],
    step: f64,
    max_evaluations: usize,
) -> Minimum {
    let mut eval = |x: &[f64]| {
        let v = f(x);
        if v.is_finite() {
            v
        } else {
            f64::INFINITY
        }
    };
    let mut best = run(&mut eval, start, step, max_evaluations);
    for _ in 0..4 {
        if best.evaluations >= max_evaluations {
            break;
        }
        let budget = max_evaluations - best.evaluations;
        let again = run(&mut eval, &best.point, step * 0.25, budget);
        let improved = again.value < best.value - 1e-10 * best.value.abs().max(1.0);
        let evaluations = best.evaluations + again.evaluations;
        if again.value <= best.value {
            best = Minimum {
                evaluations,
                ..again
            };
        } else {
            best.evaluations = evaluations;
        }
        if !improved {
            break;
        }
    }
    best
}

fn run(f: &mut impl FnMut(&[f64]) -> f64, start: &[f64], step: f64, budget: usize) -> Minimum {
    let n = start.len();
    let mut simplex: Vec<Vec<f64>> = Vec::with_capacity(n + 1);
    simplex.push(start.to_vec());
    for i in 0..n {
        let mut p = start.to_vec();
        p[i] += step;
        simplex.push(p);
    }
    let mut values: Vec<f64> = simplex.iter().map(|p| f(p)).collect();
    let mut evaluations = n + 1;
    let mut converged = false;
    while evaluations < budget {
        let mut order: Vec<usize> = (0..=n).collect();
        order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
        simplex = order.iter().map(|&i| simplex[i].clone()).collect();
        values = order.iter().map(|&i| values[i]).collect();

        let spread = (values[n] - values[0]).abs();
        let size = simplex[1..]
            .iter()
            .flat_map(|p| p.iter().zip(&simplex[0]).map(|(a, b)| (a - b).abs()))
            .fold(0.0, f64::max);
        if values[0].is_finite() && spread <= 1e-12 * values[0].abs().max(1e-12) && size < 1e-7 {
            converged = true;
            break;
        }

        let centroid: Vec<f64> = (0..n)
            .map(|d| simplex[..n].iter().map(|p| p[d]).sum::<f64>() / n as f64)
            .collect();
        let along = |t: f64| -> Vec<f64> {
            centroid
                .iter()
                .zip(&simplex[n])
                .map(|(c, w)| c + t * (w - c))
                .collect()
        };
        let reflected = along(-1.0);
        let fr = f(&reflected);
        evaluations += 1;
        if fr < values[0] {
            let expanded = along(-2.0);
            let fe = f(&expanded);
            evaluations += 1;
            if fe < fr {
                simplex[n] = expanded;
                values[n] = fe;
            } else {
                simplex[n] = reflected;
                values[n] = fr;
            }
        } else if fr < values[n - 1] {
            simplex[n] = reflected;
            values[n] = fr;
        } else {
            let (contracted, fc) = if fr < values[n] {
                let p = along(-0.5);
                let v = f(&p);
                (p, v)
            } else {
                let p = along(0.5);
                let v = f(&p);
                (p, v)
            };
            evaluations += 1;
            if fc < values[n].min(fr) {
                simplex[n] = contracted;
                values[n] = fc;
            } else {
                // Shrink towards the best point.
                for i in 1..=n {
                    let p: Vec<f64> = simplex[i]
                        .iter()
                        .zip(&simplex[0])
                        .map(|(x, b)| b + 0.5 * (x - b))
                        .collect();
                    values[i] = f(&p);
                    simplex[i] = p;
                }
                evaluations += n;
            }
        }
    }
    let best = (0..=n)
        .min_by(|&i, &j| values[i].total_cmp(&values[j]))
        .unwrap_or(0);
    Minimum {
        point: simplex[best].clone(),
        value: values[best],
        evaluations,
        converged,
    }
}
