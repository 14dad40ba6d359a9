//! One policy's control loop: poll, aggregate, decide, push. Transport-agnostic about where the
//! runtime URLs come from (a policy file, the command line, or Kubernetes pods).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use dyce_api::ConfigTable;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::actuate::{push_all, PushTarget, Retry};
use crate::client::AdminClient;
use crate::ladder::{Ladder, LadderError};
use crate::law::{Decision, Direction, Law, LawParams, LawState, Observation};
use crate::metrics::{ControllerMetrics, DecisionLabel, PolicyLabel, RuntimeStateLabel};
use crate::policy::SloPolicySpec;
use crate::prom::PromSource;
use crate::signals::{aggregate, RuntimeCounts, RuntimeTrack};

/// One decision as the status and logs show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRecord {
    /// Seconds since the controller started.
    pub at: f64,
    /// Decided config id.
    pub config: String,
    /// Its rank (0 = cheapest allowed).
    pub rank: usize,
    /// degrade, restore or hold.
    pub direction: &'static str,
    /// Why, in words.
    pub reason: String,
    /// Saturated.
    pub saturated: bool,
    /// Replicas needed.
    pub desired_replicas: Option<usize>,
    /// Predicted utilisation of the decided config.
    pub utilization: Option<f64>,
    /// Observed latency quantile, seconds.
    pub observed_latency: Option<f64>,
    /// Offered images per second over the fresh runtimes.
    pub offered_per_second: Option<f64>,
}

/// What `/v1/status` shows for a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct PolicyStatus {
    /// Policy name.
    pub policy: String,
    /// Model the runtimes serve (once known).
    pub model: Option<String>,
    /// Allowed config ids, cheapest first.
    pub ladder: Vec<String>,
    /// Runtimes by state.
    pub runtimes_fresh: usize,
    /// Runtimes answered once but not lately.
    pub runtimes_stale: usize,
    /// Runtimes never answered.
    pub runtimes_unknown: usize,
    /// The last decision.
    pub last: Option<DecisionRecord>,
    /// Recent changes (degrades and restores), oldest first.
    pub changes: VecDeque<DecisionRecord>,
    /// Failed pushes since start.
    pub push_errors: u64,
    /// The last problem (no table, a push error, ...).
    pub last_error: Option<String>,
}

const KEPT_CHANGES: usize = 200;

struct Steering {
    law: Law,
    ratios: BTreeMap<String, f64>,
    full_id: String,
}

/// The loop of one policy.
pub struct PolicyLoop {
    name: String,
    spec: SloPolicySpec,
    client: AdminClient,
    tracks: Vec<RuntimeTrack>,
    steering: Option<Steering>,
    state: Option<LawState>,
    dry_run: bool,
    metrics: Arc<ControllerMetrics>,
    status: PolicyStatus,
    prom: Option<PromSource>,
}

impl PolicyLoop {
    /// A loop for policy `name`; `dry_run` decides and logs without pushing.
    pub fn new(
        name: &str,
        spec: SloPolicySpec,
        runtimes: &[String],
        token: Option<String>,
        dry_run: bool,
        metrics: Arc<ControllerMetrics>,
    ) -> Self {
        let client = AdminClient::new(spec.control.request_timeout().0, token);
        let mut l = Self {
            name: name.to_string(),
            spec,
            client,
            tracks: Vec::new(),
            steering: None,
            state: None,
            dry_run,
            metrics,
            status: PolicyStatus { policy: name.to_string(), ..Default::default() },
            prom: None,
        };
        l.set_runtimes(runtimes);
        // Series at 0 from the start, so rate() and increase() see the first event.
        let _ = l.metrics.push_errors.get_or_create(&l.label());
        for direction in ["degrade", "restore", "hold"] {
            let _ = l.metrics.decisions.get_or_create(&DecisionLabel { policy: name.to_string(), direction });
        }
        l
    }

    /// Reads the law's signals from Prometheus instead of the runtimes' `/v1/load` (the runtimes
    /// are still polled for their active config, which actuation needs).
    pub fn with_prometheus(mut self, src: PromSource) -> Self {
        self.prom = Some(src);
        self
    }

