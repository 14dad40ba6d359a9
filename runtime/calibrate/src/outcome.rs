//! What a calibration found: fronts and the shipped table measured on both splits, with the
//! split every number comes from in its name. Configurations are chosen on the calibration split
//! only; the test split is read for the report and for the shipped accuracy bound.

use std::collections::BTreeMap;

use dyce_search::Config;
use serde::{Deserialize, Serialize};

use crate::exit_train::ExitTrainConfig;

/// Settings of a calibration run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CalibrateConfig {
    /// Model name written into the bundle.
    pub name: String,
    /// Exit training.
    pub exits: ExitTrainConfig,
    /// Use at most this many images of each split (smoke tests); `None` = all.
    pub limit: Option<usize>,
    /// Shipped configs are at most this much less accurate than the full model (calibration split).
    pub max_accuracy_drop: f64,
    /// Fewest configurations to ship.
    pub k_min: usize,
    /// Most configurations to ship.
    pub k_max: usize,
    /// What the search charges per MAC of each exit type, relative to a backbone MAC (types not
    /// named cost 1). Exit heads are small matrix products whose weights leave the cache between
    /// calls, so on real hardware a head MAC can cost twice a convolution MAC; charging that
    /// lets the search prefer configurations that are cheap in time, not only in MACs. Reported
    /// MACs ratios stay true MACs.
    #[serde(default)]
    pub exit_cost: BTreeMap<String, f64>,
    /// Reuse the exit heads of this bundle (`weights.safetensors`) instead of training new ones.
    #[serde(default)]
    pub exits_from: Option<std::path::PathBuf>,
    /// Exit-training recipes to try; the heads of the one with the best calibration-split front
    /// ship (its recipe is then `exits.recipe`). Empty: train `exits.recipe` only.
    #[serde(default)]
    pub recipes: Vec<crate::recipe::Recipe>,
    /// Measure `exit_cost_model` at the start of the run (when it is not given).
    #[serde(default)]
    pub measure_exit_costs: bool,
    /// Exit costs per call and per row measured on the calibrating machine; the search charges
    /// them when no `exit_cost` factor is given. Written to the bundle as `exit_cost.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_cost_model: Option<crate::exit_cost::ExitCostModel>,
}

/// One configuration of a front, measured on both splits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FrontPoint {
    /// Accuracy on the calibration split (what the search saw).
    pub calibration_accuracy: f64,
    /// MACs relative to the full model on the calibration split.
    pub calibration_macs_ratio: f64,
    /// Accuracy on the test split.
    pub test_accuracy: f64,
    /// MACs relative to the full model on the test split.
    pub test_macs_ratio: f64,
    /// What the search charged (exit MACs times `exit_cost`), relative to the full model, on
    /// each split; absent when every exit cost 1 (then it equals the MACs ratio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_ratios: Option<CostRatios>,
    /// The configuration (per position: type index and threshold).
    pub config: Config,
}

/// Charged cost relative to the full model's, per split.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct CostRatios {
    /// On the calibration split (what the search minimised).
    pub calibration: f64,
    /// On the test split.
    pub test: f64,
}

/// Everything the report shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CalibrationReport {
    /// Settings.
    pub config: CalibrateConfig,
    /// Exit types, in the order configs index them.
    pub types: Vec<String>,
    /// Samples per split actually used.
    pub sizes: BTreeMap<String, usize>,
    /// Full model accuracy on calibration and test.
    pub full_accuracy: BTreeMap<String, f64>,
    /// Fronts by method (`ours`, `onepass`, `uniform`, and `single` for single-exit configs).
    pub fronts: BTreeMap<String, Vec<FrontPoint>>,
    /// The shipped table, in order.
    pub shipped: Vec<FrontPoint>,
    /// The exit-training recipes tried and how each one's front did (empty when heads were
    /// reused or one recipe was trained).
    #[serde(default)]
    pub recipes: Vec<crate::recipes::RecipeResult>,
    /// Seconds taken by each step.
    pub seconds: BTreeMap<String, f64>,
}

impl CalibrationReport {
    /// The test split's MACs reduction of the configuration a user would pick for "at most
    /// `drop` accuracy lost": the cheapest (on calibration) of a front's configurations within
    /// `drop` of the full model on the calibration split. Picking on test accuracy instead would
    /// let the held-out split choose, and flatter the result.
    pub fn macs_saved_at(&self, method: &str, drop: f64) -> Option<f64> {
        let full = self.full_accuracy.get("calibration")?;
        self.fronts
            .get(method)?
            .iter()
            .filter(|p| p.calibration_accuracy >= full - drop - 1e-12)
            .min_by(|a, b| a.calibration_macs_ratio.total_cmp(&b.calibration_macs_ratio))
            .map(|p| 1.0 - p.test_macs_ratio)
    }
}

