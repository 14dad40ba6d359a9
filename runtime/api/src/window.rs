//! The load window behind `GET /v1/load`, as a pure type: events come in with their time and a
//! snapshot is taken at a time. The runtime feeds it from its monotonic clock (under a lock);
//! the controller's simulator feeds it simulated time. One implementation, so a simulated
//! runtime reports exactly what a real one would for the same events.

use std::collections::{BTreeMap, VecDeque};

use crate::stats::quantile;
use crate::{ActiveConfig, LoadReport, Quantiles};

/// Shortest span rates are divided by: just after start a handful of events would otherwise
/// read as an enormous rate.
const MIN_SECONDS: f64 = 0.1;

/// Weight of the newest batch in the smoothed cost per image: one slow batch (a page-fault
/// storm, a noisy neighbour) should not swing a controller's predictions.
const SMOOTHING: f64 = 0.2;

/// Counters since the window was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Images admitted.
    pub arrivals: u64,
    /// Images refused.
    pub shed: u64,
    /// Images answered.
    pub completions: u64,
}

/// Rates and latency quantiles over the last `window` seconds, and the smoothed compute cost per
/// image of every configuration that ran. Times are seconds on any clock that never goes back.
#[derive(Debug, Clone)]
pub struct LoadWindow {
    window: f64,
    origin: f64,
    max_batch: usize,
    // (time, images), oldest first; trimmed as events arrive so memory stays bounded even when
    // nobody asks for a snapshot.
    arrivals: VecDeque<(f64, u64)>,
    shed: VecDeque<(f64, u64)>,
    // (time, images, latency of the request).
    completions: VecDeque<(f64, u64, f64)>,
    batches: VecDeque<(f64, u64)>,
    compute: BTreeMap<String, f64>,
    saturated: BTreeMap<String, f64>,
    totals: Totals,
}

/// What the window holds at a time, latencies not yet sorted: cheap to take under a lock, and
/// [`WindowSample::summarise`] does the sorting after it is released.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSample {
    seconds: f64,
    arrivals: u64,
    shed: u64,
    completions: u64,
    latencies: Vec<f64>,
    batches: u64,
    batch_images: u64,
    compute: BTreeMap<String, f64>,
    saturated: BTreeMap<String, f64>,
    totals: Totals,
}

/// The window's statistics at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSnapshot {
    /// Seconds the rates cover: the window, or the time since start when that is shorter.
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
    /// Smoothed compute seconds per image by config.
    pub compute: BTreeMap<String, f64>,
    /// The same over batches of the largest size only: the cost per image at capacity.
    pub saturated: BTreeMap<String, f64>,
    /// Counters since start.
    pub totals: Totals,
}

/// What the runtime knows besides the window when it answers `GET /v1/load`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueState {
    /// Images admitted and not yet answered.
    pub depth: usize,
    /// Images in the batch being computed.
    pub in_flight: usize,
    /// Largest batch.
    pub max_batch: usize,
    /// The configuration the runtime runs.
    pub active: ActiveConfig,
}

fn trim<T>(events: &mut VecDeque<T>, now: f64, window: f64, time: impl Fn(&T) -> f64) {
    while events.front().is_some_and(|e| now - time(e) > window) {
        events.pop_front();
    }
}

fn smooth(into: &mut BTreeMap<String, f64>, config: &str, per: f64) {
    let e = into.entry(config.to_string()).or_insert(per);
    *e = (1.0 - SMOOTHING) * *e + SMOOTHING * per;
}

impl LoadWindow {
    /// A window of `window` seconds starting at `origin`; batches of `max_batch` images are the
    /// ones whose cost is the cost at capacity.
    pub fn new(window: f64, max_batch: usize, origin: f64) -> Self {
        Self {
            window,
            origin,
            max_batch: max_batch.max(1),
            arrivals: VecDeque::new(),
            shed: VecDeque::new(),
            completions: VecDeque::new(),
            batches: VecDeque::new(),
            compute: BTreeMap::new(),
            saturated: BTreeMap::new(),
            totals: Totals::default(),
        }
    }

    /// `n` images admitted at `now`.
    pub fn arrived(&mut self, now: f64, n: usize) {
        trim(&mut self.arrivals, now, self.window, |e| e.0);
        self.arrivals.push_back((now, n as u64));
        self.totals.arrivals += n as u64;
    }

    /// `n` images refused at `now`.
    pub fn shed(&mut self, now: f64, n: usize) {
        trim(&mut self.shed, now, self.window, |e| e.0);
        self.shed.push_back((now, n as u64));
        self.totals.shed += n as u64;
    }

    /// A request of `n` images answered at `now`, `latency` seconds after it arrived.
    pub fn completed(&mut self, now: f64, n: usize, latency: f64) {
        trim(&mut self.completions, now, self.window, |e| e.0);
        self.completions.push_back((now, n as u64, latency));
        self.totals.completions += n as u64;
    }

    /// A batch of `images` on `config` at `now`, taking `seconds` of compute.
    pub fn batch(&mut self, now: f64, config: &str, images: usize, seconds: f64) {
        trim(&mut self.batches, now, self.window, |e| e.0);
        self.batches.push_back((now, images as u64));
        if images > 0 {
            let per = seconds / images as f64;
            smooth(&mut self.compute, config, per);
            if images >= self.max_batch {
                smooth(&mut self.saturated, config, per);
            }
        }
    }

