//! The runtime: engine, model thread, load window and metrics, and the entry point every
//! protocol calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::live::{LiveBook, LiveSettings};
use super::load::SharedWindow;
use super::metrics::{ConfigLabel, Metrics, OutcomeLabel, Stage};
use super::stats::Stats;
use crate::engine::queue::{self, BatchObserver, JobOutput, ModelQueue, QueueConfig, SubmitError};
use crate::engine::{
    default_pool, ConfigSwitch, EngineError, FastBackend, HeadAnswers, SampleResult, ShadowConfig,
};
use crate::model::Bundle;

/// Settings of a runtime (everything `dyce serve` takes besides addresses and the model).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Most images per batch.
    pub max_batch: usize,
    /// Most images admitted at once; beyond that requests get 429.
    pub max_queued: usize,
    /// Kernel threads (default: the CPUs available to the process).
    pub threads: Option<usize>,
    /// Most images decoded at once (default: the kernel threads, or the CPUs available).
    pub decode_concurrency: Option<usize>,
    /// Bearer token required on the admin port.
    pub admin_token: Option<String>,
    /// Bearer token of the read-only metrics port (`GET /metrics` only, on either port).
    pub metrics_token: Option<String>,
    /// Window of `/v1/load` statistics.
    pub load_window: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Longest an inference request may take, body and queue included (none by default).
    pub request_timeout: Option<Duration>,
    /// Longest a connection may wait for a whole request head, from its opening or its previous
    /// answer (the keep-alive idle timeout too).
    pub header_timeout: Duration,
    /// Longest a request body may take to arrive, from the end of its head.
    pub body_timeout: Duration,
    /// Longest shutdown waits for open connections before closing them.
    pub drain_timeout: Duration,
    /// How long the ports keep accepting after a shutdown begins, with readiness failing.
    pub drain_delay: Duration,
    /// Config to start on (default: the full model).
    pub initial_config: Option<String>,
    /// Answer each request when its images exit, not when their batch ends (the default).
    pub answer_at_exit: bool,
    /// Fault injection for the tests of a dead model thread: it panics at the first batch on
    /// this config (`dyce serve` reads `DYCE_FAULT_PANIC_ON_CONFIG` in debug builds only).
    pub panic_on_config: Option<String>,
    /// Share of answered images shadow-checked against the full model (0 = off).
    pub shadow_rate: f64,
    /// Half-life of the live accuracy's decayed counts, seconds.
    pub shadow_half_life: f64,
    /// Most answered images kept for `POST /v1/feedback` (0 = feedback off).
    pub feedback_capacity: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_queued: 256,
            threads: None,
            decode_concurrency: None,
            admin_token: None,
            metrics_token: None,
            load_window: Duration::from_secs(2),
            max_body_bytes: 8 << 20,
            request_timeout: None,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(20),
            drain_delay: Duration::ZERO,
            initial_config: None,
            answer_at_exit: true,
            panic_on_config: None,
            shadow_rate: 0.0,
            shadow_half_life: dyce_api::live::DEFAULT_HALF_LIFE,
            feedback_capacity: 0,
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
    /// The model thread stopped while serving (a panic): the process should end and be
    /// replaced.
    #[error("the model thread stopped while serving: {0}")]
    ModelStopped(String),
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
    /// Bearer token of the metrics port, read-only on the admin port.
    pub metrics_token: Option<String>,
    /// Triton-style statistics since start (`/v2/models/{name}/stats`).
    pub stats: Arc<Stats>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Longest an inference request may take.
    pub request_timeout: Option<Duration>,
    /// Longest a request body may take to arrive.
    pub body_timeout: Duration,
    /// One permit per image decode in progress (`--decode-concurrency`): what bounds the memory
    /// images take, since a decode runs before admission and may take ~200 MiB.
    pub decode_permits: Arc<Semaphore>,
    /// Live accuracy from shadow checks and feedback; `None` when both are off.
    pub live: Option<Arc<LiveBook>>,
    shadow_armed: Arc<AtomicBool>,
    ready: AtomicBool,
    draining: AtomicBool,
}