/// One-sided lower confidence bound on an accuracy `acc` measured on `n` images: Wilson's score
/// interval at `z` standard deviations (1.645: 95% one-sided). It is what a configuration's
/// `expected_accuracy` ships as, so that a floor set on it holds on new data more often than not
/// even for small calibration splits (with 1,000 images a 90% accuracy ships as 88.3%).
pub fn wilson_lower(acc: f64, n: usize, z: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    let z2 = z * z;
    let centre = acc + z2 / (2.0 * n);
    let spread = z * (acc * (1.0 - acc) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).clamp(0.0, 1.0)
}

/// The confidence level of shipped `expected_accuracy` bounds (one-sided 95%).
pub const BOUND_Z: f64 = 1.645;

/// The split a shipped `expected_accuracy` is bounded on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundSplit {
    /// The calibration split (the one the configurations were chosen on).
    Calibration,
    /// The held-out test split.
    Test,
}

impl BoundSplit {
    /// The split's name as the report spells it.
    pub fn name(self) -> &'static str {
        match self {
            BoundSplit::Calibration => "calibration",
            BoundSplit::Test => "test",
        }
    }
}

/// The `expected_accuracy` a configuration ships, from its accuracy and image count on the
/// calibration and test splits: the lower of the two Wilson bounds (a split without images
/// gives none), and the split it came from.
///
/// Why not the calibration bound alone: the offline floor and every live estimate start from
/// this number and assume the served traffic is at least this accurate on the full model. The
/// calibration split chose the configuration (so it flatters it) and may be drawn unlike the
/// traffic: Fashion-MNIST's held-out training images are ~1 pt easier than its test images, and
/// anchored there, the live estimates of the richer configurations overstated real accuracy
/// by 0.7–1.3 pt. The test split chose nothing, so its bound is honest; taking the lower of
/// the two holds on whichever split is more like the traffic.
pub fn shipped_accuracy(cal: (f64, usize), test: (f64, usize)) -> (f64, BoundSplit) {
    let c = wilson_lower(cal.0, cal.1, BOUND_Z);
    match test.1 {
        0 => (c, BoundSplit::Calibration),
        n => {
            let t = wilson_lower(test.0, n, BOUND_Z);
            if t < c {
                (t, BoundSplit::Test)
            } else {
                (c, BoundSplit::Calibration)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_lower_bound_is_below_the_estimate_and_tightens_with_n() {
        // Worked by hand: 90% on 1,000 images at z = 1.645.
        assert!((wilson_lower(0.9, 1000, BOUND_Z) - 0.8833).abs() < 1e-4);
        let mut last = 0.0;
        for n in [10, 100, 1_000, 10_000, 100_000] {
            let b = wilson_lower(0.9, n, BOUND_Z);
            assert!(b < 0.9 && b > last, "n {n}: {b}");
            last = b;
        }
        // A perfect score on few images is not shipped as certain.
        assert!(wilson_lower(1.0, 100, BOUND_Z) < 0.98);
        assert_eq!(wilson_lower(0.5, 0, BOUND_Z), 0.0);
    }

    #[test]
    fn the_shipped_bound_is_the_lower_of_both_splits() {
        // The shipped bundle's full model: 94.25% on calibration, 93.39% on test.
        let (b, on) = shipped_accuracy((0.9425, 10_000), (0.9339, 10_000));
        assert_eq!(on, BoundSplit::Test);
        assert!((b - wilson_lower(0.9339, 10_000, BOUND_Z)).abs() < 1e-15 && b < 0.9339, "{b}");
        // A harder calibration split bounds it; so does a test split too small to say much.
        assert_eq!(shipped_accuracy((0.93, 10_000), (0.95, 10_000)).1, BoundSplit::Calibration);
        assert_eq!(shipped_accuracy((0.93, 10_000), (0.95, 20)).1, BoundSplit::Test);
        // No test images: the calibration bound alone.
        let (b, on) = shipped_accuracy((0.93, 10_000), (0.0, 0));
        assert_eq!((b, on), (wilson_lower(0.93, 10_000, BOUND_Z), BoundSplit::Calibration));
    }
}
