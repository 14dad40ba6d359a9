//! Bad requests on both ports, as tables of request → expected status and message (issue 19):
//! every refusal is JSON `{"error": ...}` with the status docs/api.md gives.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::*;
use dyce_runtime::server;
use dyce_runtime::service::{self, Runtime, ServeConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

fn runtime(token: Option<&str>) -> Arc<Runtime> {
    let (b, _) = tiny_bundle(1, vec![entry("c03", &[(0, "mlp1", 0.5)]), entry("c05", &[(1, "mlp1", 0.5)])]);
    let cfg = ServeConfig {
        max_batch: 2,
        threads: Some(1),
        admin_token: token.map(String::from),
        ..Default::default()
    };
    service::start(b, &cfg).unwrap().0
}

/// Sends `method uri` with `headers` and `body`; the status, content type and JSON body (or
/// `Null` when the body is not JSON).
async fn send(
    router: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, String, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = router.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let status = resp.status();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, ct, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn put_config(admin: &Router, body: Value) -> (StatusCode, Value) {
    let (status, _, v) = send(
        admin,
        "PUT",
        "/v1/config",
        &[("content-type", "application/json")],
        body.to_string().into_bytes(),
    )
    .await;
    (status, v)
}

/// Issue 19, defect 4, as it was reported: after a write of generation `u64::MAX` a write
/// without one answered generation 0, and the controller got 409 on every tick after.
#[tokio::test]
async fn a_generation_that_cannot_be_incremented_is_refused() {
    let rt = runtime(None);
    let admin = server::admin_router(rt.clone());
    let (status, v) = put_config(&admin, json!({"id": "c03", "generation": u64::MAX})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("above the largest accepted"), "{v}");
    let (status, v) = put_config(&admin, json!({"id": "c05"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"id": "c05", "generation": 1}));
    // A controller's next fenced write (active + 1) goes through.
    let (status, v) = put_config(&admin, json!({"id": "c03", "generation": 2})).await;
    assert_eq!((status, &v["generation"]), (StatusCode::OK, &json!(2)), "{v}");
    // At the ceiling, a write without a generation is refused instead of wrapping.
    let max = i64::MAX as u64;
    assert_eq!(put_config(&admin, json!({"id": "c05", "generation": max})).await.0, StatusCode::OK);
    let (status, v) = put_config(&admin, json!({"id": "c03"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("largest accepted"), "{v}");
    assert_eq!(rt.switch.current().generation, max);
    rt.queue.close();
}
