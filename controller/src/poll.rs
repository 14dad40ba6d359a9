//! The runtimes' own `/v1/load` answers as a signal source: every runtime is polled
//! concurrently, each answer or failure goes into its track, and the law's signals are the fresh
//! answers aggregated (the core's default `observe`).
//!
//! A tick waits for the polls only until its deadline (half the interval): a poll still running
//! then is not cancelled but carried over, and its answer counts at the tick that sees it. So a
//! runtime that hangs costs the tick at most the deadline, while a busy runtime that answers
//! within `requestTimeout` (which may be longer than the interval) still counts as fresh.

use std::collections::HashMap;
use std::time::Duration;

use dyce_api::LoadReport;
use dyce_control_core::signals::RuntimeTrack;
use dyce_control_core::source::{BoxFuture, SignalSource};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use crate::client::{AdminClient, CallError};

type Answer = (String, Result<LoadReport, CallError>);

/// Polls runtimes' admin ports.
pub struct HttpRuntimes {
    client: AdminClient,
    policy: String,
    wait: Duration,
    /// Polls in flight, by URL: at most one per runtime.
    inflight: HashMap<String, AbortHandle>,
    tasks: JoinSet<()>,
    tx: mpsc::UnboundedSender<Answer>,
    rx: mpsc::UnboundedReceiver<Answer>,
    errors: Option<Counter>,
}

impl HttpRuntimes {
    /// Polls with `client` (whose timeout bounds each poll); a tick waits at most `wait` for
    /// the answers; `policy` names the policy in logs.
    pub fn new(client: AdminClient, policy: &str, wait: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (inflight, tasks) = (HashMap::new(), JoinSet::new());
        Self { client, policy: policy.to_string(), wait, inflight, tasks, tx, rx, errors: None }
    }

    /// Counts every failed poll in `errors` (`dyce_controller_api_errors_total{api="runtime"}`).
    pub fn count_errors(mut self, errors: Counter) -> Self {
        self.errors = Some(errors);
        self
    }

    /// Starts a poll of every runtime that has none in flight, then takes the answers that
    /// arrive within the tick's deadline (and those carried over from earlier ticks).
    pub async fn poll_all(&mut self, tracks: &mut [RuntimeTrack], now: f64) {
        let deadline = tokio::time::Instant::now() + self.wait;
        // Runtimes no longer steered (pods gone): their polls are dropped.
        self.inflight.retain(|url, h| {
            let keep = tracks.iter().any(|t| &t.url == url);
            if !keep {
                h.abort();
            }
            keep
        });
        while self.tasks.try_join_next().is_some() {}
        for t in tracks.iter() {
            if self.inflight.contains_key(&t.url) {
                continue;
            }
            let (client, url, tx) = (self.client.clone(), t.url.clone(), self.tx.clone());
            let h = self.tasks.spawn(async move {
                let r = client.load(&url).await;
                let _ = tx.send((url, r));
            });
            self.inflight.insert(t.url.clone(), h);
        }
        while !self.inflight.is_empty() {
            let Ok(Some((url, r))) = tokio::time::timeout_at(deadline, self.rx.recv()).await else {
                break;
            };
            self.inflight.remove(&url);
            if let Some(t) = tracks.iter_mut().find(|t| t.url == url) {
                self.record(t, r, now);
            }
        }
    }

    fn record(&self, t: &mut RuntimeTrack, r: Result<LoadReport, CallError>, now: f64) {
        match r {
            Ok(report) => {
                if t.failures > 0 {
                    tracing::info!(policy = %self.policy, runtime = %t.url, failed_polls = t.failures, "runtime answering again");
                }
                t.observe(now, report)
            }
            Err(e) => {
                if let Some(c) = &self.errors {
                    c.inc();
                }
                if t.failures == 0 {
                    tracing::warn!(policy = %self.policy, runtime = %t.url, error = %e, "runtime did not answer");
                }
                t.fail(e.to_string());
            }
        }
    }
}

impl SignalSource for HttpRuntimes {
    fn poll<'a>(&'a mut self, tracks: &'a mut [RuntimeTrack], now: f64) -> BoxFuture<'a, ()> {
        Box::pin(self.poll_all(tracks, now))
    }
}
