//! The live accuracy book: shadow answers in, per-configuration agreement with the full model
//! (decayed, for the estimate and its bound) and per-position counters (for the metrics) out;
//! and, when feedback is on, the store of recent answers that user labels are counted against.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Instant;

use dyce_api::live::{Anchor, Decayed, LiveAccuracy, LiveConfig};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::feedback::{Answer, Counted, FeedbackConfig, FeedbackError, FeedbackStore};
use crate::engine::{simulate, HeadAnswers, ResolvedConfig};
use crate::model::Bundle;

/// Labels of the shadow counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabel {
    /// Config id.
    pub config: String,
    /// Exit position the config answers at, or `final`.
    pub position: String,
}

impl ShadowLabel {
    /// The label of `config` answering at exit `position` (`None`: the original head).
    fn new(config: &str, position: Option<usize>) -> Self {
        let position = position.map_or_else(|| "final".to_string(), |p| p.to_string());
        Self { config: config.to_string(), position }
    }
}

/// `config` label of the live accuracy gauges (the metrics module's own `ConfigLabel` is not
/// imported: the two modules would import each other).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConfigLabel {
    /// Config id.
    pub config: String,
}

/// The shadow and live-accuracy series.
#[derive(Default)]
pub struct ShadowMetrics {
    /// Shadow-checked images by the config and the position it would answer them at.
    pub samples: Family<ShadowLabel, Counter>,
    /// Of those, the ones whose answer is the full model's.
    pub agreements: Family<ShadowLabel, Counter>,
    /// Sampled images dropped for a full shadow queue.
    pub dropped: Counter,
    /// Live accuracy estimate by config (set at scrape).
    pub estimate: Family<ConfigLabel, Gauge<f64, AtomicU64>>,
    /// Its lower bound by config (set at scrape).
    pub lower_bound: Family<ConfigLabel, Gauge<f64, AtomicU64>>,
    /// Fed-back images by config and the position it answered them at.
    pub feedback_samples: Family<ShadowLabel, Counter>,
    /// Of those, the ones it answered right.
    pub feedback_correct: Family<ShadowLabel, Counter>,
    /// Accuracy from feedback by config (decayed; set at scrape).
    pub feedback_accuracy: Family<ConfigLabel, Gauge<f64, AtomicU64>>,
    /// Its one-sided 95% lower bound (set at scrape).
    pub feedback_lower_bound: Family<ConfigLabel, Gauge<f64, AtomicU64>>,
    /// The effective number of fed-back samples behind it (set at scrape): lets a rule ignore
    /// a bound resting on a handful of labels.
    pub feedback_effective: Family<ConfigLabel, Gauge<f64, AtomicU64>>,
}

impl ShadowMetrics {
    /// Registers the series (no `model` label: like the config series, they describe the state
    /// of this runtime's one model).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "dyce_shadow_samples",
            "Shadow-checked images by config and the exit position it answers them at (final = original head)",
            self.samples.clone(),
        );
        registry.register(
            "dyce_shadow_agreements",
            "Shadow-checked images whose answer under the config is the full model's",
            self.agreements.clone(),
        );
        registry.register(
            "dyce_shadow_dropped",
            "Images sampled for a shadow check and dropped because the shadow queue was full",
            self.dropped.clone(),
        );
        registry.register(
            "dyce_live_accuracy_estimate",
            "Live accuracy estimate by config: full model's expected accuracy minus the decayed disagreement",
            self.estimate.clone(),
        );
        registry.register(
            "dyce_live_accuracy_lower_bound",
            "Lower confidence bound of the live accuracy by config (at least 90%)",
            self.lower_bound.clone(),
        );
        registry.register(
            "dyce_feedback_samples",
            "Images with a true label from POST /v1/feedback, by config and the exit position it answered them at",
            self.feedback_samples.clone(),
        );
        registry.register(
            "dyce_feedback_correct",
            "Fed-back images the config answered right",
            self.feedback_correct.clone(),
        );
        registry.register(
            "dyce_feedback_accuracy",
            "Accuracy by config from user feedback (decayed like the shadow counts)",
            self.feedback_accuracy.clone(),
        );
        registry.register(
            "dyce_feedback_accuracy_lower_bound",
            "One-sided 95% Wilson lower bound of the accuracy from user feedback, by config",
            self.feedback_lower_bound.clone(),
        );
        registry.register(
            "dyce_feedback_effective_samples",
            "Effective number of fed-back samples (decayed) behind dyce_feedback_accuracy_lower_bound, by config",
            self.feedback_effective.clone(),
        );
    }
}

