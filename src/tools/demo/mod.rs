//! `dyce demo`: proof under load. One seeded burst trace, scaled to the runtime's measured HTTP
//! capacity, served three times in this process: on the full model with no controller, on the
//! cheapest config the policy allows with no controller, and with the dyce controller steering;
//! then the same policy against HPA-like replica autoscaling in simulation. Writes a report
//! directory (REPORT.md, report.json, SVGs, per-request logs) and prints its path.
//! Described for users in `docs/demo.md`.

mod analysis;
mod capacity;
mod cpu;
mod peak;
mod plot;
mod report;
mod report_input;
mod report_md;
mod runs;
mod simulation;
mod stack;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use clap::Args;
use dyce_control_core::ladder::Ladder;
use dyce_data::fashion_mnist as data;

use crate::cmd::serve::load_bundle;
use crate::tools::load::client::Encoding;
use crate::tools::load::images::LabelledImages;
use runs::Variant;

/// Arguments of `dyce demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Model bundle directory (default: the embedded Fashion-MNIST ResNet-20).
    #[arg(long, env = "DYCE_MODEL")]
    model: Option<PathBuf>,
    /// SloPolicy file (default: policies/default.yaml, built in).
    #[arg(long, env = "DYCE_POLICY")]
    policy: Option<PathBuf>,
    /// Report directory (created; files of an earlier report in it are replaced).
    #[arg(long, env = "DYCE_DEMO_OUT", default_value = "dyce-demo")]
    out: PathBuf,
    /// Full-model capacity through HTTP in requests/s (default: measured by a closed-loop probe
    /// before the runs).
    #[arg(long, env = "DYCE_DEMO_CAPACITY")]
    capacity: Option<f64>,
    /// Base load, as a multiple of the full-model capacity.
    #[arg(long, env = "DYCE_DEMO_BASE", default_value_t = 0.5)]
    base: f64,
    /// Load during the burst, as a multiple of the full-model capacity (default: the most the
    /// policy can absorb here, its target utilisation times the cheapest allowed config's
    /// measured capacity over the full model's, at most 2).
    #[arg(long, env = "DYCE_DEMO_PEAK")]
    peak: Option<f64>,
    /// Seconds of each of the three runs.
    #[arg(long, env = "DYCE_DEMO_DURATION", default_value_t = 35.0)]
    duration: f64,
    /// Start of the burst, seconds into each run.
    #[arg(long, env = "DYCE_DEMO_BURST_AT", default_value_t = 8.0)]
    burst_at: f64,
    /// Length of the burst, seconds.
    #[arg(long, env = "DYCE_DEMO_BURST_FOR", default_value_t = 20.0)]
    burst_for: f64,
    /// Seconds of the capacity probe on each of the two static configs.
    #[arg(long, env = "DYCE_DEMO_PROBE_SECONDS", default_value_t = 3.0)]
    probe_seconds: f64,
    /// Seconds of the simulated replica-autoscaling trace.
    #[arg(long, env = "DYCE_DEMO_SIM_SECONDS", default_value_t = 600.0)]
    sim_seconds: f64,
    /// Multiplies every duration above (runs, burst, probe, simulated trace): 0.2 for a quick look.
    #[arg(long, env = "DYCE_DEMO_SCALE", default_value_t = 1.0)]
    scale: f64,
    /// Seed of the trace: arrival times and image order, the same in all three runs.
    #[arg(long, env = "DYCE_DEMO_SEED", default_value_t = 1)]
    seed: u64,
    /// Seconds a request may wait for its answer before it counts as timed out.
    #[arg(long, env = "DYCE_DEMO_TIMEOUT", default_value_t = 2.0)]
    timeout: f64,
    /// How the load generator sends images: `json` numbers or OIP `binary` tensor data (the
    /// capacity probes use the same, so the trace scales with it).
    #[arg(long, env = "DYCE_DEMO_ENCODING", value_enum, default_value_t = Encoding::Json)]
    encoding: Encoding,
    /// Directory of the Fashion-MNIST IDX files; the 10,000 test images are sent.
    #[arg(long, env = "DYCE_DATA", default_value = data::DEFAULT_DIR)]
    data: PathBuf,
    #[command(flatten)]
    engine: crate::cmd::serve::EngineFlags,
}

/// The checked scenario: every duration already scaled.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Given capacity (requests/s), if any.
    pub capacity: Option<f64>,
    /// Base and burst load, multiples of the full-model capacity.
    pub base: f64,
    /// Burst load.
    pub peak: f64,
    /// How `peak` was chosen.
    pub peak_choice: peak::PeakChoice,
    /// Seconds of each run.
    pub duration: f64,
    /// Burst `[start, end)`, seconds.
    pub burst: (f64, f64),
    /// Seconds of each capacity probe.
    pub probe_seconds: f64,
    /// Seconds of the simulated trace.
    pub sim_seconds: f64,
    /// Trace seed.
    pub seed: u64,
    /// Request timeout, seconds.
    pub timeout: f64,
    /// How requests carry their images.
    pub encoding: Encoding,
}

