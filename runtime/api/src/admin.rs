//! Requests and answers of the runtime's admin port, and the error body of both ports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ConfigEntry, LiveAccuracy};

/// The configuration a runtime is running (`GET /v1/config`, answer of `PUT /v1/config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActiveConfig {
    /// Config id.
    pub id: String,
    /// Generation: grows with every applied switch; writes with an older one are refused.
    pub generation: u64,
}

/// `PUT /v1/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchRequest {
    /// Config id to switch to.
    pub id: String,
    /// Generation of this write (a fencing token), at most 2^63 - 1 (larger ones get 400);
    /// omitted = active + 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

/// `GET /v1/configs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigsView {
    /// Served model name (`/v2/models/{model}`).
    pub model: String,
    /// The active configuration.
    pub active: ActiveConfig,
    /// The table, cheapest first.
    pub configs: Vec<ConfigEntry>,
}

/// Latency quantiles over the window, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// `GET /v1/load`: what the controller steers by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadReport {
    /// Length of the window the rates and quantiles cover.
    pub window_seconds: f64,
    /// Images admitted per second.
    pub arrivals_per_second: f64,
    /// Images answered per second.
    pub completions_per_second: f64,
    /// Images refused (queue full) per second.
    pub shed_per_second: f64,
    /// Images admitted and not yet answered, now.
    pub queue_depth: usize,
    /// Images in the batch being computed, now.
    pub in_flight: usize,
    /// End-to-end latency of answered requests in the window; `None` when there were none.
    pub latency_seconds: Option<Quantiles>,
    /// Mean images per batch in the window.
    pub mean_batch_size: f64,
    /// The active configuration.
    pub active: ActiveConfig,
    /// Measured compute seconds per image, by config id, for every config seen since start
    /// (smoothed over batches of every size).
    pub compute_seconds_per_request: BTreeMap<String, f64>,
    /// The same over batches of `max_batch_size` only: the cost per image at capacity.
    #[serde(default)]
    pub saturated_seconds_per_request: BTreeMap<String, f64>,
    /// Images admitted since start (a poller takes rates over its own interval).
    #[serde(default)]
    pub arrivals_total: u64,
    /// Images refused since start.
    #[serde(default)]
    pub shed_total: u64,
    /// Images answered since start.
    #[serde(default)]
    pub completions_total: u64,
    /// Largest batch the runtime forms.
    #[serde(default)]
    pub max_batch_size: usize,
    /// Live accuracy from shadow checks (absent when `--shadow-rate` is 0): what a policy with
    /// `accuracy.source: live` guards its floor with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_accuracy: Option<LiveAccuracy>,
}

/// Body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
}
