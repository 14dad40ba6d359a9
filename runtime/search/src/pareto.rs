//! Pareto filtering in (higher accuracy, lower MACs).

use crate::eval::{Candidate, Outcome};

/// Anything with an accuracy and a mean cost that can be Pareto-filtered.
pub trait Point {
    /// Accuracy (higher is better).
    fn accuracy(&self) -> f64;
    /// Mean MACs per sample (lower is better).
    fn macs(&self) -> f64;
}

impl Point for Outcome {
    fn accuracy(&self) -> f64 {
        self.accuracy
    }
    fn macs(&self) -> f64 {
        self.mean_macs
    }
}

impl Point for Candidate {
    fn accuracy(&self) -> f64 {
        self.outcome.accuracy
    }
    fn macs(&self) -> f64 {
        self.outcome.mean_macs
    }
}

/// Keeps the points no other point dominates, sorted by increasing MACs (and so accuracy).
///
/// Of several points with identical (accuracy, MACs) only the first in input order is kept,
/// so the front has strictly increasing MACs and strictly increasing accuracy.
pub fn pareto_front<T: Point>(points: Vec<T>) -> Vec<T> {
    let mut points = points;
    // Cheapest first; at equal cost the most accurate first. Stable, so ties keep input order.
    points.sort_by(|a, b| a.macs().total_cmp(&b.macs()).then(b.accuracy().total_cmp(&a.accuracy())));
    let mut best = f64::NEG_INFINITY;
    points.retain(|p| {
        let keep = p.accuracy() > best;
        if keep {
            best = p.accuracy();
        }
        keep
    });
    points
}

/// Best accuracy reachable within `budget` MACs on a front, if any point fits.
pub fn best_accuracy_within<T: Point>(front: &[T], budget: f64) -> Option<f64> {
    front.iter().filter(|p| p.macs() <= budget).map(Point::accuracy).max_by(f64::total_cmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct P(f64, f64, u8);
    impl Point for P {
        fn accuracy(&self) -> f64 {
            self.0
        }
        fn macs(&self) -> f64 {
            self.1
        }
    }

    #[test]
    fn keeps_only_non_dominated_sorted_by_macs() {
        let pts = vec![
            P(0.9, 10.0, 0),
            P(0.5, 2.0, 1),
            P(0.6, 3.0, 2),
            P(0.55, 4.0, 3), // dominated by 2
            P(0.9, 12.0, 4), // dominated by 0 (same accuracy, dearer)
            P(0.6, 3.0, 5),  // duplicate of 2
            P(0.4, 2.0, 6),  // dominated by 1 (same cost, less accurate)
            P(0.95, 20.0, 7),
            P(0.1, 1.0, 8),
        ];
        let f = pareto_front(pts);
        let ids: Vec<u8> = f.iter().map(|p| p.2).collect();
        assert_eq!(ids, vec![8, 1, 2, 0, 7]);
        assert_eq!(best_accuracy_within(&f, 3.5), Some(0.6));
        assert_eq!(best_accuracy_within(&f, 0.5), None);
        assert!(pareto_front(Vec::<P>::new()).is_empty());
    }
}
