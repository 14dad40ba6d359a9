//! The controller's own HTTP endpoints, one router for local and Kubernetes mode: `/healthz`,
//! `/readyz`, `/metrics` and `/v1/status`. Each mode says what ready means and what its status
//! is ([`ControllerView`]); the routes, the metrics exposition and the shutdown are the same.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dyce_api::{exposition, ErrorBody};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::ControllerMetrics;

/// What the endpoints show of a controller.
pub trait ControllerView: Send + Sync + 'static {
    /// `Ok` when ready, else why not (the 503's reason).
    fn ready(&self) -> Result<(), String>;
    /// The `/v1/status` answer.
    fn status(&self) -> Response;
    /// The metrics `/metrics` encodes.
    fn metrics(&self) -> &ControllerMetrics;
}

type View = Arc<dyn ControllerView>;

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(v): State<View>) -> Response {
    match v.ready() {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, Json(ErrorBody { error })).into_response(),
    }
}

/// OpenMetrics for Prometheus (which asks for it), text format 0.0.4 for everyone else.
async fn metrics(State(v): State<View>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    exposition::negotiate(accept, v.metrics().encode())
}

async fn status(State(v): State<View>) -> Response {
    v.status()
}

/// The controller's router.
pub fn router(view: View) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .with_state(view)
}

/// Serves the endpoints on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, view: View, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, router(view)).with_graceful_shutdown(shutdown.cancelled_owned()).await
}
