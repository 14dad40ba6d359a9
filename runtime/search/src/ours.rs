//! Exact coordinate descent over (exit type, threshold) per position.
//!
//! With every other position fixed, the objective of one position as a function of its
//! threshold is piecewise constant: it only changes where the threshold crosses the confidence
//! of a sample that reaches that position. Scanning the reaching samples in decreasing
//! confidence (the order is precomputed once per exit in [`Records`]) therefore yields the exact
//! best threshold of every type, and "none", in O(N) per type. Repeating over positions until no
//! coordinate improves gives a coordinate-wise optimum; with seeds that include the onepass
//! result and a pool that keeps every visited config, the front is never worse than onepass'.

use serde::{Deserialize, Serialize};

use crate::eval::{Candidate, Config};
use crate::objective::{LambdaGrid, Normalization};
use crate::onepass::{onepass_config, OnepassParams};
use crate::pareto::pareto_front;
use crate::records::Records;
use crate::route::{route, Routed, Workspace};
use crate::uniform::uniform_threshold;

/// Parameters of [`coordinate_search`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchParams {
    /// Trade-off weights to sweep (same objective and normalisation as onepass).
    pub lambdas: LambdaGrid,
    /// Extra λ values, e.g. a finer grid just below 1 where the accurate end of the front lives.
    pub extra_lambdas: Vec<f64>,
    /// Upper bound on full passes over the positions per descent (it normally stops far sooner).
    pub max_passes: usize,
    /// Seed each λ from onepass' config for that λ (with these settings); `None` skips it and
    /// with it the guarantee of dominating onepass.
    pub onepass_seed: Option<OnepassParams>,
    /// Also seed each λ from the best shared-threshold config (by J) of [`uniform_threshold`]
    /// run with this many thresholds per type; `None` skips it.
    pub uniform_seed: Option<usize>,
}

impl Default for SearchParams {
    /// Onepass' λ grid, plus λ in [0.05, 0.5) by 0.05 (reaches the cheap end of the front, which
    /// λ ≥ 0.5 never targets) and in (0.99, 1.0) by 0.001 (the accurate end, where a point of
    /// accuracy is worth many MACs); 50 passes max; seeded from onepass.
    fn default() -> Self {
        let mut extra_lambdas = LambdaGrid { start: 0.05, end: 0.5, step: 0.05 }.values();
        extra_lambdas.extend(LambdaGrid { start: 0.991, end: 1.0, step: 0.001 }.values());
        SearchParams {
            lambdas: LambdaGrid::default(),
            extra_lambdas,
            max_passes: 50,
            onepass_seed: Some(OnepassParams::default()),
            uniform_seed: Some(256),
        }
    }
}

/// Improvements smaller than this are rounding noise, not progress (J is O(1)).
const EPS: f64 = 1e-12;

/// Runs coordinate descent for every λ and returns the Pareto front of all visited configs.
///
/// Per λ the descent starts from all-"none", from onepass' config and the best shared-threshold
/// config (if enabled) and from the previous λ's result; every start and every accepted move
/// joins the pool, as does the full model, so the front dominates onepass' and uniform's fronts
/// (at the seeds' settings) and each descent's own trajectory.
pub fn coordinate_search(records: &Records, params: &SearchParams) -> Vec<Candidate> {
    let norm = Normalization::from_records(records);
    let mut lambdas = params.lambdas.values();
    lambdas.extend(params.extra_lambdas.iter().copied());
    lambdas.sort_by(f64::total_cmp);
    lambdas.dedup();

    let positions = records.n_positions();
    let mut ws = Workspace::new(records.n_samples());
    let mut pool = vec![Candidate::evaluate(records, Config::none(positions))];
    let uniform = params.uniform_seed.map(|k| uniform_threshold(records, k)).unwrap_or_default();
    pool.extend(uniform.iter().cloned());
    let mut previous: Option<Config> = None;
    for &lambda in &lambdas {
        let mut starts = vec![Config::none(positions)];
        let j = |c: &Candidate| norm.objective(lambda, c.outcome.accuracy, c.outcome.mean_macs);
        if let Some(u) = uniform.iter().min_by(|a, b| j(a).total_cmp(&j(b))) {
            starts.push(u.config.clone());
        }
        if let Some(op) = &params.onepass_seed {
            let seed = onepass_config(records, &norm, lambda, op);
            pool.push(Candidate::evaluate(records, seed.clone()));
            starts.push(seed);
        }
        if let Some(prev) = previous.take() {
            starts.push(prev);
        }
        let mut best: Option<(f64, Config)> = None;
        for start in starts {
            let (j, config) = descend(records, &norm, lambda, start, params.max_passes, &mut ws, |c| {
                pool.push(Candidate::evaluate(records, c.clone()))
            });
            if best.as_ref().is_none_or(|(bj, _)| j < *bj) {
                best = Some((j, config));
            }
        }
        previous = best.map(|(_, c)| c);
    }
    pareto_front(pool)
}

