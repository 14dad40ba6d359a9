//! The admin port: configuration table, active config, switches, load, metrics.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dyce_api::{exposition, ActiveConfig, ConfigsView, LiveAccuracy, LoadReport, QueueState, SwitchRequest};

use super::error::ApiError;
use super::openapi::{BadRequest, Conflict, Forbidden, NotFound, TooLarge, Unauthorized};
use crate::service::metrics::ConfigLabel;
use crate::service::Runtime;

/// Largest body the admin port reads: its one body, a `PUT /v1/config`, is a few dozen bytes.
pub const MAX_BODY_BYTES: usize = 64 << 10;

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive
/// (RFC 7235 §2.1: `bearer` and `BEARER` are `Bearer`) and is followed by one or more spaces.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start_matches(' '))
}

/// Whether `given` is `token`, in time constant in the token's length, so timing does not reveal
/// a matching prefix.
fn same(given: &str, token: &str) -> bool {
    given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The bearer token of a request, if any.
fn given(req: &Request) -> Option<&str> {
    req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token)
}

/// Requires `Authorization: Bearer <token>` when a token is configured. The metrics token
/// (`--metrics-token-file`) reads `GET /metrics` and nothing else: a scraper's credential must
/// not switch configurations, so it gets 403 on every other route (even on a port without an
/// admin token, where no token would do: a scraper that presents it means to be read-only).
pub async fn auth(State(rt): State<Arc<Runtime>>, req: Request, next: Next) -> Result<Response, ApiError> {
    let given = given(&req);
    if let (Some(metrics), Some(g)) = (&rt.metrics_token, given) {
        if same(g, metrics) {
            if req.method() == Method::GET && req.uri().path() == "/metrics" {
                return Ok(next.run(req).await);
            }
            return Err(ApiError::Forbidden(format!(
                "the metrics token reads GET /metrics only; {} {} needs the admin token",
                req.method(),
                req.uri().path()
            )));
        }
    }
    if let Some(token) = &rt.admin_token {
        if !same(given.unwrap_or(""), token) {
            return Err(ApiError::Unauthorized);
        }
    }
    Ok(next.run(req).await)
}

/// The metrics port's check: with `--metrics-token-file`, the metrics token (or the admin
/// token, which may do anything) is required; without it the port is open (it only reads).
pub async fn metrics_auth(
    State(rt): State<Arc<Runtime>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(metrics) = &rt.metrics_token {
        let g = given(&req).unwrap_or("");
        let admin = rt.admin_token.as_deref().is_some_and(|t| same(g, t));
        if !same(g, metrics) && !admin {
            return Err(ApiError::Unauthorized);
        }
    }
    Ok(next.run(req).await)
}

fn active(rt: &Runtime) -> ActiveConfig {
    let c = rt.switch.current();
    ActiveConfig { id: c.id.clone(), generation: c.generation }
}

/// `GET /v1/configs`: the configuration table and the active config.
#[utoipa::path(
    get,
    path = "/v1/configs",
    tag = "admin",
    responses(
        (status = 200, description = "The table, cheapest first, and the active config.", body = ConfigsView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden)
    )
)]
pub async fn configs(State(rt): State<Arc<Runtime>>) -> Json<ConfigsView> {
    Json(ConfigsView {
        model: rt.bundle.manifest.name.clone(),
        active: active(&rt),
        configs: rt.bundle.configs.configs.clone(),
    })
}

/// `GET /v1/config`: the active config.
#[utoipa::path(
    get,
    path = "/v1/config",
    tag = "admin",
    responses(
        (status = 200, description = "The active config.", body = ActiveConfig),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden)
    )
)]
pub async fn get_config(State(rt): State<Arc<Runtime>>) -> Json<ActiveConfig> {
    Json(active(&rt))
}

/// `PUT /v1/config`: 404 for an unknown id, 409 for a stale generation.
#[utoipa::path(
    put,
    path = "/v1/config",
    tag = "admin",
    request_body(
        content = SwitchRequest,
        description = "Config to switch to; `generation` is a fencing token (default: active + 1)."
    ),
    responses(
        (status = 200, description = "The new active config (batches in flight finish on the old one).",
            body = ActiveConfig),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge)
    )
)]
pub async fn put_config(
    State(rt): State<Arc<Runtime>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ActiveConfig>, ApiError> {
    let body = body?;
    let req: SwitchRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"id\": ..., \"generation\": ...}}: {e}")))?;
    let before = rt.switch.current();
    let now = rt.switch.switch(&req.id, req.generation)?;
    if now.generation != before.generation {
        rt.note_switch(&before.id);
        tracing::info!(from = %before.id, to = %now.id, generation = now.generation, "config switched");
    }
    Ok(Json(ActiveConfig { id: now.id.clone(), generation: now.generation }))
}

/// `GET /v1/load`: load statistics over the window, what the controller steers by.
#[utoipa::path(
    get,
    path = "/v1/load",
    tag = "admin",
    responses(
        (status = 200, description = "Window statistics (`--load-window`).", body = LoadReport),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden)
    )
)]
pub async fn load(State(rt): State<Arc<Runtime>>) -> Json<LoadReport> {
    let queue = QueueState {
        depth: rt.queue.depth(),
        in_flight: rt.queue.in_flight(),
        max_batch: rt.queue.max_batch(),
        active: active(&rt),
    };
    let mut report = rt.load.snapshot().report(queue);
    report.live_accuracy = rt.live.as_ref().map(|l| l.report());
    Json(report)
}

/// `GET /v1/accuracy`: live accuracy from shadow checks and feedback; 404 when both are off.
#[utoipa::path(
    get,
    path = "/v1/accuracy",
    tag = "admin",
    responses(
        (status = 200, description = "Per config: shadow samples, agreement with the full model, the live estimate and its lower bound; accuracy from feedback when any came.",
            body = LiveAccuracy),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound)
    )
)]
pub async fn accuracy(State(rt): State<Arc<Runtime>>) -> Result<Json<LiveAccuracy>, ApiError> {
    let live = rt.live.as_ref().ok_or_else(|| {
        ApiError::NotFound(
            "shadow checks and feedback are off (--shadow-rate 0, --feedback-capacity 0): no live accuracy"
                .into(),
        )
    })?;
    Ok(Json(live.report()))
}

/// `GET /metrics`: Prometheus metrics; the same answer on the metrics port
/// (`--metrics-addr`), which serves nothing else.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    responses(
        (status = 200, description = "Prometheus metrics: OpenMetrics when the Accept header asks for it (Prometheus does), else text format 0.0.4.", 
            content(
                (String = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
                (String = "text/plain; version=0.0.4; charset=utf-8")
            )),
        (status = 401, response = Unauthorized)
    )
)]
pub async fn metrics(State(rt): State<Arc<Runtime>>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    rt.metrics.queue_depth.set(rt.queue.depth() as i64);
    rt.metrics.in_flight.set(rt.queue.in_flight() as i64);
    rt.metrics.model_up.set(i64::from(rt.queue.is_running()));
    for (config, seconds) in rt.load.saturated() {
        rt.metrics.saturated_cost.get_or_create(&ConfigLabel { config }).set(seconds);
    }
    if let Some(live) = &rt.live {
        live.publish(&rt.metrics.shadow);
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    exposition::negotiate(accept, rt.metrics.encode())
}
