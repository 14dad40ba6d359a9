//! A discrete-event simulation of N batching runtimes under a load trace, steered by the real
//! control step (`crate::step`: state seeding, the law, drift re-pushes) through the real signal
//! aggregation, in simulated time. Fast and deterministic (seeded), so the law can be tested
//! exhaustively: a minute of load runs in milliseconds.
//!
//! Each runtime is one model thread that takes up to `max_batch` queued images as soon as it is
//! free; a batch on config `r` takes `overhead + n × cost(r)` seconds. Admission refuses images
//! beyond `max_queued`; images older than `timeout` are dropped before compute (their client
//! went away). Switches apply `push_delay` after the decision, at the next batch.

pub mod accuracy;
pub mod autoscale;
mod fleet;
pub mod replicas;
mod runtime;
mod trace;

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::ladder::Ladder;
use crate::law::{Direction, Law};
use crate::live::GuardChange;
use crate::signals::RuntimeTrack;
use crate::step::{ControlStep, Steering};
use accuracy::LiveTally;
pub use accuracy::{DriftError, SimDrift, SimLive};
use fleet::{tick, Fleet};
use runtime::SimRuntime;
pub use trace::{Noise, Trace};

/// The simulated system.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Runtimes behind a random load balancer.
    pub runtimes: usize,
    /// Seconds per image of the full model at full batches (overhead included): 1 / capacity.
    pub full_seconds_per_image: f64,
    /// Fixed seconds per batch (part of the above at full batches).
    pub batch_overhead: f64,
    /// Largest batch.
    pub max_batch: usize,
    /// Admission limit per runtime.
    pub max_queued: usize,
    /// Clients give up after this; such requests count as missing the target.
    pub timeout: f64,
    /// Delay from decision to switch.
    pub push_delay: f64,
    /// The runtimes' load window.
    pub window: f64,
    /// Seed of arrivals and routing.
    pub seed: u64,
    /// Live accuracy (shadow checks, feedback, a drift); `None`: the runtimes report none.
    pub live: Option<SimLive>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            runtimes: 1,
            full_seconds_per_image: 1.0 / 3000.0,
            batch_overhead: 0.5e-3,
            max_batch: 32,
            max_queued: 256,
            timeout: 1.0,
            push_delay: 0.005,
            window: 2.0,
            seed: 1,
            live: None,
        }
    }
}

impl SimConfig {
    /// Images per second the runtimes serve on the full model at full batches.
    pub fn full_capacity(&self) -> f64 {
        self.runtimes as f64 / self.full_seconds_per_image
    }
}

/// One second of simulated time, by arrival time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SimWindow {
    /// Window start, seconds.
    pub start: f64,
    /// Images offered.
    pub offered: u64,
    /// Answered within the latency threshold.
    pub good: u64,
    /// Refused by admission control.
    pub shed: u64,
    /// Dropped or answered after the client's timeout.
    pub timed_out: u64,
    /// Computed (in time or not).
    pub served: u64,
    /// Cost ratio of the config that served the window's computed images, averaged.
    pub mean_cost_ratio: f64,
    /// Expected accuracy of that config, averaged (when the ladder knows it).
    pub mean_expected_accuracy: f64,
    /// Real accuracy of the computed images in the live truth model, averaged (0 without
    /// [`SimConfig::live`]).
    pub mean_real_accuracy: f64,
}

impl SimWindow {
    /// The window meets the objective: at least `quantile` of offered images were answered
    /// within the threshold (shed and timed-out images count as misses).
    pub fn attained(&self, quantile: f64) -> bool {
        self.offered == 0 || self.good as f64 >= quantile * self.offered as f64
    }
}

/// A config change the law made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimChange {
    /// Decision time.
    pub at: f64,
    /// New rank.
    pub rank: usize,
    /// Degrade or restore.
    pub direction: Direction,
}

/// What a simulation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    /// 1-s windows.
    pub windows: Vec<SimWindow>,
    /// Every change of target.
    pub changes: Vec<SimChange>,
    /// Rank after every tick, with its time.
    pub ranks: Vec<(f64, usize)>,
    /// Saturated ticks.
    pub saturated_ticks: usize,
    /// Configs the live accuracy guard excluded or let back, with the time.
    pub accuracy: Vec<(f64, GuardChange)>,
}

impl SimReport {
    /// Share of windows in `[from, to)` that meet the objective.
    pub fn attainment(&self, quantile: f64, from: f64, to: f64) -> f64 {
        let w: Vec<&SimWindow> = self.windows.iter().filter(|w| w.start >= from && w.start < to).collect();
        if w.is_empty() {
            return 1.0;
        }
        w.iter().filter(|w| w.attained(quantile)).count() as f64 / w.len() as f64
    }

    /// Changes in `[from, to)`.
    pub fn changes_between(&self, from: f64, to: f64) -> usize {
        self.changes.iter().filter(|c| c.at >= from && c.at < to).count()
    }

    /// Real accuracy (live truth model) of the images computed in windows `[from, to)`; `None`
    /// without live accuracy or images.
    pub fn real_accuracy(&self, from: f64, to: f64) -> Option<f64> {
        let w = self.windows.iter().filter(|w| w.start >= from && w.start < to);
        let (sum, n) =
            w.fold((0.0, 0u64), |(s, n), w| (s + w.mean_real_accuracy * w.served as f64, n + w.served));
        (n > 0 && sum > 0.0).then(|| sum / n as f64)
    }

