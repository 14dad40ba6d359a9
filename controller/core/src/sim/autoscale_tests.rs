//! The replica comparison: HPA's timing, and what config steering adds on top of it.

use super::autoscale::{bursty_trace, compare, default_scenarios};
use super::replicas::{simulate_replicas, ControlLoop, HpaConfig};
use super::*;
use crate::ladder::Rung;
use crate::law::tests::params;
use crate::policy::MissingSignals;

fn law() -> Law {
    let ratios = [0.48, 0.55, 0.62, 0.7, 0.8, 1.0];
    let rungs = ratios
        .iter()
        .enumerate()
        .map(|(i, &r)| Rung {
            id: format!("c{i}"),
            expected_accuracy: Some(0.90 + 0.006 * i as f64),
            cost_ratio: r,
        })
        .collect();
    let params = params(MissingSignals::Hold);
    Law::new(params, Ladder::from_rungs(rungs))
}

const CONTROL: ControlLoop = ControlLoop { interval: 0.5, quantile: 0.99, stale_after: 1.5 };

#[test]
fn a_step_is_met_by_new_replicas_after_a_sync_and_a_pod_start() {
    let sim = SimConfig::default();
    let hpa = HpaConfig { target_utilization: 0.5, initial_replicas: 1, ..HpaConfig::default() };
    let c = sim.full_capacity();
    // 0.4 of one replica, then 1.5 from 20 s: one replica cannot hold it alone.
    let trace = Trace::step(0.4 * c, 1.5 * c, 20.0, 200.0, 200.0);
    let r = simulate_replicas(&law(), None, &sim, &hpa, &trace);
    let first_up = r.replicas.iter().find(|p| p.replicas > 1).expect("a scale-up");
    // The first sync after the step (at 30 s) sees it.
    assert!(first_up.at <= 30.0 + 1e-9, "scaled at {}", first_up.at);
    // Nothing helps before the new replicas serve, 30 s later; afterwards the objective holds.
    assert!(r.run.attainment(0.99, 21.0, 30.0) < 0.5);
    assert!(r.run.attainment(0.99, first_up.at + 32.0, 200.0) >= 0.95);
    // Replica-seconds count starting replicas too.
    let last = r.replicas.last().unwrap().replicas as f64;
    assert!(r.replica_seconds > 200.0 && r.replica_seconds < last * 200.0, "{}", r.replica_seconds);
}

#[test]
fn dyce_holds_the_objective_while_replicas_start() {
    let sim = SimConfig::default();
    let trace = bursty_trace(sim.full_capacity(), 300.0, 5);
    let rows = compare(&law(), &CONTROL, &sim, &trace, &default_scenarios());
    assert_eq!(rows.len(), 4);
    for pair in rows.chunks(2) {
        let (alone, with) = (&pair[0], &pair[1]);
        assert!(!alone.dyce && with.dyce);
        assert!(
            with.attainment > alone.attainment && alone.attainment < 0.99,
            "{}: {:.3} vs {}: {:.3}",
            with.name,
            with.attainment,
            alone.name,
            alone.attainment
        );
        assert!(with.attainment >= 0.95, "{}: {:.3}", with.name, with.attainment);
        // Alone, the full model serves everything.
        assert!((alone.expected_accuracy.unwrap() - 0.93).abs() < 1e-9);
        assert!(with.expected_accuracy.unwrap() < 0.93);
        assert_eq!(alone.config_changes, 0);
    }
}

#[test]
fn replica_runs_are_deterministic() {
    let sim = SimConfig::default();
    let trace = bursty_trace(sim.full_capacity(), 120.0, 2);
    let hpa = HpaConfig::default();
    let a = simulate_replicas(&law(), Some(&CONTROL), &sim, &hpa, &trace);
    assert_eq!(a, simulate_replicas(&law(), Some(&CONTROL), &sim, &hpa, &trace));
}
