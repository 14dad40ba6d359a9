//! Replicas that come and go: an autoscaler with the timing of Kubernetes' HorizontalPodAutoscaler
//! over the simulated runtimes, with the dyce controller steering their configs or not.
//!
//! The question it answers: a replica takes tens of seconds to help (a sync period to notice, a
//! pod start to serve), a config switch takes one tick. What does steering configs buy on top of
//! replica autoscaling, in SLO attainment and in replica-seconds?
//!
//! The autoscaler follows HPA's documented algorithm: every `sync_period` it reads each ready
//! replica's utilisation over the last period (here the work it started, at full-batch cost,
//! over the period: the CPU a runtime burns, without the batching overhead of light load),
//! computes `desiredReplicas = ceil(current × utilisation / target)` (no
//! change within `tolerance`; starting replicas count as idle when scaling up), limits a scale-up
//! to max(2×, +4) per sync, and scales down only to the highest recommendation of the last
//! `scale_down_stabilization` seconds. A new replica serves `pod_start` seconds after it is
//! created, on the full model; the controller pushes it to the current config on its next tick,
//! as it repairs drift on real runtimes. A removed replica gets no more traffic and drains.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::fleet::{tick, Fleet};
use super::runtime::SimRuntime;
use super::{draw_arrival, SimChange, SimConfig, SimReport, SimWindow, Trace};
use crate::law::{Direction, Law};
use crate::signals::RuntimeTrack;
use crate::step::{ControlStep, Steering};

/// The autoscaler's settings; the defaults are HPA's (target aside, which has none).
#[derive(Debug, Clone, PartialEq)]
pub struct HpaConfig {
    /// Target utilisation of a replica, in (0, 1].
    pub target_utilization: f64,
    /// Seconds between syncs (HPA: `--horizontal-pod-autoscaler-sync-period`, 15 s).
    pub sync_period: f64,
    /// Seconds from creating a replica to it serving (image pull, start, readiness).
    pub pod_start: f64,
    /// Relative deviation from the target that is ignored (HPA: 0.1).
    pub tolerance: f64,
    /// Seconds of recommendations a scale-down takes the highest of (HPA: 300 s).
    pub scale_down_stabilization: f64,
    /// Fewest replicas.
    pub min_replicas: usize,
    /// Most replicas.
    pub max_replicas: usize,
    /// Replicas at the start, all ready.
    pub initial_replicas: usize,
}

impl Default for HpaConfig {
    fn default() -> Self {
        Self {
            target_utilization: 0.6,
            sync_period: 15.0,
            pod_start: 30.0,
            tolerance: 0.1,
            scale_down_stabilization: 300.0,
            min_replicas: 1,
            max_replicas: 20,
            initial_replicas: 2,
        }
    }
}

/// The replica count after a sync.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaPoint {
    /// Sync time, seconds.
    pub at: f64,
    /// Replicas serving.
    pub ready: usize,
    /// Replicas serving or starting, after the sync's decision.
    pub replicas: usize,
    /// Mean utilisation of the ready replicas over the last period.
    pub utilization: f64,
}

/// What a run with an autoscaler produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaReport {
    /// Windows, config changes and ranks, as a fixed-size run reports them.
    pub run: SimReport,
    /// The replica count after every sync.
    pub replicas: Vec<ReplicaPoint>,
    /// Seconds of every replica's life (starting ones included: they hold their resources),
    /// summed.
    pub replica_seconds: f64,
}

struct Replica {
    rt: SimRuntime,
    created: f64,
    ready_at: f64,
    removed_at: Option<f64>,
    /// Work seconds and time at the last sync, for the utilisation over the period.
    mark: (f64, f64),
}

impl Replica {
    fn serving(&self, t: f64) -> bool {
        self.ready_at <= t && self.removed_at.is_none()
    }
}

/// HPA's recommendation from the ready replicas' utilisations; `starting` replicas are not
/// ready yet.
fn recommend(hpa: &HpaConfig, current: usize, utils: &[f64], starting: usize) -> usize {
    if utils.is_empty() {
        return current;
    }
    let sum: f64 = utils.iter().sum();
    let ratio = sum / utils.len() as f64 / hpa.target_utilization;
    if (ratio - 1.0).abs() <= hpa.tolerance {
        return current;
    }
    // Scaling up, starting replicas count as idle (they may soon take load); scaling down they
    // are kept (their load is unknown). Both are HPA's conservative choices.
    let desired = if ratio > 1.0 {
        ((sum / hpa.target_utilization).ceil() as usize).max(current)
    } else {
        ((sum / hpa.target_utilization).ceil() as usize + starting).min(current)
    };
    let cap = (2 * current).max(current + 4);
    desired.min(cap).clamp(hpa.min_replicas, hpa.max_replicas)
}

