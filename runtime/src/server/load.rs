//! Sliding-window load statistics for `GET /v1/load`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dyce_api::Quantiles;

#[derive(Default)]
struct Bucket {
    arrivals: u64,
    shed: u64,
    completions: u64,
    batches: u64,
    batch_images: u64,
    latencies: Vec<f64>,
}

struct Inner {
    // One bucket per `resolution`, newest last.
    buckets: VecDeque<(Instant, Bucket)>,
    // Exponentially weighted compute seconds per image, by config id.
    compute: BTreeMap<String, f64>,
    // The same, over full batches only: the per-image cost at capacity.
    saturated: BTreeMap<String, f64>,
    // Counters since start, so a poller can take rates over its own interval.
    totals: Totals,
}

/// Counters since the runtime started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Images admitted.
    pub arrivals: u64,
    /// Images refused.
    pub shed: u64,
    /// Images answered.
    pub completions: u64,
}

/// Rates and latency quantiles over the last `window`.
pub struct LoadWindow {
    window: Duration,
    max_batch: usize,
    resolution: Duration,
    inner: Mutex<Inner>,
}

/// A snapshot of the window.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSnapshot {
    /// Seconds the rates cover (shorter than the window just after start).
    pub seconds: f64,
    /// Images admitted per second.
    pub arrivals: f64,
    /// Images refused per second.
    pub shed: f64,
    /// Images answered per second.
    pub completions: f64,
    /// Latency quantiles of answered requests.
    pub latency: Option<Quantiles>,
    /// Mean images per batch.
    pub mean_batch: f64,
    /// Compute seconds per image by config.
    pub compute: BTreeMap<String, f64>,
    /// Compute seconds per image by config, over batches of the largest size only.
    pub saturated: BTreeMap<String, f64>,
    /// Counters since start.
    pub totals: Totals,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let idx = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

impl LoadWindow {
    /// A window of `window`, kept in 100 ms buckets; `max_batch` marks the batches whose cost
    /// is the cost at capacity.
    pub fn new(window: Duration, max_batch: usize) -> Self {
        Self {
            window,
            max_batch: max_batch.max(1),
            resolution: Duration::from_millis(100),
            inner: Mutex::new(Inner {
                buckets: VecDeque::new(),
                compute: BTreeMap::new(),
                saturated: BTreeMap::new(),
                totals: Totals::default(),
            }),
        }
    }

    fn with_bucket(&self, f: impl FnOnce(&mut Bucket, &mut Totals)) {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = inner.buckets.back().is_none_or(|(t, _)| now.duration_since(*t) >= self.resolution);
        if fresh {
            inner.buckets.push_back((now, Bucket::default()));
        }
        while inner.buckets.front().is_some_and(|(t, _)| now.duration_since(*t) > self.window) {
            inner.buckets.pop_front();
        }
        let Inner { buckets, totals, .. } = &mut *inner;
        f(&mut buckets.back_mut().expect("just pushed").1, totals);
    }

    /// `n` images admitted.
    pub fn arrived(&self, n: usize) {
        self.with_bucket(|b, t| {
            b.arrivals += n as u64;
            t.arrivals += n as u64;
        });
    }

    /// `n` images refused.
    pub fn shed(&self, n: usize) {
        self.with_bucket(|b, t| {
            b.shed += n as u64;
            t.shed += n as u64;
        });
    }

    /// A request of `n` images answered after `latency` seconds.
    pub fn completed(&self, n: usize, latency: f64) {
        self.with_bucket(|b, t| {
            b.completions += n as u64;
            t.completions += n as u64;
            b.latencies.push(latency);
        });
    }

    /// A batch of `images` on `config` took `seconds` of compute.
    pub fn batch(&self, config: &str, images: usize, seconds: f64) {
        self.with_bucket(|b, _| {
            b.batches += 1;
            b.batch_images += images as u64;
        });
        if images > 0 {
            let per = seconds / images as f64;
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            // Smoothed, so one slow batch (a page fault storm, a noisy neighbour) does not
            // swing the controller's predictions.
            let e = inner.compute.entry(config.to_string()).or_insert(per);
            *e = 0.8 * *e + 0.2 * per;
            if images >= self.max_batch {
                let e = inner.saturated.entry(config.to_string()).or_insert(per);
                *e = 0.8 * *e + 0.2 * per;
            }
        }
    }

    /// Cost per image at capacity by config (without building a whole snapshot).
    pub fn saturated(&self) -> BTreeMap<String, f64> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).saturated.clone()
    }

    /// The window's statistics now.
    pub fn snapshot(&self) -> LoadSnapshot {
        let now = Instant::now();
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let live: Vec<&Bucket> = inner
            .buckets
            .iter()
            .filter(|(t, _)| now.duration_since(*t) <= self.window)
            .map(|(_, b)| b)
            .collect();
        let oldest =
            inner.buckets.iter().find(|(t, _)| now.duration_since(*t) <= self.window).map(|(t, _)| *t);
        let seconds =
            oldest.map_or(0.0, |t| now.duration_since(t).as_secs_f64()).max(self.resolution.as_secs_f64());
        let sum = |f: fn(&Bucket) -> u64| live.iter().map(|b| f(b)).sum::<u64>() as f64;
        let mut lat: Vec<f64> = live.iter().flat_map(|b| b.latencies.iter().copied()).collect();
        let batches = sum(|b| b.batches);
        let mut snap = LoadSnapshot {
            seconds,
            arrivals: sum(|b| b.arrivals) / seconds,
            shed: sum(|b| b.shed) / seconds,
            completions: sum(|b| b.completions) / seconds,
            latency: None,
            mean_batch: if batches > 0.0 { sum(|b| b.batch_images) / batches } else { 0.0 },
            compute: inner.compute.clone(),
            saturated: inner.saturated.clone(),
            totals: inner.totals,
        };
        // Sorted after the lock is released: every answered request and every batch takes this
        // lock, and a window at thousands of requests per second holds thousands of latencies.
        drop(inner);
        lat.sort_by(f64::total_cmp);
        snap.latency = (!lat.is_empty()).then(|| Quantiles {
            p50: quantile(&lat, 0.50),
            p95: quantile(&lat, 0.95),
            p99: quantile(&lat, 0.99),
        });
        snap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_rates() {
        let w = LoadWindow::new(Duration::from_secs(10), 10);
        for i in 1..=100 {
            w.arrived(1);
            w.completed(1, i as f64 / 1000.0);
        }
        w.shed(5);
        w.batch("full", 10, 0.01);
        let s = w.snapshot();
        let q = s.latency.unwrap();
        assert_eq!((q.p50, q.p95, q.p99), (0.050, 0.095, 0.099));
        assert!(s.arrivals > 0.0 && s.shed > 0.0);
        assert_eq!(s.mean_batch, 10.0);
        assert!((s.compute["full"] - 0.001).abs() < 1e-12);
        assert!((s.saturated["full"] - 0.001).abs() < 1e-12);
        w.batch("c1", 3, 0.01);
        let s = w.snapshot();
        assert!(s.compute.contains_key("c1") && !s.saturated.contains_key("c1"));
        assert_eq!(s.totals, Totals { arrivals: 100, shed: 5, completions: 100 });
    }

    #[test]
    fn empty_window_has_no_latency() {
        let s = LoadWindow::new(Duration::from_secs(1), 8).snapshot();
        assert_eq!(s.latency, None);
        assert_eq!(s.arrivals, 0.0);
    }
}
