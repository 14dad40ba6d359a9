//! The batching queue and the model thread.
//!
//! Admission happens before queueing: a job must first take one permit per image from a
//! semaphore sized to the maximum queue depth, so excess load is refused at once instead of
//! queueing without bound. The model runs on its own OS thread (candle and the kernels use their
//! own pools; tokio workers stay free for I/O). While a batch runs, new jobs wait in the channel,
//! so the next batch forms by itself and grows with load. Jobs whose client went away are
//! dropped before compute.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Semaphore, TryAcquireError};
use tokio_util::sync::CancellationToken;

use super::active::{ConfigSwitch, ResolvedConfig};
use super::backend::Backend;
use super::executor::run_batch_answering;
pub use super::replies::{BatchObserver, JobOutput};
use super::replies::{Job, Replies};
use super::shadow::{needed_heads, shadow_pass, Sampler, ShadowConfig};
use super::EngineError;
use crate::model::Bundle;

/// Limits of the queue.
#[derive(Debug, Clone, Default)]
pub struct QueueConfig {
    /// Most images in one batch.
    pub max_batch: usize,
    /// Most images admitted (queued or running) at once.
    pub max_queued: usize,
    /// Fault injection, for the tests of a dead model thread: the thread panics when it starts
    /// a batch on this config.
    pub panic_on_config: Option<String>,
    /// Answer each request as soon as its images are answered (at their exits), not when the
    /// whole batch ends.
    pub answer_at_exit: bool,
    /// Shadow checks of a sampled share of answered images (off by default).
    pub shadow: ShadowConfig,
}

/// Why a job was not run.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full: retry later.
    #[error("overloaded: {queued} images queued (limit {limit})")]
    Overloaded {
        /// Images admitted now.
        queued: usize,
        /// The limit.
        limit: usize,
    },
    /// The request has more images than the queue can ever hold.
    #[error("{images} images in one request, more than the queue limit {limit}")]
    TooLarge {
        /// Images requested.
        images: usize,
        /// The limit.
        limit: usize,
    },
    /// The model thread has stopped (shutting down, or it died).
    #[error("the model is not running")]
    Stopped,
    /// The batch failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The submitting side of the queue; cheap to clone.
#[derive(Clone)]
pub struct ModelQueue {
    tx: mpsc::UnboundedSender<Job>,
    permits: Arc<Semaphore>,
    limit: usize,
    per_image: usize,
    max_batch: usize,
    running: Arc<AtomicUsize>,
    life: Arc<Life>,
}

impl ModelQueue {
    /// Whether the model thread still runs (false once it returned or panicked).
    pub fn is_running(&self) -> bool {
        self.life.is_running()
    }

    /// The model thread's life, to watch without holding the queue open.
    pub fn life(&self) -> Arc<Life> {
        self.life.clone()
    }

