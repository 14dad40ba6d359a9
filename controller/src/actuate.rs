//! Actuation: push a config to the runtimes that are not on it, concurrently, with retries.

use std::time::Duration;

use dyce_api::{ActiveConfig, SwitchRequest};
pub use dyce_control_core::step::PushTarget;
use tokio::task::JoinSet;

use crate::client::{AdminClient, CallError};

/// The result of pushing to one runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct PushOutcome {
    /// Admin URL.
    pub url: String,
    /// The runtime's active config after the push, or the last error.
    pub result: Result<ActiveConfig, CallError>,
    /// Calls made.
    pub attempts: u32,
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

async fn push_one(client: AdminClient, target: PushTarget, id: String, retry: Retry) -> PushOutcome {
    let mut generation = target.generation + 1;
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
            return PushOutcome { url: target.url, result, attempts };
        }
        if let Err(e) = &result {
            if e.status() == Some(409) {
                // Someone switched since our poll: re-read the generation, still fenced.
                match client.configs(&target.url).await {
                    Ok(v) if v.active.id == id => {
                        return PushOutcome { url: target.url, result: Ok(v.active), attempts }
                    }
                    Ok(v) => generation = v.active.generation + 1,
                    Err(_) => {}
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
}

/// Pushes `id` to every target concurrently; returns one outcome per target.
pub async fn push_all(
    client: &AdminClient,
    targets: Vec<PushTarget>,
    id: &str,
    retry: Retry,
) -> Vec<PushOutcome> {
    let mut set = JoinSet::new();
    for t in targets {
        set.spawn(push_one(client.clone(), t, id.to_string(), retry));
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(o) = r {
            out.push(o);
        }
    }
    out
}
