//! Table-driven scenarios of the control law.

use super::*;
use crate::ladder::{AccuracyLimits, Ladder, Rung};

const RATIOS: [f64; 5] = [0.3, 0.45, 0.6, 0.8, 1.0];

fn ladder() -> Ladder {
    Ladder::from_rungs(
        RATIOS
            .iter()
            .enumerate()
            .map(|(i, &r)| Rung {
                id: format!("c{i}"),
                expected_accuracy: Some(0.88 + 0.01 * i as f64),
                cost_ratio: r,
            })
            .collect(),
    )
}

/// The law's parameters every scenario here and in the simulator's tests uses.
pub(crate) fn params(on_missing: MissingSignals) -> LawParams {
    LawParams {
        threshold: 0.05,
        max_queue: Some(64.0),
        target_utilization: 0.8,
        headroom: 0.7,
        restore_after: 5.0,
        restore_step: 1.0,
        on_missing,
        drain_seconds: 0.5,
    }
}

/// One runtime with capacity 1000 images/s on the full model.
fn sig(offered: f64, latency: Option<f64>) -> Observation {
    Observation::Fresh(Signals {
        runtimes: 1,
        offered_per_second: offered,
        latency,
        latency_window: 2.0,
        queue: 0.0,
        full_seconds_per_image: Some(1e-3),
    })
}

/// Runs `obs(t)` every 0.5 s from `t0` to `t1` and returns every decision with its time.
fn run(
    law: &Law,
    st: &mut LawState,
    t0: f64,
    t1: f64,
    obs: impl Fn(f64) -> Observation,
) -> Vec<(f64, Decision)> {
    let mut out = vec![];
    let mut t = t0;
    while t < t1 - 1e-9 {
        out.push((t, law.decide(st, &obs(t), t)));
        t += 0.5;
    }
    out
}

fn changes(ds: &[(f64, Decision)]) -> usize {
    ds.iter().filter(|(_, d)| d.direction != Direction::Hold).count()
}

#[test]
fn overload_degrades_in_one_tick_to_the_richest_config_that_fits() {
    let law = Law::new(params(MissingSignals::Hold), ladder());
    let mut st = LawState::new(4, 0.0);
    // 2000/s on a 1000/s full model: the cost ratio must be at most 0.8 / 2 = 0.4.
    let d = law.decide(&mut st, &sig(2000.0, Some(0.01)), 0.5);
    assert_eq!((d.rank, d.direction), (0, Direction::Degrade));
    assert!(matches!(d.reason, Reason::Predicted { .. }));
    assert!(!d.saturated);
    // 1100/s: ratio at most 0.727 -> c2 (0.6).
    let mut st = LawState::new(4, 0.0);
    assert_eq!(law.decide(&mut st, &sig(1100.0, None), 0.5).rank, 2);
}

#[test]
fn latency_feedback_steps_down_once_per_latency_window() {
    // No cost measured yet: feedback only.
    let law = Law::new(params(MissingSignals::Hold), ladder());
    let mut st = LawState::new(4, 0.0);
    let obs = Observation::Fresh(Signals {
        runtimes: 1,
        offered_per_second: 500.0,
        latency: Some(0.08),
        latency_window: 2.0,
        queue: 10.0,
        full_seconds_per_image: None,
    });
    let ranks: Vec<usize> =
        run(&law, &mut st, 0.0, 4.5, |_| obs.clone()).iter().map(|(_, d)| d.rank).collect();
    assert_eq!(ranks, [3, 3, 3, 3, 2, 2, 2, 2, 1]);
}

#[test]
fn queue_over_bound_acts_every_tick() {
    let law = Law::new(params(MissingSignals::Hold), ladder());
    let mut st = LawState::new(4, 0.0);
    let obs = Observation::Fresh(Signals {
        runtimes: 1,
        offered_per_second: 100.0,
        latency: None,
        latency_window: 2.0,
        queue: 100.0,
        full_seconds_per_image: None,
    });
    let d1 = law.decide(&mut st, &obs, 0.0);
    let d2 = law.decide(&mut st, &obs, 0.5);
    assert_eq!((d1.rank, d2.rank), (3, 2));
    assert!(matches!(d2.reason, Reason::Queue { .. }));
}