impl Runtime {
    /// Whether the model is loaded, warmed up, still running and not shutting down: a runtime
    /// whose model thread died answers every inference with 503, and one that is draining is
    /// about to close its ports, so either must leave the Service at once.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.queue.is_running() && !self.is_draining()
    }

    /// Whether a shutdown has begun (readiness fails; requests are still served).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Begins a shutdown: readiness fails from now on, everything else goes on serving.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// An answered request's time parsing and normalising its input.
    pub fn record_decode(&self, seconds: f64) {
        self.metrics.stage(Stage::Decode, seconds);
        self.stats.input(seconds);
    }

    /// An answered request's time building its answer from the results.
    pub fn record_encode(&self, seconds: f64) {
        self.metrics.stage(Stage::Encode, seconds);
        self.stats.output(seconds);
    }

    /// Refuses at once when the queue has no room for even one image: lets a server refuse a
    /// request before the work of parsing it. The load window counts such a refusal as one shed
    /// image (the count is not known unparsed).
    pub fn admit(&self) -> Result<(), SubmitError> {
        self.queue.check_room().inspect_err(|_| self.load.shed(1))
    }

    /// The one entry point of inference: admits `n` normalised images (refused at once when the
    /// queue is full) and waits for the batch they ran in; counts arrivals and refusals in the
    /// load window and the time queued in the metrics.
    ///
    /// With feedback on, the answer is kept under an id (`client_id`, the request's own, when
    /// given) that `JobOutput::answer_id` carries, for `POST /v1/feedback` to quote.
    pub async fn infer(
        &self,
        x: Vec<f32>,
        n: usize,
        client_id: Option<&str>,
    ) -> Result<JobOutput, SubmitError> {
        let kept = self.live.as_ref().and_then(|l| l.open(client_id, n));
        let tag = kept.as_ref().map_or(0, |k| k.0);
        let result = self.infer_tagged(x, n, tag).await;
        match (&result, &self.live) {
            (Ok(out), Some(live)) if tag != 0 => {
                let answers: Vec<_> = out.results.iter().map(|r| (r.exit, r.label)).collect();
                live.answered(tag, &out.config_id, &answers);
            }
            (Err(_), Some(live)) if tag != 0 => live.forget(tag),
            _ => {}
        }
        let mut out = result?;
        out.answer_id = kept.map(|k| k.1);
        Ok(out)
    }

    async fn infer_tagged(&self, x: Vec<f32>, n: usize, tag: u64) -> Result<JobOutput, SubmitError> {
        let admitted = self.queue.submit_tagged(x, n, tag);
        match &admitted {
            Ok(_) => self.load.arrived(n),
            Err(SubmitError::Overloaded { .. }) => self.load.shed(n),
            Err(_) => {}
        }
        let out = admitted?.await.map_err(|_| SubmitError::Stopped)??;
        self.metrics.queue_duration.observe(out.queue_seconds);
        self.metrics.stage(Stage::Queue, out.queue_seconds);
        self.metrics.stage(Stage::Compute, out.batch_seconds);
        self.stats.queued_and_computed(out.queue_seconds, out.batch_seconds);
        Ok(out)
    }

    /// A finished inference request: counted by outcome (ok, shed, bad_request, error) and, when
    /// it answered `images`, its latency.
    pub fn record_request(&self, outcome: &'static str, images: Option<usize>, seconds: f64) {
        self.metrics.requests.get_or_create(&OutcomeLabel { outcome }).inc();
        self.stats.request(images, seconds);
        if let Some(n) = images {
            self.metrics.request_duration.observe(seconds);
            self.load.completed(n, seconds);
        }
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
    stats: Arc<Stats>,
    live: Option<Arc<LiveBook>>,
}

impl BatchObserver for Observer {
    fn batch(&self, config_id: &str, images: usize, seconds: f64, dropped: usize) {
        if dropped > 0 {
            self.metrics
                .requests
                .get_or_create(&OutcomeLabel { outcome: "cancelled" })
                .inc_by(dropped as u64);
        }
        if images > 0 {
            self.load.batch(config_id, images, seconds);
            self.metrics.batch(images, seconds);
            self.stats.batch(images, seconds);
        }
    }

    fn answered(&self, results: &[SampleResult]) {
        self.metrics.answered(results);
    }

    fn shadow(&self, answers: &[HeadAnswers]) {
        if let Some(live) = &self.live {
            live.record(answers, &self.metrics.shadow);
        }
    }

    fn shadow_dropped(&self, n: usize) {
        if let Some(live) = &self.live {
            live.dropped(n, &self.metrics.shadow);
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
    let backend =
        FastBackend::new(&bundle.backbone, bundle.manifest.input.shape, default_pool(cfg.threads)?)?;
    let load = Arc::new(SharedWindow::new(cfg.load_window, cfg.max_batch));
    let metrics = Arc::new(Metrics::new(&bundle.manifest.name));
    let stats = Arc::new(Stats::new(cfg.max_batch));
    let shadow = ShadowConfig::with_rate(cfg.shadow_rate.clamp(0.0, 1.0));
    let settings = LiveSettings {
        shadow_rate: if shadow.enabled() { shadow.rate } else { 0.0 },
        half_life: cfg.shadow_half_life,
        feedback_capacity: cfg.feedback_capacity,
    };
    let live = settings.enabled().then(|| Arc::new(LiveBook::new(&bundle, settings)));
    let shadow_armed = shadow.armed.clone();
    let observer = Arc::new(Observer {
        load: load.clone(),
        metrics: metrics.clone(),
        stats: stats.clone(),
        live: live.clone(),
    });
    let qcfg = QueueConfig {
        max_batch: cfg.max_batch.max(1),
        max_queued: cfg.max_queued.max(cfg.max_batch).max(1),
        panic_on_config: cfg.panic_on_config.clone(),
        answer_at_exit: cfg.answer_at_exit,
        shadow,
    };
    let (queue, handle) = queue::spawn(bundle.clone(), switch.clone(), backend, qcfg, observer);
    let rt = Arc::new(Runtime {
        bundle,
        switch,
        queue,
        load,
        metrics,
        admin_token: cfg.admin_token.clone(),
        metrics_token: cfg.metrics_token.clone(),
        stats,
        max_body_bytes: cfg.max_body_bytes,
        request_timeout: cfg.request_timeout,
        body_timeout: cfg.body_timeout,
        decode_permits: Arc::new(Semaphore::new(decode_concurrency(cfg))),
        live,
        shadow_armed,
        ready: AtomicBool::new(false),
        draining: AtomicBool::new(false),
    });
    rt.publish_active();
    Ok((rt, handle))
}

/// Decodes at once: `--decode-concurrency`, else one per kernel thread (decoding is CPU work
/// too; more at once would only queue for the CPUs while holding their memory).
pub fn decode_concurrency(cfg: &ServeConfig) -> usize {
    cfg.decode_concurrency
        .or(cfg.threads)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
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
    // Warm-up images are zeros: shadow checks sample traffic only.
    rt.shadow_armed.store(true, Ordering::Relaxed);
    rt.ready.store(true, Ordering::Release);
    Ok(())
}
