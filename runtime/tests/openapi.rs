//! The OpenAPI documents of both ports: the committed copies in docs/ are current, every route
//! is documented, and every documented route is served.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use common::*;
use dyce_runtime::server::error::ApiError;
use dyce_runtime::server::{self, routes as openapi};
use dyce_runtime::service::{self, ServeConfig};
use serde_json::Value;
use tower::ServiceExt;
use utoipa::openapi::OpenApi;

const UPDATE: &str = "DYCE_UPDATE_OPENAPI";

fn committed(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs").join(name)
}

/// Compares the committed copy with the code's document, or rewrites it under `DYCE_UPDATE_OPENAPI=1`.
fn check_committed(name: &str, doc: &OpenApi) {
    let path = committed(name);
    let fresh = openapi::to_text(doc);
    if std::env::var(UPDATE).is_ok_and(|v| v == "1") {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(old == fresh, "docs/{name} is stale; run `{UPDATE}=1 cargo test -p dyce-runtime --test openapi`");
}

#[test]
fn committed_documents_are_current() {
    check_committed("openapi-data.json", &openapi::data_document());
    check_committed("openapi-admin.json", &openapi::admin_document());
}

fn operations(doc: &OpenApi) -> BTreeSet<(String, String)> {
    let v = serde_json::to_value(doc).unwrap();
    let mut ops = BTreeSet::new();
    for (path, item) in v["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

fn set(ops: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    ops.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect()
}

#[test]
fn documents_hold_exactly_their_ports_routes() {
    let data = set(&[
        ("GET", "/v2"),
        ("GET", "/v2/health/live"),
        ("GET", "/v2/health/ready"),
        ("GET", "/v2/models/{name}"),
        ("GET", "/v2/models/{name}/ready"),
        ("POST", "/v2/models/{name}/infer"),
        ("GET", "/v2/models/{name}/versions/{version}"),
        ("GET", "/v2/models/{name}/versions/{version}/ready"),
        ("POST", "/v2/models/{name}/versions/{version}/infer"),
        ("GET", "/v2/models/{name}/config"),
        ("GET", "/v2/models/{name}/versions/{version}/config"),
        ("GET", "/v2/models/stats"),
        ("GET", "/v2/models/{name}/stats"),
        ("GET", "/v2/models/{name}/versions/{version}/stats"),
        ("POST", "/v2/repository/index"),
        ("POST", "/v1/classify"),
        ("POST", "/v1/feedback"),
        ("GET", "/openapi.json"),
    ]);
    let admin = set(&[
        ("GET", "/v1/configs"),
        ("GET", "/v1/config"),
        ("PUT", "/v1/config"),
        ("GET", "/v1/load"),
        ("GET", "/v1/accuracy"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ]);
    assert_eq!(operations(&openapi::data_document()), data);
    assert_eq!(operations(&openapi::admin_document()), admin);
}

#[test]
fn documents_are_openapi_3_1_with_schemas_and_error_bodies() {
    let data = serde_json::to_value(openapi::data_document()).unwrap();
    let admin = serde_json::to_value(openapi::admin_document()).unwrap();
    for doc in [&data, &admin] {
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
        // Every 4xx/5xx that has a body refers to a shared response whose body is ErrorBody.
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, resp) in op["responses"].as_object().unwrap() {
                    if status.starts_with('2') || resp.get("content").is_none() && resp.get("$ref").is_none()
                    {
                        continue;
                    }
                    let name = resp["$ref"].as_str().unwrap_or_else(|| panic!("{method} {path} {status}"));
                    let name = name.strip_prefix("#/components/responses/").unwrap();
                    let schema =
                        &doc["components"]["responses"][name]["content"]["application/json"]["schema"];
                    assert_eq!(schema["$ref"], "#/components/schemas/ErrorBody", "{method} {path} {status}");
                }
            }
        }
    }
    let infer = &data["paths"]["/v2/models/{name}/infer"]["post"];
    assert_eq!(
        infer["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/InferRequest"
    );
    assert_eq!(
        infer["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/InferResponse"
    );
    assert_eq!(infer["responses"]["429"]["$ref"], "#/components/responses/Overloaded");
    let classify = &data["paths"]["/v1/classify"]["post"];
    let kinds: BTreeSet<&str> =
        classify["requestBody"]["content"].as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["image/jpeg", "image/png"]));
    assert_eq!(
        classify["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ClassifyResponse"
    );
    for schema in ["ConfigsView", "ActiveConfig", "SwitchRequest", "LoadReport", "ConfigEntry"] {
        assert!(admin["components"]["schemas"][schema].is_object(), "{schema}");
    }
    assert!(admin["components"]["securitySchemes"]["bearer"].is_object());
    assert!(admin["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        .as_object()
        .unwrap()
        .keys()
        .any(|k| k.starts_with("application/openmetrics-text")));
}

/// The error of the table (`ApiError::status`) that each shared error response stands for.
fn error_kind(response: &str) -> ApiError {
    let s = String::new;
    match response {
        "BadRequest" => ApiError::BadRequest(s()),
        "Unauthorized" => ApiError::Unauthorized,
        "Forbidden" => ApiError::Forbidden(s()),
        "UnsupportedEncoding" => ApiError::UnsupportedEncoding(s()),
        "NotFound" => ApiError::UnknownModel(s()),
        "Conflict" => ApiError::StaleGeneration(s()),
        "AlreadyLabelled" => ApiError::Conflict(s()),
        "TooLarge" => ApiError::TooLarge(s()),
        "Overloaded" => ApiError::Overloaded(s()),
        "Unavailable" => ApiError::Unavailable(s()),
        "Internal" => ApiError::Internal(s()),
        other => panic!("no error kind for the response {other}"),
    }
}

#[test]
fn error_responses_agree_with_the_error_table() {
    for doc in [openapi::data_document(), openapi::admin_document()] {
        let doc = serde_json::to_value(doc).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, resp) in op["responses"].as_object().unwrap() {
                    let Some(r) = resp["$ref"].as_str() else { continue };
                    let name = r.strip_prefix("#/components/responses/").unwrap();
                    let want = error_kind(name).status().as_u16().to_string();
                    assert_eq!(status, &want, "{method} {path}: {name}");
                }
            }
        }
        // Every header the error answer carries is documented on its response.
        for (name, resp) in doc["components"]["responses"].as_object().unwrap() {
            let real = error_kind(name).into_response();
            for header in real.headers().keys().filter(|h| *h != "content-type") {
                let documented = resp["headers"]
                    .as_object()
                    .is_some_and(|hs| hs.keys().any(|k| k.eq_ignore_ascii_case(header.as_str())));
                assert!(documented, "{name} does not document the {header} header");
            }
        }
    }
}

