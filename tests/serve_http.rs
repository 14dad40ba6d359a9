//! `dyce serve` over real HTTP: OIP v2, the admin API, bad input, shutdown.

mod common;

use common::*;
use serde_json::json;

fn infer_url(s: &Server) -> String {
    format!("{}/v2/models/tiny/infer", s.data)
}

fn good_request_works(s: &Server) {
    let (status, body) = post(&infer_url(s), infer_body(2, 7).to_string().as_bytes());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][1]["name"], "label");
    assert_eq!(body["outputs"][0]["shape"], json!([2, 10]));
}

#[test]
fn oip_v2_metadata_and_inference() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let s = serve(dir.path(), &[]);
    assert_eq!(get(&format!("{}/v2/health/live", s.data)).0, 200);
    assert_eq!(get(&format!("{}/v2", s.data)).1["name"], "dyce");
    let (status, meta) = get(&format!("{}/v2/models/tiny", s.data));
    assert_eq!(status, 200);
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, 1, 28, 28]));
    assert_eq!(get(&format!("{}/v2/models/tiny/ready", s.data)).0, 200);
    // The repository index names the model (a generic client's way to find it); bad bodies 400.
    let index = format!("{}/v2/repository/index", s.data);
    for body in [&b""[..], b"{}", br#"{"ready": true}"#] {
        let (status, models) = post(&index, body);
        assert_eq!(status, 200, "{models}");
        assert_eq!(models, json!([{"name": "tiny", "version": "1", "state": "READY", "reason": ""}]));
    }
    let (status, err) = post(&index, br#"{"ready": "yes"}"#);
    assert_eq!(status, 400, "{err}");
    assert!(err["error"].as_str().unwrap().contains("repository index"), "{err}");

    let (status, body) = post(&infer_url(&s), infer_body(3, 1).to_string().as_bytes());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "r1");
    assert_eq!(body["parameters"]["config_id"], "full");
    let probs = body["outputs"][0]["data"].as_array().unwrap();
    assert_eq!(probs.len(), 30);
    let row: f64 = probs[..10].iter().map(|v| v.as_f64().unwrap()).sum();
    assert!((row - 1.0).abs() < 1e-4);
    assert_eq!(body["outputs"][3]["data"], json!([-1, -1, -1]));

    // FP32 pixels in [0, 1] give the same answer as the same UINT8 pixels.
    let u8s: Vec<u32> = (0..784).map(|i| (i * 31 % 256) as u32).collect();
    let f32s: Vec<f64> = u8s.iter().map(|&v| v as f64 / 255.0).collect();
    let a = post(
        &infer_url(&s),
        json!({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "UINT8", "data": u8s}]})
            .to_string()
            .as_bytes(),
    )
    .1;
    let b = post(
        &infer_url(&s),
        json!({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": f32s}]})
            .to_string()
            .as_bytes(),
    )
    .1;
    assert_eq!(a["outputs"][1]["data"], b["outputs"][1]["data"]);

    // Only the requested outputs.
    let mut req = infer_body(1, 2);
    req["outputs"] = json!([{"name": "exit_position"}]);
    let body = post(&infer_url(&s), req.to_string().as_bytes()).1;
    assert_eq!(body["outputs"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_input_gets_a_json_4xx_and_good_requests_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let s = serve(dir.path(), &["--max-body-bytes", "4000000"]);
    let input = |shape: serde_json::Value, datatype: &str, data: serde_json::Value| {
        json!({"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]}).to_string()
    };
    let zeros = |n: usize| json!(vec![0; n]);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("wrong shape", input(json!([1, 3, 28, 28]), "UINT8", zeros(3 * 784)).into_bytes(), 400),
        ("wrong datatype", input(json!([1, 1, 28, 28]), "INT64", zeros(784)).into_bytes(), 400),
        ("length mismatch", input(json!([1, 1, 28, 28]), "UINT8", zeros(700)).into_bytes(), 400),
        (
            "uint8 out of range",
            input(json!([1, 1, 28, 28]), "UINT8", json!(vec![300; 784])).into_bytes(),
            400,
        ),
        ("fp32 out of range", input(json!([1, 1, 28, 28]), "FP32", json!(vec![2.5; 784])).into_bytes(), 400),
        (
            "NaN literal",
            input(json!([1, 1, 28, 28]), "FP32", zeros(784)).replace("[0,", "[NaN,").into_bytes(),
            400,
        ),
        (
            "infinite",
            input(json!([1, 1, 28, 28]), "FP32", zeros(784)).replace("[0,", "[1e999,").into_bytes(),
            400,
        ),
        ("strings", input(json!([1, 1, 28, 28]), "UINT8", json!(vec!["a"; 784])).into_bytes(), 400),
        ("empty body", vec![], 400),
        ("not json", b"hello".to_vec(), 400),
        ("unknown field", br#"{"inputs": [], "bogus": 1}"#.to_vec(), 400),
        ("no inputs", br#"{"inputs": []}"#.to_vec(), 400),
        ("50 MB body", vec![b' '; 50 << 20], 413),
    ];
    for (what, body, want) in cases {
        let (status, err) = post(&infer_url(&s), &body);
        assert_eq!(status, want, "{what}: {err}");
        assert!(err["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: no JSON reason: {err}");
        good_request_works(&s);
    }
    let (status, err) =
        post(&format!("{}/v2/models/nope/infer", s.data), infer_body(1, 0).to_string().as_bytes());
    assert_eq!(status, 404, "{err}");
    assert!(err["error"].as_str().unwrap().contains("nope"));
    assert_eq!(get(&format!("{}/v2/models/nope", s.data)).0, 404);
    good_request_works(&s);
}

#[test]
fn admin_api_switches_with_generations() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let s = serve(dir.path(), &[]);
    let (status, configs) = get(&format!("{}/v1/configs", s.admin));
    assert_eq!(status, 200);
    assert_eq!(configs["model"], "tiny");
    assert_eq!(configs["active"], json!({"id": "full", "generation": 0}));
    let url = format!("{}/v1/config", s.admin);
    assert_eq!(put(&url, &json!({"id": "c0", "generation": 4})), (200, json!({"id": "c0", "generation": 4})));
    let (status, body) = post(&infer_url(&s), infer_body(2, 3).to_string().as_bytes());
    assert_eq!(status, 200);
    assert_eq!(body["parameters"]["config_id"], "c0");
    assert_eq!(
        body["outputs"][3]["data"],
        json!([0, 0]),
        "threshold 0 at position 0: everything exits there"
    );
    let (status, err) = put(&url, &json!({"id": "c1", "generation": 3}));
    assert_eq!(status, 409, "{err}");
    let (status, err) = put(&url, &json!({"id": "nope"}));
    assert_eq!(status, 404, "{err}");
    assert!(err["error"].as_str().unwrap().contains("nope"));
    assert_eq!(put(&url, &json!({"idd": "c1"})).0, 400);
    assert_eq!(get(&url).1, json!({"id": "c0", "generation": 4}));
    let (status, load) = get(&format!("{}/v1/load", s.admin));
    assert_eq!(status, 200);
    assert!(load["completions_per_second"].as_f64().unwrap() > 0.0, "{load}");
    assert!(load["compute_seconds_per_request"]["c0"].as_f64().unwrap() > 0.0, "{load}");
    let (status, metrics) = get(&format!("{}/metrics", s.admin));
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap();
    for name in [
        "dyce_requests_total{model=\"tiny\",outcome=\"ok\"}",
        "dyce_config_switches_total 1",
        "dyce_active_config_info{config=\"c0\"} 1",
        "dyce_build_info",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}

#[test]
fn admin_token_is_required_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let s = serve(dir.path(), &["--admin-token-file", token.to_str().unwrap()]);
    let url = format!("{}/v1/config", s.admin);
    let (status, err) = get(&url);
    assert_eq!(status, 401);
    assert!(err["error"].as_str().is_some());
    assert_eq!(get_auth(&url, "wrong").0, 401);
    assert_eq!(get_auth(&url, "s3cret").0, 200);
    // The data port never serves the admin API.
    assert_eq!(get(&format!("{}/v1/config", s.data)).0, 404);
}

#[test]
fn sigterm_finishes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let mut s = serve(dir.path(), &[]);
    good_request_works(&s);
    let pid = s.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = s.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn exposing_admin_without_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dyce"))
        .args([
            "serve",
            "--model",
            dir.path().to_str().unwrap(),
            "--admin-addr",
            "0.0.0.0:0",
            "--data-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--admin-token-file"), "{err}");
}
