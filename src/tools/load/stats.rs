//! Numbers of a run: the live line printed every second, and the final summary.

use std::collections::{BTreeMap, BTreeSet};

use dyce_api::stats::quantile;
use serde_json::{json, Value};

use super::record::{Outcome, Record};

/// Send lag above which the generator, not the server, may have shaped the run.
pub const LAG_WARN_S: f64 = 0.010;

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |s| format!("{:.1}", s * 1e3))
}

/// What happened during one wall-clock second: requests sent (or dropped) in it, and answers,
/// refusals and failures that arrived in it. Answers are counted when they arrive so the line
/// can be printed at once, even when requests take longer than a second.
#[derive(Debug, Default)]
pub struct Second {
    offered: usize,
    lags: Vec<f64>,
    outcomes: BTreeMap<Outcome, usize>,
    latencies: Vec<f64>,
    images: usize,
    correct: usize,
    configs: BTreeSet<(String, u64)>,
}

impl Second {
    /// A request left the generator (`lag`: `None` when it was dropped instead).
    pub fn offered(&mut self, lag: Option<f64>) {
        self.offered += 1;
        self.lags.extend(lag);
    }

    /// A request's outcome became known.
    pub fn resolved(&mut self, r: &Record) {
        *self.outcomes.entry(r.outcome).or_default() += 1;
        if r.outcome == Outcome::Ok {
            self.latencies.extend(r.latency_s);
            self.images += r.labels.len();
            self.correct += r.correct();
            if let (Some(id), Some(g)) = (&r.config_id, r.generation) {
                self.configs.insert((id.clone(), g));
            }
        }
    }

    /// Whether nothing happened.
    pub fn is_empty(&self) -> bool {
        self.offered == 0 && self.outcomes.is_empty()
    }

    /// The live line for second `k` (the window `[k, k + 1)` s from the start), with the
    /// rate the profile asked for in it (`target`), so a shortfall is visible at once.
    pub fn line(self, k: u64, target: f64) -> String {
        let count = |o| self.outcomes.get(&o).copied().unwrap_or(0);
        let lat = sorted(self.latencies);
        let lags = sorted(self.lags);
        let acc = if self.images > 0 {
            format!("{:.3}", self.correct as f64 / self.images as f64)
        } else {
            "-".into()
        };
        let cfg: Vec<String> = self.configs.iter().map(|(id, g)| format!("{id}#{g}")).collect();
        format!(
            "[{k:>4}s] offered {}/s (target {target:.0}) ok {}/s shed {}/s errors {} p50 {} ms p99 {} ms acc {acc} config {} lag p99 {} ms",
            self.offered,
            count(Outcome::Ok),
            count(Outcome::Shed),
            count(Outcome::Error) + count(Outcome::Timeout) + count(Outcome::Dropped),
            ms(quantile(&lat, 0.5)),
            ms(quantile(&lat, 0.99)),
            if cfg.is_empty() { "-".into() } else { cfg.join(",") },
            ms(quantile(&lags, 0.99)),
        )
    }
}

/// Share of 1-s windows, by scheduled send time, whose p99 latency is within `slo_s`; every
/// request that got no answer in time (shed, error, timeout, dropped) is a miss. Windows
/// without requests are not counted. Returns (attained, windows).
pub fn attainment(records: &[Record], slo_s: f64) -> (usize, usize) {
    let mut windows: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for r in records {
        let lat = match (r.outcome, r.latency_s) {
            (Outcome::Ok, Some(l)) => l,
            _ => f64::INFINITY,
        };
        windows.entry(r.scheduled_s.max(0.0) as u64).or_default().push(lat);
    }
    let total = windows.len();
    let ok = windows
        .into_values()
        .filter(|w| quantile(&sorted(w.clone()), 0.99).is_some_and(|p| p <= slo_s))
        .count();
    (ok, total)
}

fn quantiles_ms(sorted: &[f64], qs: &[(&str, f64)]) -> Value {
    let mut m = serde_json::Map::new();
    for &(name, q) in qs {
        m.insert(name.into(), json!(quantile(sorted, q).map(|s| s * 1e3)));
    }
    m.insert("max".into(), json!(sorted.last().map(|s| s * 1e3)));
    Value::Object(m)
}

