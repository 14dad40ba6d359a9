//! Triton's HTTP client (`tritonclient[http]`), unchanged, against `dyce serve`: the versioned
//! routes, `get_model_config`, `get_inference_statistics` and a gzip-compressed infer
//! (`request_compression_algorithm`), plus a JSON 404 for an unknown route (issue 23).

mod common;

use common::*;

#[test]
#[ignore = "needs tritonclient[http] (scripts/ci/setup.sh); run by scripts/test.sh"]
fn tritonclient_uses_versions_config_statistics_and_compression() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let s = serve(dir.path(), &["--max-batch", "8"]);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peers/triton_extensions_check.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(["--url", s.data.trim_start_matches("http://"), "--model", "tiny", "--images", "4"])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((got["ready_v1"].clone(), got["ready_v2"].clone()), (true.into(), false.into()), "{got}");
    for cfg in [&got["config"], &got["config_v1"]] {
        assert_eq!(cfg["name"], "tiny");
        assert_eq!(cfg["max_batch_size"], 8);
        assert_eq!(cfg["input"][0]["dims"], serde_json::json!([1, 28, 28]));
    }
    // The same labels whatever the body's compression, and the runtime's own JSON answer.
    let pixels: Vec<u32> = (0..4 * 784).map(|i| (i * 31 % 256) as u32).collect();
    let req = serde_json::json!({"inputs": [{"name": "input", "shape": [4, 1, 28, 28], "datatype": "UINT8", "data": pixels}]});
    let (status, direct) = post(&format!("{}/v2/models/tiny/infer", s.data), req.to_string().as_bytes());
    assert_eq!(status, 200);
    for enc in ["plain", "gzip", "deflate"] {
        assert_eq!(got[enc]["label"], direct["outputs"][1]["data"], "{enc}");
        assert_eq!(got[enc]["exit_position"], direct["outputs"][3]["data"], "{enc}");
    }
    for stats in [&got["stats"], &got["stats_v1"]] {
        let m = &stats["model_stats"][0];
        assert_eq!((m["name"].clone(), m["version"].clone()), ("tiny".into(), "1".into()), "{stats}");
        // Three infers of 4 images through tritonclient, answered.
        assert_eq!(m["inference_stats"]["success"]["count"], 3, "{stats}");
        assert_eq!(m["inference_count"], 12, "{stats}");
        assert!(m["inference_stats"]["compute_infer"]["ns"].as_u64().unwrap() > 0, "{stats}");
    }
    let nf = &got["unknown_route"];
    assert_eq!(nf["status"], 404, "{got}");
    assert!(nf["content_type"].as_str().unwrap().starts_with("application/json"), "{nf}");
    assert!(nf["body"]["error"].as_str().unwrap().contains("/v2/no/such/route"), "{nf}");
}