/// How the dyce controller runs next to the autoscaler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControlLoop {
    /// Tick, seconds.
    pub interval: f64,
    /// The objective's latency quantile.
    pub quantile: f64,
    /// Answers older than this are stale, seconds.
    pub stale_after: f64,
}

/// Runs `trace` on replicas scaled by an HPA-like autoscaler. With `control` the dyce `law`
/// switches their configs every tick; without it they stay on the full model (the law then only
/// supplies the ladder).
pub fn simulate_replicas(
    law: &Law,
    control: Option<&ControlLoop>,
    sim: &SimConfig,
    hpa: &HpaConfig,
    trace: &Trace,
) -> ReplicaReport {
    let ladder = &law.ladder;
    let mut step =
        control.map(|c| ControlStep::new(Steering::for_law(law.clone(), c.quantile, c.stale_after)));
    let mut rng = StdRng::seed_from_u64(sim.seed);
    let new_replica = |created: f64, ready_at: f64| Replica {
        rt: SimRuntime::new(sim, ladder, ladder.top()),
        created,
        ready_at,
        removed_at: None,
        mark: (0.0, ready_at),
    };
    let mut pods: Vec<Replica> = (0..hpa.initial_replicas.max(1)).map(|_| new_replica(0.0, 0.0)).collect();
    // What the controller knows of each replica, in pod order.
    let mut tracks: Vec<RuntimeTrack> =
        (0..pods.len()).map(|i| RuntimeTrack::new(format!("sim-{i}"))).collect();
    let mut windows: Vec<SimWindow> = (0..trace.duration.ceil() as usize)
        .map(|k| SimWindow { start: k as f64, ..Default::default() })
        .collect();
    let mut run =
        SimReport { windows: vec![], changes: vec![], ranks: vec![], saturated_ticks: 0, accuracy: vec![] };
    let mut points = Vec::new();
    let mut recommendations: VecDeque<(f64, usize)> = VecDeque::from([(0.0, pods.len())]);
    let threshold = law.params.threshold;
    let mut next_arrival = draw_arrival(trace, 0.0, &mut rng);
    let mut next_tick = control.map_or(f64::INFINITY, |c| c.interval);
    let mut next_sync = hpa.sync_period;
    let mut switches: Vec<(f64, usize, usize)> = Vec::new(); // (apply at, replica, rank)
    loop {
        let next_done = pods.iter().map(|p| p.rt.busy_until()).fold(f64::INFINITY, f64::min);
        let next_switch = switches.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
        let t = next_arrival.min(next_done).min(next_tick).min(next_switch).min(next_sync);
        if t >= trace.duration {
            break;
        }
        if t == next_done {
            for p in pods.iter_mut().filter(|p| p.rt.busy_until() == t) {
                p.rt.finish_batch(t, threshold, sim.timeout, &mut windows);
                p.rt.start_batch(t, sim, ladder, &mut windows);
            }
        } else if t == next_switch {
            switches.retain(|&(at, i, rank)| {
                if at == t {
                    pods[i].rt.set_rank(rank, ladder);
                }
                at != t
            });
        } else if t == next_arrival {
            let serving: Vec<usize> = (0..pods.len()).filter(|&i| pods[i].serving(t)).collect();
            if serving.is_empty() {
                // Nothing to route to (only with min_replicas 0): refused at the door.
                if let Some(w) = windows.get_mut(t as usize) {
                    w.offered += 1;
                    w.shed += 1;
                }
            } else {
                let i = serving[rng.random_range(0..serving.len())];
                pods[i].rt.arrive(t, sim, &mut windows);
                pods[i].rt.start_batch(t, sim, ladder, &mut windows);
            }
            next_arrival = draw_arrival(trace, t, &mut rng);
        } else if t == next_sync {
            let (point, target) = sync(hpa, &mut pods, &mut recommendations, t);
            points.push(point);
            let current = pods.iter().filter(|p| p.removed_at.is_none()).count();
            if target > current {
                for _ in current..target {
                    tracks.push(RuntimeTrack::new(format!("sim-{}", pods.len())));
                    pods.push(new_replica(t, t + hpa.pod_start));
                }
            } else {
                // Starting replicas go first, then the newest serving ones (as a ReplicaSet
                // picks unready pods before ready ones).
                let mut order: Vec<usize> =
                    (0..pods.len()).filter(|&i| pods[i].removed_at.is_none()).collect();
                order.sort_by(|&a, &b| pods[a].serving(t).cmp(&pods[b].serving(t)).then(b.cmp(&a)));
                for &i in order.iter().take(current - target) {
                    pods[i].removed_at = Some(t);
                    // It gets no more traffic and the controller no longer sees it.
                    tracks[i] = RuntimeTrack::new(format!("sim-{i}"));
                }
            }
            next_sync += hpa.sync_period;
        } else if let (Some(c), Some(step)) = (control, step.as_mut()) {
            let fleet = Fleet {
                runtimes: pods.iter().map(|p| &p.rt).collect(),
                serving: pods.iter().map(|p| p.serving(t)).collect(),
                ladder,
            };
            let out = tick(step, fleet, &mut tracks, t);
            let d = &out.decision;
            if d.direction != Direction::Hold {
                run.changes.push(SimChange { at: t, rank: d.rank, direction: d.direction });
            }
            run.saturated_ticks += usize::from(d.saturated);
            run.ranks.push((t, d.rank));
            for p in &out.pushes {
                if !switches.iter().any(|s| s.1 == p.index && s.2 == d.rank) {
                    switches.push((t + sim.push_delay, p.index, d.rank));
                }
            }
            next_tick += c.interval;
        }
    }
    for w in &mut windows {
        let n = w.served.max(1) as f64;
        w.mean_cost_ratio /= n;
        w.mean_expected_accuracy /= n;
    }
    run.windows = windows;
    let end = trace.duration;
    let replica_seconds =
        pods.iter().map(|p| (p.removed_at.unwrap_or(end).min(end) - p.created).max(0.0)).sum();
    ReplicaReport { run, replicas: points, replica_seconds }
}

