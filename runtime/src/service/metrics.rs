//! The runtime's Prometheus metrics (names, units and labels as in docs/architecture.md).

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::engine::SampleResult;

/// `outcome` label of `dyce_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// ok, shed, bad_request, error, cancelled.
    pub outcome: &'static str,
}

/// `position` label of `dyce_exits_total` (`final` for the original head).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PositionLabel {
    /// Exit position or `final`.
    pub position: String,
}

/// `config` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConfigLabel {
    /// Config id.
    pub config: String,
}

/// `version` label of `dyce_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabel {
    /// Crate version.
    pub version: String,
}

/// Labels of `dyce_kernels_info`: the instruction set the kernels chose and the CPU they run on.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KernelsLabel {
    /// `avx512f`, `avx2+fma`, `portable` (see `DYCE_KERNELS`).
    pub isa: String,
    /// The CPU's model name.
    pub cpu: String,
}

/// Latency buckets on a 1–2.5–5 series, so that every usual SLO threshold (10, 25, 50, 100 ms,
/// ...) is a bucket boundary and the SLI "share answered within the threshold" is exact.
pub const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Outcomes of `dyce_requests_total`, created at 0 on start so `rate()` sees the first event.
pub const OUTCOMES: [&str; 5] = ["ok", "shed", "bad_request", "error", "cancelled"];

/// `stage` label of `dyce_request_stage_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    /// decode, queue, compute, encode.
    pub stage: &'static str,
}

/// A stage of an inference request's time on the data path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Parsing the request and building the normalised input (image decoding included).
    Decode = 0,
    /// From admission to the start of the batch.
    Queue = 1,
    /// The batch the request ran in.
    Compute = 2,
    /// Building the answer from the batch's results.
    Encode = 3,
}

/// Stages, in the order of [`Stage`]'s discriminants.
pub const STAGES: [&str; 4] = ["decode", "queue", "compute", "encode"];

/// Every runtime metric.
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Requests by outcome.
    pub requests: Family<OutcomeLabel, Counter>,
    /// End-to-end request latency.
    pub request_duration: Histogram,
    /// Time from admission to the start of compute.
    pub queue_duration: Histogram,
    /// Compute time of a batch.
    pub batch_compute: Histogram,
    /// Images admitted and not yet answered.
    pub queue_depth: Gauge,
    /// Images in the running batch.
    pub in_flight: Gauge,
    /// 1 while the model thread runs.
    pub model_up: Gauge,
    /// Images per batch.
    pub batch_size: Histogram,
    /// Samples answered by each exit.
    pub exits: Family<PositionLabel, Counter>,
    /// MACs spent.
    pub macs: Counter,
    /// 1 for the active config, 0 for the others.
    pub active_config: Family<ConfigLabel, Gauge>,
    /// Generation of the active config.
    pub generation: Gauge,
    /// Applied switches.
    pub switches: Counter,
    /// Compute seconds per image over full batches (the cost at capacity), by config.
    pub saturated_cost: Family<ConfigLabel, Gauge<f64, AtomicU64>>,
    /// Expected accuracy of the active config.
    pub expected_accuracy: Gauge<f64, AtomicU64>,
    /// MACs ratio of the active config.
    pub macs_ratio: Gauge<f64, AtomicU64>,
    /// Per-stage request time, one histogram per [`Stage`], created up front so that an
    /// observation is an index and an atomic add (no label hashing on the data path).
    stages: [Histogram; 4],
    /// Shadow checks and live accuracy.
    pub shadow: super::live::ShadowMetrics,
}

