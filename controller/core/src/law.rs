//! The control law, pure: signals and the time in, a target config out. No I/O, no clocks.
//!
//! Feed-forward: the offered rate times each config's cost per image predicts its utilisation;
//! the richest config under the target utilisation is the one to run. Feedback: a latency
//! quantile or queue over the objective steps down at once (at least one rung, more when the
//! prediction says so). Giving accuracy back is slower on purpose: one rung at a time, only after
//! the richer config's predicted utilisation and the observed latency have stayed under
//! `headroom` × their targets for `restore.after`, then one rung per `restore.step`. A restore
//! that is followed at once by a degrade doubles the next dwell (up to 8×), so a load that sits
//! on a boundary cannot make the controller flap.

use std::fmt;

use crate::ladder::Ladder;
use crate::policy::{MissingSignals, SloPolicySpec};

/// Parameters of the law, from a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct LawParams {
    /// Latency threshold, seconds.
    pub threshold: f64,
    /// Queue bound per runtime.
    pub max_queue: Option<f64>,
    /// Highest predicted utilisation a config may run at.
    pub target_utilization: f64,
    /// Fraction of each target that must hold before a restore.
    pub headroom: f64,
    /// Dwell before the first restore step, seconds.
    pub restore_after: f64,
    /// Dwell between further restore steps, seconds.
    pub restore_step: f64,
    /// Behaviour without signals.
    pub on_missing: MissingSignals,
    /// A backlog should be gone within this many seconds (the tick interval, at least 0.5 s).
    pub drain_seconds: f64,
}

impl LawParams {
    /// The law's parameters for a policy.
    pub fn from_spec(spec: &SloPolicySpec) -> Self {
        let c = &spec.control;
        Self {
            threshold: spec.objective.latency.threshold.secs(),
            max_queue: spec.objective.max_queue_depth.map(|q| q as f64),
            target_utilization: c.target_utilization,
            headroom: c.restore.headroom,
            restore_after: c.restore.after.secs(),
            restore_step: c.restore.step.secs(),
            on_missing: c.on_missing_signals,
            // Not less than half a second: with short ticks, a batch's worth of queue (normal
            // while the next batch forms) would otherwise read as a large extra demand.
            drain_seconds: c.interval.secs().max(0.5),
        }
    }
}

/// What the fresh runtimes of a policy say, aggregated.
#[derive(Debug, Clone, PartialEq)]
pub struct Signals {
    /// Runtimes that answered recently enough.
    pub runtimes: usize,
    /// Images offered per second over all of them (admitted + refused).
    pub offered_per_second: f64,
    /// The objective's latency quantile, worst runtime, seconds (`None`: no answers lately).
    pub latency: Option<f64>,
    /// Seconds of history the latency quantile covers.
    pub latency_window: f64,
    /// Images waiting in the fullest runtime.
    pub queue: f64,
    /// Seconds of compute per image of the full model at capacity, per runtime (`None`: not
    /// measured yet, so no prediction, only feedback).
    pub full_seconds_per_image: Option<f64>,
}

/// A tick's input.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// At least one runtime is fresh.
    Fresh(Signals),
    /// No runtime answered within the staleness bound.
    Missing,
}

/// Which way a decision moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Towards cheaper configs.
    Degrade,
    /// Towards richer configs.
    Restore,
    /// No change.
    Hold,
}

impl Direction {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Degrade => "degrade",
            Direction::Restore => "restore",
            Direction::Hold => "hold",
        }
    }
}

/// Why a decision was taken (logged with every decision).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason {
    /// The current config's predicted utilisation is over the target.
    Predicted {
        /// Predicted utilisation of the current config.
        utilization: f64,
    },
    /// The latency quantile is over the threshold.
    Latency {
        /// Observed quantile, seconds.
        observed: f64,
    },
    /// A runtime's queue is over the bound.
    Queue {
        /// Deepest queue.
        depth: f64,
    },
    /// Headroom held long enough: one rung up.
    Headroom,
    /// Headroom holds, waiting for the dwell to pass.
    Dwell,
    /// Nothing to change.
    Steady,
    /// No fresh runtime; `onMissingSignals` decided.
    MissingSignals,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Predicted { utilization } => write!(f, "predicted utilisation {utilization:.2}"),
            Reason::Latency { observed } => write!(f, "latency {:.1} ms over the threshold", observed * 1e3),
            Reason::Queue { depth } => write!(f, "queue depth {depth:.0} over the bound"),
            Reason::Headroom => write!(f, "headroom held for the dwell"),
            Reason::Dwell => write!(f, "headroom, waiting for the dwell"),
            Reason::Steady => write!(f, "steady"),
            Reason::MissingSignals => write!(f, "no fresh signals"),
        }
    }
}

