//! The control step, pure: what every driver of the law runs once per tick. The live loop
//! (`dyce-controller`'s `PolicyLoop`, local and Kubernetes mode) and both simulators
//! ([`crate::sim`]) call [`ControlStep::step`] with the runtimes' latest answers, the law's
//! observation (from whichever [`crate::source::SignalSource`]) and the time; it seeds the law's
//! state from what the runtimes run, decides, and says which runtimes to push the decided config
//! to, the decided change and drift (a runtime that restarted on its default config) alike.

use std::collections::BTreeMap;

use dyce_api::ConfigTable;
use serde::Serialize;

use crate::ladder::{Ladder, LadderError};
use crate::law::{Decision, Law, LawParams, LawState, Observation};
use crate::live::{remap, GuardChange, LiveGuard};
use crate::policy::{AccuracySource, SloPolicySpec};
use crate::signals::{RuntimeCounts, RuntimeTrack};

/// What a step needs besides the observations: the law over the allowed configs, and how to
/// read the runtimes' reports.
#[derive(Debug, Clone)]
pub struct Steering {
    /// The law and its ladder.
    pub law: Law,
    /// Cost ratio of every config a runtime may report a measurement for (measured latency ratio,
    /// else MACs ratio), to turn its cost into the full model's.
    pub ratios: BTreeMap<String, f64>,
    /// Id of the full model.
    pub full_id: String,
    /// The objective's latency quantile.
    pub quantile: f64,
    /// Seconds after which a runtime's last answer is stale.
    pub stale_after: f64,
    /// `spec.accuracy` when its source is `live`: the floor is then also held on the runtimes'
    /// live bounds.
    pub live: Option<AccuracySource>,
}

impl Steering {
    /// For `spec` over the runtimes' configuration table.
    pub fn new(spec: &SloPolicySpec, table: &ConfigTable) -> Result<Self, LadderError> {
        let ladder = Ladder::new(table, spec.accuracy_limits())?;
        Ok(Self {
            law: Law::new(LawParams::from_spec(spec), ladder),
            ratios: ladder_ratios(table),
            full_id: table.full().map(|c| c.id.clone()).unwrap_or_default(),
            quantile: spec.objective.latency.quantile,
            stale_after: spec.control.stale_after().secs(),
            live: spec.accuracy.clone().filter(|a| a.is_live()),
        })
    }

    /// For a law whose ladder is all the runtimes know (the simulators): the rungs' cost ratios,
    /// the richest rung as the full model.
    pub fn for_law(law: Law, quantile: f64, stale_after: f64) -> Self {
        let ladder = &law.ladder;
        let ratios = ladder.rungs().iter().map(|r| (r.id.clone(), r.cost_ratio)).collect();
        let full_id = ladder.rung(ladder.top()).id.clone();
        Self { law, ratios, full_id, quantile, stale_after, live: None }
    }
}

/// Cost ratio of every config in a table (measured latency ratio, else MACs ratio).
pub fn ladder_ratios(table: &ConfigTable) -> BTreeMap<String, f64> {
    table
        .configs
        .iter()
        .filter_map(|c| {
            let r = c.latency_ratio.or(c.macs_ratio).or(c.exits.is_empty().then_some(1.0))?;
            Some((c.id.clone(), r))
        })
        .collect()
}

/// One decision as the status and logs show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRecord {
    /// Seconds since the controller started.
    pub at: f64,
    /// Decided config id.
    pub config: String,
    /// Its rank (0 = cheapest allowed).
    pub rank: usize,
    /// degrade, restore or hold.
    pub direction: &'static str,
    /// Why, in words.
    pub reason: String,
    /// Saturated.
    pub saturated: bool,
    /// Replicas needed.
    pub desired_replicas: Option<usize>,
    /// Predicted utilisation of the decided config.
    pub utilization: Option<f64>,
    /// Observed latency quantile, seconds.
    pub observed_latency: Option<f64>,
    /// Offered images per second over the fresh runtimes.
    pub offered_per_second: Option<f64>,
}

