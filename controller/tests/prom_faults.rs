//! Fault injection for Prometheus mode: a Prometheus that hangs or refuses connections must
//! not slow the policy's ticks, must show in `/v1/status`, and steering by it must resume once it
//! answers again.

#[path = "faults/fake.rs"]
#[allow(dead_code)] // shared with faults.rs, which uses all of it
mod fake;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use dyce_controller::prom::PromConfig;
use fake::{start_controller, ticks, Fake, Fault};
use tokio_util::sync::CancellationToken;

const POLICY: &str = "apiVersion: dyce.dev/v1alpha1
kind: SloPolicy
metadata: {name: prom-faults}
spec:
  runtimes: [\"http://127.0.0.1:1\"]
  objective:
    latency: {quantile: 0.99, threshold: 50ms}
  accuracyFloor: 0
  control:
    interval: 100ms
    restore: {after: 100ms, step: 100ms}
";

/// A stand-in for Prometheus' query API: light, steady load while `hang` is off; while it is
/// on, every query is accepted and never answered.
async fn query(
    State(hang): State<Arc<AtomicBool>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Json<serde_json::Value> {
    if hang.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
    let query = q.into_iter().find(|(k, _)| k == "query").map(|(_, v)| v).unwrap_or_default();
    let one = |metric: serde_json::Value, v: &str| {
        serde_json::json!({"status": "success", "data": {"resultType": "vector",
            "result": [{"metric": metric, "value": [1.0, v]}]}})
    };
    Json(if query.starts_with("count(up") {
        one(serde_json::json!({}), "2")
    } else if query.contains("dyce_saturated_compute_seconds") {
        one(serde_json::json!({"config": "full"}), "0.001")
    } else if query.contains("histogram_quantile") {
        one(serde_json::json!({}), "0.005")
    } else {
        one(serde_json::json!({}), "1")
    })
}

/// A fake Prometheus on port 0, hanging while the returned flag is set.
async fn prometheus(hang: bool) -> (String, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let flag = Arc::new(AtomicBool::new(hang));
    let app = Router::new().route("/api/v1/query", get(query)).with_state(flag.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, flag)
}

async fn controller(fakes: &[Arc<Fake>], prom_url: &str) -> (String, CancellationToken) {
    let prom = PromConfig {
        url: prom_url.to_string(),
        selector: "job=\"dyce-runtime\"".into(),
        window: Duration::from_secs(10),
        timeout: Duration::from_secs(2),
    };
    start_controller(POLICY, fakes, Some(prom)).await
}

async fn status(base: &str) -> serde_json::Value {
    reqwest::get(format!("{base}/v1/status")).await.unwrap().json().await.unwrap()
}

/// Ticks per second over `secs`, and pushes per second to the least-pushed of `fakes`.
async fn rates(base: &str, fakes: &[Arc<Fake>], secs: u64) -> (f64, f64) {
    let puts = || fakes.iter().map(|f| f.puts.load(Ordering::Relaxed)).min().unwrap();
    let (t0, p0, start) = (ticks(base).await, puts(), Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let took = start.elapsed().as_secs_f64();
    ((ticks(base).await - t0) as f64 / took, (puts() - p0) as f64 / took)
}

/// Prometheus hangs after steering started: the policy still ticks at its interval and keeps
/// actuating the runtimes (holding its config), the status says why there are no signals; once
/// Prometheus answers again, the error clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_prometheus_does_not_slow_the_ticks() {
    let fakes = [Fake::start(Fault::Sticky).await, Fake::start(Fault::Sticky).await];
    let (prom, hang) = prometheus(false).await;
    let (base, stop) = controller(&fakes, &prom).await;
    // Past the first decision and the restore to "full" (100 ms dwell), then Prometheus hangs.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(status(&base).await["signal_error"].is_null(), "Prometheus answered");
    hang.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rate, puts) = rates(&base, &fakes, 3).await;
    eprintln!("hung Prometheus: {rate:.1} ticks/s, {puts:.1} pushes/s to each runtime");
    // 10/s nominal; a tick that waited for the query (2 s timeout) would run at < 1/s.
    assert!(rate >= 6.0, "{rate:.1} ticks/s");
    assert!(puts >= 4.0, "{puts:.1} pushes/s");
    let why = status(&base).await["signal_error"].as_str().unwrap_or_default().to_string();
    assert!(why.contains("prometheus"), "signal_error: {why:?}");
    hang.store(false, Ordering::Relaxed);
    // The carried-over query times out (2 s), then the next one is answered.
    let deadline = Instant::now() + Duration::from_secs(8);
    while !status(&base).await["signal_error"].is_null() {
        assert!(Instant::now() < deadline, "signals not back after Prometheus answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
}

/// A Prometheus that refuses connections: same tick rate, and the cause is in the status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_prometheus_shows_its_cause() {
    let fakes = [Fake::start(Fault::Sticky).await];
    let (base, stop) = controller(&fakes, "http://127.0.0.1:1").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (rate, _) = rates(&base, &fakes, 2).await;
    assert!(rate >= 6.0, "{rate:.1} ticks/s");
    let why = status(&base).await["signal_error"].as_str().unwrap_or_default().to_lowercase();
    assert!(why.contains("refused"), "signal_error: {why:?}");
    stop.cancel();
}