    /// The first tick at or after `from` whose rank is `rank`.
    pub fn first_on(&self, rank: usize, from: f64) -> Option<f64> {
        self.ranks.iter().find(|(t, r)| *t >= from && *r == rank).map(|(t, _)| *t)
    }
}

/// Runs `law` over `trace` on the simulated system, ticking every `interval` seconds and
/// judging staleness with `stale_after`.
pub fn simulate(
    law: &Law,
    sim: &SimConfig,
    trace: &Trace,
    interval: f64,
    quantile: f64,
    stale_after: f64,
) -> SimReport {
    let ladder: &Ladder = &law.ladder;
    let mut steering = Steering::for_law(law.clone(), quantile, stale_after);
    steering.live = sim.live.as_ref().and_then(|l| l.source.clone());
    let mut step = ControlStep::new(steering);
    let mut rng = StdRng::seed_from_u64(sim.seed);
    let truth = sim.live.as_ref().map(|l| Arc::new(l.truth()));
    let mut rts: Vec<SimRuntime> = (0..sim.runtimes)
        .map(|i| {
            let r = SimRuntime::new(sim, ladder, ladder.top());
            match &truth {
                Some(t) => r.with_live(LiveTally::new(t.clone(), sim.seed.wrapping_add(i as u64))),
                None => r,
            }
        })
        .collect();
    let mut tracks: Vec<RuntimeTrack> =
        (0..sim.runtimes).map(|i| RuntimeTrack::new(format!("sim-{i}"))).collect();
    let nwin = trace.duration.ceil() as usize;
    let mut windows: Vec<SimWindow> =
        (0..nwin).map(|k| SimWindow { start: k as f64, ..Default::default() }).collect();
    let mut report =
        SimReport { windows: vec![], changes: vec![], ranks: vec![], saturated_ticks: 0, accuracy: vec![] };
    let threshold = law.params.threshold;
    let mut t = 0.0;
    let mut next_arrival = draw_arrival(trace, 0.0, &mut rng);
    let mut next_tick = interval;
    let mut switches: Vec<(f64, usize, usize)> = Vec::new(); // (apply at, runtime, rank)
    while t < trace.duration {
        let next_done = rts.iter().map(|r| r.busy_until()).fold(f64::INFINITY, f64::min);
        let next_switch = switches.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
        t = next_arrival.min(next_done).min(next_tick).min(next_switch);
        if t >= trace.duration {
            break;
        }
        if t == next_done {
            for r in rts.iter_mut().filter(|r| r.busy_until() == t) {
                r.finish_batch(t, threshold, sim.timeout, &mut windows);
                r.start_batch(t, sim, ladder, &mut windows);
            }
        } else if t == next_switch {
            switches.retain(|&(at, i, rank)| {
                if at == t {
                    rts[i].set_rank(rank, ladder);
                    false
                } else {
                    true
                }
            });
        } else if t == next_arrival {
            let i = rng.random_range(0..rts.len());
            rts[i].arrive(t, sim, &mut windows);
            rts[i].start_batch(t, sim, ladder, &mut windows);
            next_arrival = draw_arrival(trace, t, &mut rng);
        } else {
            let fleet = Fleet { runtimes: rts.iter().collect(), serving: vec![true; rts.len()], ladder };
            let out = tick(&mut step, fleet, &mut tracks, t);
            let d = &out.decision;
            // The decision's rank is in the law's current view, which the live guard may have
            // thinned; the runtimes and the report speak ranks of the whole ladder.
            let rank = ladder.rank_of(&out.record.config).unwrap_or(ladder.top());
            if d.direction != Direction::Hold {
                report.changes.push(SimChange { at: t, rank, direction: d.direction });
            }
            if d.saturated {
                report.saturated_ticks += 1;
            }
            report.accuracy.extend(out.accuracy.iter().map(|c| (t, c.clone())));
            report.ranks.push((t, rank));
            for p in &out.pushes {
                if !switches.iter().any(|s| s.1 == p.index && s.2 == rank) {
                    switches.push((t + sim.push_delay, p.index, rank));
                }
            }
            next_tick += interval;
        }
    }
    for w in &mut windows {
        let n = w.served.max(1) as f64;
        w.mean_cost_ratio /= n;
        w.mean_expected_accuracy /= n;
        w.mean_real_accuracy /= n;
    }
    report.windows = windows;
    report
}

/// The next Poisson arrival after `t` under a piecewise-constant rate (exact: an exponential
/// gap that crosses a rate change is redrawn from the change, by memorylessness).
fn draw_arrival(trace: &Trace, mut t: f64, rng: &mut StdRng) -> f64 {
    loop {
        if t >= trace.duration {
            return f64::INFINITY;
        }
        let rate = trace.rate(t);
        let change = trace.next_change(t);
        if rate > 0.0 {
            let gap = -(1.0 - rng.random::<f64>()).ln() / rate;
            if t + gap < change {
                return t + gap;
            }
        }
        t = change;
    }
}

#[cfg(test)]
mod accuracy_tests;
#[cfg(test)]
mod autoscale_tests;
#[cfg(test)]
mod tests;
