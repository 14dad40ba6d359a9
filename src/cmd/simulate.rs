//! `dyce control simulate`: the real control step against simulated runtimes under a load trace,
//! optionally with live accuracy (shadow checks, feedback) and a drift of the traffic.

use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use dyce_control_core::api::ConfigTable;
use dyce_control_core::ladder::Ladder;
use dyce_control_core::law::{Law, LawParams};
use dyce_control_core::policy::{AccuracySource, PolicyDocument};
use dyce_control_core::sim::{simulate, SimConfig, SimDrift, SimLive, Trace};

/// Arguments of `dyce control simulate`.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// SloPolicy file (YAML): the law's parameters, and with `spec.accuracy.source: live` the
    /// live accuracy guard.
    #[arg(long, env = "DYCE_POLICY", default_value = "policies/default.yaml")]
    policy: PathBuf,
    /// Model bundle whose configs.json gives the ladder (default: the embedded model).
    #[arg(long, env = "DYCE_MODEL")]
    model: Option<PathBuf>,
    /// Load trace: `step:LOW,HIGH,UP_AT,DOWN_AT,END` or `constant:RATE,END`, rates as
    /// multiples of the full model's capacity, times in seconds.
    #[arg(long, env = "DYCE_TRACE", default_value = "step:0.5,2,20,50,80")]
    trace: String,
    /// Relative noise on the rate, changed every second (0.1 = ±10 %).
    #[arg(long, env = "DYCE_NOISE", default_value_t = 0.0)]
    noise: f64,
    /// Simulated runtimes.
    #[arg(long, env = "DYCE_SIM_RUNTIMES", default_value_t = 1)]
    runtimes: usize,
    /// Full-model images per second of one runtime at full batches.
    #[arg(long, env = "DYCE_SIM_CAPACITY", default_value_t = 3000.0)]
    capacity: f64,
    /// Seed of arrivals and routing (and of the live accuracy draws).
    #[arg(long, env = "DYCE_SEED", default_value_t = 1)]
    seed: u64,
    /// A shift of the traffic: `AT:ID=ACCURACY[,ID=ACCURACY...]` gives the listed configs that
    /// real accuracy from AT seconds on (the others keep their table accuracy), e.g.
    /// `60:c00=0.85,c01=0.86,full=0.91`. What a config loses beyond the full model shows in
    /// shadow checks; the full model's own loss only in feedback.
    #[arg(long, env = "DYCE_SIM_DRIFT")]
    drift: Option<String>,
    /// Share of answered images the simulated runtimes shadow-check (as `dyce serve
    /// --shadow-rate`; 0: no live accuracy).
    #[arg(long, env = "DYCE_SIM_SHADOW_RATE", default_value_t = 0.02)]
    shadow_rate: f64,
    /// Share of answered images whose true label comes back (as `dyce load --feedback`).
    #[arg(long, env = "DYCE_SIM_FEEDBACK", default_value_t = 0.0)]
    feedback: f64,
    /// Half-life of the live counts in seconds (as `dyce serve --shadow-half-life`).
    #[arg(long, env = "DYCE_SIM_SHADOW_HALF_LIFE", default_value_t = 120.0)]
    shadow_half_life: f64,
}

impl SimulateArgs {
    /// Live accuracy of the simulated runtimes; `None` when neither shadow checks nor feedback
    /// are on.
    fn live(&self, policy: Option<&AccuracySource>, table: &ConfigTable) -> Result<Option<SimLive>> {
        ensure!((0.0..=1.0).contains(&self.shadow_rate), "--shadow-rate must be in [0, 1]");
        ensure!((0.0..=1.0).contains(&self.feedback), "--feedback must be in [0, 1]");
        ensure!(
            self.shadow_half_life > 0.0 && self.shadow_half_life <= 86_400.0,
            "--shadow-half-life must be in (0, 86400] seconds"
        );
        let drift = self.drift.as_deref().map(str::parse::<SimDrift>).transpose()?;
        if self.shadow_rate == 0.0 && self.feedback == 0.0 {
            ensure!(drift.is_none(), "--drift needs --shadow-rate or --feedback above 0 to be seen");
            return Ok(None);
        }
        let live = SimLive {
            source: policy.filter(|a| a.is_live()).cloned(),
            shadow_rate: self.shadow_rate,
            feedback: self.feedback,
            half_life: self.shadow_half_life,
            table: table.clone(),
            drift,
        };
        live.validate()?;
        Ok(Some(live))
    }
}

