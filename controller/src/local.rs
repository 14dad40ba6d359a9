//! `dyce control` in local mode: one policy, runtimes by URL, and the controller's own HTTP
//! endpoints (`/healthz`, `/readyz`, `/metrics`, `/v1/status`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::response::{IntoResponse, Response};
use axum::Json;
use dyce_control_core::policy::PolicyDocument;
use tokio::net::TcpListener;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::metrics::ControllerMetrics;
use crate::policy_loop::{PolicyLoop, PolicyStatus};
use crate::prom::{PromConfig, PromSource};
use crate::server::{self, ControllerView};

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

/// What the endpoints show in local mode: the one policy's status, ready after its first
/// decision and while at least one of its runtimes answered within `staleAfter` (a controller
/// that hears from none steers nothing, and says so).
struct Local {
    metrics: Arc<ControllerMetrics>,
    status: Mutex<PolicyStatus>,
    stale_after: std::time::Duration,
}

impl Local {
    fn status(&self) -> std::sync::MutexGuard<'_, PolicyStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ControllerView for Local {
    fn ready(&self) -> Result<(), String> {
        let st = self.status();
        if st.last.is_none() {
            return Err(st.last_error.clone().unwrap_or_else(|| "no decision yet".into()));
        }
        if st.runtimes_fresh == 0 {
            let n = st.runtimes_stale + st.runtimes_unknown;
            let why = st.runtime_error.as_deref().map_or(String::new(), |e| format!(" (last error: {e})"));
            return Err(format!(
                "none of the policy's {n} runtime(s) answered within staleAfter ({:?}){why}",
                self.stale_after
            ));
        }
        Ok(())
    }

    fn status(&self) -> Response {
        Json(self.status().clone()).into_response()
    }

    fn metrics(&self) -> &ControllerMetrics {
        &self.metrics
    }
}

/// Runs the controller until `shutdown` is cancelled, serving its endpoints on `listener`.
pub async fn run_local(
    cfg: LocalConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
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
    let stale_after = lp.spec().control.stale_after().0;
    let view = Arc::new(Local { metrics, status: Mutex::new(lp.status().clone()), stale_after });
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, policy = %name, runtimes = ?runtimes, dry_run = cfg.dry_run, "controller started");
    let server = tokio::spawn(server::serve(listener, view.clone(), shutdown.clone()));
    let start = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        lp.tick(start.elapsed().as_secs_f64()).instrument(tracing::debug_span!("tick", policy = %name)).await;
        *view.status() = lp.status().clone();
    }
    tracing::info!("controller stopping");
    server.await.map_err(|e| std::io::Error::other(e.to_string()))??;
    Ok(())
}