    /// Replaces the runtime set (pods come and go), keeping what is known about the survivors.
    pub fn set_runtimes(&mut self, urls: &[String]) {
        let mut old: BTreeMap<String, RuntimeTrack> =
            self.tracks.drain(..).map(|t| (t.url.clone(), t)).collect();
        self.tracks =
            urls.iter().map(|u| old.remove(u).unwrap_or_else(|| RuntimeTrack::new(u.clone()))).collect();
    }

    /// The policy spec.
    pub fn spec(&self) -> &SloPolicySpec {
        &self.spec
    }

    /// The status as of the last tick.
    pub fn status(&self) -> &PolicyStatus {
        &self.status
    }

    fn label(&self) -> PolicyLabel {
        PolicyLabel { policy: self.name.clone() }
    }

    async fn poll(&mut self, now: f64) {
        let mut set = JoinSet::new();
        for (i, t) in self.tracks.iter().enumerate() {
            let client = self.client.clone();
            let url = t.url.clone();
            set.spawn(async move { (i, client.load(&url).await) });
        }
        while let Some(Ok((i, r))) = set.join_next().await {
            match r {
                Ok(report) => self.tracks[i].observe(now, report),
                Err(e) => {
                    if self.tracks[i].failures == 0 {
                        tracing::warn!(policy = %self.name, error = %e, "runtime did not answer");
                    }
                    self.tracks[i].fail(e.to_string());
                }
            }
        }
    }

    async fn ensure_table(&mut self, now: f64) -> Result<(), String> {
        if self.steering.is_some() {
            return Ok(());
        }
        let stale = self.spec.control.stale_after().secs();
        let Some(t) = self.tracks.iter().find(|t| t.is_fresh(now, stale)) else {
            return Err("no runtime has answered yet".into());
        };
        let view = self.client.configs(&t.url).await.map_err(|e| e.to_string())?;
        let table = ConfigTable { model: view.model.clone(), configs: view.configs };
        let ladder = Ladder::new(&table, self.spec.accuracy_floor).map_err(|e: LadderError| e.to_string())?;
        let ratios = ladder_ratios(&table);
        let full_id = table.full().map(|c| c.id.clone()).unwrap_or_default();
        self.status.model = Some(view.model);
        self.status.ladder = ladder.rungs().iter().map(|r| r.id.clone()).collect();
        tracing::info!(policy = %self.name, model = %table.model, ladder = ?self.status.ladder, "config table loaded");
        let law = Law::new(LawParams::from_spec(&self.spec), ladder);
        self.steering = Some(Steering { law, ratios, full_id });
        Ok(())
    }

