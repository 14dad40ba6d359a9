//! Live accuracy: what shadow checks (and user feedback) say about each configuration's accuracy
//! on the traffic now, with a lower bound that accounts for how few samples there are. Pure:
//! times come in as arguments, so the runtime feeds its clock and tests feed numbers.
//!
//! The bound (docs/policy.md, "Live accuracy"): an early answer that agrees with the full model
//! is right whenever the full model is right, so `acc(c) ≥ acc_full − P(c disagrees with full)`.
//! `acc_full` is the full model's `expected_accuracy` from `configs.json` (itself a one-sided 95%
//! lower bound from calibration and test); `P(disagree)` gets a one-sided 95% Wilson upper bound over the
//! decayed, effective number of shadow samples. The two 95% statements together hold with at
//! least 90% (union bound).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One-sided 95% normal quantile.
pub const Z95: f64 = 1.6448536269514722;

/// Default half-life of the decayed counts, in seconds: a shift in the traffic shows in the
/// estimate within a few minutes, while a steady stream still gives a few hundred samples.
pub const DEFAULT_HALF_LIFE: f64 = 120.0;

/// Wilson score upper bound of a proportion `p` observed over `n` (possibly fractional)
/// samples; 1 without samples.
pub fn wilson_upper(p: f64, n: f64, z: f64) -> f64 {
    wilson(p, n, z, 1.0)
}

/// Wilson score lower bound of a proportion; 0 without samples.
pub fn wilson_lower(p: f64, n: f64, z: f64) -> f64 {
    wilson(p, n, z, -1.0)
}

fn wilson(p: f64, n: f64, z: f64, sign: f64) -> f64 {
    // NaN counts as no samples too.
    if n.is_nan() || n <= 0.0 {
        return if sign > 0.0 { 1.0 } else { 0.0 };
    }
    let p = p.clamp(0.0, 1.0);
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre + sign * spread) / (1.0 + z2 / n)).clamp(0.0, 1.0)
}

/// A proportion over exponentially decayed samples: each sample's weight halves every
/// `half_life` seconds. Keeps Σw and Σw² so that the effective sample size is Kish's
/// `(Σw)² / Σw²`: never more than the samples really seen, and about `half_life / ln 2` seconds'
/// worth of them on a steady stream. Nothing decays without a clock reading, so a configuration
/// that is not served keeps its last numbers until new samples come.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Decayed {
    w: f64,
    w2: f64,
    hits: f64,
    at: f64,
}

impl Decayed {
    /// Ages the counts to time `now` (seconds; earlier times are taken as `now`).
    pub fn decay(&mut self, now: f64, half_life: f64) {
        let dt = (now - self.at).max(0.0);
        if dt > 0.0 && half_life > 0.0 {
            let f = 0.5f64.powf(dt / half_life);
            self.w *= f;
            self.w2 *= f * f;
            self.hits *= f;
        }
        self.at = self.at.max(now);
    }

    /// Adds one sample at `now`; `hit` is the event counted (a disagreement, a wrong answer).
    pub fn add(&mut self, now: f64, half_life: f64, hit: bool) {
        self.decay(now, half_life);
        self.w += 1.0;
        self.w2 += 1.0;
        if hit {
            self.hits += 1.0;
        }
    }

    /// Effective number of samples.
    pub fn effective(&self) -> f64 {
        if self.w2 > 0.0 {
            self.w * self.w / self.w2
        } else {
            0.0
        }
    }

    /// Share of hits, 0 without samples.
    pub fn rate(&self) -> f64 {
        if self.w > 0.0 {
            self.hits / self.w
        } else {
            0.0
        }
    }

    /// One-sided 95% upper bound of the share of hits.
    pub fn upper(&self) -> f64 {
        wilson_upper(self.rate(), self.effective(), Z95)
    }
}

/// One configuration's live accuracy (`GET /v1/accuracy`, `GET /v1/load`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    /// Shadow-checked images since start whose answer under this config was compared with the
    /// full model's.
    pub samples_total: u64,
    /// Effective number of samples in the decayed window (what the bound is computed from).
    pub effective_samples: f64,
    /// Share of decayed samples where this config's answer differs from the full model's.
    pub disagreement: f64,
    /// One-sided 95% upper bound of that share.
    pub disagreement_upper: f64,
    /// `acc_full − disagreement`; `None` when the table has no full-model accuracy.
    pub estimate: Option<f64>,
    /// `acc_full − disagreement_upper`: at least this accurate with ≥ 90% confidence.
    pub lower_bound: Option<f64>,
    /// Real correctness from user feedback (`POST /v1/feedback`), when any came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<FeedbackAccuracy>,
}

