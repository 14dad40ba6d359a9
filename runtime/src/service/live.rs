//! The live accuracy book: shadow answers in, per-configuration agreement with the full model
//! (decayed, for the estimate and its bound) and per-position counters (for the metrics) out.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Instant;

use dyce_api::live::{Anchor, Decayed, LiveAccuracy, LiveConfig};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
}

impl LiveBook {
    /// A book for `bundle`'s table; `rate` and `half_life` (seconds) are reported as set.
    pub fn new(bundle: &Bundle, rate: f64, half_life: f64) -> Self {
        let acc_full = bundle.configs.get(dyce_api::FULL_CONFIG_ID).and_then(|e| e.expected_accuracy);
        let (configs, anchors): (Vec<ResolvedConfig>, Vec<Anchor>) = bundle
            .configs
            .configs
            .iter()
            .filter_map(|e| Some((ResolvedConfig::resolve(bundle, e, 0).ok()?, Anchor::of(e, acc_full))))
            .unzip();
        let tallies = configs.iter().map(|_| Tally { decayed: Decayed::default(), total: 0 }).collect();
        Self {
            configs,
            anchors,
            acc_full,
            rate,
            half_life,
            origin: Instant::now(),
            state: Mutex::new(State { tallies, checked: 0, dropped: 0 }),
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
        for a in answers {
            for (cfg, tally) in self.configs.iter().zip(st.tallies.iter_mut()) {
                let (exit, label) = simulate(cfg, a);
                let agree = label == a.label;
                tally.decayed.add(now, self.half_life, !agree);
                tally.total += 1;
                let position = exit.map_or_else(|| "final".to_string(), |p| p.to_string());
                let key = ShadowLabel { config: cfg.id.clone(), position };
                metrics.samples.get_or_create(&key).inc();
                let agreed = metrics.agreements.get_or_create(&key);
                if agree {
                    agreed.inc();
                }
            }
        }
    }

    /// Counts sampled images dropped for a full queue.
    pub fn dropped(&self, n: usize, metrics: &ShadowMetrics) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).dropped += n as u64;
        metrics.dropped.inc_by(n as u64);
    }

    /// The report: every configuration with at least one sample.
    pub fn report(&self) -> LiveAccuracy {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let configs = self
            .configs
            .iter()
            .zip(&st.tallies)
            .filter(|(_, t)| t.total > 0)
            .zip(&self.anchors)
            .map(|((c, t), a)| (c.id.clone(), LiveConfig::from_decayed(&t.decayed, t.total, *a)))
            .collect();
        LiveAccuracy {
            shadow_rate: self.rate,
            half_life_seconds: self.half_life,
            checked_total: st.checked,
            dropped_total: st.dropped,
            full_accuracy: self.acc_full,
            configs,
        }
    }

    /// Sets the estimate gauges from the report (at scrape).
    pub fn publish(&self, metrics: &ShadowMetrics) {
        for (config, c) in self.report().configs {
            let label = ConfigLabel { config };
            if let (Some(e), Some(l)) = (c.estimate, c.lower_bound) {
                metrics.estimate.get_or_create(&label).set(e);
                metrics.lower_bound.get_or_create(&label).set(l);
            }
        }
    }
}