/// One autoscaler sync at `t`: utilisations over the period, HPA's recommendation, the
/// scale-down stabilisation. Returns the point to record and the replica count to have.
fn sync(
    hpa: &HpaConfig,
    pods: &mut [Replica],
    recommendations: &mut VecDeque<(f64, usize)>,
    t: f64,
) -> (ReplicaPoint, usize) {
    let mut utils = Vec::new();
    let mut starting = 0;
    for p in pods.iter_mut().filter(|p| p.removed_at.is_none()) {
        let (busy, since) = p.mark;
        let span = t - since.max(p.ready_at);
        // A replica without a metric yet (starting, or ready this very instant) is not ready
        // as far as the autoscaler can tell.
        if !p.serving(t) || span <= 0.0 {
            starting += 1;
            continue;
        }
        utils.push(((p.rt.work_total() - busy) / span).clamp(0.0, 1.0));
        p.mark = (p.rt.work_total(), t);
    }
    let current = utils.len() + starting;
    let raw = recommend(hpa, current, &utils, starting);
    recommendations.push_back((t, raw));
    while recommendations.front().is_some_and(|(at, _)| t - at > hpa.scale_down_stabilization) {
        recommendations.pop_front();
    }
    let target = if raw < current {
        recommendations.iter().map(|r| r.1).max().unwrap_or(raw).min(current)
    } else {
        raw
    };
    let utilization = if utils.is_empty() { 0.0 } else { utils.iter().sum::<f64>() / utils.len() as f64 };
    (ReplicaPoint { at: t, ready: utils.len(), replicas: target, utilization }, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recommendation_follows_hpa() {
        let hpa = HpaConfig { target_utilization: 0.5, ..HpaConfig::default() };
        // Within tolerance: no change.
        assert_eq!(recommend(&hpa, 2, &[0.52, 0.54], 0), 2);
        // ceil(2 × 0.9 / 0.5) = 4.
        assert_eq!(recommend(&hpa, 2, &[0.9, 0.9], 0), 4);
        // At most max(2×, +4) per sync.
        assert_eq!(recommend(&hpa, 1, &[1.0], 0), 2);
        assert_eq!(recommend(&HpaConfig { target_utilization: 0.1, ..hpa.clone() }, 2, &[1.0, 1.0], 0), 6);
        // Scale down: ceil(4 × 0.1 / 0.5) = 1, plus the starting replica.
        assert_eq!(recommend(&hpa, 5, &[0.1; 4], 1), 2);
        // Starting replicas count as idle when scaling up: 2 × 0.8 / 0.5 → 4, not 5.
        assert_eq!(recommend(&hpa, 3, &[0.8, 0.8], 1), 4);
    }
}
