//! Baseline: one exit type at every position, one shared threshold.

use crate::eval::{Candidate, Config};
use crate::pareto::pareto_front;
use crate::records::Records;

/// Sweeps a shared threshold with every position enabled, per exit type; returns the front.
///
/// For each type available at all positions, thresholds are the distinct confidences of that
/// type pooled over positions, thinned to at most `max_thresholds` evenly spaced in rank (so the
/// sweep follows where the confidences actually are, mostly near 1); `usize::MAX` keeps all.
/// The full model joins the pool so the front reaches it.
pub fn uniform_threshold(records: &Records, max_thresholds: usize) -> Vec<Candidate> {
    let positions = records.n_positions();
    let types = (0..positions).map(|p| records.n_types(p)).min().unwrap_or(0);
    let mut pool = vec![Candidate::evaluate(records, Config::none(positions))];
    for t in 0..types {
        let mut thetas: Vec<f32> =
            (0..positions).flat_map(|p| records.exit(p, t).conf.iter().copied()).collect();
        thetas.sort_by(f32::total_cmp);
        thetas.dedup();
        for theta in thin(&thetas, max_thresholds) {
            let config = Config { exits: vec![Some((t, theta)); positions] };
            pool.push(Candidate::evaluate(records, config));
        }
    }
    pareto_front(pool)
}

/// At most `k` values of the sorted `v`, evenly spaced in rank, always keeping both ends.
fn thin(v: &[f32], k: usize) -> Vec<f32> {
    if v.len() <= k {
        return v.to_vec();
    }
    match k {
        0 => Vec::new(),
        1 => vec![v[v.len() - 1]],
        _ => {
            let last = v.len() - 1;
            let mut out: Vec<f32> = (0..k).map(|j| v[j * last / (k - 1)]).collect();
            out.dedup();
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::evaluate;
    use crate::synthetic::{generate, SyntheticParams};

    #[test]
    fn thin_keeps_ends() {
        let v: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        let t = thin(&v, 5);
        assert_eq!(t.len(), 5);
        assert_eq!(t[0], 0.0);
        assert_eq!(t[4], 0.99);
        assert_eq!(thin(&v, 1000).len(), 100);
    }

    #[test]
    fn uniform_front_is_shared_threshold_configs() {
        let r = generate(&SyntheticParams { samples: 500, positions: 4, ..SyntheticParams::default() });
        let front = uniform_threshold(&r, 64);
        assert!(front.len() > 3);
        assert!(front.windows(2).all(|w| w[0].outcome.mean_macs < w[1].outcome.mean_macs));
        for c in &front {
            assert_eq!(evaluate(&r, &c.config), c.outcome);
            let first = c.config.exits[0];
            assert!(c.config.exits.iter().all(|&e| e == first));
        }
    }
}
