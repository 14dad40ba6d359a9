//! Signals: per-runtime tracking of `/v1/load` answers and their aggregation per policy.
//!
//! Pure: a signal source (`crate::source`) feeds answers and failures in with the time they
//! happened; `aggregate` turns the fresh ones into the law's `Observation`.

use std::collections::BTreeMap;

use dyce_api::{LoadReport, Quantiles};

use crate::law::{Observation, Signals};

/// What the controller knows about one runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeTrack {
    /// Admin URL.
    pub url: String,
    /// Time of the last good answer and the answer.
    pub last: Option<(f64, LoadReport)>,
    /// Offered images per second over the last poll interval (from the counters).
    pub offered: Option<f64>,
    /// Consecutive failed polls.
    pub failures: u32,
    /// The last failure, for logs and status.
    pub last_error: Option<String>,
}

impl RuntimeTrack {
    /// A runtime not heard from yet.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), last: None, offered: None, failures: 0, last_error: None }
    }

    /// A good answer at `at`.
    pub fn observe(&mut self, at: f64, report: LoadReport) {
        let window_rate = report.arrivals_per_second + report.shed_per_second;
        // Rates over the poll interval react within one tick, where the runtime's window
        // (seconds long) would blur a step. Counters that went backwards mean a restart.
        self.offered = Some(match &self.last {
            Some((t0, r0))
                if at > *t0
                    && report.arrivals_total >= r0.arrivals_total
                    && report.shed_total >= r0.shed_total
                    && report.arrivals_total + report.shed_total > 0 =>
            {
                let n = (report.arrivals_total - r0.arrivals_total) + (report.shed_total - r0.shed_total);
                n as f64 / (at - t0)
            }
            _ => window_rate,
        });
        self.last = Some((at, report));
        self.failures = 0;
        self.last_error = None;
    }

    /// A failed poll at `at`.
    pub fn fail(&mut self, error: impl Into<String>) {
        self.failures += 1;
        self.last_error = Some(error.into());
    }

    /// Whether the last good answer is at most `stale_after` old at `now`.
    pub fn is_fresh(&self, now: f64, stale_after: f64) -> bool {
        self.last.as_ref().is_some_and(|(t, _)| now - t <= stale_after)
    }
}

/// The reported quantile the objective reads: the smallest of p50/p95/p99 at or above `q`.
pub fn pick_quantile(q: &Quantiles, quantile: f64) -> f64 {
    if quantile <= 0.5 {
        q.p50
    } else if quantile <= 0.95 {
        q.p95
    } else {
        q.p99
    }
}

/// Cost per image of the full model at capacity, estimated from one runtime's report: its own
/// measurement of the full model when it has one, else its active config's (or any config's)
/// measurement divided by that config's cost ratio. Full-batch measurements are preferred; the
/// all-batch average (pessimistic at low load) is the fallback.
fn full_cost(r: &LoadReport, ratios: &BTreeMap<String, f64>, full_id: &str) -> Option<f64> {
    let prefer = [full_id, r.active.id.as_str()];
    scale_to_full(&r.saturated_seconds_per_request, ratios, &prefer)
        .or_else(|| scale_to_full(&r.compute_seconds_per_request, ratios, &prefer))
}

/// The full model's cost per image from per-config measurements: the first of `prefer` that was
/// measured, else any measured config, divided by its cost ratio.
pub fn scale_to_full(
    measured: &BTreeMap<String, f64>,
    ratios: &BTreeMap<String, f64>,
    prefer: &[&str],
) -> Option<f64> {
    let scaled = |id: &str| Some(measured.get(id)? / ratios.get(id).copied().filter(|&x| x > 0.0)?);
    prefer
        .iter()
        .find_map(|id| scaled(id))
        .or_else(|| measured.keys().find_map(|id| scaled(id)))
        .filter(|c| c.is_finite() && *c > 0.0)
}

/// Runtimes by state, for metrics and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RuntimeCounts {
    /// Answered within the staleness bound.
    pub fresh: usize,
    /// Answered once, but not lately.
    pub stale: usize,
    /// Never answered.
    pub unknown: usize,
}

impl RuntimeCounts {
    /// The runtimes of `tracks` by state at `now`.
    pub fn of(tracks: &[RuntimeTrack], stale_after: f64, now: f64) -> Self {
        let mut counts = Self::default();
        for t in tracks {
            if t.is_fresh(now, stale_after) {
                counts.fresh += 1;
            } else if t.last.is_some() {
                counts.stale += 1;
            } else {
                counts.unknown += 1;
            }
        }
        counts
    }
}

