//! Start-up and shutdown of a runtime's ports (data, admin, and the optional gRPC and metrics
//! ports): what `dyce serve`, `dyce up` and `dyce demo` run. One cancellation token stops
//! everything.
//!
//! Shutdown drains in three steps, so a rolling update loses no request: readiness fails at
//! once (load balancers stop sending new requests), the ports keep accepting and serving for
//! the drain delay (requests already routed here, and those sent before the endpoint update
//! reached every proxy, are answered), then the listeners close and in-flight requests finish
//! within the drain timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::grpc::serve_grpc;
use super::listen::{serve_port, ConnLimits};
use super::routes::{admin_router, data_router, metrics_router};
use crate::model::Bundle;
use crate::service::{start, warm_up, Runtime, ServeConfig, ServeError};

/// A started runtime (model thread running) bound to its two ports, not serving yet.
pub struct Server {
    rt: Arc<Runtime>,
    model_thread: JoinHandle<()>,
    data: TcpListener,
    admin: TcpListener,
    grpc: Option<TcpListener>,
    metrics: Option<TcpListener>,
    max_batch: usize,
    limits: ConnLimits,
    drain_delay: Duration,
}

impl Server {
    /// Loads the engine for `bundle` and starts the model thread.
    pub fn new(
        bundle: Bundle,
        cfg: &ServeConfig,
        data: TcpListener,
        admin: TcpListener,
    ) -> Result<Self, ServeError> {
        let (rt, model_thread) = start(bundle, cfg)?;
        let limits = ConnLimits { header_timeout: cfg.header_timeout, drain_timeout: cfg.drain_timeout };
        let drain_delay = cfg.drain_delay;
        Ok(Self {
            rt,
            model_thread,
            data,
            admin,
            grpc: None,
            metrics: None,
            max_batch: cfg.max_batch,
            limits,
            drain_delay,
        })
    }

    /// Also serves the KServe v2 gRPC API on `grpc` (`server/grpc/`).
    pub fn with_grpc(mut self, grpc: TcpListener) -> Self {
        self.grpc = Some(grpc);
        self
    }

    /// The bound gRPC address, when a gRPC port was given.
    pub fn grpc_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.grpc.as_ref().map(TcpListener::local_addr).transpose()
    }

    /// Serves the read-only metrics port (`GET /metrics` only) on `listener` too.
    pub fn with_metrics(mut self, listener: TcpListener) -> Self {
        self.metrics = Some(listener);
        self
    }

    /// The metrics port's address, when it has one.
    pub fn metrics_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.metrics.as_ref().map(|l| l.local_addr()).transpose()
    }

    /// The bound addresses: data port, admin port (tests and scripts bind port 0).
    pub fn local_addrs(&self) -> std::io::Result<(SocketAddr, SocketAddr)> {
        Ok((self.data.local_addr()?, self.admin.local_addr()?))
    }

    /// The runtime the ports serve.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    /// Warms up in the background (ready when done) and serves the ports until `shutdown` is
    /// cancelled; then drains (see the module: unready at once, serving on for the drain delay,
    /// then in-flight requests finished), drains the queue and joins the model thread.
    ///
    /// If the model thread dies while serving (a panic), the runtime is unready at once
    /// (`Runtime::is_ready`), the ports stop as on shutdown, and this returns
    /// `ServeError::ModelStopped`: `dyce serve` then exits non-zero and the orchestrator starts a
    /// fresh process, rather than a pod that answers 503 forever staying in service.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        let (d, a) = self.local_addrs()?;
        let grpc = self.grpc_addr()?.map_or_else(|| "off".to_string(), |g| g.to_string());
        tracing::info!(data = %d, admin = %a, %grpc, model = %self.rt.bundle.manifest.name, "listening");
        tracing::info!(isa = %dyce_kernels::detect_isa(), cpu = %dyce_kernels::cpu_model(), "kernels");
        let warm = self.rt.clone();
        let max_batch = self.max_batch;
        tokio::spawn(async move {
            match warm_up(&warm, max_batch).await {
                Ok(()) => tracing::info!("ready"),
                Err(e) => tracing::error!(error = %e, "warm-up failed"),
            }
        });
        // `stop` closes the listeners: after the drain delay on shutdown, at once when the model
        // thread dies (a runtime without a model has nothing to answer).
        let stop = CancellationToken::new();
        let drain = tokio::spawn({
            // Weak: this task must not keep the queue (and so the model thread) alive.
            let rt = Arc::downgrade(&self.rt);
            let (stop, shutdown, delay) = (stop.clone(), shutdown.clone(), self.drain_delay);
            async move {
                shutdown.cancelled().await;
                if let Some(rt) = rt.upgrade() {
                    rt.begin_drain();
                }
                tracing::info!(delay = ?delay, "draining: unready, still serving until the delay ends");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => {}
                }
                tracing::info!("drain delay over: closing the listeners, finishing in-flight requests");
                stop.cancel();
            }
        });
        let life = self.rt.queue.life();
        let watch = tokio::spawn({
            let (life, stop) = (life.clone(), stop.clone());
            async move {
                let panic = life.stopped().await;
                if !stop.is_cancelled() {
                    let reason = panic.as_deref().unwrap_or("it returned");
                    tracing::error!(
                        reason,
                        "the model thread stopped while serving: unready, stopping the ports, exiting"
                    );
                    stop.cancel();
                }
            }
        });
        // The last handle on the queue goes with `serve`, so the model thread can drain and end.
        let grpc = self.grpc.map(|l| serve_grpc(self.rt.clone(), l, self.limits, stop.clone()));
        let metrics =
            self.metrics.map(|l| serve_port(l, metrics_router(self.rt.clone()), self.limits, stop.clone()));
        let metrics = async move {
            match metrics {
                Some(m) => m.await,
                None => Ok(()),
            }
        };
        let (served, metrics) =
            tokio::join!(serve(self.rt, self.data, self.admin, grpc, self.limits, stop), metrics);
        served?;
        metrics?;
        watch.abort();
        drain.abort();
        let thread = self.model_thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let panic = life.stopped().await;
        Err(ServeError::ModelStopped(panic.unwrap_or_else(|| "it returned".into())))
    }
}

/// Starts a runtime on `bundle` and serves it until `shutdown` is cancelled.
pub async fn run(
    bundle: Bundle,
    cfg: &ServeConfig,
    data: TcpListener,
    admin: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    Server::new(bundle, cfg, data, admin)?.run(shutdown).await
}

/// Serves both HTTP ports of `rt`, and the gRPC server `grpc` when there is one, until
/// `shutdown` is cancelled, then finishes in-flight requests (closing connections still open
/// after `limits.drain_timeout`) and closes the queue once every port has stopped (the model
/// thread drains it and exits).
pub async fn serve(
    rt: Arc<Runtime>,
    data: TcpListener,
    admin: TcpListener,
    grpc: Option<impl std::future::Future<Output = std::io::Result<()>>>,
    limits: ConnLimits,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let data_srv = serve_port(data, data_router(rt.clone()), limits, shutdown.clone());
    let admin_srv = serve_port(admin, admin_router(rt.clone()), limits, shutdown);
    let grpc_srv = async {
        match grpc {
            Some(g) => g.await,
            None => Ok(()),
        }
    };
    let (a, b, g) = tokio::join!(data_srv, admin_srv, grpc_srv);
    a?;
    b?;
    g?;
    rt.queue.close();
    Ok(())
}
