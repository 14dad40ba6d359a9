//! Live accuracy (issue 22): `runtime.liveAccuracy` reaches every runtime container as the
//! binary's variables and `sloPolicy.accuracy` reaches `spec.accuracy` as the controller parses
//! it, both only when set (the default render is unchanged); the schema's bounds are the
//! binary's and the controller's, checked value by value against both.

use std::process::Command;

use dyce_control_core::policy::{AccuracyKind, AccuracySource, PolicyDocument};
use k8s_openapi::api::core::v1::Container;
use serde_json::{json, Value};

use super::features::{all_pods, ci, ok, refused, template};
use super::pods::*;
use super::render::*;

/// What `runtime.liveAccuracy` sets: shadowRate, shadowHalfLifeSeconds, feedbackCapacity.
const VARIABLES: [&str; 3] = ["DYCE_SHADOW_RATE", "DYCE_SHADOW_HALF_LIFE", "DYCE_FEEDBACK_CAPACITY"];

fn runtime_containers(objects: &[Value]) -> Vec<(String, Container)> {
    let pods = all_pods(objects);
    let containers = pods.into_iter().flat_map(|(what, pod)| {
        pod.containers.into_iter().filter(is_runtime).map(move |c| (format!("{what} {}", c.name), c))
    });
    let containers: Vec<_> = containers.collect();
    assert!(!containers.is_empty(), "no runtime container rendered");
    containers
}

fn policy(objects: &[Value]) -> &Value {
    let mut policies = objects.iter().filter(|o| kind_of(o).1 == "SloPolicy");
    let p = policies.next().expect("an SloPolicy");
    assert!(policies.next().is_none(), "one SloPolicy");
    p
}

/// The controller's parser on a rendered (or patched) SloPolicy.
fn parse(policy: &Value) -> Result<PolicyDocument, String> {
    PolicyDocument::parse(&policy.to_string()).map_err(|e| e.to_string())
}

#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn live_accuracy_reaches_the_runtimes_and_the_policy_only_when_set() {
    // Unset: no variable (the binary's defaults hold) and no spec.accuracy (offline).
    let defaults = render(&None);
    for (what, c) in runtime_containers(&defaults) {
        for name in VARIABLES {
            assert_eq!(env_value(&c, name), None, "{what}: {name} set by default");
        }
    }
    assert!(policy(&defaults)["spec"].get("accuracy").is_none(), "spec.accuracy rendered by default");

    // The value set: every runtime container (the Deployment's and the sidecar's) and the policy.
    let live = ci("live-accuracy-values.yaml");
    let containers = runtime_containers(&live);
    assert_eq!(containers.len(), 2, "the runtime Deployment's and the sidecar example's");
    for (what, c) in &containers {
        for (name, want) in [
            ("DYCE_SHADOW_RATE", "0.05"),
            ("DYCE_SHADOW_HALF_LIFE", "300"),
            ("DYCE_FEEDBACK_CAPACITY", "20000"),
        ] {
            assert_eq!(env_value(c, name), Some(want), "{what}: {name}");
        }
    }
    let p = policy(&live);
    assert_eq!(p["spec"]["accuracy"], json!({"source": "live", "minSamples": 250, "hysteresis": 0.02}));
    let doc = parse(p).unwrap_or_else(|e| panic!("the live policy: {e}"));
    let want = AccuracySource { source: AccuracyKind::Live, min_samples: 250.0, hysteresis: 0.02 };
    assert_eq!(doc.spec.accuracy, Some(want), "spec.accuracy as the controller reads it");
    assert_eq!(doc.spec.accuracy_floor, 0.85);
    assert_eq!(doc.spec.max_accuracy_drop, Some(0.035), "the default relative floor holds too");

    // 0 turns a feature off: it is a value, not "unset". Counts of a million stay integers
    // (Go prints such floats as 1e+06).
    let off = ok("runtime:\n  liveAccuracy:\n    shadowRate: 0\n    feedbackCapacity: 0\n");
    for (what, c) in runtime_containers(&off) {
        assert_eq!(env_value(&c, "DYCE_SHADOW_RATE"), Some("0"), "{what}");
        assert_eq!(env_value(&c, "DYCE_FEEDBACK_CAPACITY"), Some("0"), "{what}");
        assert_eq!(env_value(&c, "DYCE_SHADOW_HALF_LIFE"), None, "{what}");
    }
    let big = ok("runtime:\n  liveAccuracy:\n    feedbackCapacity: 1000000\n\
                  sloPolicy:\n  accuracy:\n    minSamples: 1000000\n    hysteresis: 0\n");
    for (what, c) in runtime_containers(&big) {
        assert_eq!(env_value(&c, "DYCE_FEEDBACK_CAPACITY"), Some("1000000"), "{what}");
    }
    let p = policy(&big);
    assert_eq!(
        p["spec"]["accuracy"],
        json!({"minSamples": 1000000, "hysteresis": 0}),
        "no source: none rendered"
    );
    let doc = parse(p).unwrap_or_else(|e| panic!("minSamples 1000000: {e}"));
    let want = AccuracySource { source: AccuracyKind::Offline, min_samples: 1e6, hysteresis: 0.0 };
    assert_eq!(doc.spec.accuracy, Some(want));

    // Live with no floor to hold is refused by the chart, as by the controller.
    refused(
        "sloPolicy:\n  maxAccuracyDrop: null\n  accuracy:\n    source: live\n",
        "sloPolicy.accuracy.source live holds a floor on live accuracy, and there is none",
    );
}