#[test]
fn recovery_restores_one_rung_at_a_time_after_the_dwell() {
    let law = Law::new(params(MissingSignals::Hold), ladder());
    let mut st = LawState::new(4, 0.0);
    law.decide(&mut st, &sig(2000.0, Some(0.2)), 0.0);
    assert_eq!(st.rank, 0);
    // Load back to 50 %: util(full) = 0.5 <= 0.7 * 0.8.
    let ds = run(&law, &mut st, 0.5, 20.0, |_| sig(500.0, Some(0.01)));
    let ups: Vec<(f64, usize)> =
        ds.iter().filter(|(_, d)| d.direction == Direction::Restore).map(|(t, d)| (*t, d.rank)).collect();
    assert_eq!(ups, [(5.5, 1), (6.5, 2), (7.5, 3), (8.5, 4)]);
    assert!(ds.iter().all(|(_, d)| d.direction != Direction::Degrade));
}

#[test]
fn no_restore_without_headroom() {
    let law = Law::new(params(MissingSignals::Hold), ladder());
    let mut st = LawState::new(3, 0.0);
    // util(full) = 0.7: fits the target but not the headroom (0.56): stay on c3.
    let ds = run(&law, &mut st, 0.0, 60.0, |_| sig(700.0, Some(0.01)));
    assert_eq!(changes(&ds), 0);
    // Latency above headroom x threshold blocks the restore too.
    let mut st = LawState::new(3, 0.0);
    let ds = run(&law, &mut st, 0.0, 60.0, |_| sig(300.0, Some(0.04)));
    assert_eq!(changes(&ds), 0);
}

#[test]
fn oscillating_load_does_not_flap() {
    let law = Law::new(params(MissingSignals::Hold), ladder());
    for level in [400.0, 600.0, 750.0, 850.0, 1000.0, 1300.0, 1800.0, 2400.0] {
        let mut st = LawState::new(4, 0.0);
        // +-10 % alternating every tick, plus a slower swing.
        let ds = run(&law, &mut st, 0.0, 120.0, |t| {
            let k = (t * 2.0).round() as i64;
            let wiggle = if k % 2 == 0 { 1.1 } else { 0.9 };
            let swing = 1.0 + 0.05 * (t / 7.0).sin();
            sig(level * wiggle * swing, Some(0.01))
        });
        let late = ds.iter().filter(|(t, d)| *t >= 30.0 && d.direction != Direction::Hold).count();
        assert!(late <= 2, "level {level}: {late} changes in the last 90 s");
        assert!(changes(&ds) <= 4, "level {level}: {} changes", changes(&ds));
    }
}

#[test]
fn missing_signals_never_degrade() {
    for (mode, want) in
        [(MissingSignals::Hold, 2), (MissingSignals::Richest, 4), (MissingSignals::Cheapest, 0)]
    {
        let law = Law::new(params(mode), ladder());
        let mut st = LawState::new(2, 0.0);
        let d = law.decide(&mut st, &Observation::Missing, 1.0);
        assert_eq!((d.rank, d.reason, d.desired_replicas), (want, Reason::MissingSignals, None));
    }
    // Hold keeps the rank through a long outage, and the dwell restarts afterwards.
    let law = Law::new(params(MissingSignals::Hold), ladder());
    let mut st = LawState::new(2, 0.0);
    let ds = run(&law, &mut st, 0.0, 30.0, |_| Observation::Missing);
    assert_eq!(changes(&ds), 0);
    let d = law.decide(&mut st, &sig(100.0, Some(0.001)), 30.0);
    assert_eq!((d.rank, d.reason), (2, Reason::Dwell));
}

#[test]
fn floor_bounds_the_choice() {
    use dyce_api::{ConfigEntry, ConfigTable, ExitChoice};
    let entry = |id: &str, acc: f64, macs: f64| ConfigEntry {
        id: id.into(),
        exits: if macs < 1.0 {
            vec![ExitChoice { position: 0, exit_type: "mlp1".into(), threshold: 0.5 }]
        } else {
            vec![]
        },
        expected_accuracy: Some(acc),
        macs_ratio: Some(macs),
        latency_ratio: None,
        expected_disagreement: None,
    };
    let table = ConfigTable {
        model: "m".into(),
        configs: vec![entry("cheap", 0.80, 0.2), entry("mid", 0.91, 0.5), entry("full", 0.93, 1.0)],
    };
    let law =
        Law::new(params(MissingSignals::Hold), Ladder::new(&table, AccuracyLimits::absolute(0.9)).unwrap());
    let mut st = LawState::new(1, 0.0);
    // 3000/s would need the 0.2 config, which is below the floor: run "mid", saturated.
    let d = law.decide(&mut st, &sig(3000.0, Some(0.3)), 0.5);
    assert_eq!(law.ladder.rung(d.rank).id, "mid");
    assert!(d.saturated);
    // The richest allowed config (full): util = 3000 * 1e-3 = 3.0 -> ceil(3.0 / 0.8) = 4 runtimes.
    assert_eq!(d.desired_replicas, Some(4));
}

