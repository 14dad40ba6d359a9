//! Prometheus mode: the law's signals read with PromQL from a Prometheus that scrapes the
//! runtimes, instead of polling each runtime's `/v1/load`. Actuation still talks to the runtimes.
//!
//! Rates are over `window` (at least two scrape intervals), so this mode reacts more slowly
//! than polling; it suits fleets where Prometheus already holds the numbers. Offered load is
//! answered images (`dyce_exits_total`) plus refused requests (one image each by default).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use dyce_control_core::law::{Observation, Signals};
use dyce_control_core::signals::{scale_to_full, RuntimeTrack};
use dyce_control_core::source::{BoxFuture, SignalError, SignalSource};
use dyce_control_core::step::Steering;
use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::body::{chain, read_capped, LARGE_ANSWER_CAP};
use crate::poll::HttpRuntimes;

/// Where and how to query.
#[derive(Debug, Clone, PartialEq)]
pub struct PromConfig {
    /// Prometheus base URL, e.g. `http://127.0.0.1:9091`.
    pub url: String,
    /// Label matchers selecting the policy's runtimes, e.g. `job="dyce-runtime"`.
    pub selector: String,
    /// Rate and quantile window.
    pub window: Duration,
    /// Per-query total timeout (connect, head and body).
    pub timeout: Duration,
}

/// A failed query.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromError {
    /// Transport, status or decoding failure.
    #[error("prometheus query {query:?}: {message}")]
    Query {
        /// The PromQL.
        query: String,
        /// What failed.
        message: String,
    },
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    result: Vec<Sample>,
}

#[derive(Deserialize)]
struct Sample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// Reads signals from Prometheus.
#[derive(Clone)]
pub struct PromSource {
    cfg: PromConfig,
    http: reqwest::Client,
}

impl PromSource {
    /// A source for `cfg`.
    pub fn new(cfg: PromConfig) -> Self {
        let http =
            reqwest::Client::builder().timeout(cfg.timeout).build().expect("a plain HTTP client builds");
        Self { cfg, http }
    }

    async fn query(&self, q: &str) -> Result<Vec<(BTreeMap<String, String>, f64)>, PromError> {
        let err = |message: String| PromError::Query { query: q.to_string(), message };
        let base = format!("{}/api/v1/query", self.cfg.url.trim_end_matches('/'));
        let url = reqwest::Url::parse_with_params(&base, &[("query", q)]).map_err(|e| err(e.to_string()))?;
        let resp = self.http.get(url).send().await.map_err(|e| err(chain(&e)))?;
        let body = read_capped(resp, LARGE_ANSWER_CAP).await.map_err(|e| err(e.to_string()))?;
        let a: Answer = serde_json::from_slice(&body).map_err(|e| err(e.to_string()))?;
        if a.status != "success" {
            return Err(err(a.error.unwrap_or(a.status)));
        }
        let result = a.data.map(|d| d.result).unwrap_or_default();
        Ok(result.into_iter().filter_map(|s| Some((s.metric, s.value.1.parse::<f64>().ok()?))).collect())
    }

    async fn scalar(&self, q: &str) -> Result<Option<f64>, PromError> {
        Ok(self.query(q).await?.first().map(|x| x.1).filter(|v| v.is_finite()))
    }

    /// The signals now; `Missing` when no runtime is up or Prometheus does not answer.
    /// `ratios` and `full_id` turn a config's measured cost into the full model's.
    pub async fn observe(
        &self,
        quantile: f64,
        ratios: &BTreeMap<String, f64>,
        full_id: &str,
    ) -> Result<Observation, PromError> {
        let (sel, w) = (&self.cfg.selector, format!("{}s", self.cfg.window.as_secs().max(1)));
        // The five queries go out together: a tick waits for the slowest, not for their sum.
        let queries = [
            format!("count(up{{{sel}}} == 1)"),
            format!(
                "sum(rate(dyce_exits_total{{{sel}}}[{w}])) + sum(rate(dyce_requests_total{{{sel},outcome=\"shed\"}}[{w}]))"
            ),
            format!(
                "max(histogram_quantile({quantile}, sum by (instance, le) (rate(dyce_request_duration_seconds_bucket{{{sel}}}[{w}]))))"
            ),
            format!("max(dyce_queue_depth{{{sel}}} - dyce_in_flight_requests{{{sel}}})"),
            format!("avg by (config) (dyce_saturated_compute_seconds{{{sel}}})"),
        ];
        let (up, offered, latency, queue, costs) = tokio::try_join!(
            self.scalar(&queries[0]),
            self.scalar(&queries[1]),
            self.scalar(&queries[2]),
            self.scalar(&queries[3]),
            self.query(&queries[4]),
        )?;
        let up = up.unwrap_or(0.0);
        if up < 1.0 {
            return Ok(Observation::Missing);
        }
        let offered = offered.unwrap_or(0.0);
        let queue = queue.unwrap_or(0.0).max(0.0);
        let by_config: BTreeMap<String, f64> =
            costs.into_iter().filter_map(|(m, v)| Some((m.get("config")?.clone(), v))).collect();
        let full = scale_to_full(&by_config, ratios, &[full_id]);
        Ok(Observation::Fresh(Signals {
            runtimes: up as usize,
            offered_per_second: offered,
            latency,
            latency_window: self.cfg.window.as_secs_f64(),
            queue,
            full_seconds_per_image: full,
        }))
    }
}

