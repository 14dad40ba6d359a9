//! The live part of the demo: the capacity probe and the three runs of the same trace, each on a
//! fresh runtime (and controller) in this process.
//!
//! The stack and the load generator run on two tokio runtimes of their own, as they would in
//! two processes, so neither's tasks queue behind the other's; they still share the cores,
//! which is the point of measuring capacity through HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::tools::load::images::LabelledImages;
use anyhow::{Context, Result};
use dyce_control_core::policy::PolicyDocument;
use dyce_runtime::model::Bundle;
use dyce_runtime::service::ServeConfig;
use tokio::runtime::Runtime;

use super::analysis::{Change, RunData};
use super::capacity::{probe, Probe};
use super::stack::{poll_config, put_config, status};
use super::Scenario;
use crate::cmd::stack::Stack;
use crate::tools::load::profile::Profile;
use crate::tools::load::schedule::Arrivals;
use crate::tools::load::{run_load, LoadConfig};

/// How often the runtime's active config is polled: the resolution of the applied reaction time.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// One of the three runs.
pub struct Variant {
    /// Row name.
    pub name: String,
    /// Short key (file names, JSON).
    pub key: &'static str,
    /// Config the runtime starts on.
    pub initial: String,
    /// Whether the controller steers.
    pub controller: bool,
}

/// The capacity the trace is scaled by.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    /// Full-model requests/s through HTTP.
    pub full: f64,
    /// Cheapest allowed config's requests/s through HTTP (when probed).
    pub cheapest: Option<f64>,
    /// Probed here (false: given by --capacity).
    pub measured: bool,
    /// The probes, when measured.
    pub probes: Option<(Probe, Probe)>,
}

impl Capacity {
    /// For report.json.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "full_per_second": self.full, "cheapest_per_second": self.cheapest, "measured": self.measured,
            "probes": self.probes.map(|(a, b)| [a.json(), b.json()]),
        })
    }
}

/// What every run needs.
pub struct Env {
    stack_rt: Runtime,
    load_rt: Runtime,
    bundle: Bundle,
    serve: ServeConfig,
    policy: PolicyDocument,
    images: Arc<LabelledImages>,
}

fn tokio(name: &str) -> Result<Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()?)
}

impl Env {
    /// Two tokio runtimes and the inputs: `images` are the labelled test images to send.
    pub fn new(
        bundle: Bundle,
        serve: ServeConfig,
        policy: PolicyDocument,
        images: Arc<LabelledImages>,
    ) -> Result<Env> {
        let (stack_rt, load_rt) = (tokio("demo-stack")?, tokio("demo-load")?);
        Ok(Env { stack_rt, load_rt, bundle, serve, policy, images })
    }

    fn start(&self, initial: &str, controller: bool) -> Result<Stack> {
        let serve = ServeConfig { initial_config: Some(initial.to_string()), ..self.serve.clone() };
        let policy = controller.then(|| self.policy.clone());
        self.stack_rt.block_on(super::stack::start(self.bundle.clone(), serve, policy))
    }

    /// The capacity: given, or probed on the full model and then on the cheapest config.
    pub fn capacity(&self, sc: &Scenario, full: &str, cheapest: &str) -> Result<Capacity> {
        if let Some(c) = sc.capacity {
            return Ok(Capacity { full: c, cheapest: None, measured: false, probes: None });
        }
        eprintln!(
            "== capacity probe: {:.1} s closed loop on {full}, then on {cheapest} ==",
            sc.probe_seconds
        );
        let stack = self.start(full, false)?;
        let model = self.bundle.manifest.name.clone();
        let probes = self.load_rt.block_on(async {
            let a =
                probe(&stack.data_url, &model, self.images.clone(), sc.probe_seconds, sc.encoding).await?;
            put_config(&stack, cheapest).await?;
            let b =
                probe(&stack.data_url, &model, self.images.clone(), sc.probe_seconds, sc.encoding).await?;
            anyhow::Ok((a, b))
        });
        self.load_rt.block_on(stack.stop())?;
        let (a, b) = probes?;
        anyhow::ensure!(a.ok_per_second > 0.0, "the capacity probe got no answers");
        Ok(Capacity {
            full: a.ok_per_second,
            cheapest: Some(b.ok_per_second),
            measured: true,
            probes: Some((a, b)),
        })
    }

