//! The numbers of one run, from its per-request records, the polled active config and the
//! controller's decisions: per-second windows and the headline row.

use std::collections::{BTreeMap, HashMap};

use dyce_api::ConfigTable;
use dyce_runtime::model::Manifest;
use serde_json::{json, Value};

use super::stack::ConfigSample;
use crate::tools::load::record::{Outcome, Record};
use dyce_api::stats::quantile;

/// A controller decision that changed the config, on the run's time axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Seconds from the start of the load.
    pub t: f64,
    /// Decided config.
    pub config: String,
    /// degrade or restore.
    pub direction: String,
    /// The controller's reason.
    pub reason: String,
    /// Saturated (even the cheapest config is predicted over the target).
    pub saturated: bool,
}

/// Everything one run produced.
pub struct RunData {
    /// Row name.
    pub name: String,
    /// Short key, for file names.
    pub key: &'static str,
    /// The config the runtime started on.
    pub initial: String,
    /// Every scheduled request, in schedule order.
    pub records: Vec<Record>,
    /// The load generator's summary.
    pub summary: serde_json::Value,
    /// The runtime's active config as polled, on the run's time axis.
    pub samples: Vec<ConfigSample>,
    /// The controller's changes (empty without a controller).
    pub changes: Vec<Change>,
    /// Cores busy by thread group during the burst (none where `/proc` could not be read).
    pub cpu_burst: Option<super::cpu::CoresBusy>,
}

/// One second of a run, by scheduled send time.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// The window `[second, second + 1)`.
    pub second: u64,
    /// Requests scheduled in it.
    pub offered: usize,
    /// Answered with predictions.
    pub ok: usize,
    /// Answered within the latency target.
    pub good: usize,
    /// Refused (429/503).
    pub shed: usize,
    /// Errors, timeouts and drops.
    pub failed: usize,
    /// p99 latency with every request that got no answer counted as infinitely late (`None`:
    /// infinite); the number attainment judges.
    pub p99_ms: Option<f64>,
    /// Whether that p99 is within the target.
    pub attained: bool,
    /// Share of the answered images predicted correctly.
    pub accuracy: Option<f64>,
}

/// Timing of the response to the burst.
#[derive(Debug, Clone, PartialEq)]
pub struct Reaction {
    /// Burst start to the controller's first degrade decision, seconds.
    pub decided_s: Option<f64>,
    /// Burst start to the runtime's `/v1/config` showing a cheaper config, seconds (every
    /// runtime: the demo runs one).
    pub applied_s: Option<f64>,
    /// The config first degraded to.
    pub config: Option<String>,
    /// Changes the controller made before the burst (false alarms at base load).
    pub changes_before_burst: usize,
}

/// A run's headline numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Which run.
    pub name: String,
    /// Share of 1-s windows whose p99 is within the target (misses count as late).
    pub attainment: f64,
    /// The same over the burst's windows.
    pub burst_attainment: f64,
    /// Answers within the target per second of schedule.
    pub goodput: f64,
    /// Share of requests refused.
    pub shed_rate: f64,
    /// Share of requests failed, timed out or dropped by the generator.
    pub failed_rate: f64,
    /// Share of answered images predicted correctly.
    pub accuracy: Option<f64>,
    /// 1 − MACs spent / (answered images × full model MACs).
    pub macs_saved: Option<f64>,
    /// Burst reaction (runs with a controller).
    pub reaction: Option<Reaction>,
    /// Windows judged.
    pub windows: usize,
    /// Windows (their start second) that missed the target.
    pub missed: Vec<u64>,
    /// Answers per second over the burst's windows: what the machine served under the burst.
    pub burst_ok_per_second: f64,
}

// For report.json (this crate has serde_json but not serde's derive).
impl Change {
    /// As JSON.
    pub fn json(&self) -> Value {
        json!({"t": self.t, "config": self.config, "direction": self.direction, "reason": self.reason,
               "saturated": self.saturated})
    }
}

