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
        max_body_bytes: 64 << 10,
        ..Default::default()
    };
    service::start(b, &cfg).unwrap().0
}

/// One row of a table: a request and the answer it must get.
struct Case {
    what: &'static str,
    method: &'static str,
    uri: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: StatusCode,
    /// A part of the `error` message.
    reason: &'static str,
}

fn case(
    what: &'static str,
    method: &'static str,
    uri: &'static str,
    status: u16,
    reason: &'static str,
) -> Case {
    Case {
        what,
        method,
        uri,
        headers: vec![],
        body: vec![],
        status: StatusCode::from_u16(status).unwrap(),
        reason,
    }
}

impl Case {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// Runs every row against `router`: status, a JSON content type and the reason.
async fn check(router: &Router, cases: Vec<Case>) {
    for c in cases {
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, ct, v) = send(router, c.method, c.uri, &headers, c.body).await;
        assert_eq!(status, c.status, "{}: {v}", c.what);
        assert_eq!(ct, "application/json", "{}", c.what);
        let error = v["error"].as_str().unwrap_or_else(|| panic!("{}: no error in {v}", c.what));
        assert!(error.contains(c.reason), "{}: {error:?} lacks {:?}", c.what, c.reason);
    }
}

fn pixels(datatype: &str) -> Value {
    json!({"inputs": [{"name": "input", "shape": [1, 1, 12, 12], "datatype": datatype, "data": vec![1; 144]}]})
}

/// A binary-extension body: the JSON header, then `tail`; and the header's length.
fn binary(datatype: &str, declared: usize, tail: &[u8]) -> (String, Vec<u8>) {
    let head = json!({"inputs": [{"name": "input", "shape": [1, 1, 12, 12], "datatype": datatype,
        "parameters": {"binary_data_size": declared}}]})
    .to_string();
    let mut body = head.clone().into_bytes();
    body.extend_from_slice(tail);
    (head.len().to_string(), body)
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

#[tokio::test]
async fn data_port_refusals_are_json_with_their_status() {
    let rt = runtime(None);
    let data = server::data_router(rt.clone());
    let infer = "/v2/models/tiny/infer";
    let (bytes_len, bytes_body) = binary("BYTES", 144, &[0; 144]);
    let (_, u8_body) = binary("UINT8", 144, &[0; 144]);
    let (tail_len, tail_body) = binary("UINT8", 144, &[0; 200]);
    let json = |v: Value| v.to_string().into_bytes();
    let hcl = "inference-header-content-length";
    check(
        &data,
        vec![
            case("binary BYTES", "POST", infer, 400, "BYTES is not supported for input \"input\"")
                .header(hcl, bytes_len)
                .body(bytes_body),
            case("JSON BYTES", "POST", infer, 400, "BYTES is not supported").body(json(pixels("BYTES"))),
            case("INT64", "POST", infer, 400, "INT64 is not supported").body(json(pixels("INT64"))),
            case("header length past the body", "POST", infer, 400, "but the body has")
                .header(hcl, "100000")
                .body(u8_body.clone()),
            case("header length not a number", "POST", infer, 400, "must be a byte count")
                .header(hcl, "lots")
                .body(u8_body),
            case("unclaimed binary tail", "POST", infer, 400, "not claimed by any input")
                .header(hcl, tail_len)
                .body(tail_body),
            case("not JSON", "POST", infer, 400, "invalid infer request").body("{"),
            case("empty", "POST", infer, 400, "empty body"),
            case("wrong shape", "POST", infer, 400, "does not match [N, 1, 12, 12]").body(json(json!(
                {"inputs": [{"name": "input", "shape": [1, 1, 12, 13], "datatype": "UINT8", "data": [1]}]}
            ))),
            case("short data", "POST", infer, 400, "input data has 1 values").body(json(json!(
                {"inputs": [{"name": "input", "shape": [1, 1, 12, 12], "datatype": "UINT8", "data": [1]}]}
            ))),
            case("out of range", "POST", infer, 400, "UINT8 data must be integers 0-255").body(json(json!(
                {"inputs": [{"name": "input", "shape": [1, 1, 12, 12], "datatype": "UINT8", "data": vec![300; 144]}]}
            ))),
            case("more images than the queue holds", "POST", infer, 413, "300 images in one request, more than the queue limit 256")
                .body(json(json!({"inputs": [{"name": "input", "shape": [300, 1, 12, 12], "datatype": "UINT8", "data": [1]}]}))),
            case("unknown model", "POST", "/v2/models/nope/infer", 404, "unknown model \"nope\"")
                .body(json(pixels("UINT8"))),
            case("unknown model's readiness", "GET", "/v2/models/nope/ready", 404, "unknown model"),
            case("no route", "GET", "/v3/anything", 404, "no route for GET /v3/anything"),
            case("admin route on the data port", "GET", "/v1/configs", 404, "no route for GET /v1/configs"),
            case("wrong method", "POST", "/v2/health/ready", 405, "method POST is not allowed on /v2/health/ready"),
            case("wrong method on infer", "GET", infer, 405, "method GET is not allowed"),
            case("body over the limit", "POST", infer, 413, "over the limit").body(vec![b' '; 65 << 10]),
            case("index body over the limit", "POST", "/v2/repository/index", 413, "over the limit")
                .body(vec![b' '; 65 << 10]),
            case("bad index body", "POST", "/v2/repository/index", 400, "invalid repository index").body("[1]"),
        ],
    )
    .await;
    // The 405 still says which methods the route takes.
    let req = Request::post("/v2/health/ready").body(Body::empty()).unwrap();
    let resp = data.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["allow"], "GET,HEAD");
    rt.queue.close();
}

