//! Triton's `tritonclient[grpc]`, unchanged, against `dyce serve`'s gRPC port on the embedded
//! Fashion-MNIST model: health, metadata, raw and typed infer giving the HTTP labels for the
//! same test images, and RESOURCE_EXHAUSTED from a full queue.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use dyce_data::fashion_mnist as data;
use serde_json::Value;

fn client(args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peers/grpc_client_check.py");
    let out = Command::new("python3").arg(script).args(args).output().expect("python3 runs");
    assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "needs tritonclient[grpc] and dataset-fashion-mnist (scripts/ci/setup.sh); run by scripts/test.sh"]
fn tritonclient_grpc_works_unchanged() {
    let s = serve_with(&[], Duration::from_secs(120));
    let model = get(&format!("{}/v1/configs", s.admin)).1["model"].as_str().unwrap().to_string();
    let grpc = s.grpc.clone().expect("the gRPC port is on");
    let got = client(&[
        "check",
        "--grpc",
        &grpc,
        "--http",
        s.data.trim_start_matches("http://"),
        "--model",
        &model,
        "--images",
        "64",
    ]);
    assert_eq!(got["server"], "dyce", "{got}");
    assert_eq!(got["model"], model.as_str());
    assert_eq!(got["versions"], serde_json::json!(["1"]));
    assert_eq!(got["inputs"][0]["shape"], serde_json::json!(["-1", "1", "28", "28"]), "{got}");
    assert_eq!(got["outputs"], serde_json::json!(["probabilities", "label", "confidence", "exit_position"]));
    let http = &got["http"];
    assert_eq!(http["label"].as_array().unwrap().len(), 64);
    for enc in ["raw", "typed"] {
        assert_eq!(got[enc]["label"], http["label"], "{enc}");
        assert_eq!(got[enc]["exit_position"], http["exit_position"], "{enc}");
    }
    assert_eq!(got["raw"]["id"], "raw-1");
    assert_eq!(got["typed"]["id"], "typed-1");
    // Typed in, typed out.
    assert_eq!(got["typed"]["raw_output_contents"], 0);
    for p in got["raw"]["probabilities_sum"].as_array().unwrap() {
        assert!((p.as_f64().unwrap() - 1.0).abs() < 1e-4);
    }
    // The labels are the model's: most of the first 64 test images are classified right
    // (the embedded ResNet-20 is ~92% on Fashion-MNIST), so the images reached it intact.
    let test = data::load(Path::new(data::DEFAULT_DIR)).expect("Fashion-MNIST test split").test;
    let right = test.labels[..64]
        .iter()
        .zip(http["label"].as_array().unwrap())
        .filter(|(l, p)| i64::from(**l) == p.as_i64().unwrap())
        .count();
    assert!(right >= 50, "{right} of 64 right");
}

#[test]
#[ignore = "needs tritonclient[grpc] and dataset-fashion-mnist (scripts/ci/setup.sh); run by scripts/test.sh"]
fn tritonclient_grpc_sees_resource_exhausted_on_a_full_queue() {
    // One image admitted at a time: of 64 concurrent one-image requests, most find it taken.
    let s = serve_with(&["--max-queue", "1", "--max-batch", "1"], Duration::from_secs(120));
    let model = get(&format!("{}/v1/configs", s.admin)).1["model"].as_str().unwrap().to_string();
    let grpc = s.grpc.clone().expect("the gRPC port is on");
    let got = client(&["flood", "--grpc", &grpc, "--model", &model, "--requests", "64"]);
    let exhausted = got["StatusCode.RESOURCE_EXHAUSTED"].as_u64().unwrap_or(0);
    let ok = got["OK"].as_u64().unwrap_or(0);
    assert!(exhausted > 0 && ok > 0, "{got}");
    assert_eq!(exhausted + ok, 64, "only OK and RESOURCE_EXHAUSTED: {got}");
    assert!(got["message"].as_str().unwrap().contains("overloaded"), "{got}");
    // Counted as shed, in the same series as HTTP's 429s.
    let metrics = get(&format!("{}/metrics", s.admin)).1;
    let text = metrics.as_str().unwrap();
    let shed = text.lines().find(|l| l.starts_with("dyce_requests_total{") && l.contains("outcome=\"shed\""));
    let count = shed.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse::<f64>().ok());
    assert!(count.is_some_and(|c| c >= exhausted as f64), "shed series: {shed:?}");
}

#[test]
fn grpc_port_can_be_turned_off() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    for (args, env) in [(&["--grpc-addr", "off"][..], None), (&[][..], Some(""))] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dyce"));
        cmd.args(["serve", "--model", dir.path().to_str().unwrap()])
            .args(["--data-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped());
        if let Some(v) = env {
            cmd.env("DYCE_GRPC_ADDR", v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let addrs: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(addrs["grpc"], Value::Null, "{args:?} {env:?}: {line}");
        assert!(addrs["data"].is_string());
    }
    let out =
        Command::new(env!("CARGO_BIN_EXE_dyce")).args(["serve", "--grpc-addr", "nowhere"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("give HOST:PORT, or off"));
}