impl Window {
    /// As JSON.
    pub fn json(&self) -> Value {
        json!({"second": self.second, "offered": self.offered, "ok": self.ok, "good": self.good,
               "shed": self.shed, "failed": self.failed, "p99_ms": self.p99_ms, "attained": self.attained,
               "accuracy": self.accuracy})
    }
}

impl Row {
    /// As JSON.
    pub fn json(&self) -> Value {
        let reaction = self.reaction.as_ref().map(|r| {
            json!({"decided_s": r.decided_s, "applied_s": r.applied_s, "config": r.config,
                   "changes_before_burst": r.changes_before_burst})
        });
        json!({"name": self.name, "attainment": self.attainment, "burst_attainment": self.burst_attainment,
               "goodput_per_second": self.goodput, "shed_rate": self.shed_rate, "failed_rate": self.failed_rate,
               "accuracy": self.accuracy, "macs_saved": self.macs_saved, "reaction": reaction,
               "missed_windows": self.missed, "burst_ok_per_second": self.burst_ok_per_second})
    }
}

/// MACs of an answer from its config and exit position, as the runtime counts them: the
/// backbone through the exit plus every enabled exit head at or before it.
pub struct Costs {
    cumulative: Vec<u64>,
    full: u64,
    /// Per config id: (position, head MACs) of its enabled exits.
    exits: HashMap<String, Vec<(usize, u64)>>,
}

impl Costs {
    /// From the bundle's manifest (cumulative and head MACs) and its config table.
    pub fn new(manifest: &Manifest, table: &ConfigTable) -> Costs {
        let head = |p: usize, ty: &str| {
            manifest.exits.iter().find(|e| e.position == p && e.exit_type == ty).map_or(0, |e| e.macs)
        };
        let exits = table
            .configs
            .iter()
            .map(|c| {
                (c.id.clone(), c.exits.iter().map(|e| (e.position, head(e.position, &e.exit_type))).collect())
            })
            .collect();
        Costs {
            cumulative: manifest.positions.iter().map(|p| p.cumulative_macs).collect(),
            full: manifest.full_macs,
            exits,
        }
    }

    /// MACs of one image of `config` answered at `exit` (−1: the original head).
    fn image(&self, config: &str, exit: i32) -> Option<u64> {
        let exits = self.exits.get(config)?;
        let reach = usize::try_from(exit).ok();
        let heads: u64 = exits.iter().filter(|(p, _)| reach.is_none_or(|r| *p <= r)).map(|e| e.1).sum();
        let backbone = match reach {
            Some(r) => *self.cumulative.get(r)?,
            None => self.full,
        };
        Some(backbone + heads)
    }

    /// 1 − spent / full over every answered image (`None` if some answer's cost is unknown).
    fn saved(&self, records: &[Record]) -> Option<f64> {
        let (mut spent, mut images) = (0u128, 0u128);
        for r in records.iter().filter(|r| r.outcome == Outcome::Ok) {
            let id = r.config_id.as_deref()?;
            for &e in &r.exits {
                spent += u128::from(self.image(id, e)?);
                images += 1;
            }
        }
        (images > 0 && self.full > 0).then(|| 1.0 - spent as f64 / (images as f64 * self.full as f64))
    }
}

/// Per-second windows of a run with latency target `slo_s`.
pub fn windows(records: &[Record], slo_s: f64) -> Vec<Window> {
    let mut by: BTreeMap<u64, Vec<&Record>> = BTreeMap::new();
    for r in records {
        by.entry(r.scheduled_s.max(0.0) as u64).or_default().push(r);
    }
    by.into_iter()
        .map(|(second, rs)| {
            let count = |o: Outcome| rs.iter().filter(|r| r.outcome == o).count();
            let mut lat: Vec<f64> = rs
                .iter()
                .map(|r| {
                    if r.outcome == Outcome::Ok {
                        r.latency_s.unwrap_or(f64::INFINITY)
                    } else {
                        f64::INFINITY
                    }
                })
                .collect();
            lat.sort_by(f64::total_cmp);
            let p99 = quantile(&lat, 0.99).unwrap_or(f64::INFINITY);
            let ok: Vec<&&Record> = rs.iter().filter(|r| r.outcome == Outcome::Ok).collect();
            let images: usize = ok.iter().map(|r| r.labels.len()).sum();
            let correct: usize = ok.iter().map(|r| r.correct()).sum();
            Window {
                second,
                offered: rs.len(),
                ok: ok.len(),
                good: ok.iter().filter(|r| r.latency_s.is_some_and(|l| l <= slo_s)).count(),
                shed: count(Outcome::Shed),
                failed: rs.len() - ok.len() - count(Outcome::Shed),
                p99_ms: p99.is_finite().then_some(p99 * 1e3),
                attained: p99 <= slo_s,
                accuracy: (images > 0).then(|| correct as f64 / images as f64),
            }
        })
        .collect()
}

