//! The policy types: the file (`PolicyDocument`) and the spec it carries (`SloPolicySpec`, also
//! the Kubernetes resource's spec), with their defaults. Reading them: `parse.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;
use crate::ladder::AccuracyLimits;

/// `apiVersion` of every dyce resource.
pub const API_VERSION: &str = "dyce.dev/v1alpha1";
/// `kind` of a policy.
pub const KIND: &str = "SloPolicy";

/// A policy file: a Kubernetes-style object, so the same YAML works with `kubectl apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyDocument {
    /// Always `dyce.dev/v1alpha1`.
    pub api_version: String,
    /// Always `SloPolicy`.
    pub kind: String,
    /// Name (and namespace in Kubernetes).
    pub metadata: Metadata,
    /// The policy.
    pub spec: SloPolicySpec,
}

/// The part of Kubernetes object metadata a policy file uses.
// Unknown keys are refused like everywhere else in the file (a misspelt `namespace` would
// otherwise vanish silently). This is the file's metadata only: the Kubernetes resource's is
// kube's `ObjectMeta` (uid, resourceVersion, managedFields...), from which the controller builds
// this struct field by field, never by deserialising.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// Policy name: a DNS label; it labels the controller's metrics.
    pub name: String,
    /// Namespace (Kubernetes mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels (kept, not interpreted).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations (kept, not interpreted).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What to keep and what may be spent.
// The same type is the spec of the Kubernetes resource `SloPolicy` (`dyce-controller`'s
// `kube::resource` wraps it), so a policy file and a custom resource cannot drift apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SloPolicySpec {
    /// Kubernetes mode: the runtime pods this policy steers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Local mode: admin URLs of the runtimes (e.g. `http://127.0.0.1:9090`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtimes: Vec<String>,
    /// The service-level objective.
    pub objective: Objective,
    /// Never choose a config whose expected accuracy is below this (0 = no floor).
    #[serde(default)]
    pub accuracy_floor: f64,
    /// Never choose a config whose expected accuracy is more than this below the full model's,
    /// a fraction (0.03 = three points); with `accuracyFloor` too, both must hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_accuracy_drop: Option<f64>,
    /// Which accuracy the floor is held with: the table's offline numbers (default) or the
    /// runtimes' live bounds from shadow checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<AccuracySource>,
    /// How the control loop runs.
    #[serde(default)]
    pub control: Control,
}

/// Where the accuracy the floor is held with comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub enum AccuracyKind {
    /// `expected_accuracy` from the bundle's `configs.json` only (default).
    #[default]
    Offline,
    /// Also the runtimes' live lower bounds (`GET /v1/load`'s `live_accuracy`): a config whose
    /// bound is under the floor is not chosen.
    Live,
}

/// `spec.accuracy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccuracySource {
    /// `offline` or `live`.
    #[serde(default)]
    pub source: AccuracyKind,
    /// Effective shadow samples a config needs before its live bound may exclude it.
    #[serde(default = "default_min_samples")]
    pub min_samples: f64,
    /// An excluded config comes back once its bound is this far above the floor (a fraction).
    #[serde(default = "default_hysteresis")]
    pub hysteresis: f64,
}

fn default_min_samples() -> f64 {
    100.0
}
fn default_hysteresis() -> f64 {
    0.01
}

impl AccuracySource {
    /// Whether the floor is held on live bounds.
    pub fn is_live(&self) -> bool {
        self.source == AccuracyKind::Live
    }
}

/// Equality-based label selector (`matchExpressions` are not supported).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Every label must match.
    pub match_labels: BTreeMap<String, String>,
}

/// The objective: a latency quantile under a threshold, optionally a queue bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Objective {
    /// The latency objective.
    pub latency: LatencyObjective,
    /// Most images waiting in any one runtime before the controller steps down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_depth: Option<u64>,
}

