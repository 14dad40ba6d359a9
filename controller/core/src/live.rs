//! The live accuracy guard (`spec.accuracy.source: live`): keeps configurations whose live lower
//! bound, as the runtimes measure it with shadow checks, is under the policy's floor out of the
//! ladder, and lets them back once the bound has recovered by the hysteresis.
//!
//! A config is judged by its bounds with at least `minSamples` effective samples behind them,
//! the shadow one and, where users send true labels, the feedback one, each on every runtime;
//! the worst of them counts (one runtime seeing drifted traffic is enough; each bound holds on
//! its own, so the lowest is a bound too). A config without enough samples keeps its standing.
//! The full model is never excluded: it is the last resort, so when every other config is out,
//! the ladder is the full model alone and the controller serves it. Only feedback can show the
//! full model itself under the floor (the shadow bound is measured against it); the guard
//! then says so ([`LiveGuard::full_under_floor`]) while it serves it.
//!
//! A config excluded on feedback comes back only on feedback, but once it is not served its
//! labels come only from shadow-checked images, which may never add up to `minSamples` again:
//! it would stay out for good, and when every config is out the full model alone serves the
//! load, past its capacity. So when the excluding feedback has stayed under `minSamples` for
//! [`PROBATION_HALF_LIVES`] of the runtimes' half-lives, the config is let back on probation
//! (unless another source with enough samples still puts it under the floor): served again, it
//! gathers feedback in seconds and goes out again if it is still bad, at most once per period.

use std::collections::{BTreeMap, BTreeSet};

use dyce_api::live::BoundSource;
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
    /// The richest config, never excluded: `excluded` then says it fell under the floor (and is
    /// served anyway) or recovered.
    pub last_resort: bool,
    /// Why, in words.
    pub message: String,
}

/// Half-lives of thin feedback after which a config excluded on feedback is let back on
/// probation: by then its evidence weighs 1/16 of what it did, and a bad config costs at most a
/// few seconds of answers per period (2 min at a 30 s half-life, 8 min at the default 120 s).
pub const PROBATION_HALF_LIVES: f64 = 4.0;

/// Which configs the live bounds keep out.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveGuard {
    min_samples: f64,
    hysteresis: f64,
    excluded: BTreeMap<String, String>,
    /// Which source excluded each config: only that source, with enough samples, lets it back.
    /// Otherwise a config excluded on feedback would come back as soon as its feedback samples
    /// decayed under `minSamples` (it is no longer served, so they come only from shadowed
    /// images), be served again, and be excluded again: flapping on a config known to be bad.
    excluded_by: BTreeMap<String, BoundSource>,
    /// Since when (seconds) each config excluded on feedback has had too few feedback samples
    /// to be judged: the probation clock.
    thin_since: BTreeMap<String, f64>,
    full_under: Option<String>,
}

impl LiveGuard {
    /// A guard with the policy's settings.
    pub fn new(src: &AccuracySource) -> Self {
        Self {
            min_samples: src.min_samples,
            hysteresis: src.hysteresis,
            excluded: BTreeMap::new(),
            excluded_by: BTreeMap::new(),
            thin_since: BTreeMap::new(),
            full_under: None,
        }
    }

    /// Why even the richest config is under the floor on live data (feedback), if it is.
    pub fn full_under_floor(&self) -> Option<&str> {
        self.full_under.as_deref()
    }

    /// The worst bound with enough samples behind it among `reports` for `id`, from `only`
    /// that source when given: `(bound, effective samples, source)`.
    fn worst(
        &self,
        reports: &[&LiveAccuracy],
        id: &str,
        only: Option<BoundSource>,
    ) -> Option<(f64, f64, BoundSource)> {
        reports
            .iter()
            .filter_map(|r| r.configs.get(id))
            .flat_map(|c| c.bounds())
            .filter(|&(src, _, n)| n >= self.min_samples && only.is_none_or(|o| o == src))
            .map(|(src, b, n)| (b, n, src))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    }

    fn readmit(&mut self, id: &str) {
        self.excluded.remove(id);
        self.excluded_by.remove(id);
        self.thin_since.remove(id);
    }