/// A runtime that should switch to the decided config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    /// Its place in the tracks the step was given.
    pub index: usize,
    /// Admin URL.
    pub url: String,
    /// The generation it reported; the push writes the next one, so a write based on an old
    /// view (another controller, a restart in between) is refused with 409 instead of applied.
    pub generation: u64,
}

/// What one step decided, and what to do about it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    /// The law's decision.
    pub decision: Decision,
    /// The decision as status and logs show it.
    pub record: DecisionRecord,
    /// Runtimes by state.
    pub counts: RuntimeCounts,
    /// Fresh runtimes not on the decided config, in track order.
    pub pushes: Vec<PushTarget>,
    /// Configs the live accuracy guard excluded or let back at this step.
    pub accuracy: Vec<GuardChange>,
}

/// The steering of one policy and the law's memory between ticks.
#[derive(Debug, Clone)]
pub struct ControlStep {
    steering: Steering,
    state: Option<LawState>,
    /// The ladder the policy allows offline; the law runs on it minus what the guard excludes.
    base: Ladder,
    guard: Option<LiveGuard>,
}

impl ControlStep {
    /// A policy's step; the law's state is seeded by the first step.
    pub fn new(steering: Steering) -> Self {
        let base = steering.law.ladder.clone();
        let guard = steering.live.as_ref().map(LiveGuard::new);
        Self { steering, state: None, base, guard }
    }

    /// Why even the richest config is under the floor on live data (feedback), if it is.
    pub fn full_under_floor(&self) -> Option<&str> {
        self.guard.as_ref().and_then(LiveGuard::full_under_floor)
    }

    /// Configs the live accuracy guard keeps out, with the reason (empty when offline).
    pub fn excluded(&self) -> BTreeMap<String, String> {
        self.guard.as_ref().map(|g| g.excluded().clone()).unwrap_or_default()
    }

    /// Runs the guard on the fresh runtimes' live reports; on a change, the law's ladder becomes
    /// the base minus the excluded configs, and the current rank follows its config (upwards
    /// when that config is excluded).
    fn guard(&mut self, tracks: &[RuntimeTrack], now: f64) -> Vec<GuardChange> {
        let Some(guard) = self.guard.as_mut() else { return vec![] };
        let stale = self.steering.stale_after;
        let reports: Vec<_> = tracks
            .iter()
            .filter(|t| t.is_fresh(now, stale))
            .filter_map(|t| t.last.as_ref()?.1.live_accuracy.as_ref())
            .collect();
        let changes = guard.update(&self.base, &reports, now);
        if !changes.is_empty() {
            let view = self.base.without(&guard.excluded_ids());
            if let Some(state) = self.state.as_mut() {
                state.rank = remap(&self.base, &self.steering.law.ladder, &view, state.rank);
            }
            self.steering.law.ladder = view;
        }
        changes
    }

    /// What the step steers by.
    pub fn steering(&self) -> &Steering {
        &self.steering
    }

