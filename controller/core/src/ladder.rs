//! The ladder: the configs a policy may choose, cheapest first, with their relative cost.

use dyce_api::ConfigTable;

/// One config the controller may choose.
#[derive(Debug, Clone, PartialEq)]
pub struct Rung {
    /// Config id.
    pub id: String,
    /// Expected accuracy from the table, when known.
    pub expected_accuracy: Option<f64>,
    /// Compute per image relative to the full model: measured (`latency_ratio`, written by
    /// `dyce bench`) when the table has it, else the MACs ratio.
    pub cost_ratio: f64,
}

/// Which configs a policy allows by their expected accuracy: both bounds hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AccuracyLimits {
    /// Absolute floor (`spec.accuracyFloor`); 0 is none.
    pub min: f64,
    /// Largest drop below the full model's expected accuracy (`spec.maxAccuracyDrop`), a
    /// fraction: 0.03 is three points.
    pub max_drop: Option<f64>,
}

impl AccuracyLimits {
    /// Only an absolute floor.
    pub fn absolute(min: f64) -> Self {
        Self { min, max_drop: None }
    }

    /// Only a drop relative to the full model.
    pub fn relative(max_drop: f64) -> Self {
        Self { min: 0.0, max_drop: Some(max_drop) }
    }

    /// No bound at all: then, and only then, configs without an expected accuracy are allowed.
    fn unbounded(&self) -> bool {
        self.min <= 0.0 && self.max_drop.is_none()
    }
}

impl std::fmt::Display for AccuracyLimits {
    /// For reports and logs: `≥ 0.9`, `≤ 0.03 below the full model`, both, or `none`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.min > 0.0, self.max_drop) {
            (false, None) => f.write_str("none"),
            (true, None) => write!(f, "≥ {}", self.min),
            (false, Some(d)) => write!(f, "≤ {d} below the full model"),
            (true, Some(d)) => write!(f, "≥ {} and ≤ {d} below the full model", self.min),
        }
    }
}

// Accuracies are decimals written by calibration (0.9339) and drops are typed by people (0.03);
// in binary floating point 0.80 - 0.10 > 0.70, which would drop a config sitting exactly on the
// stated bound. A tolerance far below any measurable accuracy difference keeps it.
const DROP_TOLERANCE: f64 = 1e-9;

/// A table the controller cannot steer with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LadderError {
    /// A config has neither a measured latency ratio nor a MACs ratio.
    #[error("config {0:?} has neither latency_ratio nor macs_ratio; run `dyce bench` on the bundle")]
    NoCost(String),
    /// The table has no full-model entry.
    #[error("the config table has no full-model entry")]
    NoFull,
    /// The policy bounds accuracy relative to the full model, whose accuracy the table lacks.
    #[error(
        "spec.maxAccuracyDrop is relative to the full model, but the config table gives no \
         expected_accuracy for {0:?}; calibrate the bundle (`dyce calibrate`) or use spec.accuracyFloor"
    )]
    NoFullAccuracy(String),
}

/// Allowed configs, cheapest first; the last rung is the richest.
#[derive(Debug, Clone, PartialEq)]
pub struct Ladder {
    rungs: Vec<Rung>,
    /// The accuracy floor the limits work out to for this table (0 without a bound).
    floor: f64,
}

impl Ladder {
    /// The configs of `table` within `limits` (expected accuracy at least `min` and at most
    /// `max_drop` below the full model's), ordered by cost, without dominated ones (costlier and
    /// not more accurate than a cheaper one). The full model is always allowed: it is the
    /// reference of the drop, and if it misses an absolute floor nothing would meet it.
    ///
    /// A relative bound needs the full model's expected accuracy: without it the table is
    /// refused ([`LadderError::NoFullAccuracy`]) rather than guessed at, since allowing every
    /// config could serve far below what the policy promised and allowing only the full model
    /// would silently never degrade.
    pub fn new(table: &ConfigTable, limits: AccuracyLimits) -> Result<Self, LadderError> {
        let full = table.full().ok_or(LadderError::NoFull)?;
        let relative_min = match limits.max_drop {
            None => f64::NEG_INFINITY,
            Some(drop) => {
                let reference =
                    full.expected_accuracy.ok_or_else(|| LadderError::NoFullAccuracy(full.id.clone()))?;
                reference - drop - DROP_TOLERANCE
            }
        };
        let min = limits.min.max(relative_min);
        let mut rungs = Vec::new();
        for c in &table.configs {
            let is_full = c.id == full.id;
            let allowed = is_full || limits.unbounded() || c.expected_accuracy.is_some_and(|a| a >= min);
            if !allowed {
                continue;
            }
            let cost_ratio = match (c.latency_ratio, c.macs_ratio) {
                (Some(r), _) | (None, Some(r)) => r,
                (None, None) if is_full => 1.0,
                (None, None) => return Err(LadderError::NoCost(c.id.clone())),
            };
            rungs.push(Rung { id: c.id.clone(), expected_accuracy: c.expected_accuracy, cost_ratio });
        }
        // Stable: equal costs keep the table's order. The full model stays on top even if a
        // measurement put a cheaper-by-MACs config's latency above it.
        rungs.sort_by(|a, b| {
            let af = a.id == full.id;
            let bf = b.id == full.id;
            af.cmp(&bf).then(a.cost_ratio.total_cmp(&b.cost_ratio))
        });
        // Drop dominated configs: one that costs more than a cheaper rung and is not more
        // accurate is never worth running, and every extra rung is one more restore step.
        let mut best = f64::NEG_INFINITY;
        rungs.retain(|r| {
            let keep = r.id == full.id || r.expected_accuracy.is_none_or(|a| a > best);
            if keep {
                best = best.max(r.expected_accuracy.unwrap_or(f64::NEG_INFINITY));
            }
            keep
        });
        Ok(Self { rungs, floor: min.max(0.0) })
    }