/// Where a live bound comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BoundSource {
    /// Shadow checks: agreement with the full model, anchored on the offline table.
    Shadow,
    /// User feedback: answers against true labels.
    Feedback,
}

impl BoundSource {
    /// The name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            BoundSource::Shadow => "shadow",
            BoundSource::Feedback => "feedback",
        }
    }
}

/// A configuration's accuracy from true labels: its answers to fed-back images, those it served
/// and, for images a shadow check also ran, the answer it would have given. Unlike the shadow
/// estimate it needs no offline anchor, so it shows a shift that hurts the full model too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackAccuracy {
    /// Fed-back images counted for this configuration since start.
    pub samples_total: u64,
    /// Effective number of samples in the decayed window.
    pub effective_samples: f64,
    /// Share of those answered right.
    pub accuracy: f64,
    /// One-sided 95% Wilson lower bound of that share.
    pub lower_bound: f64,
}

impl FeedbackAccuracy {
    /// The numbers of decayed counts whose hits are wrong answers.
    pub fn from_decayed(wrong: &Decayed, samples_total: u64) -> Self {
        let accuracy = 1.0 - wrong.rate();
        Self {
            samples_total,
            effective_samples: wrong.effective(),
            accuracy,
            lower_bound: wilson_lower(accuracy, wrong.effective(), Z95),
        }
    }
}

impl LiveConfig {
    /// The bounds a guard may act on, each with its source and effective sample count: the
    /// shadow one (when the table anchors it) and the feedback one (when any came). Each holds
    /// on its own, so their minimum is a bound too.
    pub fn bounds(&self) -> impl Iterator<Item = (BoundSource, f64, f64)> + '_ {
        let shadow = self
            .lower_bound
            .filter(|_| self.samples_total > 0)
            .map(|b| (BoundSource::Shadow, b, self.effective_samples));
        let feedback =
            self.feedback.as_ref().map(|f| (BoundSource::Feedback, f.lower_bound, f.effective_samples));
        shadow.into_iter().chain(feedback)
    }

    /// The numbers of a decayed disagreement share. With the configuration's own offline
    /// anchor (`expected_accuracy` and calibration disagreement) only disagreement beyond the
    /// calibration share is charged: `acc − max(0, d − d_cal)`. Without it every disagreement is
    /// charged against the full model's accuracy: `acc_full − d`.
    pub fn from_decayed(d: &Decayed, samples_total: u64, anchor: Anchor) -> Self {
        let (disagreement, upper) = (d.rate(), d.upper());
        let at = |share: f64| match anchor {
            Anchor::Config { accuracy, disagreement } => Some(accuracy - (share - disagreement).max(0.0)),
            Anchor::Full(acc_full) => acc_full.map(|a| a - share),
        };
        Self {
            samples_total,
            effective_samples: d.effective(),
            disagreement,
            disagreement_upper: upper,
            estimate: at(disagreement).map(|a| a.clamp(0.0, 1.0)),
            lower_bound: at(upper).map(|a| a.clamp(0.0, 1.0)),
            feedback: None,
        }
    }
}

/// What a configuration's live accuracy is measured from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Anchor {
    /// Its own offline numbers from `configs.json`.
    Config {
        /// `expected_accuracy` (a lower bound on the harder of the calibration and test splits).
        accuracy: f64,
        /// `expected_disagreement` with the full model on that split.
        disagreement: f64,
    },
    /// Only the full model's `expected_accuracy` (a table from before `expected_disagreement`).
    Full(Option<f64>),
}

impl Anchor {
    /// The anchor of `entry` in a table whose full model is `acc_full` accurate.
    pub fn of(entry: &crate::ConfigEntry, acc_full: Option<f64>) -> Self {
        match (entry.expected_accuracy, entry.expected_disagreement) {
            (Some(accuracy), Some(disagreement)) => Anchor::Config { accuracy, disagreement },
            _ => Anchor::Full(acc_full),
        }
    }
}

