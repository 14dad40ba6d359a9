//! The replica-autoscaling comparison `dyce demo` reports: the same bursty trace served by an
//! HPA-like autoscaler at two targets, each with and without the dyce controller.

use serde::Serialize;

use super::replicas::{simulate_replicas, ControlLoop, HpaConfig, ReplicaReport};
use super::{SimConfig, Trace};
use crate::law::Law;

/// Base load and bursts of [`bursty_trace`]: (start as a share of the run, rate in multiples of
/// one replica's full-model capacity). Bursts of different lengths around the pod start: one
/// shorter than it (nothing an autoscaler can do), the others long enough to be worth replicas.
const SHAPE: [(f64, f64); 7] =
    [(0.0, BASE_LOAD), (0.10, 2.6), (0.20, 1.2), (0.40, 3.5), (0.45, 1.5), (0.70, 2.8), (0.85, BASE_LOAD)];

/// Base rate of [`bursty_trace`], in multiples of one replica's capacity.
pub const BASE_LOAD: f64 = 1.0;

/// A `duration`-second trace (600 for the 10 minutes of the report) of a base load with three
/// bursts, ±10 % noise changed every second; rates scale with `replica_capacity` (full-model
/// images per second of one replica).
pub fn bursty_trace(replica_capacity: f64, duration: f64, seed: u64) -> Trace {
    let segments = SHAPE.iter().map(|&(at, m)| (at * duration, m * replica_capacity));
    Trace { segments: segments.collect(), noise: None, duration }.with_noise(0.1, 1.0, seed)
}

/// One autoscaling setup.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Name for tables.
    pub name: String,
    /// The autoscaler.
    pub hpa: HpaConfig,
    /// Whether the dyce controller steers configs.
    pub dyce: bool,
}

/// HPA at a cautious (50 %) and a tight (80 %) target, each alone and with dyce; every setup
/// starts with the replicas its target wants for the base load.
pub fn default_scenarios() -> Vec<Scenario> {
    let mut v = Vec::new();
    for target in [0.5, 0.8] {
        for dyce in [false, true] {
            let hpa = HpaConfig {
                target_utilization: target,
                initial_replicas: (BASE_LOAD / target).ceil() as usize,
                ..HpaConfig::default()
            };
            let name = format!("HPA {:.0}%{}", target * 100.0, if dyce { " + dyce" } else { "" });
            v.push(Scenario { name, hpa, dyce });
        }
    }
    v
}

/// A scenario's headline numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub name: String,
    /// dyce steering or not.
    pub dyce: bool,
    /// The autoscaler's target utilisation.
    pub target_utilization: f64,
    /// Share of 1-s windows meeting the objective (shed and late images are misses).
    pub attainment: f64,
    /// Replica-seconds over the run.
    pub replica_seconds: f64,
    /// Replica-seconds over the run's length.
    pub mean_replicas: f64,
    /// Most replicas at once.
    pub peak_replicas: usize,
    /// Expected accuracy of the configs that served, weighted by images (`None`: no accuracy
    /// in the ladder).
    pub expected_accuracy: Option<f64>,
    /// Share of offered images refused.
    pub shed_share: f64,
    /// Share of offered images dropped or answered after the client's timeout.
    pub timed_out_share: f64,
    /// Config changes the controller made.
    pub config_changes: usize,
    /// Replicas over time: (sync time, replicas serving or starting).
    pub replicas: Vec<(f64, usize)>,
    /// Goodput per 1-s window: images answered within the threshold.
    pub good_per_second: Vec<u64>,
}

fn summarise(s: &Scenario, r: &ReplicaReport, quantile: f64, duration: f64) -> ScenarioResult {
    let w = &r.run.windows;
    let offered: u64 = w.iter().map(|w| w.offered).sum();
    let served: u64 = w.iter().map(|w| w.served).sum();
    let acc: f64 =
        w.iter().filter(|w| w.served > 0).map(|w| w.mean_expected_accuracy * w.served as f64).sum();
    let share = |n: u64| if offered > 0 { n as f64 / offered as f64 } else { 0.0 };
    let initial = (0.0, s.hpa.initial_replicas);
    ScenarioResult {
        name: s.name.clone(),
        dyce: s.dyce,
        target_utilization: s.hpa.target_utilization,
        attainment: r.run.attainment(quantile, 0.0, duration),
        replica_seconds: r.replica_seconds,
        mean_replicas: r.replica_seconds / duration,
        peak_replicas: r.replicas.iter().map(|p| p.replicas).max().unwrap_or(0).max(initial.1),
        expected_accuracy: (served > 0 && acc.is_finite()).then(|| acc / served as f64),
        shed_share: share(w.iter().map(|w| w.shed).sum()),
        timed_out_share: share(w.iter().map(|w| w.timed_out).sum()),
        config_changes: r.run.changes.len(),
        replicas: std::iter::once(initial).chain(r.replicas.iter().map(|p| (p.at, p.replicas))).collect(),
        good_per_second: w.iter().map(|w| w.good).collect(),
    }
}

/// Runs every scenario on `trace` (same seed, so the same arrivals) and summarises them.
pub fn compare(
    law: &Law,
    control: &ControlLoop,
    sim: &SimConfig,
    trace: &Trace,
    scenarios: &[Scenario],
) -> Vec<ScenarioResult> {
    scenarios
        .iter()
        .map(|s| {
            let r = simulate_replicas(law, s.dyce.then_some(control), sim, &s.hpa, trace);
            summarise(s, &r, control.quantile, trace.duration)
        })
        .collect()
}