    /// The accuracy floor in effect: `accuracyFloor`, or the full model's expected accuracy
    /// minus `maxAccuracyDrop`, whichever is higher; 0 without a bound.
    pub fn floor(&self) -> f64 {
        self.floor
    }

    /// This ladder without the rungs `skip` names (never the richest: the full model stays).
    pub fn without(&self, skip: &std::collections::BTreeSet<String>) -> Self {
        let top = self.top();
        let rungs = self
            .rungs
            .iter()
            .enumerate()
            .filter(|(i, r)| *i == top || !skip.contains(&r.id))
            .map(|(_, r)| r.clone());
        Self { rungs: rungs.collect(), floor: self.floor }
    }

    /// A ladder from rungs already ordered cheapest first (tests, simulation).
    pub fn from_rungs(rungs: Vec<Rung>) -> Self {
        assert!(!rungs.is_empty(), "a ladder needs at least one rung");
        Self { rungs, floor: 0.0 }
    }

    /// Number of rungs.
    pub fn len(&self) -> usize {
        self.rungs.len()
    }

    /// Always false: a ladder has the full model at least.
    pub fn is_empty(&self) -> bool {
        self.rungs.is_empty()
    }

    /// Rank of the richest rung.
    pub fn top(&self) -> usize {
        self.rungs.len() - 1
    }

    /// The rung at `rank` (0 = cheapest).
    pub fn rung(&self, rank: usize) -> &Rung {
        &self.rungs[rank]
    }

    /// All rungs, cheapest first.
    pub fn rungs(&self) -> &[Rung] {
        &self.rungs
    }

