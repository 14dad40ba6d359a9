//! Real processes on loopback: `dyce serve` + `dyce control` + a step load. The controller must
//! degrade during the step and give the full model back after it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{get, post, serve, tiny_bundle};

struct Controller {
    child: Child,
    url: String,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn control(policy: &std::path::Path, admin: &str) -> Controller {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dyce"))
        .args([
            "control",
            "--policy",
            policy.to_str().unwrap(),
            "--runtime",
            admin,
            "--listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .expect("dyce control starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).expect("first line names the address");
    Controller { child, url: format!("http://{}", v["controller"].as_str().unwrap()) }
}

// A threshold of 1 ms: an idle runtime answers one image well within it, a step of
// 32-image requests from 6 clients cannot.
const POLICY: &str = "apiVersion: dyce.dev/v1alpha1
kind: SloPolicy
metadata: {name: e2e}
spec:
  runtimes: [\"http://127.0.0.1:1\"]
  objective:
    latency: {quantile: 0.99, threshold: 1ms}
  accuracyFloor: 0
  control:
    interval: 200ms
    restore: {after: 1s, headroom: 0.7, step: 200ms}
";

#[test]
fn controller_degrades_under_a_step_and_restores_after() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(&dir.path().join("m"));
    let rt = serve(&dir.path().join("m"), &["--threads", "1", "--max-batch", "8", "--load-window", "1"]);
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let ctl = control(&policy, &rt.admin);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&format!("{}/readyz", ctl.url)).0 != 200 {
        assert!(Instant::now() < deadline, "controller not ready: {:?}", get(&format!("{}/readyz", ctl.url)));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(&format!("{}/v1/config", rt.admin)).1["id"], "full", "idle: the full model");

    // The step: closed-loop clients with 32-image requests for 4 s.
    let stop = Arc::new(AtomicBool::new(false));
    let body = serde_json::to_vec(&common::infer_body(32, 1)).unwrap();
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (stop, body, url) = (stop.clone(), body.clone(), format!("{}/v2/models/tiny/infer", rt.data));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (status, _) = post(&url, &body);
                    assert!(status == 200 || status == 429, "status {status}");
                }
            })
        })
        .collect();
    let mut degraded_at = None;
    let step_start = Instant::now();
    while step_start.elapsed() < Duration::from_secs(4) {
        if degraded_at.is_none() && get(&format!("{}/v1/config", rt.admin)).1["id"] != "full" {
            degraded_at = Some(step_start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let degraded_at = degraded_at.expect("the controller degrades during the step");
    eprintln!("degraded {:.2} s into the step", degraded_at.as_secs_f64());

    // After the step: the full model comes back.
    let after = Instant::now();
    let restored = loop {
        if get(&format!("{}/v1/config", rt.admin)).1["id"] == "full" {
            break after.elapsed();
        }
        assert!(after.elapsed() < Duration::from_secs(20), "not restored within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("restored {:.2} s after the step", restored.as_secs_f64());
    let (_, status) = get(&format!("{}/v1/status", ctl.url));
    let dirs: Vec<&str> =
        status["changes"].as_array().unwrap().iter().map(|c| c["direction"].as_str().unwrap()).collect();
    assert!(dirs.contains(&"degrade") && dirs.last() == Some(&"restore"), "changes: {dirs:?}");
    let (code, metrics) = get(&format!("{}/metrics", ctl.url));
    let text = metrics.as_str().unwrap_or_default().to_string();
    assert_eq!(code, 200);
    assert!(text.contains("dyce_controller_decisions_total{policy=\"e2e\",direction=\"degrade\"}"), "{text}");
}

#[test]
fn policy_check_rejects_a_broken_file_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.yaml");
    std::fs::write(&p, POLICY.replace("quantile: 0.99", "quantile: 99")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dyce"))
        .args(["policy", "check", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("spec.objective.latency.quantile"), "{err}");
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, POLICY).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dyce"))
        .args(["policy", "check", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