/// Runs `dyce control simulate`.
pub fn simulate_cmd(a: &SimulateArgs) -> Result<()> {
    let doc = PolicyDocument::load(&a.policy).with_context(|| format!("policy {}", a.policy.display()))?;
    let bundle = crate::cmd::serve::load_bundle(a.model.as_deref())?;
    let ladder = Ladder::new(&bundle.configs, doc.spec.accuracy_limits())?;
    if !(a.capacity.is_finite() && a.capacity > 0.0) || a.runtimes == 0 {
        bail!("--capacity and --runtimes must be positive");
    }
    let sim = SimConfig {
        runtimes: a.runtimes,
        full_seconds_per_image: 1.0 / a.capacity,
        seed: a.seed,
        live: a.live(doc.spec.accuracy.as_ref(), &bundle.configs)?,
        ..Default::default()
    };
    let mut trace = parse_trace(&a.trace, sim.full_capacity())?;
    if a.noise > 0.0 {
        trace = trace.with_noise(a.noise, 1.0, a.seed);
    }
    let c = &doc.spec.control;
    let q = doc.spec.objective.latency.quantile;
    let law = Law::new(LawParams::from_spec(&doc.spec), ladder);
    let r = simulate(&law, &sim, &trace, c.interval.secs(), q, c.stale_after().secs());
    let live = sim.live.is_some();
    println!("second  offered  good%   shed  late  cost{}  config", if live { "  real acc" } else { "" });
    for w in &r.windows {
        let rank = r.ranks.iter().rev().find(|(t, _)| *t <= w.start + 1.0).map_or(law.ladder.top(), |x| x.1);
        let acc = if live { format!("  {:>8.4}", w.mean_real_accuracy) } else { String::new() };
        println!(
            "{:>6.0} {:>8} {:>6.2} {:>6} {:>5} {:>5.2}{acc}  {}",
            w.start,
            w.offered,
            100.0 * w.good as f64 / w.offered.max(1) as f64,
            w.shed,
            w.timed_out,
            w.mean_cost_ratio,
            law.ladder.rung(rank).id
        );
    }
    for (t, g) in &r.accuracy {
        let what = match (g.excluded, g.last_resort) {
            (true, false) => "excluded",
            (false, false) => "back",
            (true, true) => "under the floor, served anyway",
            (false, true) => "recovered",
        };
        println!("{t:>7.1} s  {} {what}: {}", g.config, g.message);
    }
    println!(
        "attainment {:.4} over {} windows; {} config changes; {} saturated ticks",
        r.attainment(q, 0.0, trace.duration),
        r.windows.len(),
        r.changes.len(),
        r.saturated_ticks
    );
    if let Some(l) = &sim.live {
        let at = l.drift.as_ref().map_or(trace.duration, |d| d.at);
        let fmt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.4}"));
        println!(
            "real accuracy {} before the drift, {} after (floor {:.4}, accuracy source {})",
            fmt(r.real_accuracy(0.0, at)),
            fmt(r.real_accuracy(at, trace.duration)),
            law.ladder.floor(),
            if l.source.is_some() { "live" } else { "offline" }
        );
    }
    Ok(())
}

fn parse_trace(spec: &str, capacity: f64) -> Result<Trace> {
    let (kind, rest) = spec.split_once(':').context("--trace must look like step:0.5,2,20,50,80")?;
    let v: Vec<f64> = rest
        .split(',')
        .map(|x| x.trim().parse::<f64>().with_context(|| format!("--trace: {x:?} is not a number")))
        .collect::<Result<_>>()?;
    match (kind, v.as_slice()) {
        ("step", [lo, hi, up, down, end]) if up < down && down < end => {
            Ok(Trace::step(lo * capacity, hi * capacity, *up, *down, *end))
        }
        ("constant", [rate, end]) if *end > 0.0 => Ok(Trace::constant(rate * capacity, *end)),
        _ => {
            bail!("--trace: expected step:LOW,HIGH,UP_AT,DOWN_AT,END (increasing times) or constant:RATE,END")
        }
    }
}
