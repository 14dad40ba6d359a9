//! The runtime's load window: `dyce-api`'s pure [`LoadWindow`] on this process's monotonic clock,
//! behind a lock (every answered request and every batch records into it).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dyce_api::{LoadSnapshot, LoadWindow};

/// Rates and latency quantiles over the last `window`, shared by the handlers and the model
/// thread.
pub struct SharedWindow {
    epoch: Instant,
    inner: Mutex<LoadWindow>,
}

impl SharedWindow {
    /// A window of `window`; `max_batch` marks the batches whose cost is the cost at capacity.
    pub fn new(window: Duration, max_batch: usize) -> Self {
        Self {
            epoch: Instant::now(),
            inner: Mutex::new(LoadWindow::new(window.as_secs_f64(), max_batch, 0.0)),
        }
    }

    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    fn with(&self, f: impl FnOnce(&mut LoadWindow, f64)) {
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Read under the lock, so events go in in time order.
        let now = self.now();
        f(&mut w, now);
    }

    /// `n` images admitted.
    pub fn arrived(&self, n: usize) {
        self.with(|w, now| w.arrived(now, n));
    }

    /// `n` images refused.
    pub fn shed(&self, n: usize) {
        self.with(|w, now| w.shed(now, n));
    }

    /// A request of `n` images answered after `latency` seconds.
    pub fn completed(&self, n: usize, latency: f64) {
        self.with(|w, now| w.completed(now, n, latency));
    }

    /// A batch of `images` on `config` took `seconds` of compute.
    pub fn batch(&self, config: &str, images: usize, seconds: f64) {
        self.with(|w, now| w.batch(now, config, images, seconds));
    }

    /// Cost per image at capacity by config (without building a whole snapshot).
    pub fn saturated(&self) -> BTreeMap<String, f64> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).saturated().clone()
    }

    /// The window's statistics now.
    pub fn snapshot(&self) -> LoadSnapshot {
        let sample = {
            let w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            w.sample(self.now())
        };
        // Sorted after the lock is released: every answered request and every batch takes this
        // lock, and a window at thousands of requests per second holds thousands of latencies.
        sample.summarise()
    }
}