/// Counts, accuracy, latency and lag quantiles over all `records` (for the final JSON).
pub fn totals(records: &[Record], duration_s: f64) -> Value {
    let count = |o: Outcome| records.iter().filter(|r| r.outcome == o).count();
    let ok: Vec<&Record> = records.iter().filter(|r| r.outcome == Outcome::Ok).collect();
    let images: usize = ok.iter().map(|r| r.labels.len()).sum();
    let correct: usize = ok.iter().map(|r| r.correct()).sum();
    let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
    // Per configuration: how much of the traffic it answered and how well.
    let mut configs: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let mut exits: BTreeMap<i32, usize> = BTreeMap::new();
    let mut generations = BTreeSet::new();
    for r in &ok {
        let c = configs.entry(r.config_id.clone().unwrap_or_default()).or_default();
        *c = (c.0 + 1, c.1 + r.labels.len(), c.2 + r.correct());
        generations.extend(r.generation);
        for &e in &r.exits {
            *exits.entry(e).or_default() += 1;
        }
    }
    let configs: serde_json::Map<String, Value> = configs
        .into_iter()
        .map(|(id, (reqs, imgs, corr))| {
            (id, json!({"requests": reqs, "images": imgs, "correct": corr, "accuracy": ratio(corr, imgs)}))
        })
        .collect();
    let exits: serde_json::Map<String, Value> =
        exits.into_iter().map(|(e, n)| (e.to_string(), json!(n))).collect();
    let latency = sorted(ok.iter().filter_map(|r| r.latency_s).collect());
    let lags = sorted(records.iter().filter_map(Record::lag_s).collect());
    let mean_ms = (!latency.is_empty()).then(|| latency.iter().sum::<f64>() / latency.len() as f64 * 1e3);
    let mut latency_ms =
        quantiles_ms(&latency, &[("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)]);
    latency_ms["mean"] = json!(mean_ms);
    json!({
        "scheduled": records.len(),
        "sent": records.len() - count(Outcome::Dropped),
        "ok": ok.len(),
        "shed": count(Outcome::Shed),
        "errors": count(Outcome::Error),
        "timeouts": count(Outcome::Timeout),
        "dropped_by_client": count(Outcome::Dropped),
        "offered_per_second": records.len() as f64 / duration_s,
        "ok_per_second": ok.len() as f64 / duration_s,
        "images_answered": images,
        "images_correct": correct,
        "accuracy": ratio(correct, images),
        "latency_ms": latency_ms,
        "send_lag_ms": quantiles_ms(&lags, &[("p50", 0.5), ("p99", 0.99)]),
        "generator_bottleneck": quantile(&lags, 0.99).is_some_and(|l| l > LAG_WARN_S),
        "configs": configs,
        "generations": generations,
        "exit_positions": exits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(scheduled_s: f64, outcome: Outcome, latency_s: f64, predicted: i64) -> Record {
        Record {
            seq: 0,
            scheduled_s,
            sent_s: (outcome != Outcome::Dropped).then_some(scheduled_s + 0.001),
            latency_s: Some(latency_s),
            status: Some(200),
            outcome,
            config_id: Some("c0".into()),
            generation: Some(1),
            labels: vec![4],
            predicted: if outcome == Outcome::Ok { vec![predicted] } else { vec![] },
            exits: vec![-1],
            error: None,
            answer_id: None,
            feedback_status: None,
        }
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn misses_count_against_attainment() {
        // Second 0: all fast. Second 1: one shed among 10, so its p99 is a miss. Second 2: slow.
        let mut rs: Vec<Record> = (0..10).map(|i| rec(0.05 * i as f64, Outcome::Ok, 0.002, 4)).collect();
        rs.extend((0..9).map(|i| rec(1.0 + 0.05 * i as f64, Outcome::Ok, 0.002, 4)));
        rs.push(rec(1.9, Outcome::Shed, 0.001, 0));
        rs.push(rec(2.5, Outcome::Ok, 0.5, 4));
        assert_eq!(attainment(&rs, 0.010), (1, 3));
        assert_eq!(attainment(&rs, 1.0), (2, 3));
    }

    #[test]
    fn totals_count_outcomes_and_accuracy() {
        let rs = vec![
            rec(0.0, Outcome::Ok, 0.002, 4),
            rec(0.1, Outcome::Ok, 0.004, 3),
            rec(0.2, Outcome::Shed, 0.001, 0),
            rec(0.3, Outcome::Dropped, 0.0, 0),
        ];
        let t = totals(&rs, 2.0);
        assert_eq!(
            (t["scheduled"].as_u64(), t["sent"].as_u64(), t["ok"].as_u64()),
            (Some(4), Some(3), Some(2))
        );
        assert_eq!(t["accuracy"], 0.5);
        assert_eq!(t["configs"]["c0"]["requests"], 2);
        assert_eq!(t["exit_positions"]["-1"], 2);
        assert_eq!(t["offered_per_second"], 2.0);
        assert_eq!(t["latency_ms"]["max"], 4.0);
        let mut s = Second::default();
        for r in &rs {
            s.offered(r.lag_s());
            s.resolved(r);
        }
        let line = s.line(7, 4.2);
        assert!(line.starts_with("[   7s] offered 4/s (target 4) ok 2/s shed 1/s errors 1"), "{line}");
        assert!(line.contains("acc 0.500 config c0#1"), "{line}");
    }
}
