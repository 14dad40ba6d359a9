//! One policy's live loop, a driver of the core's control step: poll the runtimes (or
//! Prometheus) through a signal source, step, push the decided config over HTTP, and keep the
//! status and metrics. Transport-agnostic about where the runtime URLs come from (a policy file,
//! the command line, or Kubernetes pods).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use dyce_api::ConfigTable;
use dyce_control_core::law::{Decision, Direction, Observation};
use dyce_control_core::live::GuardChange;
use dyce_control_core::policy::SloPolicySpec;
use dyce_control_core::signals::{RuntimeCounts, RuntimeTrack};
use dyce_control_core::source::SignalSource;
use dyce_control_core::step::{ControlStep, DecisionRecord, Steering};
use serde::Serialize;

use crate::actuate::{PushOutcome, Pusher, Retry};
use crate::client::AdminClient;
use crate::metrics::{ControllerMetrics, DecisionLabel, PolicyLabel, RuntimeStateLabel};
use crate::poll::HttpRuntimes;
use crate::prom::{PromSource, Prometheus};

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
    /// The last poll error of a runtime that is not answering, if any.
    pub runtime_error: Option<String>,
    /// Why the signal source (Prometheus) gave no signals at the last tick, if it did not.
    pub signal_error: Option<String>,
    /// `spec.accuracy.source: live`: configs kept out because their live accuracy lower bound
    /// is under the floor, with the reason.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub accuracy_excluded: BTreeMap<String, String>,
    /// Set while the live guard leaves only the full model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy_note: Option<String>,
}

const KEPT_CHANGES: usize = 200;

/// Seconds between warnings about a runtime whose pushes keep failing.
const FAILING_LOG_EVERY: f64 = 30.0;

/// The counter of failed runtime calls.
fn runtime_errors(metrics: &ControllerMetrics) -> prometheus_client::metrics::counter::Counter {
    metrics.api_errors.get_or_create(&crate::metrics::ApiLabel { api: "runtime" }).clone()
}

/// How long a tick waits for the runtimes' `/v1/load` answers: half the interval, so that one
/// runtime that hangs cannot slow the tick (its poll is carried over, see `poll.rs`).
fn poll_wait(spec: &SloPolicySpec) -> std::time::Duration {
    spec.control.interval.0 / 2
}

/// The loop of one policy.
pub struct PolicyLoop {
    name: String,
    spec: SloPolicySpec,
    client: AdminClient,
    tracks: Vec<RuntimeTrack>,
    source: Box<dyn SignalSource>,
    /// The API behind `source`'s observations, for the error counter.
    source_api: &'static str,
    step: Option<ControlStep>,
    pusher: Pusher,
    /// Tries at loading the config table, to spread them over the fresh runtimes.
    table_tries: usize,
    /// Runtimes seen restarting (generation went back), until the push that re-steers them.
    restarted: HashSet<String>,
    /// Per runtime, pushes failed in a row and when that was last logged as a warning.
    failing: HashMap<String, (u32, f64)>,
    /// Whether the last tick had no fresh signals, and whether the signal source failed: logged
    /// when they change, not every tick.
    holding: bool,
    source_failing: bool,
    dry_run: bool,
    metrics: Arc<ControllerMetrics>,
    status: PolicyStatus,
    /// What the live accuracy guard changed at the last tick (for Kubernetes Events).
    accuracy_changes: Vec<GuardChange>,
}

