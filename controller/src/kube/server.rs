//! The Kubernetes-mode controller's own endpoints: `/healthz`, `/readyz`, `/metrics`,
//! `/v1/status` (every policy this replica steers).

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use dyce_api::exposition;
use serde::Serialize;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Shared;
use crate::policy_loop::PolicyStatus;

/// `/v1/status` in Kubernetes mode.
#[derive(Debug, Serialize)]
struct ClusterStatus {
    /// This replica (the pod name).
    identity: String,
    /// Whether it holds the Lease and steers.
    leader: bool,
    /// One entry per policy (`namespace/name`), empty on a standby replica.
    policies: Vec<PolicyStatus>,
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready once the first lists of policies and pods arrived: a standby replica is ready too
/// (it is healthy and can take over), which keeps rolling updates moving.
async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    if s.synced.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready").into_response()
    } else {
        let body = dyce_api::ErrorBody { error: "waiting for the first list of SloPolicies and pods".into() };
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

async fn metrics(State(s): State<Shared>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    exposition::negotiate(accept, s.metrics.encode())
}

async fn status(State(s): State<Shared>) -> Json<ClusterStatus> {
    let policies = s.statuses.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
    Json(ClusterStatus { identity: s.identity.clone(), leader: *s.leader.borrow(), policies })
}

/// Serves until `stop` turns true.
pub(super) async fn serve(
    listener: TcpListener,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .with_state(shared);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
}