struct Tally {
    decayed: Decayed,
    total: u64,
}

struct State {
    tallies: Vec<Tally>,
    checked: u64,
    dropped: u64,
}

/// What the book measures.
#[derive(Debug, Clone, Copy)]
pub struct LiveSettings {
    /// Share of answered images shadow-checked (0: off).
    pub shadow_rate: f64,
    /// Half-life of the decayed counts, seconds.
    pub half_life: f64,
    /// Most answered images kept for feedback (0: feedback off).
    pub feedback_capacity: usize,
}

impl LiveSettings {
    /// Whether there is anything to measure.
    pub fn enabled(&self) -> bool {
        self.shadow_rate > 0.0 || self.feedback_capacity > 0
    }
}

/// Live accuracy of every configuration of the table.
pub struct LiveBook {
    configs: Vec<ResolvedConfig>,
    /// Per configuration, what its live accuracy is measured from.
    anchors: Vec<Anchor>,
    acc_full: Option<f64>,
    rate: f64,
    half_life: f64,
    origin: Instant,
    state: Mutex<State>,
    feedback: Option<Mutex<FeedbackStore>>,
}

impl LiveBook {
    /// A book for `bundle`'s table.
    pub fn new(bundle: &Bundle, settings: LiveSettings) -> Self {
        let LiveSettings { shadow_rate: rate, half_life, feedback_capacity } = settings;
        let acc_full = bundle.configs.get(dyce_api::FULL_CONFIG_ID).and_then(|e| e.expected_accuracy);
        let (configs, anchors): (Vec<ResolvedConfig>, Vec<Anchor>) = bundle
            .configs
            .configs
            .iter()
            .filter_map(|e| Some((ResolvedConfig::resolve(bundle, e, 0).ok()?, Anchor::of(e, acc_full))))
            .unzip();
        let tallies = configs.iter().map(|_| Tally { decayed: Decayed::default(), total: 0 }).collect();
        let feedback = (feedback_capacity > 0).then(|| {
            let cfg = FeedbackConfig {
                capacity: feedback_capacity,
                half_life,
                labels: bundle.manifest.input.labels.clone(),
                classes: bundle.backbone.num_classes(),
            };
            Mutex::new(FeedbackStore::new(cfg, configs.iter().map(|c| c.id.clone()).collect()))
        });
        Self {
            configs,
            anchors,
            acc_full,
            rate,
            half_life,
            origin: Instant::now(),
            state: Mutex::new(State { tallies, checked: 0, dropped: 0 }),
            feedback,
        }
    }

    /// Whether feedback is on.
    pub fn takes_feedback(&self) -> bool {
        self.feedback.is_some()
    }

    fn store(&self) -> Option<std::sync::MutexGuard<'_, FeedbackStore>> {
        self.feedback.as_ref().map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Opens the feedback record of a request about to be submitted: `(tag, answer id)`;
    /// `None` when feedback is off.
    pub fn open(&self, client_id: Option<&str>, n: usize) -> Option<(u64, String)> {
        Some(self.store()?.open(client_id, n))
    }

    /// The request tagged `tag` was answered by `config`.
    pub fn answered(&self, tag: u64, config: &str, answers: &[Answer]) {
        if let Some(mut s) = self.store() {
            s.answered(tag, config, answers);
        }
    }

    /// The request tagged `tag` failed.
    pub fn forget(&self, tag: u64) {
        if let Some(mut s) = self.store() {
            s.forget(tag);
        }
    }

