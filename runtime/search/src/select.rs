//! Choosing the small table of configurations the runtime switches between.

use crate::eval::{Candidate, Config};
use crate::pareto::{pareto_front, Point};
use crate::records::Records;

/// Default lower bound on the table size.
pub const DEFAULT_K_MIN: usize = 8;
/// Default upper bound on the table size.
pub const DEFAULT_K_MAX: usize = 32;

/// Picks `k_min..=k_max` configs from `front`, spread evenly in MACs, ending with the full model.
///
/// Eligible entries are front points with accuracy `>= accuracy_floor` that are cheaper than the
/// full model. The picks are the points nearest to targets spaced evenly from the cheapest
/// eligible point to the richest: not up to the full model's MACs, which an early-exit front
/// never reaches (its accuracy saturates around half of them), so targets beyond its end would
/// all land on its last few points. The full model ("all none") follows,
/// always included, last, even when some config dominates it (it is the safe fallback
/// the runtime must always be able to select). `records` is needed only to evaluate it. Fewer
/// than `k_min` entries are returned only when fewer eligible points exist.
///
/// # Panics
/// If `k_min == 0` or `k_min > k_max`.
pub fn select_table(
    records: &Records,
    front: &[Candidate],
    accuracy_floor: f64,
    k_min: usize,
    k_max: usize,
) -> Vec<Candidate> {
    assert!(k_min >= 1 && k_min <= k_max, "select_table: need 1 <= k_min <= k_max");
    let full = Candidate::evaluate(records, Config::none(records.n_positions()));
    let eligible: Vec<Candidate> = pareto_front(front.to_vec())
        .into_iter()
        .filter(|c| !c.config.is_full_model() && c.accuracy() >= accuracy_floor && c.macs() < full.macs())
        .collect();
    let m = eligible.len().min(k_max - 1);
    let mut table = Vec::with_capacity(m + 1);
    if m > 0 {
        let lo = eligible[0].macs();
        let hi = eligible[eligible.len() - 1].macs();
        let step = if m > 1 { (hi - lo) / (m - 1) as f64 } else { 0.0 };
        let mut next = 0;
        for j in 0..m {
            // Nearest to the j-th evenly spaced MACs target, leaving enough points for the
            // remaining targets; j = 0 is always the cheapest eligible point, j = m - 1 the
            // richest.
            let target = lo + j as f64 * step;
            let last_allowed = eligible.len() - (m - j);
            let pick = (next..=last_allowed)
                .min_by(|&a, &b| {
                    (eligible[a].macs() - target).abs().total_cmp(&(eligible[b].macs() - target).abs())
                })
                .expect("range is non-empty");
            table.push(eligible[pick].clone());
            next = pick + 1;
        }
    }
    table.push(full);
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ours::{coordinate_search, SearchParams};
    use crate::synthetic::{generate, SyntheticParams};

    #[test]
    fn table_is_spread_and_ends_with_full_model() {
        let r = generate(&SyntheticParams { samples: 800, positions: 5, ..SyntheticParams::default() });
        let front = coordinate_search(&r, &SearchParams::default());
        assert!(front.len() > 20, "front has {} points", front.len());
        let floor = 0.6;
        let table = select_table(&r, &front, floor, DEFAULT_K_MIN, DEFAULT_K_MAX);
        assert!(table.len() >= DEFAULT_K_MIN && table.len() <= DEFAULT_K_MAX);
        assert!(table.last().unwrap().config.is_full_model());
        assert!(table.windows(2).all(|w| w[0].macs() < w[1].macs()));
        let cheapest = front.iter().find(|c| c.accuracy() >= floor).unwrap();
        assert_eq!(&table[0], cheapest);
        assert!(table[..table.len() - 1].iter().all(|c| c.accuracy() >= floor));

        // Small front: everything eligible is kept; impossible floor: only the full model.
        let few = select_table(&r, &front[..3], 0.0, 8, 32);
        assert!(few.len() <= 4 && few.last().unwrap().config.is_full_model());
        let none = select_table(&r, &front, 2.0, 8, 32);
        assert_eq!(none.len(), 1);
        let capped = select_table(&r, &front, 0.0, 2, 5);
        assert_eq!(capped.len(), 5);
    }

    #[test]
    fn picks_cover_the_eligible_range_not_the_way_to_the_full_model() {
        let r = generate(&SyntheticParams { samples: 800, positions: 5, ..SyntheticParams::default() });
        let front = coordinate_search(&r, &SearchParams::default());
        let floor = 0.6;
        let table = select_table(&r, &front, floor, DEFAULT_K_MIN, 9);
        let picks = &table[..table.len() - 1];
        let eligible: Vec<&Candidate> = front.iter().filter(|c| c.accuracy() >= floor).collect();
        let (lo, hi) = (eligible[0].macs(), eligible.iter().map(|c| c.macs()).fold(0.0, f64::max));
        let full = table.last().unwrap().macs();
        assert!(hi < 0.9 * full, "the synthetic front ends short of the full model: {hi} of {full}");
        // The richest eligible point is the last pick, and no gap between neighbours is much wider
        // than an even step over [lo, hi] (targets up to the full model's MACs crowded the
        // front's end instead).
        assert_eq!(picks.last().unwrap().macs(), hi);
        let step = (hi - lo) / (picks.len() - 1) as f64;
        let gaps: Vec<f64> = picks.windows(2).map(|w| w[1].macs() - w[0].macs()).collect();
        for g in &gaps {
            assert!(*g <= 1.6 * step, "gap {g} against step {step}: {gaps:?}");
        }
        // At most a fair share of the picks in the top fifth of the range.
        let top = picks.iter().filter(|c| c.macs() > hi - 0.2 * (hi - lo)).count();
        assert!(top <= 3, "{top} of {} picks in the top fifth", picks.len());
    }
}