/// Aggregates the fresh runtimes' signals; without any fresh runtime the observation is
/// `Missing`. Stale runtimes are left out entirely: their absence never reads as load.
pub fn aggregate(
    tracks: &[RuntimeTrack],
    ratios: &BTreeMap<String, f64>,
    full_id: &str,
    quantile: f64,
    stale_after: f64,
    now: f64,
) -> (Observation, RuntimeCounts) {
    let counts = RuntimeCounts::of(tracks, stale_after, now);
    let mut offered = 0.0;
    let mut latency: Option<f64> = None;
    let mut window: f64 = 0.0;
    let mut queue: f64 = 0.0;
    let mut costs = Vec::new();
    for t in tracks {
        let Some((_, r)) = t.last.as_ref().filter(|_| t.is_fresh(now, stale_after)) else {
            continue;
        };
        offered += t.offered.unwrap_or(r.arrivals_per_second + r.shed_per_second);
        if let Some(q) = &r.latency_seconds {
            let l = pick_quantile(q, quantile);
            latency = Some(latency.map_or(l, |m| m.max(l)));
        }
        window = window.max(r.window_seconds);
        queue = queue.max(r.queue_depth.saturating_sub(r.in_flight) as f64);
        costs.extend(full_cost(r, ratios, full_id));
    }
    if counts.fresh == 0 {
        return (Observation::Missing, counts);
    }
    let full_seconds_per_image = (!costs.is_empty()).then(|| costs.iter().sum::<f64>() / costs.len() as f64);
    let s = Signals {
        runtimes: counts.fresh,
        offered_per_second: offered,
        latency,
        latency_window: window,
        queue,
        full_seconds_per_image,
    };
    (Observation::Fresh(s), counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dyce_api::ActiveConfig;

    fn report(arrivals_total: u64, p99: f64, active: &str) -> LoadReport {
        LoadReport {
            window_seconds: 2.0,
            arrivals_per_second: 100.0,
            completions_per_second: 100.0,
            shed_per_second: 0.0,
            queue_depth: 12,
            in_flight: 4,
            latency_seconds: Some(Quantiles { p50: p99 / 4.0, p95: p99 / 2.0, p99 }),
            mean_batch_size: 4.0,
            active: ActiveConfig { id: active.into(), generation: 1 },
            compute_seconds_per_request: BTreeMap::from([(active.to_string(), 4e-3)]),
            saturated_seconds_per_request: BTreeMap::from([(active.to_string(), 1e-3)]),
            arrivals_total,
            shed_total: 0,
            completions_total: arrivals_total,
            max_batch_size: 32,
            live_accuracy: None,
        }
    }

    fn ratios() -> BTreeMap<String, f64> {
        BTreeMap::from([("full".to_string(), 1.0), ("half".to_string(), 0.5)])
    }

    #[test]
    fn rates_come_from_counters_over_the_poll_interval() {
        let mut t = RuntimeTrack::new("a");
        t.observe(0.0, report(1000, 0.01, "full"));
        assert_eq!(t.offered, Some(100.0), "first answer: the window rate");
        t.observe(0.5, report(2000, 0.01, "full"));
        assert_eq!(t.offered, Some(2000.0));
        // A restart (counters reset) falls back to the window rate.
        t.observe(1.0, report(10, 0.01, "full"));
        assert_eq!(t.offered, Some(100.0));
    }

    #[test]
    fn one_of_three_unreachable_is_left_out() {
        let mut a = RuntimeTrack::new("a");
        let mut b = RuntimeTrack::new("b");
        let mut c = RuntimeTrack::new("c");
        a.observe(10.0, report(5000, 0.020, "full"));
        b.observe(10.0, report(5000, 0.030, "half"));
        c.observe(1.0, report(5000, 0.500, "full"));
        c.fail("connection refused");
        let (obs, counts) = aggregate(&[a, b, c], &ratios(), "full", 0.99, 1.5, 10.2);
        assert_eq!(counts, RuntimeCounts { fresh: 2, stale: 1, unknown: 0 });
        let Observation::Fresh(s) = obs else { panic!("two runtimes are fresh") };
        assert_eq!(s.runtimes, 2);
        assert_eq!(s.offered_per_second, 200.0);
        assert_eq!(s.latency, Some(0.030), "the stale runtime's 500 ms does not count");
        assert_eq!(s.queue, 8.0);
        // a measured the full model at 1 ms; b measured "half" at 1 ms, i.e. 2 ms full.
        assert!((s.full_seconds_per_image.unwrap() - 1.5e-3).abs() < 1e-12);
    }

    #[test]
    fn nothing_fresh_is_missing() {
        let mut a = RuntimeTrack::new("a");
        a.observe(0.0, report(1, 0.01, "full"));
        let (obs, counts) = aggregate(&[a, RuntimeTrack::new("b")], &ratios(), "full", 0.99, 1.5, 5.0);
        assert_eq!(obs, Observation::Missing);
        assert_eq!(counts, RuntimeCounts { fresh: 0, stale: 1, unknown: 1 });
    }

    #[test]
    fn quantile_choice() {
        let q = Quantiles { p50: 1.0, p95: 2.0, p99: 3.0 };
        assert_eq!(pick_quantile(&q, 0.5), 1.0);
        assert_eq!(pick_quantile(&q, 0.9), 2.0);
        assert_eq!(pick_quantile(&q, 0.99), 3.0);
        assert_eq!(pick_quantile(&q, 0.999), 3.0);
    }
}
