//! With `spec.accuracy.source: live`, a configuration whose live lower bound is under the floor
//! is not chosen even when the load calls for it, and it is chosen again once its bound recovers;
//! with `offline`, the same reports change nothing.

use std::collections::BTreeMap;

use dyce_api::{ActiveConfig, ConfigEntry, ConfigTable, LiveAccuracy, LiveConfig, LoadReport};
use dyce_control_core::law::{Observation, Signals};
use dyce_control_core::policy::PolicyDocument;
use dyce_control_core::signals::RuntimeTrack;
use dyce_control_core::step::{ControlStep, Steering};

fn table() -> ConfigTable {
    let e = |id: &str, acc: f64, macs: f64| ConfigEntry {
        id: id.into(),
        exits: vec![],
        expected_accuracy: Some(acc),
        macs_ratio: Some(macs),
        latency_ratio: None,
        expected_disagreement: None,
    };
    ConfigTable {
        model: "m".into(),
        configs: vec![e("cheap", 0.91, 0.3), e("mid", 0.92, 0.6), e("full", 0.94, 1.0)],
    }
}

fn policy(source: &str) -> PolicyDocument {
    PolicyDocument::parse(&format!(
        "apiVersion: dyce.dev/v1alpha1\nkind: SloPolicy\nmetadata: {{name: p}}\nspec:\n  runtimes: [\"http://127.0.0.1:1\"]\n  \
         objective: {{latency: {{threshold: 50ms}}}}\n  accuracyFloor: 0.90\n  accuracy: {{source: {source}, minSamples: 100}}\n"
    ))
    .unwrap()
}

fn track(at: f64, active: &str, cheap_bound: f64) -> RuntimeTrack {
    let live = |lb: f64| LiveConfig {
        samples_total: 400,
        effective_samples: 400.0,
        disagreement: 0.0,
        disagreement_upper: 0.0,
        estimate: Some(lb + 0.01),
        lower_bound: Some(lb),
        feedback: None,
    };
    let configs = BTreeMap::from([("cheap".to_string(), live(cheap_bound)), ("mid".to_string(), live(0.92))]);
    let mut t = RuntimeTrack::new("http://127.0.0.1:1");
    t.observe(
        at,
        LoadReport {
            window_seconds: 2.0,
            arrivals_per_second: 0.0,
            completions_per_second: 0.0,
            shed_per_second: 0.0,
            queue_depth: 0,
            in_flight: 0,
            latency_seconds: None,
            mean_batch_size: 0.0,
            active: ActiveConfig { id: active.into(), generation: 1 },
            compute_seconds_per_request: BTreeMap::new(),
            saturated_seconds_per_request: BTreeMap::new(),
            arrivals_total: 0,
            shed_total: 0,
            completions_total: 0,
            max_batch_size: 8,
            live_accuracy: Some(LiveAccuracy {
                shadow_rate: 0.02,
                half_life_seconds: 120.0,
                checked_total: 400,
                dropped_total: 0,
                full_accuracy: Some(0.94),
                configs,
                feedback: None,
            }),
        },
    );
    t
}

/// A load only the cheapest config holds: 1 ms per full-model image, 2000 images/s offered, so
/// `cheap` runs at 0.6 and `mid` at 1.2 of the target.
fn heavy() -> Observation {
    Observation::Fresh(Signals {
        runtimes: 1,
        offered_per_second: 2000.0,
        latency: Some(0.01),
        latency_window: 2.0,
        queue: 0.0,
        full_seconds_per_image: Some(0.001),
    })
}

#[test]
fn a_config_under_the_floor_live_is_avoided_and_comes_back() {
    let doc = policy("live");
    let mut step = ControlStep::new(Steering::new(&doc.spec, &table()).unwrap());
    let out = step.step(&[track(0.0, "full", 0.95)], &heavy(), 0.0);
    assert_eq!(out.record.config, "cheap", "the load calls for the cheapest config");
    // Drift: cheap's live bound falls under the floor of 0.90.
    let out = step.step(&[track(0.1, "cheap", 0.85)], &heavy(), 0.1);
    assert_ne!(out.record.config, "cheap", "{:?}", out.record);
    assert!(out.record.reason.contains("cheap excluded"), "{}", out.record.reason);
    assert_eq!(out.accuracy.len(), 1);
    assert!(step.excluded().contains_key("cheap"));
    assert!(out.record.saturated, "the richer configs cannot hold the load: saturated, and said so");
    assert_eq!(out.pushes.len(), 1);
    // Just over the floor: not yet back (hysteresis 0.01 by default).
    let out = step.step(&[track(0.2, "mid", 0.905)], &heavy(), 0.2);
    assert_eq!(out.record.config, "mid");
    // Recovered: back in the ladder, and the load takes it at once.
    let out = step.step(&[track(0.3, "mid", 0.93)], &heavy(), 0.3);
    assert_eq!(out.record.config, "cheap", "{:?}", out.record);
    assert!(out.record.reason.contains("cheap back"), "{}", out.record.reason);
    assert!(step.excluded().is_empty());
}

#[test]
fn offline_ignores_live_bounds() {
    let doc = policy("offline");
    let mut step = ControlStep::new(Steering::new(&doc.spec, &table()).unwrap());
    let out = step.step(&[track(0.0, "cheap", 0.5)], &heavy(), 0.0);
    assert_eq!(out.record.config, "cheap");
    assert!(out.accuracy.is_empty());
}

#[test]
fn live_without_a_floor_is_refused_with_the_field() {
    let text = "apiVersion: dyce.dev/v1alpha1\nkind: SloPolicy\nmetadata: {name: p}\nspec:\n  runtimes: [\"http://127.0.0.1:1\"]\n  \
                objective: {latency: {threshold: 50ms}}\n  accuracy: {source: live}\n";
    let err = PolicyDocument::parse(text).unwrap_err().to_string();
    assert!(err.contains("spec.accuracy.source") && err.contains("accuracyFloor"), "{err}");
    let bad = text.replace("{source: live}", "{source: online}");
    let err = PolicyDocument::parse(&bad).unwrap_err().to_string();
    assert!(err.contains("spec.accuracy.source"), "{err}");
    let bad = text
        .replace("{source: live}", "{source: live, hysteresis: 0.7}")
        .replace("objective", "accuracyFloor: 0.9\n  objective");
    let err = PolicyDocument::parse(&bad).unwrap_err().to_string();
    assert!(err.contains("spec.accuracy.hysteresis"), "{err}");
}