/// The runtime's live accuracy report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiveAccuracy {
    /// Share of answered images shadow-checked (`--shadow-rate`).
    pub shadow_rate: f64,
    /// Half-life of the decayed counts, seconds (`--shadow-half-life`).
    pub half_life_seconds: f64,
    /// Images run through the full model by shadow checks since start.
    pub checked_total: u64,
    /// Sampled images dropped because the shadow queue was full (the model thread was busy).
    pub dropped_total: u64,
    /// The full model's accuracy the bounds start from (`expected_accuracy` of `full`).
    pub full_accuracy: Option<f64>,
    /// Per configuration id, every configuration of the table once it has samples.
    pub configs: BTreeMap<String, LiveConfig>,
    /// User feedback (`POST /v1/feedback`); `None` when it is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<FeedbackSummary>,
}

/// The feedback store's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackSummary {
    /// Most recent answers kept for feedback (`--feedback-capacity`).
    pub capacity: usize,
    /// Answers kept now.
    pub kept: usize,
    /// Fed-back images accepted since start.
    pub accepted_total: u64,
    /// Of those, the ones a shadow check also ran on (every configuration's answer is known).
    pub shadowed_total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_known_values() {
        // 0 of 100 at 95% one-sided: the "rule of three"-like upper bound, 2.63%.
        assert!((wilson_upper(0.0, 100.0, Z95) - 0.02634).abs() < 1e-4);
        // 10 of 100: [0.0607, 0.1604] at one-sided 95% each (z = 1.645).
        assert!((wilson_upper(0.1, 100.0, Z95) - 0.16036).abs() < 1e-4);
        assert!((wilson_lower(0.1, 100.0, Z95) - 0.06072).abs() < 1e-4);
        assert_eq!(wilson_upper(0.5, 0.0, Z95), 1.0);
        assert_eq!(wilson_lower(0.5, 0.0, Z95), 0.0);
        // More samples, tighter bound.
        assert!(wilson_upper(0.1, 1000.0, Z95) < wilson_upper(0.1, 100.0, Z95));
    }

    #[test]
    fn decayed_counts_halve_and_keep_an_honest_sample_size() {
        let mut d = Decayed::default();
        for _ in 0..100 {
            d.add(0.0, 10.0, false);
        }
        assert!((d.effective() - 100.0).abs() < 1e-9);
        d.decay(10.0, 10.0);
        // Equal weights: the effective size is unchanged by a common factor; the rate too.
        assert!((d.effective() - 100.0).abs() < 1e-9);
        // New samples weigh twice the old ones: effective size below the count.
        for _ in 0..100 {
            d.add(10.0, 10.0, true);
        }
        assert!((d.rate() - 2.0 / 3.0).abs() < 1e-9);
        let n = d.effective();
        assert!(n < 200.0 && n > 100.0, "{n}");
        // A long time later only the recent samples count: the rate follows the traffic.
        for _ in 0..50 {
            d.add(200.0, 10.0, false);
        }
        assert!(d.rate() < 0.01, "{}", d.rate());
    }

    #[test]
    fn a_config_that_disagrees_gets_a_bound_under_its_estimate() {
        let mut d = Decayed::default();
        for i in 0..400 {
            d.add(0.0, 120.0, i % 10 == 0);
        }
        let c = LiveConfig::from_decayed(&d, 400, Anchor::Full(Some(0.94)));
        let (est, lb) = (c.estimate.unwrap(), c.lower_bound.unwrap());
        assert!((est - 0.84).abs() < 1e-9);
        assert!(lb < est && lb > 0.80, "{lb}");
        assert_eq!(
            LiveConfig::from_decayed(&Decayed::default(), 0, Anchor::Full(Some(0.94))).lower_bound,
            Some(0.0)
        );
        assert_eq!(LiveConfig::from_decayed(&d, 400, Anchor::Full(None)).estimate, None);
        // Anchored on the configuration: disagreement at its calibration share costs nothing,
        // beyond it every point is charged.
        let own = Anchor::Config { accuracy: 0.91, disagreement: c.disagreement };
        let at_cal = LiveConfig::from_decayed(&d, 400, own);
        assert!((at_cal.estimate.unwrap() - 0.91).abs() < 1e-12);
        let lower = at_cal.lower_bound.unwrap();
        assert!((lower - (0.91 - (c.disagreement_upper - c.disagreement))).abs() < 1e-12, "{lower}");
        let low_cal = Anchor::Config { accuracy: 0.91, disagreement: 0.0 };
        let drifted = LiveConfig::from_decayed(&d, 400, low_cal);
        assert!((drifted.estimate.unwrap() - (0.91 - c.disagreement)).abs() < 1e-12);
    }
}