/// The law's answer for one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Rank to run (0 = cheapest allowed).
    pub rank: usize,
    /// Movement relative to the previous rank.
    pub direction: Direction,
    /// Why.
    pub reason: Reason,
    /// Even the cheapest allowed config cannot hold the objective.
    pub saturated: bool,
    /// Replicas needed to run the richest allowed config at the target utilisation (for a replica
    /// autoscaler; at least the current count + 1 while saturated; `None` without fresh signals).
    pub desired_replicas: Option<usize>,
    /// Predicted utilisation of the chosen config.
    pub utilization: Option<f64>,
}

/// The law's memory between ticks.
#[derive(Debug, Clone, PartialEq)]
pub struct LawState {
    /// Current rank.
    pub rank: usize,
    last_change: f64,
    last_degrade: f64,
    last_restore: Option<f64>,
    headroom_since: Option<f64>,
    backoff: f64,
}

impl LawState {
    /// Starting on `rank` at time `now` (seconds on any monotonic clock).
    pub fn new(rank: usize, now: f64) -> Self {
        Self {
            rank,
            last_change: now,
            last_degrade: f64::NEG_INFINITY,
            last_restore: None,
            headroom_since: None,
            backoff: 1.0,
        }
    }

    /// Current restore-dwell multiplier (1 to 8).
    pub fn backoff(&self) -> f64 {
        self.backoff
    }
}

const MAX_BACKOFF: f64 = 8.0;

/// The control law over one ladder.
#[derive(Debug, Clone)]
pub struct Law {
    /// Parameters.
    pub params: LawParams,
    /// Allowed configs.
    pub ladder: Ladder,
}

impl Law {
    /// A law for `ladder`.
    pub fn new(params: LawParams, ladder: Ladder) -> Self {
        Self { params, ladder }
    }

    /// Predicted utilisation of `rank` per runtime, when a cost is known.
    fn utilization(&self, s: &Signals, rank: usize) -> Option<f64> {
        let cost = s.full_seconds_per_image? * self.ladder.rung(rank).cost_ratio;
        let n = s.runtimes.max(1) as f64;
        let demand = s.offered_per_second / n + s.queue / self.params.drain_seconds.max(1e-3);
        Some(demand * cost)
    }

