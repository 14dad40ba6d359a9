//! The controller's Prometheus metrics (DESIGN §7 / docs/metrics.md).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// `policy` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabel {
    /// Policy name.
    pub policy: String,
}

/// `policy` and `direction` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    /// Policy name.
    pub policy: String,
    /// degrade, restore or hold.
    pub direction: &'static str,
}

/// `policy` and `state` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuntimeStateLabel {
    /// Policy name.
    pub policy: String,
    /// fresh, stale or unknown.
    pub state: &'static str,
}

/// `api` label of `dyce_controller_api_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    /// runtime, prometheus or kubernetes.
    pub api: &'static str,
}

/// The APIs the controller calls, each a value of the `api` label.
pub const APIS: [&str; 3] = ["runtime", "prometheus", "kubernetes"];

/// Tick duration buckets: a tick polls with a deadline of half the interval (100 ms by
/// default), so 1 ms .. 10 s covers a healthy tick and one held up by a slow source.
pub const TICK_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every controller metric.
pub struct ControllerMetrics {
    registry: Registry,
    /// Control-loop ticks.
    pub ticks: Counter,
    /// Decisions by direction.
    pub decisions: Family<DecisionLabel, Counter>,
    /// Rank of the decided config (0 = cheapest allowed).
    pub target_rank: Family<PolicyLabel, Gauge>,
    /// The objective's latency quantile as observed.
    pub observed_latency: Family<PolicyLabel, FloatGauge>,
    /// Runtimes by state.
    pub runtimes: Family<RuntimeStateLabel, Gauge>,
    /// Failed pushes.
    pub push_errors: Family<PolicyLabel, Counter>,
    /// 1 when even the cheapest allowed config cannot hold the objective.
    pub saturated: Family<PolicyLabel, Gauge>,
    /// Replicas needed to hold the objective.
    pub desired_replicas: Family<PolicyLabel, Gauge>,
    /// The accuracy floor the policy's limits work out to for its table (0: none).
    pub accuracy_floor: Family<PolicyLabel, FloatGauge>,
    /// Configs the live accuracy guard keeps out.
    pub accuracy_excluded: Family<PolicyLabel, Gauge>,
    /// 1 while this replica holds the Lease (Kubernetes mode; always 1 in local mode).
    pub leader: Gauge,
    /// Time of one tick of a policy's loop (poll, step, push submission).
    pub tick_duration: Family<PolicyLabel, Histogram>,
    /// Failed calls by API: runtime (polls, pushes), prometheus (queries), kubernetes
    /// (watches, the Lease, status writes).
    pub api_errors: Family<ApiLabel, Counter>,
}

impl ControllerMetrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            registry: Registry::default(),
            ticks: Counter::default(),
            decisions: Family::default(),
            target_rank: Family::default(),
            observed_latency: Family::default(),
            runtimes: Family::default(),
            push_errors: Family::default(),
            saturated: Family::default(),
            desired_replicas: Family::default(),
            accuracy_floor: Family::default(),
            accuracy_excluded: Family::default(),
            leader: Gauge::default(),
            tick_duration: Family::new_with_constructor(|| Histogram::new(TICK_BUCKETS)),
            api_errors: Family::default(),
        };
        registry.register("dyce_controller_ticks", "Control-loop ticks", m.ticks.clone());
        registry.register(
            "dyce_controller_decisions",
            "Decisions by policy and direction (degrade, restore, hold)",
            m.decisions.clone(),
        );
        registry.register(
            "dyce_controller_target_config_rank",
            "Rank of the decided config among the allowed ones (0 = cheapest)",
            m.target_rank.clone(),
        );
        registry.register_with_unit(
            "dyce_controller_observed_latency",
            "The objective's latency quantile, worst fresh runtime",
            Unit::Seconds,
            m.observed_latency.clone(),
        );
        registry.register(
            "dyce_controller_runtimes",
            "Runtimes by state (fresh, stale, unknown)",
            m.runtimes.clone(),
        );
        registry.register("dyce_controller_push_errors", "Config pushes that failed", m.push_errors.clone());
        registry.register(
            "dyce_controller_saturated",
            "1 when even the cheapest allowed config cannot hold the objective",
            m.saturated.clone(),
        );
        registry.register(
            "dyce_controller_accuracy_floor",
            "Accuracy floor of the policy for its runtimes' table: accuracyFloor, or the full model's expected accuracy minus maxAccuracyDrop (0: none)",
            m.accuracy_floor.clone(),
        );
        registry.register(
            "dyce_controller_accuracy_excluded_configs",
            "Configs kept out because their live accuracy lower bound is under the floor (spec.accuracy.source: live)",
            m.accuracy_excluded.clone(),
        );
        registry.register(
            "dyce_controller_desired_replicas",
            "Runtimes needed to run the richest allowed config at targetUtilization (at least current + 1 while saturated), clamped to 1..10000; without a usable estimate, the current count",
            m.desired_replicas.clone(),
        );
        registry.register(
            "dyce_controller_leader",
            "1 while this replica holds the leader Lease and steers (always 1 in local mode)",
            m.leader.clone(),
        );
        registry.register_with_unit(
            "dyce_controller_tick_duration",
            "Time of one control-loop tick of a policy (poll, step, push submission)",
            Unit::Seconds,
            m.tick_duration.clone(),
        );
        registry.register(
            "dyce_controller_api_errors",
            "Failed calls by API: runtime (polls, pushes), prometheus (queries), kubernetes (watches, Lease, status writes)",
            m.api_errors.clone(),
        );
        for api in APIS {
            let _ = m.api_errors.get_or_create(&ApiLabel { api });
        }
        m.leader.set(1);
        Self { registry, ..m }
    }

    /// Drops every series of a policy that is gone (Kubernetes mode: the resource was deleted).
    pub fn forget(&self, policy: &str) {
        let label = PolicyLabel { policy: policy.to_string() };
        self.accuracy_floor.remove(&label);
        for f in [&self.target_rank, &self.saturated, &self.desired_replicas, &self.accuracy_excluded] {
            f.remove(&label);
        }
        self.observed_latency.remove(&label);
        self.tick_duration.remove(&label);
        self.push_errors.remove(&label);
        for direction in ["degrade", "restore", "hold"] {
            self.decisions.remove(&DecisionLabel { policy: policy.to_string(), direction });
        }
        for state in ["fresh", "stale", "unknown"] {
            self.runtimes.remove(&RuntimeStateLabel { policy: policy.to_string(), state });
        }
    }

    /// Counts one failed call to `api` (one of [`APIS`]).
    pub fn api_error(&self, api: &'static str) {
        self.api_errors.get_or_create(&ApiLabel { api }).inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
