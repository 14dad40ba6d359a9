//! Writes the seeds made from the tiny model (`fuzz/src/fixture.rs`) into `fuzz/corpus/`:
//! its manifest, configuration table, weights and well-formed requests. The images and the
//! policies in the corpus are files of their own. `cargo run -p dyce-fuzz --example write_seeds`

use std::path::Path;

use dyce_fuzz::fixture;
use serde_json::json;

fn put(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), bytes).unwrap();
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let pretty = |v: &serde_json::Value| serde_json::to_vec_pretty(v).unwrap();
    put(&dir, "manifest", "tiny.json", &serde_json::to_vec_pretty(&fixture::manifest()).unwrap());
    put(&dir, "configs", "tiny.json", &serde_json::to_vec_pretty(&fixture::configs()).unwrap());
    let weights = std::env::temp_dir().join("dyce-fuzz-seed.safetensors");
    candle_core::safetensors::save(&fixture::tensors(), &weights).unwrap();
    put(&dir, "safetensors", "tiny.safetensors", &std::fs::read(&weights).unwrap());
    let _ = std::fs::remove_file(weights);

    let input = |datatype: &str, data: serde_json::Value| json!({"name": "input", "shape": [1, 1, 12, 12], "datatype": datatype, "data": data});
    put(&dir, "oip_json", "uint8.json", &pretty(&json!({"inputs": [input("UINT8", json!(vec![7; 144]))]})));
    put(
        &dir,
        "oip_json",
        "fp32-outputs.json",
        &pretty(&json!({
            "id": "r1",
            "inputs": [input("FP32", json!(vec![0.5; 144]))],
            "outputs": [{"name": "label"}, {"name": "probabilities", "parameters": {"binary_data": false}}],
            "parameters": {"config": "early"}
        })),
    );
    let two = json!({"inputs": [{"name": "input", "shape": [2, 12, 12, 1], "datatype": "UINT8",
        "data": [vec![1; 144], vec![2; 144]]}]});
    put(&dir, "oip_json", "nested-batch.json", &pretty(&two));
    for (name, datatype, data) in
        [("uint8", "UINT8", vec![9u8; 144]), ("fp32", "FP32", [0.25f32.to_le_bytes(); 144].concat())]
    {
        let head = json!({"inputs": [{"name": "input", "shape": [1, 1, 12, 12], "datatype": datatype,
            "parameters": {"binary_data_size": data.len()}}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}]});
        let head = serde_json::to_vec(&head).unwrap();
        let mut body = format!("{}\n", head.len()).into_bytes();
        body.extend_from_slice(&head);
        body.extend_from_slice(&data);
        put(&dir, "oip_binary", &format!("{name}.bin"), &body);
    }
    put(&dir, "admin_config", "early.json", br#"{"id": "early"}"#);
    put(&dir, "admin_config", "full-generation.json", br#"{"id": "full", "generation": 3}"#);
}
