//! The live accuracy guard (`spec.accuracy.source: live`): keeps configurations whose live lower
//! bound, as the runtimes measure it with shadow checks, is under the policy's floor out of the
//! ladder, and lets them back once the bound has recovered by the hysteresis.
//!
//! A config is judged only on runtimes that report at least `minSamples` effective samples for
//! it, by the worst bound among them (one runtime seeing drifted traffic is enough). A config
//! without enough samples keeps its standing. The full model is never excluded: it is the
//! reference the bounds are computed against, so when every other config is out, the ladder is
//! the full model alone and the controller serves it.

use std::collections::{BTreeMap, BTreeSet};

use dyce_api::LiveAccuracy;

use crate::ladder::Ladder;
use crate::policy::AccuracySource;

/// A config leaving or rejoining the ladder, for logs, status and Events.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardChange {
    /// Config id.
    pub config: String,
    /// True when it was excluded, false when it came back.
    pub excluded: bool,
    /// Why, in words.
    pub message: String,
}

/// Which configs the live bounds keep out.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveGuard {
    min_samples: f64,
    hysteresis: f64,
    excluded: BTreeMap<String, String>,
}

impl LiveGuard {
    /// A guard with the policy's settings.
    pub fn new(src: &AccuracySource) -> Self {
        Self { min_samples: src.min_samples, hysteresis: src.hysteresis, excluded: BTreeMap::new() }
    }

    /// Excluded config ids with the reason.
    pub fn excluded(&self) -> &BTreeMap<String, String> {
        &self.excluded
    }

    /// Excluded ids.
    pub fn excluded_ids(&self) -> BTreeSet<String> {
        self.excluded.keys().cloned().collect()
    }

    /// Judges every rung of `ladder` but the richest on the fresh runtimes' `reports`.
    pub fn update(&mut self, ladder: &Ladder, reports: &[&LiveAccuracy]) -> Vec<GuardChange> {
        let floor = ladder.floor();
        let mut changes = Vec::new();
        for rung in &ladder.rungs()[..ladder.top()] {
            let worst = reports
                .iter()
                .filter_map(|r| r.configs.get(&rung.id))
                .filter(|c| c.effective_samples >= self.min_samples)
                .filter_map(|c| Some((c.lower_bound?, c.effective_samples)))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            let Some((bound, n)) = worst else { continue };
            let id = rung.id.clone();
            if !self.excluded.contains_key(&id) && bound < floor {
                let message = format!(
                    "live accuracy lower bound {bound:.4} under the floor {floor:.4} ({n:.0} effective samples)"
                );
                self.excluded.insert(id.clone(), message.clone());
                changes.push(GuardChange { config: id, excluded: true, message });
            } else if self.excluded.contains_key(&id) && bound >= floor + self.hysteresis {
                self.excluded.remove(&id);
                let message = format!(
                    "live accuracy lower bound {bound:.4} back above the floor {floor:.4} + hysteresis {}",
                    self.hysteresis
                );
                changes.push(GuardChange { config: id, excluded: false, message });
            }
        }
        changes
    }
}

/// The rank in `to` of the config at `rank` in `from`, both views of `base`: the same config when
/// `to` has it, else the next richer one `to` has (an excluded config gives way upwards, to
/// more accuracy, never down).
pub fn remap(base: &Ladder, from: &Ladder, to: &Ladder, rank: usize) -> usize {
    let id = &from.rung(rank.min(from.top())).id;
    let start = base.rank_of(id).unwrap_or(base.top());
    base.rungs()[start..].iter().find_map(|r| to.rank_of(&r.id)).unwrap_or(to.top())
}

#[cfg(test)]
mod tests {
    use dyce_api::{ConfigEntry, ConfigTable, LiveConfig};

    use super::*;
    use crate::ladder::AccuracyLimits;

    fn table() -> ConfigTable {
        let e = |id: &str, acc: f64, macs: f64| ConfigEntry {
            id: id.into(),
            exits: vec![],
            expected_accuracy: Some(acc),
            macs_ratio: Some(macs),
            latency_ratio: None,
            expected_disagreement: None,
        };
        ConfigTable {
            model: "m".into(),
            configs: vec![e("a", 0.91, 0.3), e("b", 0.92, 0.5), e("full", 0.94, 1.0)],
        }
    }

    fn report(bounds: &[(&str, f64, f64)]) -> LiveAccuracy {
        let configs = bounds
            .iter()
            .map(|&(id, lb, n)| {
                let c = LiveConfig {
                    samples_total: n as u64,
                    effective_samples: n,
                    disagreement: 0.0,
                    disagreement_upper: 0.0,
                    estimate: Some(lb + 0.01),
                    lower_bound: Some(lb),
                };
                (id.to_string(), c)
            })
            .collect();
        LiveAccuracy {
            shadow_rate: 0.02,
            half_life_seconds: 120.0,
            checked_total: 0,
            dropped_total: 0,
            full_accuracy: Some(0.94),
            configs,
        }
    }

    fn guard() -> LiveGuard {
        LiveGuard::new(&AccuracySource {
            source: crate::policy::AccuracyKind::Live,
            min_samples: 100.0,
            hysteresis: 0.01,
        })
    }

    #[test]
    fn excludes_under_the_floor_with_enough_samples_and_restores_with_hysteresis() {
        let ladder = Ladder::new(&table(), AccuracyLimits::absolute(0.90)).unwrap();
        assert!((ladder.floor() - 0.90).abs() < 1e-12);
        let mut g = guard();
        // Too few samples: no judgement.
        assert!(g.update(&ladder, &[&report(&[("a", 0.5, 50.0)])]).is_empty());
        // The worst runtime counts.
        let ch = g.update(
            &ladder,
            &[&report(&[("a", 0.95, 500.0)]), &report(&[("a", 0.85, 300.0), ("b", 0.93, 300.0)])],
        );
        assert_eq!(ch.len(), 1);
        assert!(ch[0].excluded && ch[0].config == "a" && ch[0].message.contains("0.8500"), "{ch:?}");
        let view = ladder.without(&g.excluded_ids());
        assert_eq!(view.rungs().iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["b", "full"]);
        // Just above the floor is not enough to come back; floor + hysteresis is.
        assert!(g.update(&ladder, &[&report(&[("a", 0.905, 500.0)])]).is_empty());
        let ch = g.update(&ladder, &[&report(&[("a", 0.911, 500.0)])]);
        assert_eq!((ch.len(), ch[0].excluded), (1, false));
        assert!(g.excluded().is_empty());
    }

    #[test]
    fn the_full_model_stays_when_everything_else_is_out() {
        let ladder = Ladder::new(&table(), AccuracyLimits::relative(0.05)).unwrap();
        let mut g = guard();
        let r = report(&[("a", 0.5, 500.0), ("b", 0.5, 500.0), ("full", 0.1, 500.0)]);
        assert_eq!(g.update(&ladder, &[&r]).len(), 2);
        let view = ladder.without(&g.excluded_ids());
        assert_eq!(view.rungs().iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["full"]);
        // The runtime ran `a` (rank 0): it goes to the next richer config left, the full model.
        assert_eq!(remap(&ladder, &ladder, &view, 0), 0);
        assert_eq!(view.rung(remap(&ladder, &ladder, &view, 0)).id, "full");
        // And back: `full` stays `full`.
        assert_eq!(ladder.rung(remap(&ladder, &view, &ladder, 0)).id, "full");
    }
}
