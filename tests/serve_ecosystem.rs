//! What generic serving tools expect of `dyce serve` (issue 23): the versioned OIP routes,
//! Triton's model-configuration and statistics extensions, compressed request bodies (and a
//! gzip bomb held to the body limit), JSON 404s, and the read-only metrics port whose token
//! cannot write.

mod common;

use std::io::Write;

use common::*;
use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gzip_best(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn labels(answer: &serde_json::Value) -> serde_json::Value {
    answer["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "label").unwrap()["data"].clone()
}

/// A field of /proc/PID/status in kB (Linux).
fn status_kb(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn versions_config_stats_and_json_404s() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let s = serve(dir.path(), &["--max-batch", "8"]);
    let base = format!("{}/v2/models/tiny", s.data);
    assert_eq!(get(&format!("{base}/versions/1/ready")).0, 200);
    let (status, meta) = get(&format!("{base}/versions/1"));
    assert_eq!((status, meta["versions"].clone()), (200, serde_json::json!(["1"])));
    for path in ["versions/2/ready", "versions/2", "versions/0/config", "versions/latest/stats"] {
        let (status, body) = get(&format!("{base}/{path}"));
        assert_eq!(status, 404, "{path}");
        assert!(body["error"].as_str().unwrap().contains("version"), "{path}: {body}");
    }
    let (status, body) = post(&format!("{base}/versions/2/infer"), infer_body(1, 0).to_string().as_bytes());
    assert_eq!(status, 404, "{body}");
    for (path, method) in
        [("/v2/nope", "GET"), ("/v2/models/other/config", "GET"), ("/v2/models/tiny/stats", "DELETE")]
    {
        let (status, body) = request(method, &format!("{}{path}", s.data), &[], b"");
        assert!(status == 404 || status == 405, "{path}: {status}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }

    let (_, server) = get(&format!("{}/v2", s.data));
    for ext in ["model_configuration", "statistics", "binary_tensor_data"] {
        assert!(server["extensions"].as_array().unwrap().iter().any(|e| e == ext), "{server}");
    }
    for path in ["config", "versions/1/config"] {
        let (status, cfg) = get(&format!("{base}/{path}"));
        assert_eq!(status, 200);
        assert_eq!(cfg["max_batch_size"], 8);
        assert_eq!(cfg["input"][0]["dims"], serde_json::json!([1, 28, 28]));
        assert_eq!(cfg["input"][0]["data_type"], "TYPE_UINT8");
        assert_eq!(cfg["output"][0]["dims"], serde_json::json!([10]));
    }

    let body = infer_body(3, 7).to_string();
    let (status, plain) = post(&format!("{base}/infer"), body.as_bytes());
    assert_eq!(status, 200);
    let (status, versioned) = post(&format!("{base}/versions/1/infer"), body.as_bytes());
    assert_eq!(status, 200);
    assert_eq!(labels(&plain), labels(&versioned));
    assert_eq!(post(&format!("{base}/infer"), b"{").0, 400);

    let (status, stats) = get(&format!("{base}/stats"));
    assert_eq!(status, 200);
    let m = &stats["model_stats"][0];
    assert_eq!((m["name"].clone(), m["version"].clone()), ("tiny".into(), "1".into()));
    let inf = &m["inference_stats"];
    assert_eq!(inf["success"]["count"], 2, "{stats}");
    assert_eq!(inf["fail"]["count"], 2, "the version 2 infer and the bad body: {stats}");
    for stage in ["queue", "compute_input", "compute_infer", "compute_output"] {
        assert_eq!(inf[stage]["count"], 2, "{stage}: {stats}");
        assert!(inf[stage]["ns"].as_u64().unwrap() > 0, "{stage}: {stats}");
    }
    assert!(inf["success"]["ns"].as_u64().unwrap() >= inf["compute_infer"]["ns"].as_u64().unwrap());
    assert_eq!(m["inference_count"], 6);
    assert!(m["execution_count"].as_u64().unwrap() >= 2 && m["last_inference"].as_u64().unwrap() > 0);
    assert!(!m["batch_stats"].as_array().unwrap().is_empty());
    assert_eq!(get(&format!("{}/v2/models/stats", s.data)).1, get(&format!("{base}/versions/1/stats")).1);
}

#[test]
fn compressed_bodies_answer_like_plain_ones_and_a_bomb_gets_413() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let limit = 1 << 20;
    let s = serve(dir.path(), &["--max-body-bytes", &limit.to_string()]);
    let url = format!("{}/v2/models/tiny/infer", s.data);
    let body = infer_body(2, 3).to_string();
    let (status, plain) = post(&url, body.as_bytes());
    assert_eq!(status, 200);
    let json = ("Content-Type", "application/json");
    let (status, zipped) =
        request("POST", &url, &[json, ("Content-Encoding", "gzip")], &gzip(body.as_bytes()));
    assert_eq!(status, 200, "{zipped}");
    assert_eq!(labels(&plain), labels(&zipped));
    let mut z = ZlibEncoder::new(Vec::new(), Compression::fast());
    z.write_all(body.as_bytes()).unwrap();
    let (status, deflated) =
        request("POST", &url, &[json, ("Content-Encoding", "deflate")], &z.finish().unwrap());
    assert_eq!((status, labels(&deflated)), (200, labels(&plain)));
    let (status, err) = request("POST", &url, &[json, ("Content-Encoding", "br")], body.as_bytes());
    assert_eq!(status, 415, "{err}");
    let (status, err) = request("POST", &url, &[json, ("Content-Encoding", "gzip")], b"not gzip at all");
    assert_eq!(status, 400, "{err}");

    // 256 MiB of zeros in a 256 KiB body: 256 times the limit once inflated. The answer is a
    // JSON 413, and the runtime's peak memory grows by far less than what full inflation takes.
    let bomb = gzip_best(&vec![b' '; 256 << 20]);
    assert!(bomb.len() < limit, "{} bytes", bomb.len());
    let pid = s.child.id();
    let before = status_kb(pid, "VmHWM:");
    for _ in 0..3 {
        let (status, err) = request("POST", &url, &[json, ("Content-Encoding", "gzip")], &bomb);
        assert_eq!(status, 413, "{err}");
        assert!(err["error"].as_str().unwrap().contains("decompresses to more than"), "{err}");
    }
    let grown = status_kb(pid, "VmHWM:").saturating_sub(before);
    assert!(grown < 64 << 10, "peak RSS grew by {grown} kB for a bomb capped at {limit} bytes");
    assert_eq!(post(&url, body.as_bytes()).0, 200, "still serving");
}

fn write_token(dir: &std::path::Path, name: &str, token: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn metrics_port_reads_without_the_admin_token_and_its_token_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    // No metrics token: the metrics port is open, and serves /metrics only.
    let s = serve(dir.path(), &[]);
    assert_eq!(
        post(&format!("{}/v2/models/tiny/infer", s.data), infer_body(1, 1).to_string().as_bytes()).0,
        200
    );
    let (status, text) = get(&format!("{}/metrics", s.metrics));
    assert_eq!(status, 200);
    let text = text.as_str().unwrap().to_string();
    for series in [
        "dyce_requests_total{model=\"tiny\",outcome=\"ok\"} 1",
        "dyce_request_stage_duration_seconds_count{model=\"tiny\",stage=\"decode\"} 1",
        "dyce_request_stage_duration_seconds_count{model=\"tiny\",stage=\"encode\"} 1",
        "dyce_request_stage_duration_seconds_count{model=\"tiny\",stage=\"compute\"} 1",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_threads ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
    assert!(text.contains("dyce_queue_depth 0"), "state gauges carry no model label:\n{text}");
    for (method, path) in
        [("GET", "/v1/config"), ("PUT", "/v1/config"), ("GET", "/v1/load"), ("POST", "/metrics")]
    {
        let (status, body) = request(method, &format!("{}{path}", s.metrics), &[], b"{\"id\": \"c0\"}");
        assert!(status == 404 || status == 405, "{method} {path}: {status}");
        assert!(body["error"].is_string(), "{method} {path}: {body}");
    }
    drop(s);

    // With both tokens: the metrics token reads /metrics on either port and nothing else.
    let admin = write_token(dir.path(), "admin.token", "admin-secret");
    let scrape = write_token(dir.path(), "metrics.token", "scrape-secret");
    let s = serve(dir.path(), &["--admin-token-file", &admin, "--metrics-token-file", &scrape]);
    let bearer = |t: &str| ("Authorization", format!("Bearer {t}"));
    let (m, a) = (bearer("scrape-secret"), bearer("admin-secret"));
    let m = [(m.0, m.1.as_str())];
    let a = [(a.0, a.1.as_str())];
    let metrics = format!("{}/metrics", s.metrics);
    assert_eq!(request("GET", &metrics, &[], b"").0, 401);
    assert_eq!(request("GET", &metrics, &[("Authorization", "Bearer wrong")], b"").0, 401);
    assert_eq!(request("GET", &metrics, &m, b"").0, 200);
    assert_eq!(request("GET", &metrics, &a, b"").0, 200);
    assert_eq!(request("GET", &format!("{}/metrics", s.admin), &m, b"").0, 200);
    let switch = format!("{}/v1/config", s.admin);
    let (status, body) = request("PUT", &switch, &m, b"{\"id\": \"c0\"}");
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("metrics token"), "{body}");
    assert_eq!(request("GET", &format!("{}/v1/load", s.admin), &m, b"").0, 403);
    assert_eq!(request("GET", &switch, &[], b"").0, 401);
    assert_eq!(request("GET", &switch, &a, b"").1["id"], "full", "the refused switch did not happen");
    assert_eq!(request("PUT", &switch, &a, b"{\"id\": \"c0\"}").0, 200);

    // The scraper's token may not be the admin token.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dyce"))
        .args(["serve", "--model", dir.path().to_str().unwrap(), "--admin-token-file", &admin])
        .args(["--metrics-token-file", &admin, "--data-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must differ"));
}

/// The stderr of `dyce [--log-format FORMAT] serve` up to readiness (stderr is a pipe here).
fn serve_logs(dir: &std::path::Path, format: Option<&str>) -> String {
    use std::io::{BufRead, BufReader, Read};
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dyce"));
    if let Some(f) = format {
        cmd.args(["--log-format", f]);
    }
    let mut child = cmd
        .args(["serve", "--model", dir.to_str().unwrap(), "--data-addr", "127.0.0.1:0"])
        .args(["--admin-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--drain-delay", "0"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addrs: serde_json::Value = serde_json::from_str(&line).unwrap();
    let ready = format!("http://{}/v2/health/ready", addrs["data"].as_str().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while get(&ready).0 != 200 {
        assert!(std::time::Instant::now() < deadline, "not ready");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    err
}

#[test]
fn logs_are_json_lines_or_plain_text_without_colour_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let json = serve_logs(dir.path(), Some("json"));
    assert!(json.lines().count() >= 3, "{json}");
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"]["message"].is_string(), "{line}");
    }
    assert!(json.contains("\"message\":\"ready\""), "{json}");
    let text = serve_logs(dir.path(), None);
    assert!(text.contains("ready") && !text.contains('\u{1b}'), "escape codes in a pipe: {text:?}");
    assert!(serde_json::from_str::<serde_json::Value>(text.lines().next().unwrap()).is_err());
}
