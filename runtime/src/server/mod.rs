//! HTTP serving: the data port (OIP v2, image classification) and the admin port (configs,
//! switches, load, metrics), each with its OpenAPI document.

pub mod admin;
pub mod binary;
pub mod classify;
pub mod error;
pub mod load;
pub mod metrics;
pub mod oip;
pub mod oip_types;
pub mod openapi;
pub mod submit;

use std::future::{Future, IntoFuture};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::engine::queue::{self, BatchObserver, ModelQueue, QueueConfig};
use crate::engine::{default_pool, ConfigSwitch, EngineError, FastBackend, SampleResult};
use crate::model::Bundle;
use load::SharedWindow;
use metrics::{ConfigLabel, Metrics};

/// Settings of a runtime (everything `dyce serve` takes besides addresses and the model).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Most images per batch.
    pub max_batch: usize,
    /// Most images admitted at once; beyond that requests get 429.
    pub max_queued: usize,
    /// Kernel threads (default: the CPUs available to the process).
    pub threads: Option<usize>,
    /// Bearer token required on the admin port.
    pub admin_token: Option<String>,
    /// Window of `/v1/load` statistics.
    pub load_window: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Config to start on (default: the full model).
    pub initial_config: Option<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_queued: 256,
            threads: None,
            admin_token: None,
            load_window: Duration::from_secs(2),
            max_body_bytes: 8 << 20,
            initial_config: None,
        }
    }
}

/// Errors starting a runtime.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The engine could not be built.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A listener failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// State shared by every handler.
pub struct Runtime {
    /// The served bundle.
    pub bundle: Arc<Bundle>,
    /// The active configuration.
    pub switch: Arc<ConfigSwitch>,
    /// The model thread's queue.
    pub queue: ModelQueue,
    /// Window statistics.
    pub load: Arc<SharedWindow>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Bearer token of the admin port.
    pub admin_token: Option<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    ready: AtomicBool,
}

impl Runtime {
    /// Whether the model is loaded and warmed up.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Updates the config metrics after a switch away from `previous`.
    pub fn note_switch(&self, previous: &str) {
        self.metrics.switches.inc();
        self.metrics.active_config.get_or_create(&ConfigLabel { config: previous.to_string() }).set(0);
        self.publish_active();
    }

    fn publish_active(&self) {
        let c = self.switch.current();
        self.metrics.active_config.get_or_create(&ConfigLabel { config: c.id.clone() }).set(1);
        self.metrics.generation.set(c.generation as i64);
        if let Some(e) = self.bundle.configs.get(&c.id) {
            self.metrics.expected_accuracy.set(e.expected_accuracy.unwrap_or(f64::NAN));
            self.metrics.macs_ratio.set(e.macs_ratio.unwrap_or(f64::NAN));
        }
    }
}

struct Observer {
    load: Arc<SharedWindow>,
    metrics: Arc<Metrics>,
}

impl BatchObserver for Observer {
    fn batch(&self, config_id: &str, images: usize, seconds: f64, results: &[SampleResult], dropped: usize) {
        if dropped > 0 {
            self.metrics
                .requests
                .get_or_create(&metrics::OutcomeLabel { outcome: "cancelled" })
                .inc_by(dropped as u64);
        }
        if images > 0 {
            self.load.batch(config_id, images, seconds);
            self.metrics.batch(images, seconds, results);
        }
    }
}

/// Loads the engine and starts the model thread; the runtime is live at once and becomes ready
/// after `warm_up`.
pub fn start(
    bundle: Bundle,
    cfg: &ServeConfig,
) -> Result<(Arc<Runtime>, std::thread::JoinHandle<()>), ServeError> {
    let bundle = Arc::new(bundle);
    let initial = cfg.initial_config.clone().unwrap_or_else(|| dyce_api::FULL_CONFIG_ID.to_string());
    let switch = Arc::new(ConfigSwitch::new(bundle.clone(), &initial)?);
    let backend = FastBackend::new(&bundle.resnet, bundle.manifest.input.shape, default_pool(cfg.threads)?)?;
    let load = Arc::new(SharedWindow::new(cfg.load_window, cfg.max_batch));
    let metrics = Arc::new(Metrics::new());
    let observer = Arc::new(Observer { load: load.clone(), metrics: metrics.clone() });
    let qcfg =
        QueueConfig { max_batch: cfg.max_batch.max(1), max_queued: cfg.max_queued.max(cfg.max_batch).max(1) };
    let (queue, handle) = queue::spawn(bundle.clone(), switch.clone(), backend, qcfg, observer);
    let rt = Arc::new(Runtime {
        bundle,
        switch,
        queue,
        load,
        metrics,
        admin_token: cfg.admin_token.clone(),
        max_body_bytes: cfg.max_body_bytes,
        ready: AtomicBool::new(false),
    });
    rt.publish_active();
    Ok((rt, handle))
}