    /// A cost per image of `config` at capacity measured before the window started (a warm-up
    /// of full batches), taken as it is.
    pub fn seed_cost(&mut self, config: &str, per_image: f64) {
        self.compute.insert(config.to_string(), per_image);
        self.saturated.insert(config.to_string(), per_image);
    }

    /// Cost per image at capacity by config (without a whole snapshot).
    pub fn saturated(&self) -> &BTreeMap<String, f64> {
        &self.saturated
    }

    /// The events inside the window at `now`, latencies unsorted.
    pub fn sample(&self, now: f64) -> WindowSample {
        let live = |t: f64| now - t <= self.window;
        let sum = |events: &VecDeque<(f64, u64)>| events.iter().filter(|e| live(e.0)).map(|e| e.1).sum();
        let completions = self.completions.iter().filter(|e| live(e.0));
        let batches = self.batches.iter().filter(|e| live(e.0));
        WindowSample {
            seconds: self.window.min(now - self.origin).max(MIN_SECONDS),
            arrivals: sum(&self.arrivals),
            shed: sum(&self.shed),
            completions: completions.clone().map(|e| e.1).sum(),
            latencies: completions.map(|e| e.2).collect(),
            batches: batches.clone().count() as u64,
            batch_images: batches.map(|e| e.1).sum(),
            compute: self.compute.clone(),
            saturated: self.saturated.clone(),
            totals: self.totals,
        }
    }

    /// The window's statistics at `now`.
    pub fn snapshot(&self, now: f64) -> LoadSnapshot {
        self.sample(now).summarise()
    }
}

impl WindowSample {
    /// Rates over the covered seconds and the latency quantiles.
    pub fn summarise(mut self) -> LoadSnapshot {
        self.latencies.sort_by(f64::total_cmp);
        let q = |p| quantile(&self.latencies, p);
        let latency = match (q(0.50), q(0.95), q(0.99)) {
            (Some(p50), Some(p95), Some(p99)) => Some(Quantiles { p50, p95, p99 }),
            _ => None,
        };
        let s = self.seconds;
        LoadSnapshot {
            seconds: s,
            arrivals: self.arrivals as f64 / s,
            shed: self.shed as f64 / s,
            completions: self.completions as f64 / s,
            latency,
            mean_batch: if self.batches > 0 { self.batch_images as f64 / self.batches as f64 } else { 0.0 },
            compute: self.compute,
            saturated: self.saturated,
            totals: self.totals,
        }
    }
}

impl LoadSnapshot {
    /// The `GET /v1/load` answer: this snapshot and the queue's state.
    pub fn report(self, queue: QueueState) -> LoadReport {
        LoadReport {
            window_seconds: self.seconds,
            arrivals_per_second: self.arrivals,
            completions_per_second: self.completions,
            shed_per_second: self.shed,
            queue_depth: queue.depth,
            in_flight: queue.in_flight,
            latency_seconds: self.latency,
            mean_batch_size: self.mean_batch,
            active: queue.active,
            compute_seconds_per_request: self.compute,
            saturated_seconds_per_request: self.saturated,
            arrivals_total: self.totals.arrivals,
            shed_total: self.totals.shed,
            completions_total: self.totals.completions,
            max_batch_size: queue.max_batch,
            live_accuracy: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_rates() {
        let mut w = LoadWindow::new(10.0, 10, 0.0);
        for i in 1..=100 {
            w.arrived(1.0, 1);
            w.completed(1.0, 1, i as f64 / 1000.0);
        }
        w.shed(1.0, 5);
        w.batch(1.0, "full", 10, 0.01);
        let s = w.snapshot(2.0);
        let q = s.latency.unwrap();
        assert_eq!((q.p50, q.p95, q.p99), (0.050, 0.095, 0.099));
        assert_eq!((s.seconds, s.arrivals, s.shed), (2.0, 50.0, 2.5));
        assert_eq!(s.mean_batch, 10.0);
        assert!((s.compute["full"] - 0.001).abs() < 1e-12);
        assert!((s.saturated["full"] - 0.001).abs() < 1e-12);
        w.batch(1.5, "c1", 3, 0.01);
        let s = w.snapshot(2.0);
        assert!(s.compute.contains_key("c1") && !s.saturated.contains_key("c1"));
        assert_eq!(s.totals, Totals { arrivals: 100, shed: 5, completions: 100 });
    }

    #[test]
    fn empty_window_has_no_latency() {
        let s = LoadWindow::new(1.0, 8, 0.0).snapshot(0.0);
        assert_eq!(s.latency, None);
        assert_eq!((s.arrivals, s.seconds), (0.0, 0.1));
    }

    #[test]
    fn old_events_leave_the_window_but_not_the_totals() {
        let mut w = LoadWindow::new(2.0, 8, 0.0);
        w.arrived(1.0, 3);
        w.arrived(4.0, 1);
        let s = w.snapshot(4.0);
        assert_eq!((s.seconds, s.arrivals, s.totals.arrivals), (2.0, 0.5, 4));
        // An event exactly one window old still counts.
        assert_eq!(w.snapshot(6.0).arrivals, 0.5);
        assert_eq!(w.snapshot(6.5).arrivals, 0.0);
    }
}
