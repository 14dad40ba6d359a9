//! `dyce control` in local mode: one policy, runtimes by URL, and the controller's own HTTP
//! endpoints (`/healthz`, `/readyz`, `/metrics`, `/v1/status`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use dyce_api::exposition;
use tokio::net::TcpListener;
use tokio::time::MissedTickBehavior;
use tracing::Instrument;

use crate::metrics::ControllerMetrics;
use crate::policy_loop::{PolicyLoop, PolicyStatus};
use crate::prom::{PromConfig, PromSource};
use dyce_control_core::policy::PolicyDocument;

/// Settings of a local controller.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The policy.
    pub policy: PolicyDocument,
    /// Admin URLs; empty = the policy's `spec.runtimes`.
    pub runtimes: Vec<String>,
    /// Bearer token for the runtimes' admin ports.
    pub admin_token: Option<String>,
    /// Decide and log without pushing.
    pub dry_run: bool,
    /// Read signals from this Prometheus instead of the runtimes' `/v1/load`.
    pub prometheus: Option<PromConfig>,
}

/// Errors of the local controller.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// No runtime to steer.
    #[error("no runtimes: list them in spec.runtimes or pass --runtime URL")]
    NoRuntimes,
    /// The HTTP endpoint failed.
    #[error("controller HTTP endpoint: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone)]
struct Shared {
    metrics: Arc<ControllerMetrics>,
    status: Arc<Mutex<PolicyStatus>>,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    let st = s.status.lock().unwrap_or_else(|p| p.into_inner());
    if st.last.is_some() {
        (StatusCode::OK, "ready").into_response()
    } else {
        let why = st.last_error.clone().unwrap_or_else(|| "no decision yet".into());
        (StatusCode::SERVICE_UNAVAILABLE, Json(dyce_api::ErrorBody { error: why })).into_response()
    }
}

/// OpenMetrics for Prometheus (which asks for it), text format 0.0.4 for everyone else.
async fn metrics(State(s): State<Shared>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    exposition::negotiate(accept, s.metrics.encode())
}

async fn status(State(s): State<Shared>) -> Json<PolicyStatus> {
    Json(s.status.lock().unwrap_or_else(|p| p.into_inner()).clone())
}

/// The controller's HTTP router.
fn router(shared: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .with_state(shared)
}

/// Runs the controller until `shutdown` resolves, serving its endpoints on `listener`.
pub async fn run_local(
    cfg: LocalConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), LocalError> {
    let mut spec = cfg.policy.spec.clone();
    if !cfg.runtimes.is_empty() {
        spec.runtimes = cfg.runtimes.clone();
    }
    if spec.runtimes.is_empty() {
        return Err(LocalError::NoRuntimes);
    }
    let name = cfg.policy.metadata.name.clone();
    let metrics = Arc::new(ControllerMetrics::new());
    let runtimes = spec.runtimes.clone();
    let interval = spec.control.interval.0;
    let mut lp = PolicyLoop::new(&name, spec, &runtimes, cfg.admin_token, cfg.dry_run, metrics.clone());
    if let Some(p) = cfg.prometheus {
        tracing::info!(url = %p.url, selector = %p.selector, "signals from prometheus");
        lp = lp.with_prometheus(PromSource::new(p));
    }
    let shared = Shared { metrics, status: Arc::new(Mutex::new(lp.status().clone())) };
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, policy = %name, runtimes = ?runtimes, dry_run = cfg.dry_run, "controller started");
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router(shared.clone())).with_graceful_shutdown({
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    });
    let server = tokio::spawn(async move { server.await });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let start = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop_rx.wait_for(|s| *s) => break,
        }
        lp.tick(start.elapsed().as_secs_f64()).instrument(tracing::debug_span!("tick", policy = %name)).await;
        *shared.status.lock().unwrap_or_else(|p| p.into_inner()) = lp.status().clone();
    }
    tracing::info!("controller stopping");
    server.await.map_err(|e| std::io::Error::other(e.to_string()))??;
    Ok(())
}
