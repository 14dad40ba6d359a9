//! DyCE's published search: one shallow-to-deep pass per λ, thresholds by Brent's method.

use serde::{Deserialize, Serialize};

use crate::brent::brent_minimize;
use crate::eval::{Candidate, Config};
use crate::objective::{LambdaGrid, Normalization};
use crate::pareto::pareto_front;
use crate::records::Records;
use crate::route::{route, routed_objective, Workspace};

/// Parameters of [`onepass`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnepassParams {
    /// Trade-off weights to sweep.
    pub lambdas: LambdaGrid,
    /// Brent's absolute tolerance on the threshold (SciPy's default 1e-5).
    pub xatol: f64,
    /// Brent's evaluation budget per 1-D search (SciPy's default 500).
    pub max_iter: usize,
}

impl Default for OnepassParams {
    /// DyCE's settings: λ in [0.5, 1.05) by 0.01, SciPy's bounded-Brent defaults.
    fn default() -> Self {
        OnepassParams { lambdas: LambdaGrid::default(), xatol: 1e-5, max_iter: 500 }
    }
}

/// Runs onepass for every λ and returns the Pareto front of the configs found, by MACs.
///
/// The full model is added to the pool so the front always reaches it (unless dominated).
pub fn onepass(records: &Records, params: &OnepassParams) -> Vec<Candidate> {
    let norm = Normalization::from_records(records);
    let mut pool: Vec<Candidate> = params
        .lambdas
        .values()
        .into_iter()
        .map(|lambda| Candidate::evaluate(records, onepass_config(records, &norm, lambda, params)))
        .collect();
    pool.push(Candidate::evaluate(records, Config::none(records.n_positions())));
    pareto_front(pool)
}

/// The single config onepass picks for one λ.
///
/// Positions are visited shallow to deep; earlier choices stay fixed and later slots stay
/// "none". At each position, "none" competes with every type at its Brent-optimal threshold
/// in [0, 1]; strict improvement is needed to beat "none" (and earlier types), as in a plain
/// `argmin` over the candidates in that order.
pub(crate) fn onepass_config(
    records: &Records,
    norm: &Normalization,
    lambda: f64,
    params: &OnepassParams,
) -> Config {
    let mut config = Config::none(records.n_positions());
    let mut ws = Workspace::new(records.n_samples());
    for p in 0..records.n_positions() {
        // Only samples reaching p matter to J(θ) here, so route once and let each Brent probe
        // cost O(reaching) instead of a full evaluation; the values are the same.
        let routed = route(records, &config, p, &mut ws);
        let objective = |choice| routed_objective(records, norm, lambda, &routed, &ws, p, choice);
        let mut best_choice = None;
        let mut best_j = objective(None);
        for t in 0..records.n_types(p) {
            let r = brent_minimize(
                |theta| objective(Some((t, theta as f32))),
                0.0,
                1.0,
                params.xatol,
                params.max_iter,
            );
            if r.fun < best_j {
                best_j = r.fun;
                best_choice = Some((t, r.x as f32));
            }
        }
        config.exits[p] = best_choice;
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::evaluate;
    use crate::synthetic::{generate, SyntheticParams};

    /// Straightforward onepass: every Brent probe evaluates the whole config.
    fn reference(records: &Records, norm: &Normalization, lambda: f64, params: &OnepassParams) -> Config {
        let mut config = Config::none(records.n_positions());
        let objective = |c: &Config| {
            let o = evaluate(records, c);
            norm.objective(lambda, o.accuracy, o.mean_macs)
        };
        for p in 0..records.n_positions() {
            let mut best_choice = None;
            let mut best_j = objective(&config);
            for t in 0..records.n_types(p) {
                let mut trial = config.clone();
                let r = brent_minimize(
                    |theta| {
                        trial.exits[p] = Some((t, theta as f32));
                        objective(&trial)
                    },
                    0.0,
                    1.0,
                    params.xatol,
                    params.max_iter,
                );
                if r.fun < best_j {
                    best_j = r.fun;
                    best_choice = Some((t, r.x as f32));
                }
            }
            config.exits[p] = best_choice;
        }
        config
    }

    #[test]
    fn fast_path_matches_reference() {
        let r = generate(&SyntheticParams { samples: 400, positions: 4, ..SyntheticParams::default() });
        let norm = Normalization::from_records(&r);
        let params = OnepassParams::default();
        for lambda in params.lambdas.values() {
            assert_eq!(onepass_config(&r, &norm, lambda, &params), reference(&r, &norm, lambda, &params));
        }
    }
}