    /// One tick at `now` (seconds on the driver's monotonic clock): `tracks` are the runtimes'
    /// latest answers, `observation` the law's signals.
    pub fn step(&mut self, tracks: &[RuntimeTrack], observation: &Observation, now: f64) -> StepOutcome {
        let accuracy = self.guard(tracks, now);
        let st = &self.steering;
        let ladder = &st.law.ladder;
        let state = self.state.get_or_insert_with(|| {
            // Start from what the runtimes run, so a restarted controller does not jump.
            let active = tracks.iter().find_map(|t| t.last.as_ref().map(|(_, r)| r.active.id.clone()));
            let rank = active.and_then(|id| ladder.rank_of(&id)).unwrap_or(ladder.top());
            LawState::new(rank, now)
        });
        let decision = st.law.decide(state, observation, now);
        let config = ladder.rung(decision.rank).id.clone();
        let signals = match observation {
            Observation::Fresh(s) => Some(s),
            Observation::Missing => None,
        };
        let record = DecisionRecord {
            at: now,
            config: config.clone(),
            rank: decision.rank,
            direction: decision.direction.as_str(),
            // A config excluded or let back by the live guard is why the ladder moved: say so.
            reason: if accuracy.is_empty() {
                decision.reason.to_string()
            } else {
                let why: Vec<String> = accuracy
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {}: {}",
                            c.config,
                            match (c.last_resort, c.excluded) {
                                (false, true) => "excluded",
                                (false, false) => "back",
                                (true, true) => "under the floor, served anyway",
                                (true, false) => "back above the floor",
                            },
                            c.message
                        )
                    })
                    .collect();
                format!("{}; {}", why.join("; "), decision.reason)
            },
            saturated: decision.saturated,
            desired_replicas: decision.desired_replicas,
            utilization: decision.utilization,
            observed_latency: signals.and_then(|s| s.latency),
            offered_per_second: signals.map(|s| s.offered_per_second),
        };
        let pushes = tracks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_fresh(now, st.stale_after))
            .filter_map(|(index, t)| t.last.as_ref().map(|(_, r)| (index, t, r)))
            .filter(|(_, _, r)| r.active.id != config)
            .map(|(index, t, r)| PushTarget { index, url: t.url.clone(), generation: r.active.generation })
            .collect();
        let counts = RuntimeCounts::of(tracks, st.stale_after, now);
        StepOutcome { decision, record, counts, pushes, accuracy }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use dyce_api::{ActiveConfig, LoadReport};

    use super::*;
    use crate::ladder::Rung;
    use crate::law::Direction;
    use crate::policy::MissingSignals;

    fn steering() -> Steering {
        let rungs = ["cheap", "full"]
            .iter()
            .zip([0.5, 1.0])
            .map(|(id, cost_ratio)| Rung { id: id.to_string(), expected_accuracy: None, cost_ratio })
            .collect();
        let params = LawParams {
            threshold: 0.05,
            max_queue: None,
            target_utilization: 0.8,
            headroom: 0.7,
            restore_after: 5.0,
            restore_step: 1.0,
            on_missing: MissingSignals::Hold,
            drain_seconds: 0.5,
        };
        Steering::for_law(Law::new(params, Ladder::from_rungs(rungs)), 0.99, 1.5)
    }

    fn answered(url: &str, at: f64, active: &str) -> RuntimeTrack {
        let mut t = RuntimeTrack::new(url);
        t.observe(
            at,
            LoadReport {
                window_seconds: 2.0,
                arrivals_per_second: 0.0,
                completions_per_second: 0.0,
                shed_per_second: 0.0,
                queue_depth: 0,
                in_flight: 0,
                latency_seconds: None,
                mean_batch_size: 0.0,
                active: ActiveConfig { id: active.into(), generation: 7 },
                compute_seconds_per_request: BTreeMap::new(),
                saturated_seconds_per_request: BTreeMap::new(),
                arrivals_total: 0,
                shed_total: 0,
                completions_total: 0,
                max_batch_size: 8,
                live_accuracy: None,
            },
        );
        t
    }

    #[test]
    fn seeds_from_the_runtimes_and_pushes_to_drifted_fresh_ones_only() {
        let mut step = ControlStep::new(steering());
        // Both fresh runtimes run "cheap": the state starts there, so nothing jumps. The stale
        // one is left alone.
        let tracks = [answered("a", 10.0, "cheap"), answered("b", 10.0, "full"), answered("c", 1.0, "full")];
        let out = step.step(&tracks, &Observation::Missing, 10.2);
        assert_eq!((out.decision.rank, out.decision.direction), (0, Direction::Hold));
        assert_eq!(out.record.config, "cheap");
        assert_eq!(out.pushes, vec![PushTarget { index: 1, url: "b".into(), generation: 7 }]);
        assert_eq!(out.counts, RuntimeCounts { fresh: 2, stale: 1, unknown: 0 });
    }
}