/// Prometheus as the law's signal source; the runtimes are still polled over HTTP for the
/// configs they run, which actuation needs.
///
/// Like the runtimes' polls, a query that outlives the tick's deadline (`wait`) is carried over,
/// not cancelled or repeated: the tick goes on with `Missing` signals (the policy's
/// `onMissingSignals` decides), and the answer counts at the tick that sees it. So a Prometheus
/// that hangs costs each tick at most `wait`, and at most one query set is in flight.
pub struct Prometheus {
    runtimes: HttpRuntimes,
    prom: PromSource,
    wait: Duration,
    inflight: Mutex<Option<JoinHandle<Result<Observation, PromError>>>>,
}

impl Prometheus {
    /// Signals from `prom`, runtimes polled by `runtimes`; a tick waits at most `wait` for
    /// Prometheus.
    pub fn new(runtimes: HttpRuntimes, prom: PromSource, wait: Duration) -> Self {
        Self { runtimes, prom, wait, inflight: Mutex::new(None) }
    }

    async fn observe_within(&self, steering: &Steering) -> Result<Observation, SignalError> {
        // Taken out of the lock while waiting: `observe` runs once per tick, never concurrently,
        // but a guard must not be held across an await.
        let carried = self.inflight.lock().expect("not poisoned").take();
        let mut task = carried.unwrap_or_else(|| {
            let (prom, quantile) = (self.prom.clone(), steering.quantile);
            let (ratios, full_id) = (steering.ratios.clone(), steering.full_id.clone());
            tokio::spawn(async move { prom.observe(quantile, &ratios, &full_id).await })
        });
        match tokio::time::timeout(self.wait, &mut task).await {
            Ok(Ok(r)) => r.map_err(|e| SignalError(e.to_string())),
            Ok(Err(join)) => Err(SignalError(format!("prometheus query task failed: {join}"))),
            Err(_) => {
                *self.inflight.lock().expect("not poisoned") = Some(task);
                Err(SignalError(format!(
                    "prometheus did not answer within {} ms (query carried over to the next tick)",
                    self.wait.as_millis()
                )))
            }
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(t) = self.inflight.get_mut().ok().and_then(Option::take) {
            t.abort();
        }
    }
}

impl SignalSource for Prometheus {
    fn poll<'a>(&'a mut self, tracks: &'a mut [RuntimeTrack], now: f64) -> BoxFuture<'a, ()> {
        Box::pin(self.runtimes.poll_all(tracks, now))
    }

    fn observe<'a>(
        &'a self,
        _tracks: &'a [RuntimeTrack],
        steering: &'a Steering,
        _now: f64,
    ) -> BoxFuture<'a, Result<Observation, SignalError>> {
        Box::pin(self.observe_within(steering))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::Query;
    use axum::routing::get;
    use axum::{Json, Router};

    /// A stand-in for Prometheus' query API that answers by the query's metric name.
    async fn api(Query(q): Query<BTreeMap<String, String>>) -> Json<serde_json::Value> {
        let query = q.get("query").cloned().unwrap_or_default();
        let vector = |items: Vec<(serde_json::Value, &str)>| {
            let result: Vec<_> =
                items.into_iter().map(|(m, v)| serde_json::json!({"metric": m, "value": [1.0, v]})).collect();
            serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}})
        };
        Json(if query.starts_with("count(up") {
            vector(vec![(serde_json::json!({}), "2")])
        } else if query.contains("dyce_exits_total") {
            assert!(query.contains("job=\"dyce-runtime\"") && query.contains("[10s]"), "{query}");
            vector(vec![(serde_json::json!({}), "1500")])
        } else if query.contains("histogram_quantile(0.99") {
            vector(vec![(serde_json::json!({}), "0.042")])
        } else if query.contains("dyce_queue_depth") {
            vector(vec![(serde_json::json!({}), "7")])
        } else if query.contains("dyce_saturated_compute_seconds") {
            vector(vec![(serde_json::json!({"config": "half"}), "0.0002")])
        } else {
            serde_json::json!({"status": "error", "error": "unexpected query"})
        })
    }

    #[tokio::test]
    async fn reads_signals_with_promql() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            async move { axum::serve(listener, Router::new().route("/api/v1/query", get(api))).await },
        );
        let src = PromSource::new(PromConfig {
            url,
            selector: "job=\"dyce-runtime\"".into(),
            window: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
        });
        let ratios = BTreeMap::from([("full".to_string(), 1.0), ("half".to_string(), 0.5)]);
        let Observation::Fresh(s) = src.observe(0.99, &ratios, "full").await.unwrap() else {
            panic!("fresh")
        };
        assert_eq!((s.runtimes, s.offered_per_second, s.latency, s.queue), (2, 1500.0, Some(0.042), 7.0));
        // "half" measured at 0.2 ms per image: the full model costs 0.4 ms.
        assert!((s.full_seconds_per_image.unwrap() - 4e-4).abs() < 1e-12);
        assert_eq!(s.latency_window, 10.0);
    }

    #[tokio::test]
    async fn unreachable_prometheus_is_an_error() {
        let src = PromSource::new(PromConfig {
            url: "http://127.0.0.1:1".into(),
            selector: "job=\"x\"".into(),
            window: Duration::from_secs(10),
            timeout: Duration::from_millis(200),
        });
        assert!(src.observe(0.99, &BTreeMap::new(), "full").await.is_err());
    }
}
