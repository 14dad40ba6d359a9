//! A standard OIP v2 client (Triton's `tritonclient[http]`), unchanged, against `dyce serve`.

mod common;

use common::*;

#[test]
#[ignore = "needs tritonclient[http] (scripts/ci/setup.sh); run by scripts/test.sh"]
fn tritonclient_works_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let s = serve(dir.path(), &[]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peers/oip_client_check.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(["--url", s.data.trim_start_matches("http://"), "--model", "tiny", "--images", "4"])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(got["extensions"].as_array().unwrap().iter().any(|e| e == "binary_tensor_data"));
    // tritonclient's get_model_repository_index() finds the served model.
    assert_eq!(got["repository"], serde_json::json!(["tiny"]), "{got}");
    // Both encodings give the runtime's own JSON answer for the same pixels.
    let pixels: Vec<u32> = (0..4 * 784).map(|i| (i * 31 % 256) as u32).collect();
    let req = serde_json::json!({"inputs": [{"name": "input", "shape": [4, 1, 28, 28], "datatype": "UINT8", "data": pixels}]});
    let (status, direct) = post(&format!("{}/v2/models/tiny/infer", s.data), req.to_string().as_bytes());
    assert_eq!(status, 200);
    for enc in ["binary", "json"] {
        assert_eq!(got[enc]["label"], direct["outputs"][1]["data"], "{enc}");
        assert_eq!(got[enc]["exit_position"], direct["outputs"][3]["data"], "{enc}");
        for p in got[enc]["probabilities_sum"].as_array().unwrap() {
            assert!((p.as_f64().unwrap() - 1.0).abs() < 1e-4);
        }
    }
}