#[tokio::test]
async fn admin_port_refusals_are_json_with_their_status() {
    let rt = runtime(Some("secret"));
    let admin = server::admin_router(rt.clone());
    // The scheme is case-insensitive (RFC 7235 §2.1), and more than one space may follow it.
    for value in ["Bearer secret", "bearer secret", "BEARER secret", "Bearer  secret"] {
        let (status, _, body) = send(&admin, "GET", "/v1/config", &[("authorization", value)], vec![]).await;
        assert_eq!(status, StatusCode::OK, "{value}: {body}");
    }
    let put = |what, body: &[u8], status, reason| {
        case(what, "PUT", "/v1/config", status, reason)
            .header("authorization", "Bearer secret")
            .header("content-type", "application/json")
            .body(body.to_vec())
    };
    let auth = "authorization";
    check(
        &admin,
        vec![
            case("no token", "GET", "/v1/config", 401, "missing or invalid bearer token"),
            case("wrong token", "GET", "/v1/load", 401, "bearer").header(auth, "Bearer nope"),
            case("other scheme", "GET", "/v1/load", 401, "bearer").header(auth, "Basic secret"),
            case("no space", "GET", "/v1/load", 401, "bearer").header(auth, "Bearersecret"),
            case("token prefix", "GET", "/v1/load", 401, "bearer").header(auth, "Bearer secre"),
            put("body over the limit", &[b' '; 65 << 10], 413, "over the limit"),
            put("not JSON", b"{", 400, "expected {\"id\""),
            put("unknown field", br#"{"id": "c03", "gen": 1}"#, 400, "unknown field"),
            put("unknown config", br#"{"id": "nope"}"#, 404, "unknown config id \"nope\""),
            put("negative generation", br#"{"id": "c03", "generation": -1}"#, 400, "expected"),
            case("no route", "GET", "/v2/health/ready", 404, "no route for GET /v2/health/ready"),
            case("wrong method", "POST", "/v1/config", 405, "method POST is not allowed on /v1/config")
                .header(auth, "Bearer secret"),
        ],
    )
    .await;
    rt.queue.close();
}

/// A handler that panics gets a JSON 500 carrying the request id, not a dropped connection.
#[tokio::test]
async fn a_panicking_handler_gets_a_json_500() {
    async fn boom() -> &'static str {
        panic!("a bug")
    }
    let router = server::layers::traced(Router::new().route("/boom", axum::routing::get(boom)));
    let req = Request::get("/boom").header("x-request-id", "r-42").body(Body::empty()).unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(resp.headers()["x-request-id"], "r-42");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v, json!({"error": "internal error: the request handler panicked"}));
    // The router still serves.
    let (status, _, v) = send(&router, "GET", "/nope", &[], vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
}