/// The burst reaction of a controlled run: decisions from the controller, application from
/// the polled config. `rank` orders config ids cheapest first.
fn reaction(run: &RunData, burst_at: f64, rank: &dyn Fn(&str) -> Option<usize>) -> Reaction {
    let degrade = run.changes.iter().find(|c| c.t >= burst_at && c.direction == "degrade");
    let before = run.samples.iter().rev().find(|s| s.t < burst_at).or(run.samples.first());
    let base = before.and_then(|s| rank(&s.id));
    let applied =
        run.samples.iter().find(|s| s.t >= burst_at && rank(&s.id).zip(base).is_some_and(|(r, b)| r < b));
    Reaction {
        decided_s: degrade.map(|c| c.t - burst_at),
        applied_s: applied.map(|s| s.t - burst_at),
        config: degrade.map(|c| c.config.clone()),
        changes_before_burst: run.changes.iter().filter(|c| c.t < burst_at).count(),
    }
}

/// The headline row of `run`: windows from `windows`, burst `[burst.0, burst.1)`.
pub fn row(
    run: &RunData,
    wins: &[Window],
    burst: (f64, f64),
    duration: f64,
    costs: &Costs,
    rank: &dyn Fn(&str) -> Option<usize>,
) -> Row {
    let share = |w: &[&Window]| {
        if w.is_empty() {
            0.0
        } else {
            w.iter().filter(|w| w.attained).count() as f64 / w.len() as f64
        }
    };
    let all: Vec<&Window> = wins.iter().collect();
    let during: Vec<&Window> =
        wins.iter().filter(|w| w.second as f64 >= burst.0 && (w.second as f64) < burst.1).collect();
    let n = run.records.len().max(1) as f64;
    let count = |o: Outcome| run.records.iter().filter(|r| r.outcome == o).count() as f64;
    Row {
        name: run.name.clone(),
        attainment: share(&all),
        burst_attainment: share(&during),
        goodput: wins.iter().map(|w| w.good).sum::<usize>() as f64 / duration,
        shed_rate: count(Outcome::Shed) / n,
        failed_rate: (count(Outcome::Error) + count(Outcome::Timeout) + count(Outcome::Dropped)) / n,
        accuracy: run.summary["accuracy"].as_f64(),
        macs_saved: costs.saved(&run.records),
        reaction: (!run.changes.is_empty() || run.key == "dyce").then(|| reaction(run, burst.0, rank)),
        windows: wins.len(),
        missed: wins.iter().filter(|w| !w.attained).map(|w| w.second).collect(),
        burst_ok_per_second: during.iter().map(|w| w.ok).sum::<usize>() as f64 / during.len().max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(scheduled_s: f64, outcome: Outcome, latency_s: f64, config: &str, exit: i32) -> Record {
        Record {
            seq: 0,
            scheduled_s,
            sent_s: Some(scheduled_s),
            latency_s: Some(latency_s),
            status: Some(200),
            outcome,
            config_id: Some(config.into()),
            generation: Some(1),
            labels: vec![3],
            predicted: if outcome == Outcome::Ok { vec![3] } else { vec![] },
            exits: vec![exit],
            error: None,
            answer_id: None,
            feedback_status: None,
        }
    }

    fn run(records: Vec<Record>, samples: &[(f64, &str)], changes: &[(f64, &str)]) -> RunData {
        RunData {
            name: "dyce".into(),
            key: "dyce",
            initial: "full".into(),
            records,
            summary: json!({"accuracy": 1.0}),
            samples: samples
                .iter()
                .enumerate()
                .map(|(i, &(t, id))| ConfigSample { t, id: id.into(), generation: i as u64 })
                .collect(),
            changes: changes
                .iter()
                .map(|&(t, config)| Change {
                    t,
                    config: config.into(),
                    direction: "degrade".into(),
                    reason: "test".into(),
                    saturated: false,
                })
                .collect(),
            cpu_burst: None,
        }
    }

    #[test]
    fn unanswered_requests_make_a_window_miss() {
        let mut rs: Vec<Record> =
            (0..10).map(|i| rec(0.05 * i as f64, Outcome::Ok, 0.002, "full", -1)).collect();
        rs.extend((0..9).map(|i| rec(1.0 + 0.05 * i as f64, Outcome::Ok, 0.002, "full", -1)));
        rs.push(rec(1.9, Outcome::Shed, 0.001, "full", -1));
        rs.push(rec(2.5, Outcome::Ok, 0.2, "full", -1));
        let w = windows(&rs, 0.05);
        assert_eq!(w.iter().map(|w| w.attained).collect::<Vec<_>>(), [true, false, false]);
        assert_eq!((w[1].offered, w[1].ok, w[1].shed, w[1].good, w[1].p99_ms), (10, 9, 1, 9, None));
        assert_eq!(w[2].p99_ms, Some(200.0));
        assert_eq!(w[0].accuracy, Some(1.0));
        let r = run(rs.clone(), &[(-0.5, "full")], &[]);
        let c = Costs { cumulative: vec![10, 20, 30], full: 40, exits: HashMap::new() };
        let row = row(&r, &w, (1.0, 2.0), 3.0, &c, &|_| Some(0));
        assert_eq!((row.attainment, row.burst_attainment, row.missed.clone()), (1.0 / 3.0, 0.0, vec![1, 2]));
        assert!((row.shed_rate - 1.0 / 21.0).abs() < 1e-12);
        assert!((row.goodput - 19.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn macs_follow_exit_positions_and_enabled_heads() {
        let exits = HashMap::from([("full".to_string(), vec![]), ("c".to_string(), vec![(0, 1), (2, 5)])]);
        let c = Costs { cumulative: vec![10, 20, 30], full: 40, exits };
        assert_eq!(c.image("full", -1), Some(40));
        assert_eq!(c.image("c", 0), Some(11));
        assert_eq!(c.image("c", 1), Some(21));
        assert_eq!(c.image("c", 2), Some(36));
        assert_eq!(c.image("c", -1), Some(46));
        assert_eq!(c.image("nope", 0), None);
        let rs = vec![rec(0.0, Outcome::Ok, 0.001, "c", 0), rec(0.1, Outcome::Ok, 0.001, "full", -1)];
        assert!((c.saved(&rs).unwrap() - (1.0 - 51.0 / 80.0)).abs() < 1e-12);
    }

    #[test]
    fn reaction_times_come_from_decisions_and_polled_configs() {
        let rank = |id: &str| ["c0", "c1", "full"].iter().position(|c| *c == id);
        let r = run(vec![], &[(-1.0, "full"), (10.42, "c1"), (10.9, "c0")], &[(3.0, "c1"), (10.4, "c1")]);
        let x = reaction(&r, 10.0, &rank);
        assert!((x.decided_s.unwrap() - 0.4).abs() < 1e-9 && (x.applied_s.unwrap() - 0.42).abs() < 1e-9);
        assert_eq!((x.config.as_deref(), x.changes_before_burst), (Some("c1"), 1));
        // No switch at all: no reaction.
        let none = reaction(&run(vec![], &[(-1.0, "full")], &[]), 10.0, &rank);
        assert_eq!((none.decided_s, none.applied_s), (None, None));
    }
}