    /// Decides for one tick at time `now` and updates `state`.
    pub fn decide(&self, state: &mut LawState, obs: &Observation, now: f64) -> Decision {
        let p = &self.params;
        let top = self.ladder.top();
        state.rank = state.rank.min(top);
        let s = match obs {
            Observation::Missing => {
                state.headroom_since = None;
                let rank = match p.on_missing {
                    MissingSignals::Hold => state.rank,
                    MissingSignals::Richest => top,
                    MissingSignals::Cheapest => 0,
                };
                return self.finish(state, rank, Reason::MissingSignals, false, None, None, now);
            }
            Observation::Fresh(s) => s,
        };
        let util = |r| self.utilization(s, r);
        let n = s.runtimes.max(1);
        // Feed-forward: the richest rung under the target (None: not even the cheapest).
        let ff = util(0).map(|_| (0..=top).rev().find(|&r| util(r).unwrap_or(0.0) <= p.target_utilization));
        let predicted_saturated = matches!(ff, Some(None));
        let ff_rank = ff.map(|f| f.unwrap_or(0));
        // Replicas for the richest allowed config at the target: what a replica autoscaler should
        // converge to. dyce absorbs a burst within a tick by degrading; the replicas then follow
        // so that quality comes back, and they shrink again when the full model has headroom.
        let desired = util(top).map_or(n, |u| replicas_for(n, u, p.target_utilization));
        // Feedback. The latency quantile covers a window, so right after a degrade it still
        // shows the old config's slow requests: it may act again only once the window has
        // turned over. The queue is instantaneous and always counts.
        let latency_over = s.latency.filter(|&l| l > p.threshold);
        let latency_fresh = now - state.last_degrade >= s.latency_window;
        let queue_over = p.max_queue.is_some_and(|q| s.queue > q);
        let breach = if queue_over {
            Some(Reason::Queue { depth: s.queue })
        } else {
            latency_over.filter(|_| latency_fresh).map(|observed| Reason::Latency { observed })
        };
        if let Some(reason) = breach {
            let step = state.rank.saturating_sub(1);
            let rank = ff_rank.map_or(step, |f| f.min(step));
            let saturated = predicted_saturated || state.rank == 0;
            let desired = if saturated { desired.max(n + 1) } else { desired };
            return self.finish(state, rank, reason, saturated, Some(desired), util(rank), now);
        }
        if let Some(f) = ff_rank.filter(|&f| f < state.rank) {
            let reason = Reason::Predicted { utilization: util(state.rank).unwrap_or(f64::NAN) };
            return self.finish(state, f, reason, predicted_saturated, Some(desired), util(f), now);
        }
        // Restore: one rung, with headroom, after the dwell.
        let next = state.rank + 1;
        let headroom = next <= top
            && latency_over.is_none()
            && s.latency.is_none_or(|l| l <= p.headroom * p.threshold)
            && p.max_queue.is_none_or(|q| s.queue <= p.headroom * q)
            && util(next).is_none_or(|u| u <= p.headroom * p.target_utilization);
        if !headroom {
            state.headroom_since = None;
            let reason = if latency_over.is_some() { Reason::Dwell } else { Reason::Steady };
            let rank = state.rank;
            return self.finish(state, rank, reason, predicted_saturated, Some(desired), util(rank), now);
        }
        let since = *state.headroom_since.get_or_insert(now);
        // Consecutive steps up (no degrade since the last restore) use the shorter step dwell.
        let consecutive = state.last_restore.is_some_and(|t| t >= state.last_degrade);
        let ready = if consecutive {
            now - state.last_change >= p.restore_step && now - since >= p.restore_step
        } else {
            now - since >= p.restore_after * state.backoff
        };
        let (rank, reason) = if ready { (next, Reason::Headroom) } else { (state.rank, Reason::Dwell) };
        self.finish(state, rank, reason, predicted_saturated, Some(desired), util(rank), now)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        state: &mut LawState,
        rank: usize,
        reason: Reason,
        saturated: bool,
        desired_replicas: Option<usize>,
        utilization: Option<f64>,
        now: f64,
    ) -> Decision {
        let direction = match rank.cmp(&state.rank) {
            std::cmp::Ordering::Less => Direction::Degrade,
            std::cmp::Ordering::Greater => Direction::Restore,
            std::cmp::Ordering::Equal => Direction::Hold,
        };
        match direction {
            Direction::Degrade => {
                // A degrade soon after a restore means the restore was premature: wait longer
                // next time. A restore that held for a long while earns the patience back.
                if state.last_restore.is_some_and(|t| now - t < 2.0 * self.params.restore_after) {
                    state.backoff = (state.backoff * 2.0).min(MAX_BACKOFF);
                }
                state.last_degrade = now;
                state.last_change = now;
                state.headroom_since = None;
            }
            Direction::Restore => {
                state.last_restore = Some(now);
                state.last_change = now;
                state.headroom_since = Some(now);
            }
            Direction::Hold => {
                if now - state.last_change > 4.0 * self.params.restore_after * state.backoff {
                    state.backoff = 1.0;
                }
            }
        }
        state.rank = rank;
        Decision { rank, direction, reason, saturated, desired_replicas, utilization }
    }
}

/// The most replicas the law asks for. An estimate beyond it says that a measurement is off (a
/// cost per image of hours), not that a fleet that size would help; it also keeps the count far
/// from the integer limits of the metric it is exported as.
pub const MAX_DESIRED_REPLICAS: usize = 10_000;

/// Replicas for `n` runtimes at utilisation `u` to run at `target`, in 1..=MAX_DESIRED_REPLICAS.
/// A cast of f64 to usize saturates (inf and huge values to usize::MAX, which the metric read as
/// -1): clamp in f64 first. NaN (no usable estimate) keeps the current count.
fn replicas_for(n: usize, u: f64, target: f64) -> usize {
    let x = n as f64 * u / target;
    if x.is_nan() {
        return n.clamp(1, MAX_DESIRED_REPLICAS);
    }
    x.ceil().clamp(1.0, MAX_DESIRED_REPLICAS as f64) as usize
}

#[cfg(test)]
#[path = "law_tests.rs"]
pub(crate) mod tests;
