//! Issue 19, defect 1: a model thread that dies (any panic; here injected) must not leave a
//! zombie that answers 503 to every request while `/v2/health/ready` says 200. The runtime is
//! unready at the next health check, `dyce_model_up` reads 0, and `Server::run` ends with
//! `ModelStopped` (so `dyce serve` exits non-zero and is restarted).

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::*;
use dyce_runtime::server::{self, Server};
use dyce_runtime::service::{ServeConfig, ServeError};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

async fn call(router: &Router, method: &str, uri: &str, body: Value) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(if body.is_null() { Body::empty() } else { Body::from(body.to_string()) })
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn infer_body() -> Value {
    json!({"inputs": [{"name": "input", "shape": [1, 1, 12, 12], "datatype": "UINT8", "data": vec![7; 144]}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_model_thread_makes_the_runtime_unready_and_ends_the_server() {
    let (bundle, _) = tiny_bundle(3, vec![entry("boom", &[(1, "mlp1", 0.5)])]);
    let cfg = ServeConfig {
        max_batch: 2,
        threads: Some(1),
        panic_on_config: Some("boom".into()),
        ..Default::default()
    };
    let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let srv = Server::new(bundle, &cfg, data, admin).unwrap();
    let rt = srv.runtime().clone();
    let (data, admin) = (server::data_router(rt.clone()), server::admin_router(rt.clone()));
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(srv.run(shutdown.clone()));

    let deadline = Instant::now() + Duration::from_secs(60);
    while call(&data, "GET", "/v2/health/ready", Value::Null).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "not ready within a minute");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = call(&data, "POST", "/v2/models/tiny/infer", infer_body()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(call(&admin, "GET", "/metrics", Value::Null).await.1.contains("dyce_model_up 1"));

    // The switch itself is fine; the next batch panics the model thread.
    let (status, body) = call(&admin, "PUT", "/v1/config", json!({"id": "boom"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(&data, "POST", "/v2/models/tiny/infer", infer_body()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("the model is not running"), "{body}");

    // The very next health check says unready, and the metric shows why.
    let ended = tokio::time::timeout(Duration::from_secs(10), run).await.expect("the server stops by itself");
    assert_eq!(call(&data, "GET", "/v2/health/ready", Value::Null).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        call(&data, "GET", "/v2/models/tiny/ready", Value::Null).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(call(&admin, "GET", "/metrics", Value::Null).await.1.contains("dyce_model_up 0"));
    match ended.unwrap() {
        Err(ServeError::ModelStopped(reason)) => assert!(reason.contains("fault injection"), "{reason}"),
        other => panic!("expected ModelStopped, got {other:?}"),
    }
    // Later requests keep getting a clear 503, not a hang.
    let (status, _) = call(&data, "POST", "/v2/models/tiny/infer", infer_body()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!shutdown.is_cancelled());
}