    /// Counts true labels (`POST /v1/feedback`); `Ok(None)` when feedback is off.
    pub fn feedback(
        &self,
        items: &[dyce_api::FeedbackItem],
        metrics: &ShadowMetrics,
    ) -> Result<Option<dyce_api::FeedbackResponse>, FeedbackError> {
        let Some(mut s) = self.store() else { return Ok(None) };
        let (counted, correct) = s.feedback(self.origin.elapsed().as_secs_f64(), items)?;
        drop(s);
        self.count(&counted, metrics);
        Ok(Some(dyce_api::FeedbackResponse { accepted: items.len(), correct }))
    }

    fn count(&self, counted: &[Counted], metrics: &ShadowMetrics) {
        for c in counted {
            let Some(cfg) = self.configs.get(c.config) else { continue };
            let key = ShadowLabel::new(&cfg.id, c.position);
            metrics.feedback_samples.get_or_create(&key).inc();
            let right = metrics.feedback_correct.get_or_create(&key);
            if c.correct {
                right.inc();
            }
        }
    }

    /// Records shadow answers at the runtime's clock.
    pub fn record(&self, answers: &[HeadAnswers], metrics: &ShadowMetrics) {
        self.record_at(self.origin.elapsed().as_secs_f64(), answers, metrics);
    }

    /// Records shadow answers at `now` seconds: every configuration's answer is compared with
    /// the full model's.
    pub fn record_at(&self, now: f64, answers: &[HeadAnswers], metrics: &ShadowMetrics) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.checked += answers.len() as u64;
        let mut linked = Vec::new();
        for a in answers {
            let mut all: Vec<Answer> = Vec::with_capacity(self.configs.len());
            for (cfg, tally) in self.configs.iter().zip(st.tallies.iter_mut()) {
                let (exit, label) = simulate(cfg, a);
                all.push((exit, label));
                let agree = label == a.label;
                tally.decayed.add(now, self.half_life, !agree);
                tally.total += 1;
                let key = ShadowLabel::new(&cfg.id, exit);
                metrics.samples.get_or_create(&key).inc();
                let agreed = metrics.agreements.get_or_create(&key);
                if agree {
                    agreed.inc();
                }
            }
            if let Some((tag, index)) = a.source {
                linked.push((tag, index as usize, all));
            }
        }
        drop(st);
        if let Some(mut store) = self.store() {
            let counted: Vec<Counted> = linked
                .into_iter()
                .flat_map(|(tag, index, all)| store.shadowed(now, tag, index, all))
                .collect();
            drop(store);
            self.count(&counted, metrics);
        }
    }

    /// Counts sampled images dropped for a full queue.
    pub fn dropped(&self, n: usize, metrics: &ShadowMetrics) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).dropped += n as u64;
        metrics.dropped.inc_by(n as u64);
    }

    /// The report: every configuration with at least one shadow or feedback sample.
    pub fn report(&self) -> LiveAccuracy {
        let store = self.store();
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let configs = self
            .configs
            .iter()
            .zip(&st.tallies)
            .zip(&self.anchors)
            .enumerate()
            .filter_map(|(i, ((c, t), a))| {
                let mut live = LiveConfig::from_decayed(&t.decayed, t.total, *a);
                live.feedback = store.as_ref().and_then(|s| s.accuracy(i));
                (t.total > 0 || live.feedback.is_some()).then(|| (c.id.clone(), live))
            })
            .collect();
        LiveAccuracy {
            shadow_rate: self.rate,
            half_life_seconds: self.half_life,
            checked_total: st.checked,
            dropped_total: st.dropped,
            full_accuracy: self.acc_full,
            configs,
            feedback: store.as_ref().map(|s| s.summary()),
        }
    }

    /// Sets the estimate gauges from the report (at scrape).
    pub fn publish(&self, metrics: &ShadowMetrics) {
        for (config, c) in self.report().configs {
            let label = ConfigLabel { config };
            if let (Some(e), Some(l), true) = (c.estimate, c.lower_bound, c.samples_total > 0) {
                metrics.estimate.get_or_create(&label).set(e);
                metrics.lower_bound.get_or_create(&label).set(l);
            }
            if let Some(f) = &c.feedback {
                metrics.feedback_accuracy.get_or_create(&label).set(f.accuracy);
                metrics.feedback_lower_bound.get_or_create(&label).set(f.lower_bound);
                metrics.feedback_effective.get_or_create(&label).set(f.effective_samples);
            }
        }
    }
}
