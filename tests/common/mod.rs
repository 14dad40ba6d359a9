//! Helpers for tests that run the real `dyce` binary.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dyce_api::{ConfigEntry, ConfigTable, ExitChoice};
use dyce_runtime::model::bundle::{ExitInfo, FORMAT};
use dyce_runtime::model::random::random_checkpoint;
use dyce_runtime::model::{BackboneSpec, Bundle, InputSpec, Manifest};

/// A small random-weight bundle for 28×28 grayscale with a few configs.
pub fn tiny_bundle(dir: &Path) -> Bundle {
    let spec = BackboneSpec::small(vec![1, 1, 1], vec![8, 16, 16], 1, 10);
    let types = vec!["mlp1".parse().unwrap()];
    let tensors = random_checkpoint(&spec, &types, 3).unwrap();
    let manifest = Manifest {
        format: FORMAT,
        name: "tiny".into(),
        input: InputSpec {
            shape: [1, 28, 28],
            mean: vec![0.286],
            std: vec![0.353],
            labels: (0..10).map(|i| format!("c{i}")).collect(),
            transform: Default::default(),
        },
        backbone: spec,
        positions: vec![],
        full_macs: 0,
        exits: (0..3).map(|p| ExitInfo { position: p, exit_type: "mlp1".into(), macs: 0 }).collect(),
        provenance: BTreeMap::new(),
    };
    let mut table = ConfigTable::full_only("tiny");
    for (i, th) in [0.0f32, 0.5].iter().enumerate() {
        table.configs.insert(
            i,
            ConfigEntry {
                id: format!("c{i}"),
                exits: vec![ExitChoice { position: 0, exit_type: "mlp1".into(), threshold: *th }],
                expected_accuracy: Some(0.5),
                macs_ratio: Some(0.4),
                latency_ratio: None,
                expected_disagreement: None,
            },
        );
    }
    Bundle::write(dir, manifest, &tensors, &table).unwrap()
}

/// A running `dyce serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub data: String,
    pub admin: String,
    /// The gRPC port, host:port (tests start it on 127.0.0.1:0).
    pub grpc: Option<String>,
    /// The read-only metrics port.
    pub metrics: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `dyce serve --model DIR` on port 0 and waits until it is ready.
pub fn serve(model: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--model", model.to_str().unwrap()];
    args.extend_from_slice(extra);
    serve_with(&args, Duration::from_secs(30))
}

/// Starts `dyce serve ARGS` (ports 0 added) and waits up to `ready_within` until it is ready.
pub fn serve_with(extra: &[&str], ready_within: Duration) -> Server {
    serve_env(extra, &[], ready_within)
}

/// `serve_with`, with extra environment variables.
pub fn serve_env(extra: &[&str], env: &[(&str, &str)], ready_within: Duration) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dyce"))
        .args(["serve", "--data-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .args(["--grpc-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .expect("dyce serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addrs: serde_json::Value = serde_json::from_str(&line).expect("first stdout line names the ports");
    let s = Server {
        child,
        data: format!("http://{}", addrs["data"].as_str().unwrap()),
        admin: format!("http://{}", addrs["admin"].as_str().unwrap()),
        grpc: addrs["grpc"].as_str().map(str::to_string),
        metrics: format!("http://{}", addrs["metrics"].as_str().unwrap()),
    };
    let deadline = Instant::now() + ready_within;
    while get(&format!("{}/v2/health/ready", s.data)).0 != 200 {
        assert!(Instant::now() < deadline, "not ready within {ready_within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    s
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn read(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, serde_json::Value) {
    let mut r = resp.expect("HTTP exchange");
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// GET, returning status and JSON (or the text as a JSON string).
pub fn get(url: &str) -> (u16, serde_json::Value) {
    read(agent().get(url).call())
}

/// GET with a bearer token.
pub fn get_auth(url: &str, token: &str) -> (u16, serde_json::Value) {
    read(agent().get(url).header("Authorization", &format!("Bearer {token}")).call())
}

/// POST raw bytes.
pub fn post(url: &str, body: &[u8]) -> (u16, serde_json::Value) {
    read(agent().post(url).header("Content-Type", "application/json").send(body))
}

/// PUT JSON.
pub fn put(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    read(agent().put(url).send_json(body))
}

/// An OIP v2 request of `n` UINT8 images.
pub fn infer_body(n: usize, seed: u8) -> serde_json::Value {
    let data: Vec<u32> = (0..n * 784).map(|i| (i as u32 * 31 + seed as u32) % 256).collect();
    serde_json::json!({"id": "r1", "inputs": [{"name": "input", "shape": [n, 1, 28, 28], "datatype": "UINT8", "data": data}]})
}

/// Any request: `method` on `url` with `headers` and `body`; status and JSON (or text).
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, serde_json::Value) {
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    read(agent().run(req.body(body.to_vec()).unwrap()))
}