#[test]
fn saturation_reports_replicas() {
    let law = Law::new(params(MissingSignals::Hold), ladder());
    let mut st = LawState::new(4, 0.0);
    let d = law.decide(&mut st, &sig(5000.0, Some(0.3)), 0.5);
    // Replicas for the richest config: util(top) = 5000 * 1e-3 = 5.0 -> ceil(5.0 / 0.8) = 7.
    assert_eq!((d.rank, d.saturated, d.desired_replicas), (0, true, Some(7)));
    let d = law.decide(&mut st, &sig(200.0, Some(0.001)), 1.0);
    assert!(!d.saturated);
    assert_eq!(d.desired_replicas, Some(1));
}

#[test]
fn desired_replicas_follow_the_richest_config_up_and_down() {
    let law = Law::new(params(MissingSignals::Hold), ladder());
    let obs = |offered: f64, runtimes: usize| {
        Observation::Fresh(Signals {
            runtimes,
            offered_per_second: offered,
            latency: Some(0.001),
            latency_window: 2.0,
            queue: 0.0,
            full_seconds_per_image: Some(1e-3),
        })
    };
    // Degraded but not saturated: 1200/s on one runtime needs a cheaper config now and a second
    // runtime (1.2 / 0.8 -> 2) for the full model to come back.
    let mut st = LawState::new(ladder().top(), 0.0);
    let d = law.decide(&mut st, &obs(1200.0, 1), 0.5);
    assert!(d.rank < ladder().top() && !d.saturated, "{d:?}");
    assert_eq!(d.desired_replicas, Some(2));
    // Four runtimes at 600/s in all: the full model needs one (0.6 / 0.8): scale down.
    let mut st = LawState::new(ladder().top(), 0.0);
    let d = law.decide(&mut st, &obs(600.0, 4), 0.5);
    assert_eq!(d.desired_replicas, Some(1));
    // No traffic: never below one.
    assert_eq!(law.decide(&mut st, &obs(0.0, 4), 1.0).desired_replicas, Some(1));
}

#[test]
fn premature_restore_doubles_the_next_dwell() {
    let law = Law::new(params(MissingSignals::Hold), ladder());
    let mut st = LawState::new(3, 0.0);
    // Headroom for 5 s -> restore to the full model at t = 5.
    run(&law, &mut st, 0.0, 5.5, |_| sig(500.0, Some(0.01)));
    assert_eq!(st.rank, 4);
    // The full model breaks the objective at once (model error): degrade.
    let d = law.decide(&mut st, &sig(500.0, Some(0.09)), 6.0);
    assert_eq!(d.direction, Direction::Degrade);
    assert_eq!(st.backoff(), 2.0);
    // Now the restore needs 10 s of headroom.
    let ds = run(&law, &mut st, 6.5, 30.0, |_| sig(500.0, Some(0.01)));
    let up = ds.iter().find(|(_, d)| d.direction == Direction::Restore).map(|(t, _)| *t);
    assert_eq!(up, Some(16.5));
}

#[test]
fn desired_replicas_stay_in_range_whatever_the_inputs() {
    let max = MAX_DESIRED_REPLICAS;
    let cases: [(usize, f64, f64, usize); 9] = [
        (2, 0.8, 0.8, 2),
        (2, 0.81, 0.8, 3),
        (3, 0.0, 0.8, 1),
        (3, -1.0, 0.8, 1),
        (3, f64::NAN, 0.8, 3),
        (3, f64::INFINITY, 0.8, max),
        (3, f64::NEG_INFINITY, 0.8, 1),
        (3, 1e300, 0.8, max),
        (3, 1.0, 0.0, max),
    ];
    for (n, u, target, want) in cases {
        assert_eq!(replicas_for(n, u, target), want, "n={n} u={u} target={target}");
    }
}