impl PolicyLoop {
    /// A loop for policy `name` reading the runtimes' `/v1/load`; `dry_run` decides and logs
    /// without pushing.
    pub fn new(
        name: &str,
        spec: SloPolicySpec,
        runtimes: &[String],
        token: Option<String>,
        dry_run: bool,
        metrics: Arc<ControllerMetrics>,
    ) -> Self {
        let client = AdminClient::new(spec.control.request_timeout().0, token);
        let polls =
            HttpRuntimes::new(client.clone(), name, poll_wait(&spec)).count_errors(runtime_errors(&metrics));
        let mut l = Self {
            name: name.to_string(),
            source: Box::new(polls),
            source_api: "runtime",
            spec,
            pusher: Pusher::new(client.clone(), Retry::default()),
            table_tries: 0,
            restarted: HashSet::new(),
            failing: HashMap::new(),
            holding: false,
            source_failing: false,
            client,
            tracks: Vec::new(),
            step: None,
            dry_run,
            metrics,
            status: PolicyStatus { policy: name.to_string(), ..Default::default() },
            accuracy_changes: Vec::new(),
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
    pub fn with_prometheus(mut self, prom: PromSource) -> Self {
        let wait = poll_wait(&self.spec);
        let runtimes = HttpRuntimes::new(self.client.clone(), &self.name, wait)
            .count_errors(runtime_errors(&self.metrics));
        self.source = Box::new(Prometheus::new(runtimes, prom, wait));
        self.source_api = "prometheus";
        self
    }

    /// Replaces the runtime set (pods come and go), keeping what is known about the survivors.
    pub fn set_runtimes(&mut self, urls: &[String]) {
        let mut old: BTreeMap<String, RuntimeTrack> =
            self.tracks.drain(..).map(|t| (t.url.clone(), t)).collect();
        self.tracks =
            urls.iter().map(|u| old.remove(u).unwrap_or_else(|| RuntimeTrack::new(u.clone()))).collect();
        self.pusher.retain(urls);
        self.failing.retain(|u, _| urls.contains(u));
        self.restarted.retain(|u| urls.contains(u));
    }

    /// The policy spec.
    pub fn spec(&self) -> &SloPolicySpec {
        &self.spec
    }

    /// Configs the live accuracy guard excluded or let back at the last tick.
    pub fn accuracy_changes(&self) -> &[GuardChange] {
        &self.accuracy_changes
    }

    /// The status as of the last tick.
    pub fn status(&self) -> &PolicyStatus {
        &self.status
    }

    fn label(&self) -> PolicyLabel {
        PolicyLabel { policy: self.name.clone() }
    }

    /// Builds the step once a runtime has answered: its config table gives the ladder.
    async fn ensure_step(&mut self, now: f64) -> Result<(), String> {
        if self.step.is_some() {
            return Ok(());
        }
        let stale = self.spec.control.stale_after().secs();
        let fresh: Vec<&RuntimeTrack> = self.tracks.iter().filter(|t| t.is_fresh(now, stale)).collect();
        if fresh.is_empty() {
            return Err("no runtime has answered yet".into());
        }
        // Round robin over the fresh runtimes: one whose /v1/configs fails or hangs does not
        // keep the policy from ever loading its table.
        let url = fresh[self.table_tries % fresh.len()].url.clone();
        self.table_tries += 1;
        let view = self.client.configs(&url).await.map_err(|e| e.to_string())?;
        let table = ConfigTable { model: view.model.clone(), configs: view.configs };
        let steering = Steering::new(&self.spec, &table).map_err(|e| {
            let e = e.to_string();
            // A table this policy cannot use (no full model, no cost, a relative floor without
            // the full model's accuracy) would otherwise only show in the status; logged once
            // per distinct error, not every tick, since the step is retried every tick.
            if self.status.last_error.as_ref() != Some(&e) {
                tracing::warn!(policy = %self.name, model = %table.model, error = %e, "cannot steer with this config table");
            }
            e
        })?;
        self.status.model = Some(view.model);
        self.status.ladder = steering.law.ladder.rungs().iter().map(|r| r.id.clone()).collect();
        tracing::info!(policy = %self.name, model = %table.model, ladder = ?self.status.ladder, "config table loaded");
        self.metrics.accuracy_floor.get_or_create(&self.label()).set(steering.law.ladder.floor());
        self.metrics.accuracy_excluded.get_or_create(&self.label()).set(0);
        self.step = Some(ControlStep::new(steering));
        Ok(())
    }

    /// One tick at `now` (seconds on the controller's monotonic clock): observe, step, push;
    /// its duration goes to `dyce_controller_tick_duration_seconds`.
    pub async fn tick(&mut self, now: f64) -> Option<Decision> {
        let started = std::time::Instant::now();
        let decision = self.tick_once(now).await;
        self.metrics.tick_duration.get_or_create(&self.label()).observe(started.elapsed().as_secs_f64());
        decision
    }

    async fn tick_once(&mut self, now: f64) -> Option<Decision> {
        let before: HashMap<String, u64> = self
            .tracks
            .iter()
            .filter_map(|t| Some((t.url.clone(), t.last.as_ref()?.1.active.generation)))
            .collect();
        self.source.poll(&mut self.tracks, now).await;
        self.note_restarts(&before);
        for o in self.pusher.drain() {
            self.pushed(o, now);
        }
        if let Err(e) = self.ensure_step(now).await {
            self.status.last_error = Some(e);
            self.publish_counts(RuntimeCounts {
                unknown: self.tracks.iter().filter(|t| t.last.is_none()).count(),
                stale: self.tracks.iter().filter(|t| t.last.is_some()).count(),
                fresh: 0,
            });
            return None;
        }
        let step = self.step.as_mut().expect("ensured");
        let obs = match self.source.observe(&self.tracks, step.steering(), now).await {
            Ok(o) => {
                self.status.signal_error = None;
                if std::mem::take(&mut self.source_failing) {
                    tracing::info!(policy = %self.name, "signal source answering again");
                }
                o
            }
            Err(e) => {
                self.metrics.api_error(self.source_api);
                if !std::mem::replace(&mut self.source_failing, true) {
                    tracing::warn!(policy = %self.name, error = %e, "signal source did not answer");
                }
                self.status.signal_error = Some(e.to_string());
                Observation::Missing
            }
        };
        let out = step.step(&self.tracks, &obs, now);
        self.accuracy_changes.clone_from(&out.accuracy);
        for c in &out.accuracy {
            if c.last_resort {
                tracing::warn!(policy = %self.name, config = %c.config, reason = %c.message, "live accuracy of the richest config: {}", if c.excluded { "under the floor" } else { "recovered" });
            } else if c.excluded {
                tracing::warn!(policy = %self.name, config = %c.config, reason = %c.message, "config excluded: live accuracy under the floor");
            } else {
                tracing::info!(policy = %self.name, config = %c.config, reason = %c.message, "config allowed again: live accuracy recovered");
            }
        }
        if !out.accuracy.is_empty() {
            self.status.accuracy_excluded = step.excluded();
            let n = self.status.accuracy_excluded.len() as i64;
            self.metrics.accuracy_excluded.get_or_create(&PolicyLabel { policy: self.name.clone() }).set(n);
            let only_full =
                step.steering().law.ladder.len() == 1 && !self.status.accuracy_excluded.is_empty();
            self.status.accuracy_note = step.full_under_floor().map(str::to_string).or_else(|| {
                only_full.then(|| {
                    "no configuration but the full model meets the accuracy floor on live data: serving the full model".into()
                })
            });
            if let Some(note) = &self.status.accuracy_note {
                tracing::warn!(policy = %self.name, "{note}");
            }
        }
        let missing = matches!(obs, Observation::Missing);
        if missing != std::mem::replace(&mut self.holding, missing) {
            if missing {
                let (fresh, all) = (out.counts.fresh, self.tracks.len());
                tracing::warn!(
                    policy = %self.name, config = %out.record.config, direction = out.record.direction,
                    fresh, runtimes = all, "no fresh signals: onMissingSignals decides until they are back"
                );
            } else {
                tracing::info!(policy = %self.name, fresh = out.counts.fresh, "signals back: steering by the load");
            }
        }
        let (d, record) = (&out.decision, &out.record);
        if d.direction == Direction::Hold {
            tracing::debug!(policy = %self.name, config = %record.config, reason = %d.reason, "hold");
        } else {
            tracing::info!(
                policy = %self.name, direction = d.direction.as_str(), config = %record.config, rank = d.rank,
                reason = %d.reason, saturated = d.saturated, offered = ?record.offered_per_second,
                latency = ?record.observed_latency, "decision"
            );
            self.status.changes.push_back(record.clone());
            if self.status.changes.len() > KEPT_CHANGES {
                self.status.changes.pop_front();
            }
        }
        self.record_metrics(d, record, out.counts);
        self.status.last = Some(out.record.clone());
        if !self.dry_run {
            let id = &out.record.config;
            for target in out.pushes {
                let url = target.url.clone();
                if self.pusher.submit(target, id) && self.restarted.remove(&url) {
                    tracing::info!(policy = %self.name, runtime = %url, config = %id, "re-pushing the config to a restarted runtime");
                }
            }
            // A runtime that restarted on the decided config needs no push.
            let pusher = &self.pusher;
            self.restarted.retain(|url| pusher.busy(url));
        }
        Some(out.decision)
    }

    /// Runtimes whose generation went back since the last tick: they restarted on their default
    /// config, which the step will correct.
    fn note_restarts(&mut self, before: &HashMap<String, u64>) {
        for t in &self.tracks {
            let (Some(&was), Some((_, r))) = (before.get(&t.url), t.last.as_ref()) else { continue };
            if r.active.generation < was {
                tracing::info!(
                    policy = %self.name, runtime = %t.url, generation = r.active.generation, was,
                    config = %r.active.id, "runtime restarted"
                );
                self.restarted.insert(t.url.clone());
            }
        }
    }

    /// A push's outcome, as it comes back from the runtime's worker. A failing runtime is
    /// logged when it starts failing, then every [`FAILING_LOG_EVERY`] seconds with a count,
    /// and when it succeeds again: not every tick.
    fn pushed(&mut self, o: PushOutcome, now: f64) {
        let track = self.tracks.iter_mut().find(|t| t.url == o.url);
        match o.result {
            Ok(active) => {
                if let Some((n, _)) = self.failing.remove(&o.url) {
                    tracing::info!(policy = %self.name, runtime = %o.url, config = %o.id, failed_pushes = n, "push succeeded again");
                }
                // A poll that already saw a newer generation wins over this answer.
                if let Some((_, r)) = track.and_then(|t| t.last.as_mut()) {
                    if r.active.generation <= active.generation {
                        r.active = active;
                    }
                }
            }
            Err(e) => {
                let (n, logged) = self.failing.entry(o.url.clone()).or_insert((0, f64::NEG_INFINITY));
                *n += 1;
                if *n == 1 {
                    *logged = now;
                    tracing::warn!(policy = %self.name, runtime = %o.url, config = %o.id, error = %e, attempts = o.attempts, "push failed");
                } else if now - *logged >= FAILING_LOG_EVERY {
                    *logged = now;
                    tracing::warn!(policy = %self.name, runtime = %o.url, config = %o.id, error = %e, failed_pushes = *n, "push still failing");
                } else {
                    tracing::debug!(policy = %self.name, runtime = %o.url, error = %e, failed_pushes = *n, "push failed");
                }
                self.metrics.push_errors.get_or_create(&self.label()).inc();
                self.metrics.api_error("runtime");
                self.status.push_errors += 1;
                self.status.last_error = Some(e.to_string());
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
        self.status.runtime_error = self.tracks.iter().find_map(|t| t.last_error.clone());
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
            // The law caps the count; the conversion saturates rather than wrap to -1 regardless.
            m.desired_replicas.get_or_create(&label).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.publish_counts(counts);
    }
}
