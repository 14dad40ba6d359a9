//! Actuation: push a config to the runtimes that are not on it, with retries, through one
//! worker task per runtime ([`Pusher`]), so that a runtime whose `PUT` hangs delays neither the
//! tick nor the pushes to the others.

use std::collections::HashMap;
use std::time::Duration;

use dyce_api::{ActiveConfig, SwitchRequest};
pub use dyce_control_core::step::PushTarget;
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};

use crate::client::{AdminClient, CallError};

/// The result of pushing to one runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct PushOutcome {
    /// Admin URL.
    pub url: String,
    /// The config pushed.
    pub id: String,
    /// The runtime's active config after the push, or the last error.
    pub result: Result<ActiveConfig, PushError>,
    /// Calls made.
    pub attempts: u32,
}

/// The highest generation a runtime accepts: it refuses higher ones with 400, and at this one
/// refuses a write without a generation with 409 (the next one does not exist).
pub const MAX_GENERATION: u64 = i64::MAX as u64;

/// Why a push failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PushError {
    /// The call failed (after retries where they can help).
    #[error(transparent)]
    Call(#[from] CallError),
    /// The runtime's generation leaves no next one to fence the write with.
    #[error(
        "{url}: generation {generation} is at the ceiling ({MAX_GENERATION}): no fenced push can follow; \
         restart the runtime to reset its generation"
    )]
    GenerationCeiling {
        /// Admin URL.
        url: String,
        /// The generation the runtime reported.
        generation: u64,
    },
}

/// The generation after `g`, if the runtime can accept one.
fn next_generation(g: u64) -> Option<u64> {
    g.checked_add(1).filter(|&n| n <= MAX_GENERATION)
}

/// Retry policy of a push.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// Most calls per runtime.
    pub attempts: u32,
    /// Wait before the second call; doubles after each failure.
    pub backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self { attempts: 3, backoff: Duration::from_millis(25) }
    }
}

/// Pushes `id` to one runtime, fenced by the generation after the one it reported.
pub async fn push_one(client: AdminClient, target: PushTarget, id: String, retry: Retry) -> PushOutcome {
    let ceiling = |url: String, generation| PushError::GenerationCeiling { url, generation };
    let Some(mut generation) = next_generation(target.generation) else {
        let result = Err(ceiling(target.url.clone(), target.generation));
        return PushOutcome { url: target.url, id, result, attempts: 0 };
    };
    let mut wait = retry.backoff;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let req = SwitchRequest { id: id.clone(), generation: Some(generation) };
        let result = client.switch(&target.url, &req).await;
        let retryable = match &result {
            Ok(_) => false,
            // Unknown id: the runtime serves another table; retrying cannot help.
            Err(e) if e.status() == Some(404) || e.status() == Some(400) || e.status() == Some(401) => false,
            Err(_) => true,
        };
        if !retryable || attempts >= retry.attempts.max(1) {
            return PushOutcome { url: target.url, id, result: result.map_err(PushError::from), attempts };
        }
        if let Err(e) = &result {
            if e.status() == Some(409) {
                // Someone switched since our poll: re-read the generation, still fenced.
                match client.configs(&target.url).await {
                    Ok(v) if v.active.id == id => {
                        return PushOutcome { url: target.url, id, result: Ok(v.active), attempts }
                    }
                    Ok(v) => match next_generation(v.active.generation) {
                        Some(g) => generation = g,
                        None => {
                            let result = Err(ceiling(target.url.clone(), v.active.generation));
                            return PushOutcome { url: target.url, id, result, attempts };
                        }
                    },
                    Err(_) => {}
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
}

/// What a runtime's worker is asked to push: the latest decision replaces one not yet started.
type Job = Option<(PushTarget, String)>;

struct Worker {
    job: watch::Sender<Job>,
    task: AbortHandle,
    /// The config submitted and not yet reported back (in flight or waiting).
    pending: Option<String>,
}

/// Pushes through one worker task per runtime. The tick submits and never waits: outcomes come
/// back through [`Pusher::drain`] at a later tick. A worker runs one push at a time (retries
/// included); a submission while it is busy replaces the one waiting (latest wins), and
/// resubmitting the config already on its way is a no-op, so a runtime whose `PUT` hangs has at
/// most one push in flight and one waiting, and the others are not held up by it.
pub struct Pusher {
    client: AdminClient,
    retry: Retry,
    workers: HashMap<String, Worker>,
    tasks: JoinSet<()>,
    tx: mpsc::UnboundedSender<PushOutcome>,
    rx: mpsc::UnboundedReceiver<PushOutcome>,
}

impl Pusher {
    /// Pushes with `client` and `retry`.
    pub fn new(client: AdminClient, retry: Retry) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self { client, retry, workers: HashMap::new(), tasks: JoinSet::new(), tx, rx }
    }

    /// Asks `target`'s worker to push `id`; false when `id` is already on its way there.
    pub fn submit(&mut self, target: PushTarget, id: &str) -> bool {
        let w = match self.workers.get_mut(&target.url) {
            Some(w) => w,
            None => {
                let (job, rx) = watch::channel(None);
                let (client, retry, tx) = (self.client.clone(), self.retry, self.tx.clone());
                let task = self.tasks.spawn(work(client, retry, rx, tx));
                self.workers.entry(target.url.clone()).or_insert(Worker { job, task, pending: None })
            }
        };
        if w.pending.as_deref() == Some(id) {
            return false;
        }
        w.pending = Some(id.to_string());
        w.job.send_replace(Some((target, id.to_string())));
        true
    }

    /// The outcomes that arrived since the last call, without waiting.
    pub fn drain(&mut self) -> Vec<PushOutcome> {
        let mut out = Vec::new();
        while let Ok(o) = self.rx.try_recv() {
            if let Some(w) = self.workers.get_mut(&o.url) {
                if w.pending.as_deref() == Some(o.id.as_str()) {
                    w.pending = None;
                }
            }
            out.push(o);
        }
        out
    }

    /// Whether a push to `url` is in flight or waiting.
    pub fn busy(&self, url: &str) -> bool {
        self.workers.get(url).is_some_and(|w| w.pending.is_some())
    }

    /// Stops the workers of runtimes no longer steered (pods gone).
    pub fn retain(&mut self, urls: &[String]) {
        self.workers.retain(|url, w| {
            let keep = urls.contains(url);
            if !keep {
                w.task.abort();
            }
            keep
        });
        while self.tasks.try_join_next().is_some() {}
    }
}

async fn work(
    client: AdminClient,
    retry: Retry,
    mut job: watch::Receiver<Job>,
    tx: mpsc::UnboundedSender<PushOutcome>,
) {
    while job.changed().await.is_ok() {
        let Some((target, id)) = job.borrow_and_update().clone() else { continue };
        if tx.send(push_one(client.clone(), target, id, retry).await).is_err() {
            return;
        }
    }
}