    /// `id`, excluded on feedback that is now too thin to judge: lets it back once that has
    /// lasted [`PROBATION_HALF_LIVES`] of the reports' longest half-life, unless a source with
    /// enough samples still puts it under the floor (+ hysteresis).
    fn probation(
        &mut self,
        id: &str,
        reports: &[&LiveAccuracy],
        floor: f64,
        now: f64,
    ) -> Option<GuardChange> {
        let since = *self.thin_since.entry(id.to_string()).or_insert(now);
        let half_life = reports.iter().map(|r| r.half_life_seconds).fold(0.0, f64::max);
        if half_life <= 0.0 || now - since < PROBATION_HALF_LIVES * half_life {
            return None;
        }
        if self.worst(reports, id, None).is_some_and(|(b, _, _)| b < floor + self.hysteresis) {
            return None;
        }
        self.readmit(id);
        let message = format!(
            "feedback too thin to judge it for {:.0} s ({PROBATION_HALF_LIVES} half-lives of {half_life:.0} s) while it was out: back on probation",
            now - since
        );
        Some(GuardChange { config: id.to_string(), excluded: false, last_resort: false, message })
    }

    /// Excluded config ids with the reason.
    pub fn excluded(&self) -> &BTreeMap<String, String> {
        &self.excluded
    }

    /// Excluded ids.
    pub fn excluded_ids(&self) -> BTreeSet<String> {
        self.excluded.keys().cloned().collect()
    }