    /// Rank of a config id.
    pub fn rank_of(&self, id: &str) -> Option<usize> {
        self.rungs.iter().position(|r| r.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dyce_api::ConfigEntry;

    fn entry(id: &str, acc: f64, macs: f64, lat: Option<f64>, exits: bool) -> ConfigEntry {
        entry_acc(id, Some(acc), macs, lat, exits)
    }

    fn entry_acc(id: &str, acc: Option<f64>, macs: f64, lat: Option<f64>, exits: bool) -> ConfigEntry {
        let exits = if exits {
            vec![dyce_api::ExitChoice { position: 0, exit_type: "mlp1".into(), threshold: 0.9 }]
        } else {
            vec![]
        };
        ConfigEntry {
            id: id.into(),
            exits,
            expected_accuracy: acc,
            macs_ratio: Some(macs),
            latency_ratio: lat,
            expected_disagreement: None,
        }
    }

    #[test]
    fn floor_order_and_measured_cost() {
        let t = ConfigTable {
            model: "m".into(),
            configs: vec![
                entry("a", 0.85, 0.3, None, true),
                entry("b", 0.91, 0.5, Some(0.6), true),
                entry("c", 0.92, 0.55, Some(0.58), true),
                entry("full", 0.93, 1.0, None, false),
            ],
        };
        let l = Ladder::new(&t, AccuracyLimits::absolute(0.9)).unwrap();
        let ids: Vec<&str> = l.rungs().iter().map(|r| r.id.as_str()).collect();
        // Measured, "c" (0.58) is cheaper than "b" (0.6) and more accurate: "b" is dominated.
        assert_eq!(ids, ["c", "full"]);
        assert_eq!(l.rank_of("full"), Some(1));
        let all: Vec<String> = Ladder::new(&t, AccuracyLimits::default())
            .unwrap()
            .rungs()
            .iter()
            .map(|r| r.id.clone())
            .collect();
        assert_eq!(all, ["a", "c", "full"]);
        // A floor above every config leaves the full model.
        assert_eq!(Ladder::new(&t, AccuracyLimits::absolute(0.99)).unwrap().len(), 1);
    }

    /// An ImageNet-like table: the full model at 76%, cheaper configs a few points below.
    fn imagenet() -> ConfigTable {
        ConfigTable {
            model: "resnet50".into(),
            configs: vec![
                entry("a", 0.70, 0.3, None, true),
                entry("b", 0.735, 0.5, None, true),
                entry("c", 0.75, 0.7, None, true),
                entry("full", 0.76, 1.0, None, false),
            ],
        }
    }

    fn ids(t: &ConfigTable, limits: AccuracyLimits) -> Vec<String> {
        Ladder::new(t, limits).unwrap().rungs().iter().map(|r| r.id.clone()).collect()
    }

    #[test]
    fn relative_absolute_and_both() {
        let t = imagenet();
        // 0.76 - 0.03 = 0.73: "b" (0.735) is in, "a" (0.70) is not.
        assert_eq!(ids(&t, AccuracyLimits::relative(0.03)), ["b", "c", "full"]);
        // An absolute floor made for a 93% model leaves a 76% one nothing but the full model.
        assert_eq!(ids(&t, AccuracyLimits::absolute(0.9)), ["full"]);
        assert_eq!(ids(&t, AccuracyLimits::absolute(0.72)), ["b", "c", "full"]);
        // Both: a config must satisfy each.
        assert_eq!(ids(&t, AccuracyLimits { min: 0.74, max_drop: Some(0.03) }), ["c", "full"]);
        assert_eq!(ids(&t, AccuracyLimits { min: 0.60, max_drop: Some(0.015) }), ["c", "full"]);
        assert_eq!(ids(&t, AccuracyLimits { min: 0.60, max_drop: Some(0.9) }), ["a", "b", "c", "full"]);
        assert_eq!(
            AccuracyLimits { min: 0.74, max_drop: Some(0.03) }.to_string(),
            "≥ 0.74 and ≤ 0.03 below the full model"
        );
        assert_eq!(AccuracyLimits::default().to_string(), "none");
    }

    #[test]
    fn a_config_exactly_on_the_drop_is_allowed() {
        let t = ConfigTable {
            model: "m".into(),
            configs: vec![entry("edge", 0.70, 0.5, None, true), entry("full", 0.80, 1.0, None, false)],
        };
        // The float arithmetic this guards against (black_box: not folded at compile time).
        assert!(std::hint::black_box(0.80_f64) - 0.10 > 0.70);
        assert_eq!(ids(&t, AccuracyLimits::relative(0.10)), ["edge", "full"]);
    }

    #[test]
    fn the_full_model_is_always_allowed() {
        let t = imagenet();
        assert_eq!(ids(&t, AccuracyLimits::relative(0.0)), ["full"]);
        assert_eq!(ids(&t, AccuracyLimits { min: 1.0, max_drop: Some(0.0) }), ["full"]);
        // A cheaper config more accurate than the full model is within any drop.
        let mut t = t;
        t.configs.insert(0, entry("lucky", 0.77, 0.4, None, true));
        assert_eq!(ids(&t, AccuracyLimits::relative(0.0)), ["lucky", "full"]);
    }

    #[test]
    fn unknown_accuracies() {
        let t = ConfigTable {
            model: "m".into(),
            configs: vec![
                entry_acc("unknown", None, 0.5, None, true),
                entry("known", 0.92, 0.6, None, true),
                entry_acc("full", None, 1.0, None, false),
            ],
        };
        // A drop from an unknown reference is refused, naming the entry, not guessed at.
        let err = Ladder::new(&t, AccuracyLimits::relative(0.03)).unwrap_err();
        assert_eq!(err, LadderError::NoFullAccuracy("full".into()));
        assert!(err.to_string().contains("spec.maxAccuracyDrop"), "{err}");
        // An absolute floor needs no reference; a config of unknown accuracy never meets it.
        assert_eq!(ids(&t, AccuracyLimits::absolute(0.9)), ["known", "full"]);
        // Without any bound every config is allowed.
        assert_eq!(ids(&t, AccuracyLimits::default()), ["unknown", "known", "full"]);
        // With the reference known, a relative bound excludes a config of unknown accuracy.
        let mut t = t;
        t.configs[2].expected_accuracy = Some(0.93);
        assert_eq!(ids(&t, AccuracyLimits::relative(0.5)), ["known", "full"]);
    }
}
