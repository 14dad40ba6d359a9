//! The runtime's capacity through HTTP: a closed loop of clients, each sending its next image as
//! soon as the last answer is in, for a few seconds.
//!
//! Measured through the same HTTP/JSON path and the same load-generator code the runs use, on
//! the same cores: the capacity a trace is scaled by must be what the served path sustains, which
//! on a shared two-core machine is well below the model's compute capacity (`dyce bench`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::tools::load::images::LabelledImages;
use anyhow::Result;

use crate::tools::load::client;
use crate::tools::load::record::{Outcome, Record};

/// Requests outstanding during the probe: two full batches, so the model thread never waits for
/// work and batches are full, without filling the admission queue.
const CONCURRENCY: usize = 64;

/// What a probe measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    /// Good answers per second after the warm-up.
    pub ok_per_second: f64,
    /// Answers that were not 200 (refusals, errors), over the whole probe.
    pub not_ok: usize,
    /// Seconds measured.
    pub seconds: f64,
}

impl Probe {
    /// For report.json.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"ok_per_second": self.ok_per_second, "not_ok": self.not_ok, "seconds": self.seconds})
    }
}

/// Runs the closed loop against the data port at `base` for `model` for `seconds` (after a
/// warm-up of a fifth of that, at least half a second, not counted).
pub async fn probe(
    base: &str,
    model: &str,
    images: Arc<LabelledImages>,
    seconds: f64,
    encoding: client::Encoding,
) -> Result<Probe> {
    let timeout = Duration::from_secs(5);
    let http = client::http(timeout)?;
    let (url, _) = client::preflight(&http, base, Some(model), images.shape, timeout).await?;
    let warm = Duration::from_secs_f64((seconds / 5.0).max(0.5));
    let start = Instant::now();
    let (measure_from, end) = (start + warm, start + warm + Duration::from_secs_f64(seconds));
    let ok = Arc::new(AtomicUsize::new(0));
    let not_ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let (http, url, images, ok, not_ok) =
            (http.clone(), url.clone(), images.clone(), ok.clone(), not_ok.clone());
        tasks.push(tokio::spawn(async move {
            // Each worker walks its own stride of the test set.
            let mut i = worker;
            while Instant::now() < end {
                let idx = i % images.len();
                i += CONCURRENCY;
                let record = Record::pending(i as u64, 0.0, vec![images.labels[idx]]);
                let r =
                    client::exchange(&http, &url, client::body(&images, &[idx], encoding), timeout, record)
                        .await;
                let now = Instant::now();
                if now >= measure_from && now < end {
                    let counter = if r.outcome == Outcome::Ok { &ok } else { &not_ok };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(Probe {
        ok_per_second: ok.load(Ordering::Relaxed) as f64 / seconds,
        not_ok: not_ok.load(Ordering::Relaxed),
        seconds,
    })
}