fn runtime(token: Option<&str>) -> Arc<service::Runtime> {
    let (b, _) = tiny_bundle(1, vec![]);
    let cfg = ServeConfig {
        max_batch: 2,
        threads: Some(1),
        admin_token: token.map(String::from),
        ..Default::default()
    };
    service::start(b, &cfg).unwrap().0
}

async fn send(router: &Router, method: &str, uri: &str, token: Option<&str>) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    (status, axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap().to_vec())
}

/// Every documented operation reaches a handler: not the router's own 404 (no route) or 405
/// (wrong method), whose JSON errors say so.
async fn all_served(router: &Router, doc: &OpenApi, token: Option<&str>) {
    for (method, path) in operations(doc) {
        let uri = path.replace("{name}", "tiny").replace("{version}", "1");
        let (status, body) = send(router, &method, &uri, token).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("no route for"), "{method} {path} has no route");
    }
}

#[tokio::test]
async fn every_documented_route_is_served_and_documents_are_served() {
    let rt = runtime(Some("secret"));
    let data = server::data_router(rt.clone());
    let admin = server::admin_router(rt.clone());
    all_served(&data, &openapi::data_document(), None).await;
    all_served(&admin, &openapi::admin_document(), Some("secret")).await;

    let (status, body) = send(&data, "GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let served: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served, serde_json::to_value(openapi::data_document()).unwrap());

    // The admin document sits behind the token like the rest of the port.
    assert_eq!(send(&admin, "GET", "/openapi.json", None).await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = send(&admin, "GET", "/openapi.json", Some("secret")).await;
    assert_eq!(status, StatusCode::OK);
    let served: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served, serde_json::to_value(openapi::admin_document()).unwrap());
    // ... and the data port does not expose admin routes.
    assert_eq!(send(&data, "GET", "/v1/configs", None).await.0, StatusCode::NOT_FOUND);
    rt.queue.close();
}