impl Scenario {
    /// For report.json.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "capacity": self.capacity, "base": self.base, "peak": self.peak, "peak_choice": self.peak_choice.json(),
            "duration_s": self.duration,
            "burst_s": [self.burst.0, self.burst.1], "probe_seconds": self.probe_seconds,
            "sim_seconds": self.sim_seconds, "seed": self.seed, "timeout_s": self.timeout,
            "encoding": format!("{:?}", self.encoding).to_lowercase(),
        })
    }
}

impl DemoArgs {
    fn scenario(&self) -> Result<Scenario> {
        let positive = |v: f64, name: &str| {
            ensure!(v.is_finite() && v > 0.0, "--{name} must be a positive number");
            Ok(v)
        };
        let s = positive(self.scale, "scale")?;
        let duration = positive(self.duration, "duration")? * s;
        let at = self.burst_at * s;
        let until = at + positive(self.burst_for, "burst-for")? * s;
        ensure!(self.burst_at >= 0.0 && until < duration, "the burst must end before the run does");
        if let Some(c) = self.capacity {
            positive(c, "capacity")?;
        }
        Ok(Scenario {
            capacity: self.capacity,
            base: positive(self.base, "base")?,
            // Resolved after the capacity probe when not given (`peak::choose`).
            peak: self.peak.map_or(Ok(peak::MAX_AUTO), |p| positive(p, "peak"))?,
            peak_choice: if self.peak.is_some() {
                peak::PeakChoice::Given
            } else {
                peak::PeakChoice::Fallback
            },
            duration,
            burst: (at, until),
            probe_seconds: positive(self.probe_seconds, "probe-seconds")? * s,
            sim_seconds: positive(self.sim_seconds, "sim-seconds")? * s,
            seed: self.seed,
            timeout: positive(self.timeout, "timeout")?,
            encoding: self.encoding,
        })
    }
}

/// Runs `dyce demo`.
pub fn run(args: &DemoArgs) -> Result<()> {
    let mut sc = args.scenario()?;
    let policy = crate::cmd::up::policy_or_default(args.policy.as_deref())?;
    // Local inputs first: a missing data set fails before anything starts.
    let images: Arc<LabelledImages> = Arc::new(data::load(&args.data)?.test.into());
    ensure!(!images.is_empty(), "{}: the test split is empty", args.data.display());
    let bundle = load_bundle(args.model.as_deref())?;
    let ladder = Ladder::new(&bundle.configs, policy.spec.accuracy_limits())?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let serve = args.engine.serve_config();
    let full = ladder.rung(ladder.top()).id.clone();
    let cheapest = ladder.rung(0).id.clone();
    let variants = [
        Variant { name: format!("static {full}"), key: "full", initial: full.clone(), controller: false },
        Variant {
            name: format!("static {cheapest}"),
            key: "cheapest",
            initial: cheapest.clone(),
            controller: false,
        },
        Variant { name: "dyce".into(), key: "dyce", initial: full.clone(), controller: true },
    ];
    let env = runs::Env::new(bundle.clone(), serve.clone(), policy.clone(), images)?;
    let capacity = env.capacity(&sc, &full, &cheapest)?;
    let target = policy.spec.control.target_utilization;
    let ratio = bundle.configs.configs.iter().find(|c| c.id == cheapest).and_then(|c| c.latency_ratio);
    (sc.peak, sc.peak_choice) = peak::choose(args.peak, target, &capacity, ratio);
    eprintln!(
        "dyce demo: capacity {:.0} req/s on {full}{}; trace {:.0} req/s, {:.0} req/s from {:.1} s to {:.1} s, {:.0} s per run",
        capacity.full,
        capacity.cheapest.map_or(String::new(), |c| format!(", {c:.0} req/s on {cheapest}")),
        sc.base * capacity.full,
        sc.peak * capacity.full,
        sc.burst.0,
        sc.burst.1,
        sc.duration
    );
    let mut data = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        eprintln!("== run {}/{}: {} ==", i + 1, variants.len(), v.name);
        data.push(env.run(v, &sc, capacity.full)?);
    }
    eprintln!("== simulation: HPA-like replica autoscaling with and without dyce ==");
    let sim = simulation::run(&policy, &ladder, capacity.full, &sc);
    let input = report_input::Input {
        scenario: &sc,
        policy: &policy,
        bundle: &bundle,
        serve: &serve,
        capacity,
        runs: &data,
        sim: &sim,
    };
    let table = report::write(&args.out, &input)?;
    println!("{table}");
    println!("{}", args.out.join("REPORT.md").display());
    Ok(())
}
