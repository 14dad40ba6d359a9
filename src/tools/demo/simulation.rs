//! The simulated part of the demo: the policy's law against HPA-like replica autoscaling on a
//! longer bursty trace (the controller crate's `sim::autoscale`), one simulated replica being
//! the runtime measured here.

use dyce_control_core::ladder::Ladder;
use dyce_control_core::law::{Law, LawParams};
use dyce_control_core::policy::PolicyDocument;
use dyce_control_core::sim::autoscale::{bursty_trace, compare, default_scenarios, ScenarioResult};
use dyce_control_core::sim::replicas::ControlLoop;
use dyce_control_core::sim::{SimConfig, Trace};

use super::Scenario;

/// What the simulation produced.
#[derive(Debug, Clone)]
pub struct SimOutcome {
    /// Full-model images/s of one simulated replica.
    pub replica_capacity: f64,
    /// Seconds simulated.
    pub seconds: f64,
    /// Offered images/s at every whole second.
    pub offered: Vec<f64>,
    /// One row per setup.
    pub rows: Vec<ScenarioResult>,
}

impl SimOutcome {
    /// For report.json.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "replica_capacity": self.replica_capacity, "seconds": self.seconds,
            "offered_per_second": self.offered,
            "rows": serde_json::to_value(&self.rows).unwrap_or_default(),
        })
    }
}

/// Runs the comparison with a replica as fast as the measured runtime (`capacity`, full-model
/// requests/s through HTTP: the simulated batches stand for the whole served path).
pub fn run(policy: &PolicyDocument, ladder: &Ladder, capacity: f64, sc: &Scenario) -> SimOutcome {
    let spec = &policy.spec;
    let law = Law::new(LawParams::from_spec(spec), ladder.clone());
    let control = ControlLoop {
        interval: spec.control.interval.secs(),
        quantile: spec.objective.latency.quantile,
        stale_after: spec.control.stale_after().secs(),
    };
    let sim = SimConfig { full_seconds_per_image: 1.0 / capacity, seed: sc.seed, ..SimConfig::default() };
    let trace: Trace = bursty_trace(capacity, sc.sim_seconds, sc.seed);
    let rows = compare(&law, &control, &sim, &trace, &default_scenarios());
    let offered = (0..sc.sim_seconds.ceil() as usize).map(|k| trace.rate(k as f64)).collect();
    SimOutcome { replica_capacity: capacity, seconds: sc.sim_seconds, offered, rows }
}
