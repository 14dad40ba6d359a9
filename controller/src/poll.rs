//! The runtimes' own `/v1/load` answers as a signal source: every runtime is polled
//! concurrently, each answer or failure goes into its track, and the law's signals are the fresh
//! answers aggregated (the core's default `observe`).

use dyce_control_core::signals::RuntimeTrack;
use dyce_control_core::source::{BoxFuture, SignalSource};
use tokio::task::JoinSet;

use crate::client::AdminClient;

/// Polls runtimes' admin ports.
#[derive(Clone)]
pub struct HttpRuntimes {
    client: AdminClient,
    policy: String,
}

impl HttpRuntimes {
    /// Polls with `client`; `policy` names the policy in logs.
    pub fn new(client: AdminClient, policy: &str) -> Self {
        Self { client, policy: policy.to_string() }
    }

    /// Every runtime's `/v1/load` at once, so one slow runtime delays the tick by its own
    /// timeout only.
    pub async fn poll_all(&self, tracks: &mut [RuntimeTrack], now: f64) {
        let mut set = JoinSet::new();
        for (i, t) in tracks.iter().enumerate() {
            let client = self.client.clone();
            let url = t.url.clone();
            set.spawn(async move { (i, client.load(&url).await) });
        }
        while let Some(Ok((i, r))) = set.join_next().await {
            match r {
                Ok(report) => tracks[i].observe(now, report),
                Err(e) => {
                    if tracks[i].failures == 0 {
                        tracing::warn!(policy = %self.policy, error = %e, "runtime did not answer");
                    }
                    tracks[i].fail(e.to_string());
                }
            }
        }
    }
}

impl SignalSource for HttpRuntimes {
    fn poll<'a>(&'a mut self, tracks: &'a mut [RuntimeTrack], now: f64) -> BoxFuture<'a, ()> {
        Box::pin(self.poll_all(tracks, now))
    }
}