    /// One run of the trace on a fresh stack; `capacity` scales the trace.
    pub fn run(&self, v: &Variant, sc: &Scenario, capacity: f64) -> Result<RunData> {
        let load = LoadConfig {
            url: String::new(),
            model: Some(self.bundle.manifest.name.clone()),
            profile_text: format!(
                "step:{:.1},{:.1},{},{}",
                sc.base * capacity,
                sc.peak * capacity,
                sc.burst.0,
                sc.burst.1
            ),
            profile: Profile::Step {
                low: sc.base * capacity,
                high: sc.peak * capacity,
                at: sc.burst.0,
                until: sc.burst.1,
            },
            arrivals: Arrivals::Poisson,
            duration: sc.duration,
            images_per_request: 1,
            encoding: sc.encoding,
            seed: sc.seed,
            max_in_flight: 4096,
            timeout: Duration::from_secs_f64(sc.timeout),
            slo_ms: Some(self.policy.spec.objective.latency.threshold.secs() * 1e3),
            log: None,
            log_format: None,
            drift: None,
            feedback: 0.0,
        };
        let stack = self.start(&v.initial, v.controller)?;
        let load = LoadConfig { url: stack.data_url.clone(), ..load };
        let stop = tokio_util::sync::CancellationToken::new();
        let origin = Instant::now();
        let (run, samples, cpu_burst) = self.load_rt.block_on(async {
            let poller = tokio::spawn(poll_config(stack.admin_url.clone(), origin, POLL_EVERY, stop.clone()));
            let cpu = tokio::spawn(cpu_during(origin, sc.burst));
            let run = run_load(&load, self.images.clone(), None).await;
            stop.cancel();
            // The burst ends before the run does; a run that failed early leaves no measurement
            // (and its measuring task is stopped rather than left to wake up later).
            let cpu_burst = if cpu.is_finished() {
                cpu.await.ok().flatten()
            } else {
                cpu.abort();
                None
            };
            (run, poller.await.unwrap_or_default(), cpu_burst)
        });
        let status = self.load_rt.block_on(status(&stack));
        let controller_started = stack.controller.as_ref().map(|c| c.1);
        self.load_rt.block_on(stack.stop())?;
        let run = run.with_context(|| format!("run {}", v.name))?;
        // Everything on the load's time axis: 0 is the schedule's start.
        let since = |i: Instant| {
            i.saturating_duration_since(run.started).as_secs_f64()
                - run.started.saturating_duration_since(i).as_secs_f64()
        };
        let poll_offset = since(origin);
        let samples =
            samples.into_iter().map(|s| super::stack::ConfigSample { t: s.t + poll_offset, ..s }).collect();
        let mut changes = Vec::new();
        if let (Some(status), Some(started)) = (status?, controller_started) {
            let offset = since(started);
            for c in status["changes"].as_array().into_iter().flatten() {
                changes.push(Change {
                    t: c["at"].as_f64().unwrap_or(f64::NAN) + offset,
                    config: c["config"].as_str().unwrap_or_default().to_string(),
                    direction: c["direction"].as_str().unwrap_or_default().to_string(),
                    reason: c["reason"].as_str().unwrap_or_default().to_string(),
                    saturated: c["saturated"].as_bool().unwrap_or(false),
                });
            }
        }
        Ok(RunData {
            name: v.name.clone(),
            key: v.key,
            initial: v.initial.clone(),
            records: run.records,
            summary: run.summary,
            samples,
            changes,
            cpu_burst,
        })
    }
}

/// Cores busy by thread group over the burst `[from, to)` seconds after `origin`.
async fn cpu_during(origin: Instant, (from, to): (f64, f64)) -> Option<super::cpu::CoresBusy> {
    let at = |s: f64| tokio::time::Instant::from_std(origin + Duration::from_secs_f64(s));
    tokio::time::sleep_until(at(from)).await;
    let a = super::cpu::snapshot();
    tokio::time::sleep_until(at(to)).await;
    super::cpu::between(&a, &super::cpu::snapshot(), to - from)
}
