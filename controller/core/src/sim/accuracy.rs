//! Live accuracy in the simulator. Each simulated runtime shadow-checks a share of the images it
//! answers and gets true labels back for a share, drawn from a truth model: every config's real
//! accuracy and its disagreement with the full model, before and after an optional drift. It
//! reports the `LiveAccuracy` a real runtime's `/v1/load` carries, built with the same
//! `dyce-api` estimators, so the control step's live guard runs unchanged.
//!
//! The truth before the drift is the table itself (`expected_accuracy`, `expected_disagreement`).
//! A drift sets some configs' real accuracy from `at` on. A config that loses more than the full
//! model disagrees with it more by the difference, which is all shadow checks can see: the
//! full model's own loss shows only in feedback, as on a real runtime. Shadow and feedback draws
//! are independent per config (a real shadow pass answers for every config at once), which the
//! guard does not depend on.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use dyce_api::live::{Anchor, Decayed, FeedbackAccuracy, FeedbackSummary, LiveConfig};
use dyce_api::{ConfigTable, LiveAccuracy, FULL_CONFIG_ID};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::policy::AccuracySource;

/// A drift that cannot be simulated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriftError {
    /// Not `AT:ID=ACC[,ID=ACC...]`.
    #[error("drift {0:?}: expected AT:ID=ACCURACY[,ID=ACCURACY...], e.g. 60:c00=0.85,full=0.91")]
    Syntax(String),
    /// A config the table does not have.
    #[error("drift: the config table has no config {0:?}")]
    UnknownConfig(String),
    /// An accuracy outside [0, 1] or a negative time.
    #[error("drift: {0} must be {1}")]
    Range(String, &'static str),
}

/// From `at` seconds on, the listed configs answer with this real accuracy.
#[derive(Debug, Clone, PartialEq)]
pub struct SimDrift {
    /// Seconds into the run.
    pub at: f64,
    /// Real accuracy after the drift, by config id; configs not listed keep theirs.
    pub accuracy: BTreeMap<String, f64>,
}

impl FromStr for SimDrift {
    type Err = DriftError;

    fn from_str(s: &str) -> Result<Self, DriftError> {
        let syntax = || DriftError::Syntax(s.to_string());
        let (at, list) = s.split_once(':').ok_or_else(syntax)?;
        let at: f64 = at.trim().parse().map_err(|_| syntax())?;
        if !(at.is_finite() && at >= 0.0) {
            return Err(DriftError::Range(format!("the drift time {at}"), "a time ≥ 0 s"));
        }
        let mut accuracy = BTreeMap::new();
        for pair in list.split(',') {
            let (id, acc) = pair.split_once('=').ok_or_else(syntax)?;
            let acc: f64 = acc.trim().parse().map_err(|_| syntax())?;
            if !(0.0..=1.0).contains(&acc) {
                return Err(DriftError::Range(format!("the accuracy of {}", id.trim()), "in [0, 1]"));
            }
            accuracy.insert(id.trim().to_string(), acc);
        }
        Ok(Self { at, accuracy })
    }
}

/// Live accuracy of the simulated runtimes.
#[derive(Debug, Clone, PartialEq)]
pub struct SimLive {
    /// The policy's `spec.accuracy` when its source is `live` (the guard runs); `None`: offline,
    /// the runtimes still measure and report.
    pub source: Option<AccuracySource>,
    /// Share of answered images shadow-checked (`--shadow-rate`).
    pub shadow_rate: f64,
    /// Share of answered images whose true label comes back (`POST /v1/feedback`).
    pub feedback: f64,
    /// Half-life of the decayed counts, seconds.
    pub half_life: f64,
    /// The bundle's table: the anchors of the estimates, and the truth before a drift.
    pub table: ConfigTable,
    /// The traffic's shift, if any.
    pub drift: Option<SimDrift>,
}

impl SimLive {
    /// Refuses a drift naming a config the table does not have.
    pub fn validate(&self) -> Result<(), DriftError> {
        let unknown =
            self.drift.iter().flat_map(|d| d.accuracy.keys()).find(|id| self.table.get(id).is_none());
        match unknown {
            Some(id) => Err(DriftError::UnknownConfig(id.clone())),
            None => Ok(()),
        }
    }

    /// The truth model (a drift's unknown ids match nothing: [`SimLive::validate`] refuses them).
    pub(super) fn truth(&self) -> Truth {
        let acc_full = self.table.get(FULL_CONFIG_ID).and_then(|e| e.expected_accuracy);
        let lost = |id: &str, before: f64| {
            let after = self.drift.as_ref().and_then(|d| d.accuracy.get(id)).copied().unwrap_or(before);
            before - after
        };
        let full_lost = acc_full.map_or(0.0, |a| lost(FULL_CONFIG_ID, a));
        let configs = self
            .table
            .configs
            .iter()
            .map(|e| {
                let acc = e.expected_accuracy.unwrap_or(1.0);
                let d = e.expected_disagreement.unwrap_or(0.0);
                let loss = lost(&e.id, acc);
                let extra = if e.id == FULL_CONFIG_ID { 0.0 } else { (loss - full_lost).max(0.0) };
                TruthConfig {
                    id: e.id.clone(),
                    anchor: Anchor::of(e, acc_full),
                    before: (acc, d),
                    after: ((acc - loss).clamp(0.0, 1.0), (d + extra).clamp(0.0, 1.0)),
                }
            })
            .collect();
        let at = self.drift.as_ref().map_or(f64::INFINITY, |d| d.at);
        Truth {
            configs,
            at,
            acc_full,
            shadow_rate: self.shadow_rate,
            feedback: self.feedback,
            half_life: self.half_life,
        }
    }
}

