//! One target per decoder. Each returns `Err(why)` for an answer that breaks the contract (a
//! 5xx, a 4xx that is not the JSON error body); the typed errors of the pure decoders are the
//! expected way to refuse and pass. Panics are caught by the runner.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request};
use axum::Router;
use dyce_control_core::policy::PolicyDocument;
use dyce_data::Transform;
use dyce_runtime::input::image::to_pixels;
use dyce_runtime::model::store::TensorStore;
use dyce_runtime::model::{Bundle, Manifest};
use dyce_runtime::server;
use dyce_runtime::service::{self, Runtime, ServeConfig};
use tower::ServiceExt;

use crate::fixture;
use crate::mutate::Shape;

/// One input's run: whether the decoder accepted it, or how it broke the contract.
pub type Run = dyn FnMut(&[u8]) -> Result<bool, String>;

/// A decoder under test.
pub struct Target {
    /// Its name, also its corpus folder's.
    pub name: &'static str,
    /// How its inputs are structured.
    pub shape: Shape,
    /// Longest generated input.
    pub max_len: usize,
    /// Most heap one input may take above what was allocated before it.
    pub max_alloc: usize,
    /// Runs one input: whether the decoder accepted it, or how it broke the contract.
    pub run: Box<Run>,
}

/// Every target's name, in run order.
pub const NAMES: [&str; 8] =
    ["oip_json", "oip_binary", "image", "admin_config", "policy_yaml", "manifest", "configs", "safetensors"];

const MIB: usize = 1 << 20;

/// The target `name`, set up (a router target starts a runtime with the tiny model).
pub fn make(name: &str) -> Option<Target> {
    let t = |name, shape, max_len, max_alloc, run| Target { name, shape, max_len, max_alloc, run };
    Some(match name {
        "oip_json" => {
            let http = Http::data();
            t("oip_json", Shape::Json, 64 << 10, 64 * MIB, Box::new(move |b: &[u8]| http.infer(b, None)))
        }
        "oip_binary" => {
            let http = Http::data();
            let run = move |b: &[u8]| {
                // The corpus format: the header's value on the first line, then the body.
                let cut = b.iter().position(|&c| c == b'\n').unwrap_or(b.len());
                http.infer(b.get(cut + 1..).unwrap_or_default(), Some(&b[..cut]))
            };
            t("oip_binary", Shape::Bytes, 64 << 10, 64 * MIB, Box::new(run))
        }
        "image" => {
            // The decoder's own bound (DECODE_PEAK_BYTES) plus the input and the resize.
            let limit = dyce_runtime::input::image::DECODE_PEAK_BYTES + 32 * MIB;
            let crop = Transform { resize: Some(14), ..Default::default() };
            let run = move |b: &[u8]| {
                // Both channel conversions and both transforms, chosen by the input so a
                // finding replays the same way.
                let c = if b.len().is_multiple_of(2) { 1 } else { 3 };
                let tr = if b.len().is_multiple_of(3) { crop } else { Transform::default() };
                Ok(to_pixels(b, [c, 12, 12], &tr).is_ok())
            };
            t("image", Shape::Bytes, 256 << 10, limit, Box::new(run))
        }
        "admin_config" => {
            let http = Http::admin();
            t("admin_config", Shape::Json, 16 << 10, 16 * MIB, Box::new(move |b: &[u8]| http.put_config(b)))
        }
        "policy_yaml" => {
            let run = |b: &[u8]| Ok(PolicyDocument::parse(&String::from_utf8_lossy(b)).is_ok());
            t("policy_yaml", Shape::Yaml, 64 << 10, 64 * MIB, Box::new(run))
        }
        "manifest" => {
            let store = TensorStore::new(fixture::tensors());
            let run = move |b: &[u8]| {
                let Ok(m) = serde_json::from_slice::<Manifest>(b) else { return Ok(false) };
                // What Bundle::load does with a manifest: validate, derive, load the weights.
                Ok(Bundle::from_parts(m, &store, fixture::configs()).is_ok())
            };
            t("manifest", Shape::Json, 64 << 10, 64 * MIB, Box::new(run))
        }
        "configs" => {
            let store = TensorStore::new(fixture::tensors());
            let run = move |b: &[u8]| {
                let Ok(table) = serde_json::from_slice(b) else { return Ok(false) };
                Ok(Bundle::from_parts(fixture::manifest(), &store, table).is_ok())
            };
            t("configs", Shape::Json, 64 << 10, 64 * MIB, Box::new(run))
        }
        "safetensors" => {
            let run = |b: &[u8]| {
                let origin = std::path::Path::new("weights.safetensors");
                let Ok(store) = TensorStore::from_bytes(b, origin) else { return Ok(false) };
                Ok(Bundle::from_parts(fixture::manifest(), &store, fixture::configs()).is_ok())
            };
            t("safetensors", Shape::Bytes, 256 << 10, 64 * MIB, Box::new(run))
        }
        _ => return None,
    })
}

/// A runtime serving the tiny model, and one of its routers driven in-process.
struct Http {
    tokio: tokio::runtime::Runtime,
    router: Router,
    // Kept so the model thread lives as long as the target.
    _rt: Arc<Runtime>,
}

impl Http {
    fn start(admin: bool) -> Self {
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
        let bundle = Bundle::from_parts(
            fixture::manifest(),
            &TensorStore::new(fixture::tensors()),
            fixture::configs(),
        )
        .expect("the tiny bundle loads");
        let cfg = ServeConfig { threads: Some(1), ..Default::default() };
        let rt = tokio.block_on(async { service::start(bundle, &cfg) }).expect("the runtime starts").0;
        let router = if admin { server::admin_router(rt.clone()) } else { server::data_router(rt.clone()) };
        Self { tokio, router, _rt: rt }
    }

    fn data() -> Self {
        Self::start(false)
    }

    fn admin() -> Self {
        Self::start(true)
    }

    fn infer(&self, body: &[u8], header_length: Option<&[u8]>) -> Result<bool, String> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("/v2/models/{}/infer", fixture::MODEL))
            .header("content-type", "application/json");
        if let Some(v) = header_length.and_then(|v| HeaderValue::from_bytes(v).ok()) {
            req = req.header(dyce_runtime::server::binary::HEADER, v);
        }
        self.send(req.body(Body::from(body.to_vec())).expect("request"))
    }

    fn put_config(&self, body: &[u8]) -> Result<bool, String> {
        let req = Request::put("/v1/config").header("content-type", "application/json");
        self.send(req.body(Body::from(body.to_vec())).expect("request"))
    }

    /// Sends one request; a 5xx, or a 4xx without the JSON error body, breaks the contract.
    fn send(&self, req: Request<Body>) -> Result<bool, String> {
        self.tokio.block_on(async {
            let resp = self.router.clone().oneshot(req).await.map_err(|e| format!("router: {e}"))?;
            let status = resp.status();
            let bytes =
                axum::body::to_bytes(resp.into_body(), usize::MAX).await.map_err(|e| e.to_string())?;
            if status.is_server_error() {
                return Err(format!("status {status}: {}", String::from_utf8_lossy(&bytes)));
            }
            if status.is_client_error() {
                let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
                    format!("status {status} without a JSON body: {}", String::from_utf8_lossy(&bytes))
                })?;
                if v["error"].as_str().is_none_or(|e| e.is_empty()) {
                    return Err(format!("status {status} without an error message: {v}"));
                }
            }
            Ok(status.is_success())
        })
    }
}