/// Runs one batch of every size up to `max_batch` (powers of two and the maximum), so the
/// arena has grown and the first real requests see steady-state latency; then marks ready.
pub async fn warm_up(rt: &Runtime, max_batch: usize) -> Result<(), ServeError> {
    let per = rt.queue.per_image();
    let mut sizes: Vec<usize> =
        std::iter::successors(Some(1usize), |b| Some(b * 2)).take_while(|&b| b < max_batch).collect();
    // Three full batches seed the cost-at-capacity estimate of /v1/load, so a controller has a
    // measured capacity before the first burst.
    sizes.extend([max_batch.max(1); 3]);
    for b in sizes {
        rt.queue
            .infer(vec![0.0; b * per], b)
            .await
            .map_err(|e| EngineError::Tensor(format!("warm-up: {e}")))?;
    }
    rt.ready.store(true, Ordering::Release);
    Ok(())
}

/// The data port's routes and their document. Every route is added with `routes!`, which takes
/// the path and method from the handler's `#[utoipa::path]`: serving a route means documenting it.
fn data_routes() -> OpenApiRouter<Arc<Runtime>> {
    OpenApiRouter::with_openapi(openapi::DataDoc::openapi())
        .routes(routes!(oip::server_meta))
        .routes(routes!(oip::live))
        .routes(routes!(oip::ready))
        .routes(routes!(oip::model_meta))
        .routes(routes!(oip::model_ready))
        .routes(routes!(oip::repository_index))
        .routes(routes!(oip::infer))
        .routes(routes!(classify::classify))
        .routes(routes!(openapi::data_openapi))
}

/// The admin port's routes and their document (the bearer check is added by `admin_router`).
fn admin_routes() -> OpenApiRouter<Arc<Runtime>> {
    OpenApiRouter::with_openapi(openapi::AdminDoc::openapi())
        .routes(routes!(admin::configs))
        .routes(routes!(admin::get_config, admin::put_config))
        .routes(routes!(admin::load))
        .routes(routes!(admin::metrics))
        .routes(routes!(openapi::admin_openapi))
}

/// The data port: OIP v2 and `/v1/classify`; never the admin API.
pub fn data_router(rt: Arc<Runtime>) -> Router {
    let (router, _) = data_routes().split_for_parts();
    router
        // The inference routes enforce the limit themselves, to answer with a JSON 413.
        .layer(DefaultBodyLimit::disable())
        .with_state(rt)
}

/// The admin port, every route (its document included) behind the bearer-token check when one
/// is configured: one rule for the whole port is the easiest to audit, and the document is
/// public anyway in docs/openapi-admin.json.
pub fn admin_router(rt: Arc<Runtime>) -> Router {
    let (router, _) = admin_routes().split_for_parts();
    router.route_layer(axum::middleware::from_fn_with_state(rt.clone(), admin::auth)).with_state(rt)
}

/// Serves both ports until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    rt: Arc<Runtime>,
    data: tokio::net::TcpListener,
    admin: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let data_srv = axum::serve(data, data_router(rt.clone())).with_graceful_shutdown(stop(rx.clone()));
    let admin_srv = axum::serve(admin, admin_router(rt.clone())).with_graceful_shutdown(stop(rx));
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let (a, b) = tokio::join!(data_srv.into_future(), admin_srv.into_future());
    a?;
    b?;
    rt.queue.close();
    Ok(())
}