    /// One tick at `now` (seconds on the controller's monotonic clock).
    pub async fn tick(&mut self, now: f64) -> Option<Decision> {
        self.poll(now).await;
        if let Err(e) = self.ensure_table(now).await {
            self.status.last_error = Some(e);
            self.publish_counts(RuntimeCounts {
                unknown: self.tracks.iter().filter(|t| t.last.is_none()).count(),
                stale: self.tracks.iter().filter(|t| t.last.is_some()).count(),
                fresh: 0,
            });
            return None;
        }
        let st = self.steering.as_ref().expect("ensured");
        let stale = self.spec.control.stale_after().secs();
        let quantile = self.spec.objective.latency.quantile;
        let (mut obs, counts) = aggregate(&self.tracks, &st.ratios, &st.full_id, quantile, stale, now);
        if let Some(prom) = &self.prom {
            obs = match prom.observe(quantile, &st.ratios, &st.full_id).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(policy = %self.name, error = %e, "prometheus did not answer");
                    Observation::Missing
                }
            };
        }
        let state = self.state.get_or_insert_with(|| {
            // Start from what the runtimes run, so a restarted controller does not jump.
            let active = self.tracks.iter().find_map(|t| t.last.as_ref().map(|(_, r)| r.active.id.clone()));
            let rank = active.and_then(|id| st.law.ladder.rank_of(&id)).unwrap_or(st.law.ladder.top());
            LawState::new(rank, now)
        });
        let d = st.law.decide(state, &obs, now);
        let id = st.law.ladder.rung(d.rank).id.clone();
        let signals = match &obs {
            Observation::Fresh(s) => Some(s.clone()),
            Observation::Missing => None,
        };
        let record = DecisionRecord {
            at: now,
            config: id.clone(),
            rank: d.rank,
            direction: d.direction.as_str(),
            reason: d.reason.to_string(),
            saturated: d.saturated,
            desired_replicas: d.desired_replicas,
            utilization: d.utilization,
            observed_latency: signals.as_ref().and_then(|s| s.latency),
            offered_per_second: signals.as_ref().map(|s| s.offered_per_second),
        };
        if d.direction == Direction::Hold {
            tracing::debug!(policy = %self.name, config = %id, reason = %d.reason, "hold");
        } else {
            tracing::info!(
                policy = %self.name, direction = d.direction.as_str(), config = %id, rank = d.rank,
                reason = %d.reason, saturated = d.saturated, offered = ?record.offered_per_second,
                latency = ?record.observed_latency, "decision"
            );
            self.status.changes.push_back(record.clone());
            if self.status.changes.len() > KEPT_CHANGES {
                self.status.changes.pop_front();
            }
        }
        self.record_metrics(&d, &record, counts);
        self.status.last = Some(record);
        if !self.dry_run {
            self.push(&id, now).await;
        }
        Some(d)
    }

    async fn push(&mut self, id: &str, now: f64) {
        let stale = self.spec.control.stale_after().secs();
        // Every fresh runtime not on the target: the decided change, and drift (a runtime that
        // restarted on its default config) alike.
        let targets: Vec<PushTarget> = self
            .tracks
            .iter()
            .filter(|t| t.is_fresh(now, stale))
            .filter_map(|t| t.last.as_ref().map(|(_, r)| (t, r)))
            .filter(|(_, r)| r.active.id != id)
            .map(|(t, r)| PushTarget { url: t.url.clone(), generation: r.active.generation })
            .collect();
        if targets.is_empty() {
            return;
        }
        for o in push_all(&self.client, targets, id, Retry::default()).await {
            let track = self.tracks.iter_mut().find(|t| t.url == o.url);
            match o.result {
                Ok(active) => {
                    if let Some((_, r)) = track.and_then(|t| t.last.as_mut()) {
                        r.active = active;
                    }
                }
                Err(e) => {
                    tracing::warn!(policy = %self.name, error = %e, attempts = o.attempts, "push failed");
                    self.metrics.push_errors.get_or_create(&self.label()).inc();
                    self.status.push_errors += 1;
                    self.status.last_error = Some(e.to_string());
                }
            }
        }
    }

    fn publish_counts(&mut self, counts: RuntimeCounts) {
        for (state, n) in [("fresh", counts.fresh), ("stale", counts.stale), ("unknown", counts.unknown)] {
            self.metrics
                .runtimes
                .get_or_create(&RuntimeStateLabel { policy: self.name.clone(), state })
                .set(n as i64);
        }
        self.status.runtimes_fresh = counts.fresh;
        self.status.runtimes_stale = counts.stale;
        self.status.runtimes_unknown = counts.unknown;
    }

    fn record_metrics(&mut self, d: &Decision, r: &DecisionRecord, counts: RuntimeCounts) {
        let m = &self.metrics;
        let label = self.label();
        m.ticks.inc();
        m.decisions.get_or_create(&DecisionLabel { policy: self.name.clone(), direction: r.direction }).inc();
        m.target_rank.get_or_create(&label).set(d.rank as i64);
        if let Some(l) = r.observed_latency {
            m.observed_latency.get_or_create(&label).set(l);
        }
        m.saturated.get_or_create(&label).set(i64::from(d.saturated));
        if let Some(n) = d.desired_replicas {
            m.desired_replicas.get_or_create(&label).set(n as i64);
        }
        self.publish_counts(counts);
    }
}

/// Cost ratio of every config in a table (measured latency ratio, else MACs ratio).
pub fn ladder_ratios(table: &ConfigTable) -> BTreeMap<String, f64> {
    table
        .configs
        .iter()
        .filter_map(|c| {
            let r = c.latency_ratio.or(c.macs_ratio).or(c.exits.is_empty().then_some(1.0))?;
            Some((c.id.clone(), r))
        })
        .collect()
}