    /// Most images per batch.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Most images admitted at once (`--max-queue`): no request may carry more.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Images admitted and not yet answered (queued or in the running batch).
    pub fn depth(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// `Overloaded` when not even one more image would be admitted: lets a server refuse a
    /// request before the work of parsing it.
    pub fn check_room(&self) -> Result<(), SubmitError> {
        if self.permits.available_permits() == 0 {
            return Err(SubmitError::Overloaded { queued: self.depth(), limit: self.limit });
        }
        Ok(())
    }

    /// Images in the batch being computed now.
    pub fn in_flight(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Values per image the model expects.
    pub fn per_image(&self) -> usize {
        self.per_image
    }

    /// Admits `n` normalised images or refuses at once; then waits for their results.
    pub async fn infer(&self, input: Vec<f32>, n: usize) -> Result<JobOutput, SubmitError> {
        let reply = self.submit(input, n)?;
        match reply.await {
            Ok(r) => r.map_err(SubmitError::Engine),
            Err(_) => Err(SubmitError::Stopped),
        }
    }

    /// Admits a job without waiting for it (the receiver yields the result).
    pub fn submit(
        &self,
        input: Vec<f32>,
        n: usize,
    ) -> Result<oneshot::Receiver<Result<JobOutput, EngineError>>, SubmitError> {
        self.submit_tagged(input, n, 0)
    }

    /// [`ModelQueue::submit`] with a tag (non-zero) that shadow checks of the job's images carry
    /// in [`HeadAnswers::source`](super::HeadAnswers::source), so that user feedback on an
    /// answer can reach the shadow pass of the same image.
    pub fn submit_tagged(
        &self,
        input: Vec<f32>,
        n: usize,
        tag: u64,
    ) -> Result<oneshot::Receiver<Result<JobOutput, EngineError>>, SubmitError> {
        if input.len() != n * self.per_image {
            return Err(SubmitError::Engine(EngineError::InputSize {
                got: input.len(),
                expected: n * self.per_image,
                n,
                per: self.per_image,
            }));
        }
        if n > self.limit {
            return Err(SubmitError::TooLarge { images: n, limit: self.limit });
        }
        let permit = match self.permits.clone().try_acquire_many_owned(n as u32) {
            Ok(p) => p,
            Err(TryAcquireError::NoPermits) => {
                return Err(SubmitError::Overloaded { queued: self.depth(), limit: self.limit })
            }
            Err(TryAcquireError::Closed) => return Err(SubmitError::Stopped),
        };
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { input, n, enqueued: Instant::now(), reply, tag, permit })
            .map_err(|_| SubmitError::Stopped)?;
        Ok(rx)
    }

    /// Stops admitting; the model thread finishes what is queued, then exits.
    pub fn close(&self) {
        self.permits.close();
    }
}

/// Starts the model thread. It exits when every `ModelQueue` clone is dropped and the queue
/// is drained; a panic ends it too, and either way [`ModelQueue::stopped`] resolves.
pub fn spawn<B: Backend + Send + 'static>(
    bundle: Arc<Bundle>,
    switch: Arc<ConfigSwitch>,
    backend: B,
    cfg: QueueConfig,
    observer: Arc<dyn BatchObserver>,
) -> (ModelQueue, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel::<Job>();
    let per_image: usize = bundle.manifest.input.shape.iter().product();
    let running = Arc::new(AtomicUsize::new(0));
    let life = Arc::new(Life::default());
    let queue = ModelQueue {
        tx,
        permits: Arc::new(Semaphore::new(cfg.max_queued)),
        limit: cfg.max_queued,
        per_image,
        max_batch: cfg.max_batch,
        running: running.clone(),
        life: life.clone(),
    };
    let configs: Vec<ResolvedConfig> =
        bundle.configs.configs.iter().filter_map(|e| ResolvedConfig::resolve(&bundle, e, 0).ok()).collect();
    let needed = needed_heads(&bundle, &configs);
    let sampler = Sampler::new(cfg.shadow.clone());
    let thread =
        ModelThread { bundle, switch, backend, cfg, observer, rx, per_image, running, sampler, needed };
    let handle = std::thread::Builder::new()
        .name("dyce-model".into())
        .spawn(move || {
            // Caught, not left to end the thread silently: whoever serves must learn that the
            // model is gone (readiness, metrics, exit), whatever the panic. The jobs of the
            // batch that panicked are answered by the drop of their reply channels.
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(move || thread.run()));
            let panic = outcome.err().map(|p| panic_message(p.as_ref()));
            if let Some(msg) = &panic {
                tracing::error!(panic = %msg, "the model thread panicked; the runtime is unready");
            }
            life.finish(panic);
        })
        .expect("spawning the model thread");
    (queue, handle)
}

/// Whether the model thread runs, and why it stopped.
#[derive(Default)]
pub struct Life {
    stopped: CancellationToken,
    panic: Mutex<Option<String>>,
}

impl Life {
    /// Whether the model thread still runs (false once it returned or panicked).
    pub fn is_running(&self) -> bool {
        !self.stopped.is_cancelled()
    }