    /// Judges every rung of `ladder` but the richest on the fresh runtimes' `reports` at `now`
    /// (seconds on the controller's monotonic clock).
    pub fn update(&mut self, ladder: &Ladder, reports: &[&LiveAccuracy], now: f64) -> Vec<GuardChange> {
        let floor = ladder.floor();
        let mut changes = Vec::new();
        for rung in &ladder.rungs()[..ladder.top()] {
            let id = rung.id.clone();
            match self.excluded_by.get(&id).copied() {
                None => {
                    let Some((bound, n, src)) = self.worst(reports, &id, None) else { continue };
                    if bound < floor {
                        let message = format!(
                            "live accuracy lower bound {bound:.4} ({}) under the floor {floor:.4} ({n:.0} effective samples)",
                            src.as_str()
                        );
                        self.excluded.insert(id.clone(), message.clone());
                        self.excluded_by.insert(id.clone(), src);
                        changes.push(GuardChange { config: id, excluded: true, last_resort: false, message });
                    }
                }
                Some(by) => {
                    // Back only when the source that excluded it has enough samples again and
                    // says so, and no other source with enough samples disagrees.
                    let Some((own, _, _)) = self.worst(reports, &id, Some(by)) else {
                        if by == BoundSource::Feedback {
                            changes.extend(self.probation(&id, reports, floor, now));
                        }
                        continue;
                    };
                    self.thin_since.remove(&id);
                    let (bound, _, _) = self.worst(reports, &id, None).expect("own bound is among them");
                    if own >= floor + self.hysteresis && bound >= floor + self.hysteresis {
                        self.readmit(&id);
                        let message = format!(
                            "live accuracy lower bound {bound:.4} back above the floor {floor:.4} + hysteresis {}",
                            self.hysteresis
                        );
                        changes.push(GuardChange {
                            config: id,
                            excluded: false,
                            last_resort: false,
                            message,
                        });
                    }
                }
            }
        }
        // The richest config: never excluded, but named when feedback puts it under the floor.
        let top = ladder.rung(ladder.top()).id.clone();
        match (self.worst(reports, &top, None), self.full_under.is_some()) {
            (Some((b, n, _)), false) if b < floor => {
                let message = format!(
                    "even {top}, the richest config, has a live accuracy lower bound {b:.4} under the floor {floor:.4} ({n:.0} effective samples): serving it anyway"
                );
                self.full_under = Some(message.clone());
                changes.push(GuardChange { config: top, excluded: true, last_resort: true, message });
            }
            (Some((b, _, _)), true) if b >= floor + self.hysteresis => {
                self.full_under = None;
                let message = format!("live accuracy lower bound {b:.4} back above the floor {floor:.4}");
                changes.push(GuardChange { config: top, excluded: false, last_resort: true, message });
            }
            _ => {}
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
                    feedback: None,
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
            feedback: None,
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
        assert!(g.update(&ladder, &[&report(&[("a", 0.5, 50.0)])], 0.0).is_empty());
        // The worst runtime counts.
        let ch = g.update(
            &ladder,
            &[&report(&[("a", 0.95, 500.0)]), &report(&[("a", 0.85, 300.0), ("b", 0.93, 300.0)])],
            0.0,
        );
        assert_eq!(ch.len(), 1);
        assert!(ch[0].excluded && ch[0].config == "a" && ch[0].message.contains("0.8500"), "{ch:?}");
        let view = ladder.without(&g.excluded_ids());
        assert_eq!(view.rungs().iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["b", "full"]);
        // Just above the floor is not enough to come back; floor + hysteresis is.
        assert!(g.update(&ladder, &[&report(&[("a", 0.905, 500.0)])], 0.0).is_empty());
        let ch = g.update(&ladder, &[&report(&[("a", 0.911, 500.0)])], 0.0);
        assert_eq!((ch.len(), ch[0].excluded), (1, false));
        assert!(g.excluded().is_empty());
    }

    #[test]
    fn the_full_model_stays_when_everything_else_is_out() {
        let ladder = Ladder::new(&table(), AccuracyLimits::relative(0.05)).unwrap();
        let mut g = guard();
        let r = report(&[("a", 0.5, 500.0), ("b", 0.5, 500.0), ("full", 0.1, 500.0)]);
        let ch = g.update(&ladder, &[&r], 0.0);
        // Two exclusions, and the full model named as under the floor, yet kept.
        assert_eq!(ch.iter().map(|c| c.last_resort).collect::<Vec<_>>(), [false, false, true]);
        let view = ladder.without(&g.excluded_ids());
        assert_eq!(view.rungs().iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["full"]);
        // The runtime ran `a` (rank 0): it goes to the next richer config left, the full model.
        assert_eq!(remap(&ladder, &ladder, &view, 0), 0);
        assert_eq!(view.rung(remap(&ladder, &ladder, &view, 0)).id, "full");
        // And back: `full` stays `full`.
        assert_eq!(ladder.rung(remap(&ladder, &view, &ladder, 0)).id, "full");
    }

    #[test]
    fn a_config_excluded_on_feedback_stays_out_when_its_feedback_thins_out() {
        let ladder = Ladder::new(&table(), AccuracyLimits::absolute(0.90)).unwrap();
        let mut g = guard();
        // Shadow says 0.95 (the offline anchor cannot see a shift hurting the full model),
        // feedback says 0.85 on 500 samples: out.
        let with = |fb: f64, n: f64| {
            let mut r = report(&[("a", 0.95, 500.0)]);
            r.configs.get_mut("a").unwrap().feedback = Some(dyce_api::live::FeedbackAccuracy {
                samples_total: n as u64,
                effective_samples: n,
                accuracy: fb + 0.01,
                lower_bound: fb,
            });
            r
        };
        let ch = g.update(&ladder, &[&with(0.85, 500.0)], 0.0);
        assert!(ch[0].excluded && ch[0].message.contains("(feedback)"), "{ch:?}");
        // No longer served: its feedback decays under minSamples; the shadow bound alone does
        // not let it back.
        assert!(g.update(&ladder, &[&with(0.85, 40.0)], 0.0).is_empty());
        assert!(g.excluded().contains_key("a"));
        // Feedback with enough samples above floor + hysteresis does.
        let ch = g.update(&ladder, &[&with(0.92, 500.0)], 0.0);
        assert_eq!((ch.len(), ch[0].excluded), (1, false));
    }

    /// Feedback that stays too thin to judge an excluded config for four half-lives lets it back
    /// on probation, unless another source with enough samples still has it under the floor;
    /// if it is still bad, its fresh feedback takes it out again.
    #[test]
    fn thin_feedback_lets_an_excluded_config_back_on_probation_after_four_half_lives() {
        let ladder = Ladder::new(&table(), AccuracyLimits::absolute(0.90)).unwrap();
        let mut g = guard();
        let with = |shadow: f64, fb: f64, n: f64| {
            let mut r = report(&[("a", shadow, 500.0)]);
            r.configs.get_mut("a").unwrap().feedback = Some(dyce_api::live::FeedbackAccuracy {
                samples_total: n as u64,
                effective_samples: n,
                accuracy: fb + 0.01,
                lower_bound: fb,
            });
            r
        };
        assert!(g.update(&ladder, &[&with(0.95, 0.85, 500.0)], 0.0)[0].excluded);
        // Thin from t = 10 s on; the reports' half-life is 120 s, so probation at 490 s.
        assert!(g.update(&ladder, &[&with(0.95, 0.85, 40.0)], 10.0).is_empty());
        assert!(g.update(&ladder, &[&with(0.95, 0.85, 40.0)], 489.0).is_empty());
        // A shadow bound with enough samples under floor + hysteresis keeps it out even then.
        assert!(g.update(&ladder, &[&with(0.905, 0.85, 40.0)], 490.0).is_empty());
        let ch = g.update(&ladder, &[&with(0.95, 0.85, 40.0)], 490.0);
        assert_eq!((ch.len(), ch[0].excluded), (1, false), "{ch:?}");
        assert!(ch[0].message.contains("probation"), "{ch:?}");
        assert!(g.excluded().is_empty());
        // Served again, it gathers feedback fast: still bad, out again, and the clock restarts.
        assert!(g.update(&ladder, &[&with(0.95, 0.85, 500.0)], 495.0)[0].excluded);
        assert!(g.update(&ladder, &[&with(0.95, 0.85, 40.0)], 500.0).is_empty());
        assert!(g.update(&ladder, &[&with(0.95, 0.85, 40.0)], 979.0).is_empty());
        assert_eq!(g.update(&ladder, &[&with(0.95, 0.85, 40.0)], 980.0).len(), 1);
    }

    #[test]
    fn feedback_bounds_count_and_can_put_even_the_full_model_under_the_floor() {
        let ladder = Ladder::new(&table(), AccuracyLimits::absolute(0.90)).unwrap();
        let mut g = guard();
        let with_feedback = |shadow: f64, fb: f64, n: f64| {
            let mut r = report(&[("a", shadow, 500.0), ("b", shadow, 500.0), ("full", shadow, 500.0)]);
            for c in r.configs.values_mut() {
                c.feedback = Some(dyce_api::live::FeedbackAccuracy {
                    samples_total: n as u64,
                    effective_samples: n,
                    accuracy: fb + 0.02,
                    lower_bound: fb,
                });
            }
            r
        };
        // Shadow bounds fine, feedback too few samples: nothing happens.
        assert!(g.update(&ladder, &[&with_feedback(0.93, 0.5, 20.0)], 0.0).is_empty());
        // Enough feedback: it is the worst bound, every cheap config goes and the full model is
        // named as under the floor too, but stays.
        let ch = g.update(&ladder, &[&with_feedback(0.93, 0.80, 200.0)], 0.0);
        let got: Vec<(&str, bool, bool)> =
            ch.iter().map(|c| (c.config.as_str(), c.excluded, c.last_resort)).collect();
        assert_eq!(got, [("a", true, false), ("b", true, false), ("full", true, true)]);
        assert!(g.full_under_floor().unwrap().contains("0.8000"), "{:?}", g.full_under_floor());
        assert_eq!(ladder.without(&g.excluded_ids()).rungs().len(), 1);
        // Steady: no repeated changes; recovered: everything comes back.
        assert!(g.update(&ladder, &[&with_feedback(0.93, 0.80, 200.0)], 0.0).is_empty());
        let ch = g.update(&ladder, &[&with_feedback(0.93, 0.95, 200.0)], 0.0);
        assert_eq!(ch.iter().filter(|c| !c.excluded).count(), 3);
        assert!(g.full_under_floor().is_none() && g.excluded().is_empty());
    }
}