impl Metrics {
    /// Creates and registers every metric; `model` labels the request and inference series.
    pub fn new(model: &str) -> Self {
        let mut root = Registry::default();
        let seconds = || Histogram::new(LATENCY_BUCKETS);
        let stage_family: Family<StageLabel, Histogram> =
            Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        let stages = STAGES.map(|stage| stage_family.get_or_create(&StageLabel { stage }).clone());
        let m = Self {
            requests: Family::default(),
            request_duration: seconds(),
            queue_duration: seconds(),
            batch_compute: seconds(),
            queue_depth: Gauge::default(),
            in_flight: Gauge::default(),
            model_up: Gauge::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
            exits: Family::default(),
            macs: Counter::default(),
            active_config: Family::default(),
            generation: Gauge::default(),
            switches: Counter::default(),
            saturated_cost: Family::default(),
            expected_accuracy: Gauge::default(),
            macs_ratio: Gauge::default(),
            stages,
            shadow: Default::default(),
            registry: Registry::default(),
        };
        // The model's name as a constant label of the request and inference series (one value
        // per runtime: no cardinality to speak of), added at encoding, so recording stays a
        // plain atomic add. The state of the runtime (config, queue, build) carries none.
        let registry = root.sub_registry_with_label((Cow::Borrowed("model"), Cow::Owned(model.to_string())));
        registry.register("dyce_requests", "Inference requests by outcome", m.requests.clone());
        registry.register_with_unit(
            "dyce_request_duration",
            "End-to-end latency of answered inference requests",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        registry.register_with_unit(
            "dyce_queue_duration",
            "Time from admission to the start of compute",
            Unit::Seconds,
            m.queue_duration.clone(),
        );
        registry.register_with_unit(
            "dyce_batch_compute_duration",
            "Compute time of one batch",
            Unit::Seconds,
            m.batch_compute.clone(),
        );
        registry.register_with_unit(
            "dyce_request_stage_duration",
            "Time of answered inference requests by stage: decode (parse and normalise), queue, compute (the batch), encode (the answer)",
            Unit::Seconds,
            stage_family,
        );
        registry.register("dyce_batch_size", "Images per batch", m.batch_size.clone());
        registry.register(
            "dyce_exits",
            "Samples answered by each exit position (final = original head)",
            m.exits.clone(),
        );
        registry.register("dyce_macs", "Multiply-accumulates spent on answered samples", m.macs.clone());
        let registry = &mut root;
        registry.register("dyce_queue_depth", "Images admitted and not yet answered", m.queue_depth.clone());
        registry.register(
            "dyce_in_flight_requests",
            "Images in the batch being computed",
            m.in_flight.clone(),
        );
        registry.register(
            "dyce_model_up",
            "1 while the model thread runs; 0 once it has stopped (the runtime is then unready and exits)",
            m.model_up.clone(),
        );
        registry.register(
            "dyce_active_config_info",
            "1 for the active configuration",
            m.active_config.clone(),
        );
        registry.register(
            "dyce_config_generation",
            "Generation of the active configuration",
            m.generation.clone(),
        );
        registry.register("dyce_config_switches", "Applied configuration switches", m.switches.clone());
        registry.register(
            "dyce_active_config_expected_accuracy",
            "Expected test accuracy of the active configuration",
            m.expected_accuracy.clone(),
        );
        registry.register(
            "dyce_active_config_macs_ratio",
            "Expected MACs of the active configuration relative to the full model",
            m.macs_ratio.clone(),
        );
        registry.register_with_unit(
            "dyce_saturated_compute",
            "Compute per image over full batches (the cost at capacity), by config; what a controller in Prometheus mode predicts with",
            Unit::Seconds,
            m.saturated_cost.clone(),
        );
        let build = Info::new(BuildLabel { version: env!("CARGO_PKG_VERSION").into() });
        registry.register("dyce_build", "Build information", build);
        let kernels = Info::new(KernelsLabel {
            isa: dyce_kernels::detect_isa().name().into(),
            cpu: dyce_kernels::cpu_model(),
        });
        registry.register(
            "dyce_kernels",
            "Instruction set of the inference kernels and the CPU model",
            kernels,
        );
        m.shadow.register(registry);
        registry.register_collector(Box::new(super::process::ProcessCollector));
        for outcome in OUTCOMES {
            let _ = m.requests.get_or_create(&OutcomeLabel { outcome });
        }
        Self { registry: root, ..m }
    }

    /// Records `seconds` spent by one answered request in `stage`.
    pub fn stage(&self, stage: Stage, seconds: f64) {
        self.stages[stage as usize].observe(seconds);
    }

    /// Records a computed batch.
    pub fn batch(&self, images: usize, seconds: f64) {
        self.batch_compute.observe(seconds);
        self.batch_size.observe(images as f64);
    }

    /// A request's images, answered: counted by exit position, with their MACs.
    pub fn answered(&self, results: &[SampleResult]) {
        for r in results {
            let position = r.exit.map_or_else(|| "final".to_string(), |p| p.to_string());
            self.exits.get_or_create(&PositionLabel { position }).inc();
            self.macs.inc_by(r.macs);
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new("")
    }
}
