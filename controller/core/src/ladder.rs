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

/// A table the controller cannot steer with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LadderError {
    /// A config has neither a measured latency ratio nor a MACs ratio.
    #[error("config {0:?} has neither latency_ratio nor macs_ratio; run `dyce bench` on the bundle")]
    NoCost(String),
    /// The table has no full-model entry.
    #[error("the config table has no full-model entry")]
    NoFull,
}

/// Allowed configs, cheapest first; the last rung is the richest.
#[derive(Debug, Clone, PartialEq)]
pub struct Ladder {
    rungs: Vec<Rung>,
}

impl Ladder {
    /// The configs of `table` whose expected accuracy is at least `floor`, ordered by cost,
    /// without dominated ones (costlier and not more accurate than a cheaper one). The full
    /// model is always allowed: it is the most accurate config there is, so if it misses the
    /// floor nothing would meet it.
    pub fn new(table: &ConfigTable, floor: f64) -> Result<Self, LadderError> {
        let full = table.full().ok_or(LadderError::NoFull)?;
        let mut rungs = Vec::new();
        for c in &table.configs {
            let is_full = c.id == full.id;
            let allowed = is_full || c.expected_accuracy.is_some_and(|a| a >= floor) || floor <= 0.0;
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
        Ok(Self { rungs })
    }

    /// A ladder from rungs already ordered cheapest first (tests, simulation).
    pub fn from_rungs(rungs: Vec<Rung>) -> Self {
        assert!(!rungs.is_empty(), "a ladder needs at least one rung");
        Self { rungs }
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
        let exits = if exits {
            vec![dyce_api::ExitChoice { position: 0, exit_type: "mlp1".into(), threshold: 0.9 }]
        } else {
            vec![]
        };
        ConfigEntry {
            id: id.into(),
            exits,
            expected_accuracy: Some(acc),
            macs_ratio: Some(macs),
            latency_ratio: lat,
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
        let l = Ladder::new(&t, 0.9).unwrap();
        let ids: Vec<&str> = l.rungs().iter().map(|r| r.id.as_str()).collect();
        // Measured, "c" (0.58) is cheaper than "b" (0.6) and more accurate: "b" is dominated.
        assert_eq!(ids, ["c", "full"]);
        assert_eq!(l.rank_of("full"), Some(1));
        let all: Vec<String> = Ladder::new(&t, 0.0).unwrap().rungs().iter().map(|r| r.id.clone()).collect();
        assert_eq!(all, ["a", "c", "full"]);
        // A floor above every config leaves the full model.
        assert_eq!(Ladder::new(&t, 0.99).unwrap().len(), 1);
    }
}