/// `sloPolicy.accuracy`: the chart accepts a value exactly when the controller does (the default
/// policy with that one field in `spec.accuracy`), and renders it unchanged.
#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn policy_accuracy_bounds_are_the_controllers() {
    let base = policy(&render(&None)).clone();
    let cases = [
        ("source", json!("live")),
        ("source", json!("offline")),
        ("source", json!("Live")),
        ("source", json!("bogus")),
        ("minSamples", json!(1)),
        ("minSamples", json!(0.5)),
        ("minSamples", json!(0)),
        ("minSamples", json!(1000000)),
        ("minSamples", json!(1000001)),
        ("hysteresis", json!(0)),
        ("hysteresis", json!(0.49)),
        ("hysteresis", json!(0.5)),
        ("hysteresis", json!(-0.01)),
    ];
    let (mut accepted, mut refused) = (0, 0);
    for (key, value) in cases {
        let chart = template(&format!("sloPolicy:\n  accuracy:\n    {key}: {value}\n"), &[]);
        let mut patched = base.clone();
        patched["spec"]["accuracy"] = json!({ key: value });
        let controller = parse(&patched);
        let what = format!("spec.accuracy.{key}: {value}");
        match (&chart, &controller) {
            (Ok(objects), Ok(_)) => {
                assert_eq!(policy(objects)["spec"]["accuracy"], json!({ key: value }), "{what}: rendered");
                accepted += 1;
            }
            (Err(e), Err(_)) => {
                assert!(e.contains(&format!("sloPolicy.accuracy.{key}")), "{what}: the chart's error: {e}");
                refused += 1;
            }
            _ => panic!(
                "{what}: the chart says {:?}, the controller {:?}",
                chart.map(|_| "ok"),
                controller.map(|_| "ok")
            ),
        }
    }
    assert!(accepted >= 5 && refused >= 5, "{accepted} accepted, {refused} refused");
}

/// `runtime.liveAccuracy`: the chart accepts a value exactly when `dyce serve` does, and passes
/// it on as the binary reads it. The binary is run on a missing bundle: past the flags (all
/// parsed and checked first, by clap), it fails on the bundle; a refused value fails before, with
/// clap's message instead.
#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn runtime_live_accuracy_bounds_are_the_binarys() {
    let cases = [
        ("shadowRate", "DYCE_SHADOW_RATE", "0"),
        ("shadowRate", "DYCE_SHADOW_RATE", "0.02"),
        ("shadowRate", "DYCE_SHADOW_RATE", "1"),
        ("shadowRate", "DYCE_SHADOW_RATE", "1.5"),
        ("shadowRate", "DYCE_SHADOW_RATE", "-0.1"),
        ("shadowHalfLifeSeconds", "DYCE_SHADOW_HALF_LIFE", "0.5"),
        ("shadowHalfLifeSeconds", "DYCE_SHADOW_HALF_LIFE", "86400"),
        ("shadowHalfLifeSeconds", "DYCE_SHADOW_HALF_LIFE", "0"),
        ("shadowHalfLifeSeconds", "DYCE_SHADOW_HALF_LIFE", "86401"),
        ("feedbackCapacity", "DYCE_FEEDBACK_CAPACITY", "0"),
        ("feedbackCapacity", "DYCE_FEEDBACK_CAPACITY", "100000"),
        ("feedbackCapacity", "DYCE_FEEDBACK_CAPACITY", "-1"),
        ("feedbackCapacity", "DYCE_FEEDBACK_CAPACITY", "2.5"),
    ];
    let serve = |name: &str, value: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_dyce"))
            .args(["serve", "--data-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .args(["--metrics-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"])
            .args(["--model", "/nonexistent/no-bundle"])
            .env(name, value)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert!(!out.status.success(), "dyce serve started without a bundle ({name}={value}): {err}");
        // Past the flags, the missing bundle stops it (both exit with 2: the message tells).
        (!err.contains("loading bundle /nonexistent/no-bundle")).then_some(err)
    };
    let (mut accepted, mut refused) = (0, 0);
    for (key, name, value) in cases {
        let what = format!("runtime.liveAccuracy.{key}: {value}");
        match template(&format!("runtime:\n  liveAccuracy:\n    {key}: {value}\n"), &[]) {
            Ok(objects) => {
                for (c_what, c) in runtime_containers(&objects) {
                    let given = env_value(&c, name).unwrap_or_else(|| panic!("{what}: {c_what}: no {name}"));
                    assert_eq!(
                        given.parse::<f64>().ok(),
                        value.parse::<f64>().ok(),
                        "{what}: {c_what}: {name}={given}"
                    );
                    if let Some(err) = serve(name, given) {
                        panic!("{what}: the chart accepts it, dyce serve refuses {name}={given}: {err}");
                    }
                }
                accepted += 1;
            }
            Err(e) => {
                assert!(e.contains(&format!("runtime.liveAccuracy.{key}")), "{what}: the chart's error: {e}");
                assert!(
                    serve(name, value).is_some(),
                    "{what}: the chart refuses it, dyce serve takes {name}={value}"
                );
                refused += 1;
            }
        }
    }
    assert!(accepted >= 5 && refused >= 5, "{accepted} accepted, {refused} refused");
}
