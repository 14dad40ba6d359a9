//! Counts and cumulative durations since start, in the shape of Triton's statistics extension
//! (`GET /v2/models/{name}/stats`): what `tritonclient`'s `get_inference_statistics` and the
//! tools built on it (perf_analyzer, model analyzer) read. Plain atomics, recorded once per
//! request and per batch, beside the Prometheus histograms (which have no exact sums per stage).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// A count and the nanoseconds it took in total.
#[derive(Debug, Default)]
pub struct Duration {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Duration {
    /// Adds one event of `seconds`.
    pub fn add(&self, seconds: f64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.ns.fetch_add((seconds * 1e9).round() as u64, Ordering::Relaxed);
    }

    fn read(&self) -> DurationStat {
        DurationStat { count: self.count.load(Ordering::Relaxed), ns: self.ns.load(Ordering::Relaxed) }
    }
}

/// `{"count": N, "ns": N}`: Triton's `$duration_stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DurationStat {
    /// Events.
    pub count: u64,
    /// Their total duration, in nanoseconds.
    pub ns: u64,
}

/// Triton's `$inference_stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InferenceStats {
    /// Answered requests and their end-to-end time.
    pub success: DurationStat,
    /// Requests answered with an error (4xx, 5xx, 429) and their time.
    pub fail: DurationStat,
    /// Time from admission to the start of the batch.
    pub queue: DurationStat,
    /// Parsing the request and building the normalised input tensor.
    pub compute_input: DurationStat,
    /// The batch the request ran in.
    pub compute_infer: DurationStat,
    /// Building the answer from the results.
    pub compute_output: DurationStat,
    /// Always zero: no response cache.
    pub cache_hit: DurationStat,
    /// Always zero: no response cache.
    pub cache_miss: DurationStat,
}

/// Triton's `$batch_stats` entry: batches of one size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BatchStat {
    /// Images per batch.
    pub batch_size: u64,
    /// Zero time: inputs are built per request (`inference_stats.compute_input`).
    pub compute_input: DurationStat,
    /// The batches' compute.
    pub compute_infer: DurationStat,
    /// Zero time: answers are built per request (`inference_stats.compute_output`).
    pub compute_output: DurationStat,
}

/// Triton's `$model_stat`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ModelStat {
    /// The model's name.
    pub name: String,
    /// Always "1".
    pub version: String,
    /// Milliseconds since the Unix epoch of the last answered request (0: none yet).
    pub last_inference: u64,
    /// Images answered.
    pub inference_count: u64,
    /// Batches run (warm-up batches included).
    pub execution_count: u64,
    /// Per-request counts and times.
    pub inference_stats: InferenceStats,
    /// Per batch size, the sizes seen.
    pub batch_stats: Vec<BatchStat>,
}

/// The running totals.
#[derive(Debug)]
pub struct Stats {
    success: Duration,
    fail: Duration,
    queue: Duration,
    compute_input: Duration,
    compute_infer: Duration,
    compute_output: Duration,
    last_inference_ms: AtomicU64,
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    /// Index = batch size (0 unused).
    batches: Vec<Duration>,
}

impl Stats {
    /// Totals at zero for batches of up to `max_batch` images.
    pub fn new(max_batch: usize) -> Self {
        Self {
            success: Duration::default(),
            fail: Duration::default(),
            queue: Duration::default(),
            compute_input: Duration::default(),
            compute_infer: Duration::default(),
            compute_output: Duration::default(),
            last_inference_ms: AtomicU64::new(0),
            inference_count: AtomicU64::new(0),
            execution_count: AtomicU64::new(0),
            batches: (0..=max_batch.max(1)).map(|_| Duration::default()).collect(),
        }
    }

    /// A finished request: answered with `images` images, or failed.
    pub fn request(&self, images: Option<usize>, seconds: f64) {
        match images {
            Some(n) => {
                self.success.add(seconds);
                self.inference_count.fetch_add(n as u64, Ordering::Relaxed);
                let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                self.last_inference_ms.store(ms, Ordering::Relaxed);
            }
            None => self.fail.add(seconds),
        }
    }

    /// The time a request spent queued and in its batch.
    pub fn queued_and_computed(&self, queue_seconds: f64, batch_seconds: f64) {
        self.queue.add(queue_seconds);
        self.compute_infer.add(batch_seconds);
    }

    /// The time a request took to parse and normalise.
    pub fn input(&self, seconds: f64) {
        self.compute_input.add(seconds);
    }

    /// The time a request's answer took to build.
    pub fn output(&self, seconds: f64) {
        self.compute_output.add(seconds);
    }

    /// A batch of `images` computed in `seconds`.
    pub fn batch(&self, images: usize, seconds: f64) {
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        if let Some(b) = self.batches.get(images) {
            b.add(seconds);
        }
    }

    /// The totals as Triton's `$model_stat` of model `name`.
    pub fn snapshot(&self, name: &str) -> ModelStat {
        let batch_stats = (1..self.batches.len())
            .filter_map(|size| {
                let infer = self.batches[size].read();
                (infer.count > 0).then_some(BatchStat {
                    batch_size: size as u64,
                    compute_input: DurationStat { count: infer.count, ns: 0 },
                    compute_infer: infer,
                    compute_output: DurationStat { count: infer.count, ns: 0 },
                })
            })
            .collect();
        ModelStat {
            name: name.to_string(),
            version: "1".into(),
            last_inference: self.last_inference_ms.load(Ordering::Relaxed),
            inference_count: self.inference_count.load(Ordering::Relaxed),
            execution_count: self.execution_count.load(Ordering::Relaxed),
            inference_stats: InferenceStats {
                success: self.success.read(),
                fail: self.fail.read(),
                queue: self.queue.read(),
                compute_input: self.compute_input.read(),
                compute_infer: self.compute_infer.read(),
                compute_output: self.compute_output.read(),
                cache_hit: DurationStat::default(),
                cache_miss: DurationStat::default(),
            },
            batch_stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_per_stage_and_batch_size() {
        let s = Stats::new(4);
        s.request(Some(2), 0.003);
        s.request(None, 0.001);
        s.queued_and_computed(0.001, 0.002);
        s.input(0.0005);
        s.output(0.0001);
        s.batch(2, 0.002);
        s.batch(2, 0.004);
        s.batch(9, 1.0); // beyond --max-batch: counted as an execution, no size entry
        let m = s.snapshot("tiny");
        assert_eq!((m.inference_count, m.execution_count), (2, 3));
        assert_eq!(m.inference_stats.success, DurationStat { count: 1, ns: 3_000_000 });
        assert_eq!(m.inference_stats.fail, DurationStat { count: 1, ns: 1_000_000 });
        assert_eq!(m.inference_stats.compute_infer.count, 1);
        assert_eq!(m.batch_stats.len(), 1);
        assert_eq!(m.batch_stats[0].batch_size, 2);
        assert_eq!(m.batch_stats[0].compute_infer, DurationStat { count: 2, ns: 6_000_000 });
        assert!(m.last_inference > 0);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["inference_stats"]["queue"]["ns"], 1_000_000);
    }
}