/// `quantile` of end-to-end latency must stay under `threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencyObjective {
    /// Quantile in (0, 1); the runtime reports p50, p95 and p99 and the controller reads the
    /// smallest of those at or above this one (p99 for anything above 0.95).
    #[serde(default = "default_quantile")]
    pub quantile: f64,
    /// Latency threshold, e.g. `50ms`.
    pub threshold: HumanDuration,
}

/// What the controller does while it cannot see its runtimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub enum MissingSignals {
    /// Keep the current config (default).
    #[default]
    Hold,
    /// Go back to the richest allowed config.
    Richest,
    /// Go to the cheapest allowed config (an explicit fail-safe the user opts into).
    Cheapest,
}

/// Control-loop settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Control {
    /// Tick interval: how soon a burst is seen (polling `/v1/load` is cheap).
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Highest predicted utilisation (arrivals × cost per image) a config may run at.
    #[serde(default = "default_target_utilization")]
    pub target_utilization: f64,
    /// When a richer config is given back.
    #[serde(default)]
    pub restore: Restore,
    /// What to do without fresh signals.
    #[serde(default)]
    pub on_missing_signals: MissingSignals,
    /// A runtime whose last answer is older than this is stale (default: 3 × interval, at least 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after: Option<HumanDuration>,
    /// Timeout of each call to a runtime (default: the interval, at least 500ms, at most staleAfter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<HumanDuration>,
}

/// Restore settings: hysteresis (headroom) and dwell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Restore {
    /// Headroom must hold this long before the first step back up.
    #[serde(default = "default_restore_after")]
    pub after: HumanDuration,
    /// Fraction in (0, 1) of the latency threshold, queue bound and target utilisation that
    /// the richer config must stay under to be given back.
    #[serde(default = "default_headroom")]
    pub headroom: f64,
    /// Time between further steps up while headroom lasts.
    #[serde(default = "default_restore_step")]
    pub step: HumanDuration,
}

fn default_quantile() -> f64 {
    0.99
}
fn default_interval() -> HumanDuration {
    // A step burst at twice the capacity builds a backlog at the full capacity's rate until
    // the switch: at 100 ms the queue holds about 0.1 s of work when the cheaper config lands,
    // against 0.25-0.5 s at the former 500 ms.
    HumanDuration::from_millis(100)
}
fn default_target_utilization() -> f64 {
    0.8
}
fn default_restore_after() -> HumanDuration {
    HumanDuration::from_millis(5000)
}
fn default_headroom() -> f64 {
    0.7
}
fn default_restore_step() -> HumanDuration {
    HumanDuration::from_millis(1000)
}

impl Default for Restore {
    fn default() -> Self {
        Self { after: default_restore_after(), headroom: default_headroom(), step: default_restore_step() }
    }
}

impl Default for Control {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            target_utilization: default_target_utilization(),
            restore: Restore::default(),
            on_missing_signals: MissingSignals::default(),
            stale_after: None,
            request_timeout: None,
        }
    }
}

impl SloPolicySpec {
    /// The accuracy bounds the ladder is built with.
    pub fn accuracy_limits(&self) -> AccuracyLimits {
        AccuracyLimits { min: self.accuracy_floor, max_drop: self.max_accuracy_drop }
    }
}

impl Control {
    /// The staleness bound in effect. Short ticks do not make a runtime stale sooner than 1 s:
    /// a runtime busy with a burst answers its admin port late, not never.
    pub fn stale_after(&self) -> HumanDuration {
        self.stale_after.unwrap_or(HumanDuration((self.interval.0 * 3).max(Duration::from_secs(1))))
    }

    /// The per-call timeout in effect: at least 500 ms for the same reason, within `staleAfter`.
    pub fn request_timeout(&self) -> HumanDuration {
        self.request_timeout.unwrap_or(HumanDuration(
            self.interval.0.max(Duration::from_millis(500)).min(self.stale_after().0),
        ))
    }
}
