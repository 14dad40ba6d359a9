//! One simulated runtime: admission, a FIFO queue, a batching model thread, and the runtime's
//! own load window (`dyce-api`'s) on simulated time.

use std::collections::VecDeque;

use dyce_api::{ActiveConfig, LoadReport, LoadWindow, QueueState};

use super::accuracy::LiveTally;
use super::{SimConfig, SimWindow};
use crate::ladder::Ladder;

pub(super) struct SimRuntime {
    queue: VecDeque<f64>,
    batch: Vec<f64>,
    busy_until: f64,
    batch_ratio: f64,
    batch_accuracy: f64,
    /// The config the running batch is computed on (the rank may change before it finishes).
    batch_config: String,
    rank: usize,
    max_batch: usize,
    generation: u64,
    load: LoadWindow,
    /// Seconds of compute the batches started so far need at full-batch efficiency: offered
    /// work, what an autoscaler's utilisation reads. (Busy time would not do: with a fixed cost
    /// per batch, a lightly loaded batching runtime is busy most of the time with tiny batches.)
    work_total: f64,
    /// Shadow checks and feedback, when simulated.
    live: Option<LiveTally>,
}

fn window_index(t: f64, windows: &[SimWindow]) -> Option<usize> {
    let k = t.floor() as usize;
    (k < windows.len()).then_some(k)
}

impl SimRuntime {
    pub fn new(sim: &SimConfig, ladder: &Ladder, rank: usize) -> Self {
        let mut r = Self {
            queue: VecDeque::new(),
            batch: Vec::new(),
            busy_until: f64::INFINITY,
            batch_ratio: 1.0,
            batch_accuracy: 0.0,
            batch_config: String::new(),
            rank,
            max_batch: sim.max_batch,
            generation: 1,
            load: LoadWindow::new(sim.window, sim.max_batch, 0.0),
            work_total: 0.0,
            live: None,
        };
        // The real runtime's warm-up measures full batches of its starting config.
        let per = batch_seconds(sim, ladder, rank, sim.max_batch) / sim.max_batch as f64;
        r.load.seed_cost(&ladder.rung(rank).id, per);
        r
    }

    /// The same runtime measuring live accuracy.
    pub fn with_live(mut self, live: LiveTally) -> Self {
        self.live = Some(live);
        self
    }

    pub fn busy_until(&self) -> f64 {
        self.busy_until
    }

    /// Seconds of work started so far at full-batch efficiency (a batch counts when it starts).
    pub fn work_total(&self) -> f64 {
        self.work_total
    }

    pub fn set_rank(&mut self, rank: usize, _ladder: &Ladder) {
        if rank != self.rank {
            self.rank = rank;
            self.generation += 1;
        }
    }

    pub fn arrive(&mut self, t: f64, sim: &SimConfig, windows: &mut [SimWindow]) {
        let w = window_index(t, windows);
        if let Some(k) = w {
            windows[k].offered += 1;
        }
        if self.queue.len() + self.batch.len() >= sim.max_queued {
            self.load.shed(t, 1);
            if let Some(k) = w {
                windows[k].shed += 1;
            }
            return;
        }
        self.load.arrived(t, 1);
        self.queue.push_back(t);
    }

    /// Starts a batch if the model thread is free and images wait.
    pub fn start_batch(&mut self, t: f64, sim: &SimConfig, ladder: &Ladder, windows: &mut [SimWindow]) {
        if self.busy_until.is_finite() {
            return;
        }
        // Clients that gave up are dropped before compute.
        while self.queue.front().is_some_and(|&a| t - a > sim.timeout) {
            let a = self.queue.pop_front().expect("checked");
            if let Some(k) = window_index(a, windows) {
                windows[k].timed_out += 1;
            }
        }
        if self.queue.is_empty() {
            return;
        }
        let n = self.queue.len().min(sim.max_batch);
        self.batch = self.queue.drain(..n).collect();
        self.batch_ratio = ladder.rung(self.rank).cost_ratio;
        self.batch_accuracy = ladder.rung(self.rank).expected_accuracy.unwrap_or(f64::NAN);
        self.batch_config.clone_from(&ladder.rung(self.rank).id);
        let seconds = batch_seconds(sim, ladder, self.rank, n);
        self.busy_until = t + seconds;
        self.work_total +=
            n as f64 * batch_seconds(sim, ladder, self.rank, sim.max_batch) / sim.max_batch as f64;
        // Recorded when the batch starts: its compute time is known then.
        self.load.batch(t, &ladder.rung(self.rank).id, n, seconds);
    }

    pub fn finish_batch(&mut self, t: f64, threshold: f64, timeout: f64, windows: &mut [SimWindow]) {
        let real = self.live.as_ref().map_or(0.0, |l| l.truth().accuracy(&self.batch_config, t));
        for a in self.batch.drain(..) {
            let latency = t - a;
            self.load.completed(t, 1, latency);
            if let Some(l) = self.live.as_mut() {
                l.answered(t, &self.batch_config);
            }
            if let Some(k) = window_index(a, windows) {
                let w = &mut windows[k];
                w.served += 1;
                w.mean_cost_ratio += self.batch_ratio;
                w.mean_expected_accuracy += self.batch_accuracy;
                w.mean_real_accuracy += real;
                if latency <= threshold {
                    w.good += 1;
                } else if latency > timeout {
                    w.timed_out += 1;
                }
            }
        }
        self.busy_until = f64::INFINITY;
    }

    /// What `GET /v1/load` would answer at `now`.
    pub fn report(&self, now: f64, ladder: &Ladder) -> LoadReport {
        let queue = QueueState {
            depth: self.queue.len() + self.batch.len(),
            in_flight: self.batch.len(),
            max_batch: self.max_batch,
            active: ActiveConfig { id: ladder.rung(self.rank).id.clone(), generation: self.generation },
        };
        let mut report = self.load.snapshot(now).report(queue);
        report.live_accuracy = self.live.as_ref().map(|l| l.report(now));
        report
    }
}

/// Seconds a batch of `n` takes on `rank`: the overhead plus `n` images at the config's share of
/// the full model's per-image compute.
pub(super) fn batch_seconds(sim: &SimConfig, ladder: &Ladder, rank: usize, n: usize) -> f64 {
    let per_image_full = sim.full_seconds_per_image - sim.batch_overhead / sim.max_batch as f64;
    sim.batch_overhead + n as f64 * per_image_full * ladder.rung(rank).cost_ratio
}