/// Coordinate descent from `config` for one λ; returns the final objective and config.
///
/// `on_move` sees the config after every accepted move.
pub(crate) fn descend(
    records: &Records,
    norm: &Normalization,
    lambda: f64,
    mut config: Config,
    max_passes: usize,
    ws: &mut Workspace,
    mut on_move: impl FnMut(&Config),
) -> (f64, Config) {
    let mut j = f64::INFINITY;
    for _ in 0..max_passes.max(1) {
        let mut improved = false;
        for p in 0..records.n_positions() {
            let step = best_coordinate(records, norm, lambda, &config, p, ws);
            j = step.current;
            if step.best < step.current - EPS {
                config.exits[p] = step.choice;
                j = step.best;
                improved = true;
                on_move(&config);
            }
        }
        if !improved {
            break;
        }
    }
    (j, config)
}

/// Exact optimum of one coordinate with all others fixed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CoordinateStep {
    /// Best choice for the position ("none" wins ties).
    pub choice: Option<(usize, f32)>,
    /// Its objective.
    pub best: f64,
    /// Objective of the position's current choice, computed the same way.
    pub current: f64,
}

/// Threshold that puts confidences `>= hi` on the exit side and `lo` (< hi) on the other,
/// placed mid-gap so unseen samples near the boundary are split evenly.
fn threshold_between(lo: f32, hi: f32) -> f32 {
    let mid = ((f64::from(lo) + f64::from(hi)) * 0.5) as f32;
    if mid > lo && mid <= hi {
        mid
    } else {
        hi
    }
}

