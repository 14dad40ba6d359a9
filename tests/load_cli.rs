//! `dyce load` against a real `dyce serve` on the tiny random bundle.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// Runs `dyce load ARGS`; returns success, stdout, stderr.
fn load(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dyce"))
        .arg("load")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("dyce runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn summary(stdout: &str) -> Value {
    assert_eq!(stdout.trim().lines().count(), 1, "stdout is one JSON line: {stdout}");
    serde_json::from_str(stdout.trim()).expect("the summary is JSON")
}

fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
#[ignore = "needs the dataset-fashion-mnist package (scripts/ci/setup.sh)"]
fn poisson_load_measures_latency_and_accuracy_and_logs_every_request() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let s = serve(dir.path(), &["--max-queue", "1024"]);
    let log = dir.path().join("requests.jsonl");
    let (ok, out, err) = load(&[
        "--url",
        &s.data,
        "--model",
        "tiny",
        "--profile",
        "constant:200",
        "--duration",
        "3",
        "--seed",
        "5",
        "--slo-ms",
        "2000",
        "--log",
        log.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let v = summary(&out);
    // Poisson: 600 expected, standard deviation √600 ≈ 24.5; allow 4σ.
    let sent = v["sent"].as_u64().unwrap();
    assert!((sent as f64 - 600.0).abs() < 4.0 * 24.5, "sent {sent}");
    assert_eq!(v["expected_requests"], 600.0);
    assert_eq!(v["scheduled"], sent);
    assert_eq!(v["ok"], sent, "{v}");
    for zero in ["shed", "errors", "timeouts", "dropped_by_client"] {
        assert_eq!(v[zero], 0, "{zero}: {v}");
    }
    let acc = v["accuracy"].as_f64().expect("accuracy is a number");
    assert!((0.0..=1.0).contains(&acc), "{acc}");
    assert_eq!(v["images_answered"], sent);
    assert!(v["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(v["send_lag_ms"]["p99"].as_f64().is_some());
    assert_eq!(v["model"], "tiny");
    assert!(v["configs"].as_object().unwrap().keys().all(|k| ["full", "c0", "c1"].contains(&k.as_str())));
    let attainment = v["slo_attainment"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&attainment) && v["slo_windows"] == 3, "{v}");

    let lines = log_lines(&log);
    assert_eq!(lines.len() as u64, sent);
    let mut correct = 0;
    for l in &lines {
        assert_eq!(l["outcome"], "ok", "{l}");
        assert_eq!(l["status"], 200);
        assert_eq!(l["label"].as_array().unwrap().len(), 1);
        assert_eq!(l["predicted"].as_array().unwrap().len(), 1);
        assert!(l["sent_s"].as_f64().unwrap() >= l["scheduled_s"].as_f64().unwrap());
        assert!(l["config_id"].is_string() && l["generation"].is_u64());
        correct += l["correct"].as_u64().unwrap();
    }
    assert_eq!(v["images_correct"], correct);
    // One live line per second on stderr (and at most a partial one at the end).
    let live = err.lines().filter(|l| l.contains("offered")).count();
    assert!((3..=5).contains(&live), "{err}");
}

#[test]
#[ignore = "needs the dataset-fashion-mnist package (scripts/ci/setup.sh)"]
fn step_profile_changes_the_rate_and_csv_logs_every_image_sent_as_binary_data() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let s = serve(dir.path(), &["--max-queue", "1024"]);
    let log = dir.path().join("requests.csv");
    let (ok, out, err) = load(&[
        "--url",
        &format!("{}/", s.data),
        "--model",
        "tiny",
        "--profile",
        "step:50,300,1,2",
        "--arrivals",
        "constant",
        "--images-per-request",
        "2",
        "--encoding",
        "binary",
        "--duration",
        "3",
        "--log",
        log.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let v = summary(&out);
    assert_eq!(v["encoding"], "binary");
    assert_eq!((v["scheduled"].as_u64(), v["ok"].as_u64()), (Some(400), Some(400)), "{v}");
    assert_eq!(v["images_answered"], 800);
    let text = std::fs::read_to_string(&log).unwrap();
    let mut rows = text.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut per_second = [0usize; 3];
    let rows: Vec<Vec<&str>> = rows.map(|r| r.split(',').collect()).collect();
    assert_eq!(rows.len(), 400);
    for r in &rows {
        let t: f64 = r[col("scheduled_s")].parse().unwrap();
        per_second[t as usize] += 1;
        assert_eq!(r[col("outcome")], "ok");
        assert_eq!(r[col("label")].split(';').count(), 2, "{r:?}");
        assert_eq!(r[col("predicted")].split(';').count(), 2, "{r:?}");
    }
    assert_eq!(per_second, [50, 300, 50]);
}

#[test]
#[ignore = "needs the dataset-fashion-mnist package (scripts/ci/setup.sh)"]
fn failed_requests_are_logged_and_miss_the_slo() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    // Two images per request against an admission limit of one: every request gets 413.
    let s = serve(dir.path(), &["--max-queue", "1", "--max-batch", "1"]);
    let log = dir.path().join("requests.jsonl");
    let (ok, out, err) = load(&[
        "--url",
        &s.data,
        "--model",
        "tiny",
        "--profile",
        "constant:50",
        "--duration",
        "1",
        "--images-per-request",
        "2",
        "--slo-ms",
        "1000",
        "--log",
        log.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let v = summary(&out);
    let sent = v["sent"].as_u64().unwrap();
    assert!(sent > 0 && v["errors"] == sent && v["ok"] == 0, "{v}");
    assert!(v["accuracy"].is_null(), "{v}");
    assert_eq!((v["slo_attainment"].as_f64(), v["slo_windows"].as_u64()), (Some(0.0), Some(1)));
    let lines = log_lines(&log);
    assert_eq!(lines.len() as u64, sent);
    for l in &lines {
        assert!(l["outcome"] == "error" && l["status"] == 413 && l["correct"].is_null(), "{l}");
        assert!(l["error"].as_str().unwrap().contains("limit"), "{l}");
    }
}

#[test]
fn bad_profile_and_missing_data_fail_in_one_line() {
    for (args, expect) in [
        (vec!["--profile", "wave:3"], "bad profile \"wave:3\""),
        (vec!["--profile", "step:1,2,3"], "step takes 4 numbers"),
        (vec!["--profile", "trace:/nonexistent/trace.csv"], "/nonexistent/trace.csv"),
        (vec!["--duration", "0"], "--duration"),
        (vec!["--url", "https://example.invalid"], "https is not supported"),
        (vec!["--data", "/nonexistent/fmnist"], "apt-get install dataset-fashion-mnist"),
        (vec!["--feedback", "1.5"], "--feedback must be a share in [0, 1]"),
    ] {
        let (ok, out, err) = load(&args);
        assert!(!ok, "{args:?} should fail");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: ") && err.contains(expect), "{args:?}: {err}");
    }
}

#[test]
#[ignore = "needs the dataset-fashion-mnist package (scripts/ci/setup.sh)"]
fn unreachable_server_and_unknown_model_fail_in_one_line() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let (ok, out, err) = load(&["--url", "http://127.0.0.1:1", "--model", "tiny", "--duration", "1"]);
    assert!(!ok && out.is_empty());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: cannot reach http://127.0.0.1:1/v2"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let s = serve(dir.path(), &[]);
    let (ok, _, err) = load(&["--url", &s.data, "--model", "nope", "--duration", "1"]);
    assert!(!ok);
    assert!(err.trim() == format!("error: the server at {} has no model \"nope\"", s.data), "{err}");
    // Without --model the server's only model is found in its repository index.
    let (ok, out, err) = load(&["--url", &s.data, "--duration", "1", "--profile", "constant:20"]);
    assert!(ok, "{err}");
    assert_eq!(summary(&out)["model"], "tiny", "{out}");
}

#[test]
#[ignore = "needs the dataset-fashion-mnist package (scripts/ci/setup.sh)"]
fn feedback_posts_true_labels_the_runtime_counts() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let s = serve(dir.path(), &["--max-queue", "1024", "--shadow-rate", "0"]);
    let args =
        ["--url", &s.data, "--model", "tiny", "--profile", "constant:100", "--duration", "2", "--seed", "3"];
    let (ok, out, err) = load(&[&args[..], &["--feedback", "0.5"]].concat());
    assert!(ok, "{err}");
    let v = summary(&out);
    let fb = &v["feedback"];
    let (sent, accepted) = (fb["sent"].as_u64().unwrap(), fb["accepted"].as_u64().unwrap());
    let ok_answers = v["ok"].as_u64().unwrap();
    // A seeded half of the answered requests, every one accepted.
    assert!(sent > ok_answers / 4 && sent < ok_answers * 3 / 4, "{v}");
    assert_eq!(
        (accepted, fb["refused"].as_u64(), fb["answers_without_id"].as_u64()),
        (sent, Some(0), Some(0)),
        "{v}"
    );
    // The runtime counted exactly those labels, and as many right as the load generator saw.
    let (_, report) = get(&format!("{}/v1/accuracy", s.admin));
    assert_eq!(report["feedback"]["accepted_total"].as_u64(), Some(sent), "{report}");
    let full = &report["configs"]["full"]["feedback"];
    assert_eq!(full["samples_total"].as_u64(), Some(sent), "{report}");
    // Without feedback on the runtime, the summary says why nothing was sent.
    let off = serve(dir.path(), &["--feedback-capacity", "0"]);
    let args =
        ["--url", &off.data, "--model", "tiny", "--profile", "constant:50", "--duration", "1", "--seed", "3"];
    let (ok, out, err) = load(&[&args[..], &["--feedback", "1"]].concat());
    assert!(ok, "{err}");
    let v = summary(&out);
    assert_eq!(v["feedback"]["sent"], 0, "{v}");
    assert_eq!(v["feedback"]["answers_without_id"], v["ok"], "{v}");
}