pub(super) struct TruthConfig {
    id: String,
    anchor: Anchor,
    /// (real accuracy, disagreement with the full model) before the drift and after.
    before: (f64, f64),
    after: (f64, f64),
}

/// Every config's real accuracy and disagreement over time.
pub(super) struct Truth {
    configs: Vec<TruthConfig>,
    at: f64,
    acc_full: Option<f64>,
    /// [`SimLive`]'s sampling settings.
    shadow_rate: f64,
    feedback: f64,
    half_life: f64,
}

impl Truth {
    fn state(&self, i: usize, t: f64) -> (f64, f64) {
        let c = &self.configs[i];
        if t >= self.at {
            c.after
        } else {
            c.before
        }
    }

    /// The real accuracy of config `id` at `t` (NaN for an id the table lacks).
    pub fn accuracy(&self, id: &str, t: f64) -> f64 {
        self.configs.iter().position(|c| c.id == id).map_or(f64::NAN, |i| self.state(i, t).0)
    }
}

#[derive(Default, Clone)]
struct Counts {
    decayed: Decayed,
    total: u64,
}

impl Counts {
    fn add(&mut self, t: f64, half_life: f64, hit: bool) {
        self.decayed.add(t, half_life, hit);
        self.total += 1;
    }

    fn at(&self, now: f64, half_life: f64) -> Decayed {
        let mut d = self.decayed;
        d.decay(now, half_life);
        d
    }
}

/// One runtime's shadow and feedback counts.
pub(super) struct LiveTally {
    truth: Arc<Truth>,
    /// Its own stream, so live accuracy never changes arrivals or routing.
    rng: StdRng,
    /// Per config: shadow samples (hit = disagrees) and feedback samples (hit = wrong).
    shadow: Vec<Counts>,
    wrong: Vec<Counts>,
    checked: u64,
    accepted: u64,
    shadowed: u64,
}

impl LiveTally {
    pub fn new(truth: Arc<Truth>, seed: u64) -> Self {
        let n = truth.configs.len();
        Self {
            truth,
            rng: StdRng::seed_from_u64(seed ^ 0x6c69_7665),
            shadow: vec![Counts::default(); n],
            wrong: vec![Counts::default(); n],
            checked: 0,
            accepted: 0,
            shadowed: 0,
        }
    }

    pub fn truth(&self) -> &Truth {
        &self.truth
    }

    /// One image answered at `t` by config `served`: maybe shadow-checked, maybe labelled.
    pub fn answered(&mut self, t: f64, served: &str) {
        let (rate, feedback, hl) = (self.truth.shadow_rate, self.truth.feedback, self.truth.half_life);
        let shadowed = self.rng.random::<f64>() < rate;
        let labelled = self.rng.random::<f64>() < feedback;
        let n = self.truth.configs.len();
        if shadowed {
            self.checked += 1;
            for i in 0..n {
                let (_, d) = self.truth.state(i, t);
                let hit = self.rng.random::<f64>() < d;
                self.shadow[i].add(t, hl, hit);
            }
        }
        if labelled {
            self.accepted += 1;
            self.shadowed += u64::from(shadowed);
            // A labelled image tells every config's correctness when a shadow pass gave every
            // config's answer; otherwise only the served config's.
            for i in 0..n {
                if shadowed || self.truth.configs[i].id == served {
                    let (acc, _) = self.truth.state(i, t);
                    let hit = self.rng.random::<f64>() >= acc;
                    self.wrong[i].add(t, hl, hit);
                }
            }
        }
    }

    /// What the runtime's `/v1/load` would carry as `live_accuracy` at `now`.
    pub fn report(&self, now: f64) -> LiveAccuracy {
        let s = &*self.truth;
        let hl = s.half_life;
        let mut configs = BTreeMap::new();
        for (i, c) in self.truth.configs.iter().enumerate() {
            let (sh, fb) = (&self.shadow[i], &self.wrong[i]);
            if sh.total == 0 && fb.total == 0 {
                continue;
            }
            let mut live = LiveConfig::from_decayed(&sh.at(now, hl), sh.total, c.anchor);
            live.feedback = (fb.total > 0).then(|| FeedbackAccuracy::from_decayed(&fb.at(now, hl), fb.total));
            configs.insert(c.id.clone(), live);
        }
        LiveAccuracy {
            shadow_rate: s.shadow_rate,
            half_life_seconds: hl,
            checked_total: self.checked,
            dropped_total: 0,
            full_accuracy: self.truth.acc_full,
            configs,
            feedback: (s.feedback > 0.0).then_some(FeedbackSummary {
                capacity: 0,
                kept: 0,
                accepted_total: self.accepted,
                shadowed_total: self.shadowed,
            }),
        }
    }
}