/// Finds the exact best (type, threshold) or "none" for position `p`, others fixed.
///
/// Cost: O(N · enabled exits) to route samples through the fixed part, then O(N) per type,
/// scanning the precomputed confidence order and evaluating J at every distinct confidence of
/// the samples that reach `p`. A threshold that lets nobody out only costs the exit's MACs, so it
/// is considered only for λ > 1, where the objective rewards MACs.
pub(crate) fn best_coordinate(
    records: &Records,
    norm: &Normalization,
    lambda: f64,
    config: &Config,
    p: usize,
    ws: &mut Workspace,
) -> CoordinateStep {
    let n = records.n_samples();
    let Routed { none_correct, none_macs, reaching, leave_cost } = route(records, config, p, ws);
    let reach = &ws.reach[..n];
    let cont_correct = &ws.cont_correct[..n];
    let cont_cost = &ws.cont_cost[..n];
    let nf = n as f64;
    let j_of = |correct: i64, macs: f64| norm.objective(lambda, correct as f64 / nf, macs / nf);
    let j_none = j_of(none_correct, none_macs);
    let mut best = CoordinateStep { choice: None, best: j_none, current: j_none };
    let current = config.exits[p];

    for t in 0..records.n_types(p) {
        let exit = records.exit(p, t);
        let conf = &exit.conf[..n];
        let correct = &records.correct(p, t)[..n];
        // Enabling the exit costs its MACs for every reaching sample, fired or not, and its
        // per-call share for every sample.
        let macs0 = none_macs + reaching as f64 * exit.macs + nf * exit.call_macs;
        let current_theta = match current {
            Some((ct, theta)) if ct == t => Some(theta),
            _ => None,
        };
        let mut current_done = current_theta.is_none();
        let mut d_correct = 0i64;
        let mut d_macs = 0.0;
        let mut group_conf: Option<f32> = None;
        // J(θ) is monotone in accuracy and MACs only for λ <= 1; above 1 it rewards cost, and an
        // enabled exit that lets nobody out (θ above every reaching confidence) can beat "none".
        let mut never_fires_checked = lambda <= 1.0;
        for &idx in records.order(p, t) {
            let i = idx as usize;
            if !reach[i] {
                continue;
            }
            let c = conf[i];
            if !never_fires_checked {
                never_fires_checked = true;
                let j = j_of(none_correct, macs0);
                if c < 1.0 && j < best.best {
                    best.best = j;
                    best.choice = Some((t, threshold_between(c, 1.0)));
                }
            }
            if !current_done && c < current_theta.unwrap_or(0.0) {
                best.current = j_of(none_correct + d_correct, macs0 + d_macs);
                current_done = true;
            }
            if let Some(g) = group_conf {
                if c < g {
                    // Everything with confidence >= g leaves; c is the next one down.
                    let j = j_of(none_correct + d_correct, macs0 + d_macs);
                    if j < best.best {
                        best.best = j;
                        best.choice = Some((t, threshold_between(c, g)));
                    }
                }
            }
            d_correct += i64::from(correct[i]) - i64::from(cont_correct[i]);
            d_macs += leave_cost - cont_cost[i];
            group_conf = Some(c);
        }
        if !never_fires_checked {
            // Nobody reaches p: enabling the exit still pays its per-call share, which only
            // λ > 1 can prefer.
            let j = j_of(none_correct, macs0);
            if j < best.best {
                best.best = j;
                best.choice = Some((t, 1.0));
            }
        }
        let j_all = j_of(none_correct + d_correct, macs0 + d_macs);
        if !current_done {
            best.current = j_all;
        }
        if group_conf.is_some() && j_all < best.best {
            best.best = j_all;
            best.choice = Some((t, 0.0));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::evaluate;
    use crate::onepass::onepass;
    use crate::pareto::{best_accuracy_within, Point};
    use crate::records::ExitRecords;
    use crate::synthetic::{generate, SyntheticParams};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Random small records with coarse confidences (many ties) to stress group handling.
    fn tiny(rng: &mut StdRng, positions: usize, types: usize, n: usize) -> Records {
        let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..3)).collect();
        let final_pred =
            labels.iter().map(|&l| if rng.random_bool(0.85) { l } else { (l + 1) % 3 }).collect();
        let mut cum = Vec::new();
        let mut acc = 0.0;
        let exits = (0..positions)
            .map(|p| {
                acc += rng.random_range(1.0..10.0);
                cum.push(acc);
                (0..types)
                    .map(|_| ExitRecords {
                        macs: rng.random_range(0.0..2.0),
                        call_macs: rng.random_range(0.0..0.5),
                        pred: labels
                            .iter()
                            .map(|&l| {
                                if rng.random_bool(0.4 + 0.2 * p as f64) {
                                    l
                                } else {
                                    rng.random_range(0..3)
                                }
                            })
                            .collect(),
                        conf: (0..n).map(|_| f32::from(rng.random_range(0u8..=10)) / 10.0).collect(),
                    })
                    .collect()
            })
            .collect();
        Records::new(labels, final_pred, cum, acc + rng.random_range(1.0..10.0), exits).unwrap()
    }

    fn j(records: &Records, norm: &Normalization, lambda: f64, config: &Config) -> f64 {
        let o = evaluate(records, config);
        norm.objective(lambda, o.accuracy, o.mean_macs)
    }

    /// Every distinct behaviour of position `p`: none, and each type at every threshold in
    /// [0, 1] that splits the samples differently (0, each distinct confidence, and a point in
    /// every gap between consecutive confidences and above the largest one).
    fn brute_choices(records: &Records, p: usize) -> Vec<Option<(usize, f32)>> {
        let mut out = vec![None];
        for t in 0..records.n_types(p) {
            let mut confs = records.exit(p, t).conf.clone();
            confs.push(0.0);
            confs.push(1.0);
            confs.sort_by(f32::total_cmp);
            confs.dedup();
            let mut thetas = confs.clone();
            thetas.extend(confs.windows(2).map(|w| (w[0] + w[1]) / 2.0));
            out.extend(thetas.into_iter().map(|th| Some((t, th))));
        }
        out
    }

    fn random_config(rng: &mut StdRng, records: &Records) -> Config {
        Config {
            exits: (0..records.n_positions())
                .map(|p| {
                    rng.random_bool(0.5).then(|| {
                        (
                            rng.random_range(0..records.n_types(p)),
                            f32::from(rng.random_range(0u8..=10)) / 10.0,
                        )
                    })
                })
                .collect(),
        }
    }

    #[test]
    fn single_coordinate_step_is_exact() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let r = tiny(&mut rng, 3, 2, 12);
            let norm = Normalization::from_records(&r);
            let config = random_config(&mut rng, &r);
            let lambda = rng.random_range(0.5..1.05);
            let mut ws = Workspace::new(r.n_samples());
            for p in 0..r.n_positions() {
                let step = best_coordinate(&r, &norm, lambda, &config, p, &mut ws);
                let brute = brute_choices(&r, p)
                    .into_iter()
                    .map(|choice| {
                        let mut c = config.clone();
                        c.exits[p] = choice;
                        j(&r, &norm, lambda, &c)
                    })
                    .fold(f64::INFINITY, f64::min);
                assert!((step.best - brute).abs() < 1e-9, "{} vs {brute}", step.best);
                // The reported objectives are those of real configs.
                let mut c = config.clone();
                c.exits[p] = step.choice;
                assert!((j(&r, &norm, lambda, &c) - step.best).abs() < 1e-9);
                assert!((j(&r, &norm, lambda, &config) - step.current).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn single_position_search_is_globally_exact() {
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..50 {
            let r = tiny(&mut rng, 1, 2, 12);
            let norm = Normalization::from_records(&r);
            let mut ws = Workspace::new(r.n_samples());
            for lambda in LambdaGrid::default().values() {
                let (jd, c) = descend(&r, &norm, lambda, Config::none(1), 10, &mut ws, |_| {});
                let brute = brute_choices(&r, 0)
                    .into_iter()
                    .map(|choice| j(&r, &norm, lambda, &Config { exits: vec![choice] }))
                    .fold(f64::INFINITY, f64::min);
                assert!((jd - brute).abs() < 1e-9);
                assert!((j(&r, &norm, lambda, &c) - brute).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn descent_is_a_coordinate_optimum_and_beats_onepass() {
        let mut rng = StdRng::seed_from_u64(5);
        let op = OnepassParams::default();
        for _ in 0..20 {
            let r = tiny(&mut rng, 2, 2, 12);
            let norm = Normalization::from_records(&r);
            let mut ws = Workspace::new(r.n_samples());
            for lambda in LambdaGrid::default().values() {
                let seed = onepass_config(&r, &norm, lambda, &op);
                let j_seed = j(&r, &norm, lambda, &seed);
                let (jd, c) = descend(&r, &norm, lambda, seed, 50, &mut ws, |_| {});
                assert!(jd <= j_seed + 1e-12);
                assert!((j(&r, &norm, lambda, &c) - jd).abs() < 1e-9);
                // No single brute-force change improves it.
                for p in 0..2 {
                    for choice in brute_choices(&r, p) {
                        let mut alt = c.clone();
                        alt.exits[p] = choice;
                        assert!(j(&r, &norm, lambda, &alt) >= jd - 1e-9);
                    }
                }
            }
        }
    }

    #[test]
    fn single_position_front_holds_every_scalarised_optimum() {
        // With one position each descent is globally exact, and for λ in (0, 1] J is monotone in
        // accuracy and MACs, so its global minimiser is Pareto-optimal and must be on the front.
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..20 {
            let r = tiny(&mut rng, 1, 2, 12);
            let norm = Normalization::from_records(&r);
            let front = coordinate_search(&r, &SearchParams::default());
            for c in &front {
                assert_eq!(evaluate(&r, &c.config), c.outcome);
            }
            let all: Vec<_> = brute_choices(&r, 0)
                .into_iter()
                .map(|choice| evaluate(&r, &Config { exits: vec![choice] }))
                .collect();
            for lambda in LambdaGrid::default().values().into_iter().filter(|&l| l <= 1.0) {
                let on = |o: &crate::eval::Outcome| norm.objective(lambda, o.accuracy, o.mean_macs);
                let brute = all.iter().map(on).fold(f64::INFINITY, f64::min);
                let ours = front.iter().map(|c| on(&c.outcome)).fold(f64::INFINITY, f64::min);
                assert!((ours - brute).abs() < 1e-9, "λ={lambda}: {ours} vs {brute}");
            }
        }
    }

    #[test]
    fn front_dominates_onepass_on_synthetic_records() {
        let r = generate(&SyntheticParams {
            samples: 1500,
            positions: 5,
            types: 3,
            ..SyntheticParams::default()
        });
        let ours = coordinate_search(&r, &SearchParams::default());
        let others = [
            ("onepass", onepass(&r, &OnepassParams::default())),
            ("uniform", crate::uniform::uniform_threshold(&r, 256)),
        ];
        // Compare the fronts as step functions: at every budget where either front changes.
        for (name, other) in &others {
            for budget in other.iter().chain(&ours).map(Point::macs) {
                let a = best_accuracy_within(&ours, budget).unwrap_or(f64::NEG_INFINITY);
                let b = best_accuracy_within(other, budget).unwrap_or(f64::NEG_INFINITY);
                assert!(a >= b, "budget {budget}: ours {a} < {name} {b}");
            }
        }
        for c in &ours {
            assert_eq!(evaluate(&r, &c.config), c.outcome);
        }
    }
}
