//! The `dyce` binary as a user runs it.

use std::process::Command;

fn dyce(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dyce")).args(args).output().expect("dyce runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn inspect_builtin_architecture() {
    let (ok, out, _) = dyce(&["inspect", "--arch", "resnet50", "--input", "224"]);
    assert!(ok);
    assert!(out.starts_with("resnet50 at 224x224: 4.0"), "{out}");
    assert!(out.contains("layer4.2"), "{out}");
    assert_eq!(out.lines().count(), 2 + 16);
}

#[test]
fn bad_input_is_one_line_and_nonzero() {
    for args in [
        vec!["inspect", "--arch", "resnet7"],
        vec!["inspect", "--model", "/nonexistent/bundle"],
        vec!["inspect", "--arch", "resnet20", "--exit-types", "mlp0"],
        vec!["inspect"],
    ] {
        let (ok, out, err) = dyce(&args);
        assert!(!ok, "{args:?} should fail");
        assert!(out.is_empty());
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
    }
}

mod common;

#[test]
fn bench_writes_measured_latency_ratios() {
    let dir = tempfile::tempdir().unwrap();
    common::tiny_bundle(dir.path());
    let model = dir.path().to_str().unwrap();
    let (ok, out, err) = dyce(&[
        "bench",
        "--model",
        model,
        "--batch",
        "4",
        "--seconds",
        "0.05",
        "--rounds",
        "1",
        "--write",
        "--data",
        "/nonexistent",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("latency ratios written"), "{out}");
    let table: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("configs.json")).unwrap()).unwrap();
    for c in table["configs"].as_array().unwrap() {
        assert!(c["latency_ratio"].as_f64().unwrap() > 0.0, "{c}");
    }
    let full = table["configs"].as_array().unwrap().last().unwrap();
    assert_eq!(full["latency_ratio"], 1.0);
    // The bundle still loads with the new field.
    assert!(dyce(&["inspect", "--model", model]).0);
}

#[test]
fn bench_measures_only_the_chosen_configs_and_the_full_model() {
    let dir = tempfile::tempdir().unwrap();
    common::tiny_bundle(dir.path());
    let model = dir.path().to_str().unwrap();
    let base =
        ["bench", "--model", model, "--batch", "2", "--seconds", "0.05", "--rounds", "1", "--data", "/x"];
    let (ok, out, err) = dyce(&[&base[..], &["--configs", "c0"]].concat());
    assert!(ok, "{err}");
    let rows: Vec<&str> = out.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(rows.contains(&"c0") && rows.contains(&"full"), "{out}");
    assert!(!rows.contains(&"c1"), "{out}");
    // A partial table must never overwrite configs.json; an unknown id is named.
    for (extra, says) in
        [(vec!["--configs", "c0", "--write"], "--write"), (vec!["--configs", "zz"], "\"zz\"")]
    {
        let (ok, out, err) = dyce(&[&base[..], &extra[..]].concat());
        assert!(!ok && out.is_empty(), "{extra:?}: {out}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn bench_profile_times_exits_against_the_backbone() {
    let dir = tempfile::tempdir().unwrap();
    common::tiny_bundle(dir.path());
    let model = dir.path().to_str().unwrap();
    let json = dir.path().join("profile.json");
    let base = ["bench", "--model", model, "--batch", "4", "--seconds", "0.05", "--rounds", "1"];
    let (ok, out, err) =
        dyce(&[&base[..], &["--data", "/x", "--profile", "--json", json.to_str().unwrap()]].concat());
    assert!(ok, "{err}");
    assert!(out.lines().last().unwrap().starts_with("all configs: --exit-cost "), "{out}");
    let p: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // The full model has no exit stage and is not profiled; every other config is.
    let ids: Vec<&str> = p["configs"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert!(!ids.is_empty() && !ids.contains(&"full"), "{ids:?}");
    for c in p["configs"].as_array().unwrap() {
        let share = c["exit_time_share"].as_f64().unwrap();
        assert!(share > 0.0 && share < 1.0, "{c}");
        assert!(c["backbone_ns_per_mac"].as_f64().unwrap() > 0.0, "{c}");
    }
    let factors = p["exit_cost"].as_object().unwrap();
    assert!(!factors.is_empty() && factors.values().all(|f| f.as_f64().unwrap() > 0.0), "{p}");
    // Profiling measures no throughput, so it cannot write latency ratios.
    let (ok, out, err) = dyce(&[&base[..], &["--data", "/x", "--profile", "--write"]].concat());
    assert!(!ok && out.is_empty() && err.trim().lines().count() == 1, "{err}");
}

#[test]
fn calibrate_rejects_bad_exit_costs_in_one_line() {
    for cost in ["mlp1", "mlp1=x", "mlp1=0", "mlp1=-2", "mlp1=inf", "mlp9x9=2"] {
        let (ok, out, err) = dyce(&["calibrate", "--train-dir", "/nonexistent", "--exit-cost", cost]);
        assert!(!ok && out.is_empty(), "{cost}: {out}");
        assert_eq!(err.trim().lines().count(), 1, "{cost}: {err}");
    }
}
