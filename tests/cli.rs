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

#[test]
fn zero_counts_are_refused_by_the_parser() {
    for (cmd, flag) in [
        ("serve", "--max-batch"),
        ("serve", "--max-queue"),
        ("serve", "--threads"),
        ("serve", "--max-body-bytes"),
        ("up", "--max-batch"),
        ("demo", "--max-queue"),
    ] {
        let (ok, _, err) = dyce(&[cmd, flag, "0"]);
        assert!(!ok, "{cmd} {flag} 0 was accepted");
        assert!(err.contains(flag) && err.contains("must be at least 1"), "{cmd} {flag} 0: {err}");
    }
}

/// The flags a `--help` text defines (its option lines).
fn defined_flags(help: &str) -> Vec<String> {
    help.lines()
        .map(str::trim_start)
        .filter_map(|l| l.strip_prefix("-").map(|_| l))
        .filter_map(|l| l.split([' ', '=', ',', '<']).find(|w| w.starts_with("--")).map(str::to_string))
        .collect()
}

/// Every `--flag` a help text names: `(command it belongs to, flag)`, the command being the one
/// named just before it (`dyce bench --profile`), else the help's own.
fn named_flags<'a>(help: &'a str, own: &'a str) -> Vec<(&'a str, String)> {
    let words: Vec<&str> = help.split(|c: char| c.is_whitespace() || "`(),;.".contains(c)).collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let Some(name) = w.strip_prefix("--") else { continue };
        let name: String = name.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        if name.is_empty() {
            continue;
        }
        let cmd = if i >= 2 && words[i - 2] == "dyce" { words[i - 1] } else { own };
        out.push((cmd, format!("--{name}")));
    }
    out
}

#[test]
fn help_texts_name_only_flags_that_exist() {
    let commands = [
        "serve",
        "up",
        "control",
        "calibrate",
        "train",
        "inspect",
        "bench",
        "bench-backbone",
        "load",
        "demo",
    ];
    let help = |cmd: &str| {
        let (ok, out, err) = dyce(&[cmd, "--help"]);
        assert!(ok, "{cmd} --help: {err}");
        out
    };
    for cmd in commands {
        let text = help(cmd);
        for (owner, flag) in named_flags(&text, cmd) {
            if flag == "--help" || flag == "--version" {
                continue;
            }
            let defined = defined_flags(&if owner == cmd { text.clone() } else { help(owner) });
            assert!(
                defined.contains(&flag),
                "`dyce {cmd} --help` names `{flag}` of `dyce {owner}`, which has no such flag"
            );
        }
    }
}

#[test]
fn simulate_runs_the_live_guard_through_a_drift_and_refuses_bad_drifts() {
    let drift = "30:c00=0.850,c01=0.864,c02=0.878,full=0.909";
    let base =
        ["control", "simulate", "--policy", "policies/live-accuracy.yaml", "--trace", "constant:1.8,90"];
    let live = [&base[..], &["--feedback", "0.2", "--shadow-half-life", "30", "--drift", drift]].concat();
    let (ok, out, err) = dyce(&live);
    assert!(ok, "{err}");
    assert!(out.lines().next().is_some_and(|l| l.contains("real acc")), "{out}");
    assert!(out.contains(" c00 excluded: live accuracy lower bound"), "{out}");
    // "real accuracy B before the drift, A after (floor F, accuracy source live)"
    let last = out.lines().last().unwrap();
    let nums: Vec<f64> =
        last.split(|c: char| !(c.is_ascii_digit() || c == '.')).filter_map(|x| x.parse().ok()).collect();
    assert!(last.ends_with("accuracy source live)") && nums.len() == 3, "{last}");
    assert!(nums[1] >= nums[2], "after the drift {} under the floor {}", nums[1], nums[2]);
    for (bad, says) in [
        (vec!["--drift", "30:nope=0.5"], "no config \"nope\""),
        (vec!["--drift", "30"], "expected AT:ID=ACCURACY"),
        (vec!["--drift", "30:c00=1.5"], "in [0, 1]"),
        (vec!["--shadow-rate", "2"], "--shadow-rate must be in [0, 1]"),
        (vec!["--shadow-rate", "0", "--drift", "30:c00=0.8"], "--drift needs"),
    ] {
        let (ok, out, err) = dyce(&[&base[..], &bad].concat());
        assert!(!ok && out.is_empty(), "{bad:?} should fail");
        assert_eq!(err.trim().lines().count(), 1, "{bad:?}: {err}");
        assert!(err.starts_with("error: ") && err.contains(says), "{bad:?}: {err}");
    }
}