    /// Resolves when the model thread has stopped, with its panic's message if it panicked.
    pub async fn stopped(&self) -> Option<String> {
        self.stopped.cancelled().await;
        self.panic.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn finish(&self, panic: Option<String>) {
        *self.panic.lock().unwrap_or_else(|p| p.into_inner()) = panic;
        self.stopped.cancel();
    }
}

/// The text of a panic's payload (`panic!` with a literal or with a format).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// What the model thread owns.
struct ModelThread<B> {
    bundle: Arc<Bundle>,
    switch: Arc<ConfigSwitch>,
    backend: B,
    cfg: QueueConfig,
    observer: Arc<dyn BatchObserver>,
    rx: mpsc::UnboundedReceiver<Job>,
    per_image: usize,
    running: Arc<AtomicUsize>,
    sampler: Sampler,
    /// Heads the shadow pass computes: those some configuration of the table uses.
    needed: Vec<bool>,
}

impl<B: Backend> ModelThread<B> {
    /// Batches jobs until the channel closes.
    fn run(mut self) {
        let mut carry: Option<Job> = None;
        loop {
            let first = match carry.take() {
                Some(j) => j,
                // Shadow passes run only when no request waits: the thread would idle otherwise.
                None if self.sampler.pending() => match self.rx.try_recv() {
                    Ok(j) => j,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.shadow();
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                },
                None => match self.rx.blocking_recv() {
                    Some(j) => j,
                    None => return,
                },
            };
            let mut jobs = vec![first];
            let mut images = jobs[0].n;
            let mut dropped = 0;
            // Take whatever is waiting, up to the batch limit; a job that does not fit starts
            // the next batch.
            while images < self.cfg.max_batch {
                match self.rx.try_recv() {
                    Ok(j) if images + j.n <= self.cfg.max_batch => {
                        images += j.n;
                        jobs.push(j);
                    }
                    Ok(j) => {
                        carry = Some(j);
                        break;
                    }
                    Err(_) => break,
                }
            }
            jobs.retain(|j| {
                let alive = !j.reply.is_closed();
                if !alive {
                    dropped += 1;
                    images -= j.n;
                }
                alive
            });
            if jobs.is_empty() {
                self.observer.batch("", 0, 0.0, dropped);
                continue;
            }
            self.batch(jobs, images, dropped);
        }
    }

    /// Runs one batch and answers its jobs.
    fn batch(&mut self, jobs: Vec<Job>, images: usize, dropped: usize) {
        let sample = self.sampler.armed();
        let mut input = Vec::with_capacity(images * self.per_image);
        // Row → (tag, index in its job), for the shadow checks of tagged jobs; only built when
        // this batch may be sampled.
        let mut sources = Vec::with_capacity(if sample { images } else { 0 });
        for j in &jobs {
            input.extend_from_slice(&j.input);
            if sample {
                sources.extend((0..j.n as u32).map(|i| (j.tag != 0).then_some((j.tag, i))));
            }
        }
        // One snapshot per batch: a switch during compute applies to the next batch.
        let cfg_now = self.switch.current();
        if self.cfg.panic_on_config.as_deref() == Some(cfg_now.id.as_str()) {
            panic!("fault injection: a batch on config {:?}", cfg_now.id);
        }
        self.running.store(images, Ordering::Relaxed);
        let start = Instant::now();
        let cfg_key = (cfg_now.id.as_str(), cfg_now.generation);
        let replies = Replies::new(jobs, cfg_key, start, self.cfg.answer_at_exit, self.observer.clone());
        let out = run_batch_answering(&self.bundle, &mut self.backend, &cfg_now, &input, images, &replies);
        let secs = start.elapsed().as_secs_f64();
        self.running.store(0, Ordering::Relaxed);
        match &out {
            Ok(_) => self.observer.batch(&cfg_now.id, images, secs, dropped),
            Err(e) => tracing::error!(error = %e, "batch failed"),
        }
        replies.finish(&out);
        // After the answers went out: sampling costs a draw per image, the copy only when taken.
        if sample && out.is_ok() {
            let dropped = self.sampler.offer(&input, images, |i| sources[i]);
            if dropped > 0 {
                self.observer.shadow_dropped(dropped);
            }
        }
    }

    /// One shadow pass over waiting sampled images; its answers go to the observer.
    fn shadow(&mut self) {
        let (input, sources) = self.sampler.take();
        match shadow_pass(&self.bundle, &mut self.backend, &self.needed, &input, sources.len()) {
            Ok(mut answers) => {
                for (a, source) in answers.iter_mut().zip(sources) {
                    a.source = source;
                }
                self.observer.shadow(&answers)
            }
            Err(e) => tracing::warn!(error = %e, "shadow pass failed"),
        }
    }
}

/// Waits at most `timeout` for the queue to drain (used at shutdown).
pub async fn drain(queue: &ModelQueue, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while queue.depth() > 0 {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}
