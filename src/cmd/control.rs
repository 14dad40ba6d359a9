//! `dyce control` (local controller), `dyce control simulate`, and `dyce policy`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use dyce_control_core::ladder::Ladder;
use dyce_control_core::law::{Law, LawParams};
use dyce_control_core::policy::PolicyDocument;
use dyce_control_core::sim::{simulate, SimConfig, Trace};
use dyce_controller::local::{run_local, LocalConfig};
use dyce_controller::prom::PromConfig;

use crate::cmd::serve::{cancel_on_signal, read_token};

/// Arguments of `dyce control`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ControlArgs {
    #[command(subcommand)]
    sub: Option<ControlSub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum ControlSub {
    /// Run the control law against simulated runtimes under a load trace (no processes).
    Simulate(SimulateArgs),
}

/// Arguments of the local controller.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// SloPolicy file (YAML).
    #[arg(long, env = "DYCE_POLICY", default_value = "policies/default.yaml")]
    policy: PathBuf,
    /// Admin URL of a runtime to steer (repeatable); replaces the policy's spec.runtimes.
    #[arg(long = "runtime", env = "DYCE_RUNTIMES", value_delimiter = ',')]
    runtimes: Vec<String>,
    /// Address of the controller's own endpoints (/metrics, /healthz, /readyz, /v1/status).
    #[arg(long, env = "DYCE_CONTROLLER_ADDR", default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// File holding the bearer token of the runtimes' admin ports.
    #[arg(long, env = "DYCE_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Decide and log, but push nothing.
    #[arg(long, env = "DYCE_DRY_RUN")]
    dry_run: bool,
    /// Read the signals with PromQL from this Prometheus (which scrapes the runtimes) instead of
    /// polling each runtime's /v1/load.
    #[arg(long, env = "DYCE_PROMETHEUS")]
    prometheus: Option<String>,
    /// Label matchers selecting the runtimes' series in Prometheus.
    #[arg(long, env = "DYCE_PROMETHEUS_SELECTOR", default_value = "job=\"dyce-runtime\"")]
    prometheus_selector: String,
    /// Window of the PromQL rates and quantiles, in seconds (at least two scrape intervals).
    #[arg(long, env = "DYCE_PROMETHEUS_WINDOW", default_value_t = 10)]
    prometheus_window: u64,
    #[command(flatten)]
    kube: crate::cmd::control_kube::KubeArgs,
}

/// Arguments of `dyce control simulate`.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// SloPolicy file (YAML): the law's parameters.
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
    /// Seed of arrivals and routing.
    #[arg(long, env = "DYCE_SEED", default_value_t = 1)]
    seed: u64,
}

/// `dyce policy`.
#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(subcommand)]
    sub: PolicySub,
}

#[derive(Subcommand, Debug)]
enum PolicySub {
    /// Validate a policy file; prints the effective policy with defaults filled in.
    Check {
        /// SloPolicy file (YAML).
        file: PathBuf,
    },
    /// Print the JSON schema of policy files.
    Schema,
}

fn load_policy(path: &Path) -> Result<PolicyDocument> {
    PolicyDocument::load(path).with_context(|| format!("policy {}", path.display()))
}

/// Runs `dyce policy`.
pub fn policy(args: &PolicyArgs) -> Result<()> {
    match &args.sub {
        PolicySub::Check { file } => {
            let doc = load_policy(file)?;
            println!("{}", serde_norway::to_string(&doc).context("printing the policy")?);
            eprintln!("{}: ok", file.display());
        }
        PolicySub::Schema => println!("{}", serde_json::to_string_pretty(&PolicyDocument::json_schema())?),
    }
    Ok(())
}

/// Runs `dyce control`.
pub fn run(args: &ControlArgs) -> Result<()> {
    if let Some(ControlSub::Simulate(s)) = &args.sub {
        return simulate_cmd(s);
    }
    let a = &args.run;
    if a.kube.kubernetes {
        return crate::cmd::control_kube::run(
            &a.kube,
            a.listen,
            read_token(a.admin_token_file.as_deref())?,
            a.dry_run,
        );
    }
    let cfg = LocalConfig {
        policy: load_policy(&a.policy)?,
        runtimes: a.runtimes.clone(),
        admin_token: read_token(a.admin_token_file.as_deref())?,
        dry_run: a.dry_run,
        prometheus: a.prometheus.as_ref().map(|url| PromConfig {
            url: url.clone(),
            selector: a.prometheus_selector.clone(),
            window: Duration::from_secs(a.prometheus_window.max(1)),
            timeout: Duration::from_secs(2),
        }),
    };
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    tokio.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(a.listen).await.with_context(|| format!("binding {}", a.listen))?;
        println!("{}", serde_json::json!({"controller": listener.local_addr()?.to_string()}));
        run_local(cfg, listener, cancel_on_signal()).await?;
        anyhow::Ok(())
    })
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

fn simulate_cmd(a: &SimulateArgs) -> Result<()> {
    let doc = load_policy(&a.policy)?;
    let bundle = crate::cmd::serve::load_bundle(a.model.as_deref())?;
    let ladder = Ladder::new(&bundle.configs, doc.spec.accuracy_limits())?;
    if !(a.capacity.is_finite() && a.capacity > 0.0) || a.runtimes == 0 {
        bail!("--capacity and --runtimes must be positive");
    }
    let sim = SimConfig {
        runtimes: a.runtimes,
        full_seconds_per_image: 1.0 / a.capacity,
        seed: a.seed,
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
    println!("second  offered  good%   shed  late  cost  config");
    for w in &r.windows {
        let rank = r.ranks.iter().rev().find(|(t, _)| *t <= w.start + 1.0).map_or(law.ladder.top(), |x| x.1);
        println!(
            "{:>6.0} {:>8} {:>6.2} {:>6} {:>5} {:>5.2}  {}",
            w.start,
            w.offered,
            100.0 * w.good as f64 / w.offered.max(1) as f64,
            w.shed,
            w.timed_out,
            w.mean_cost_ratio,
            law.ladder.rung(rank).id
        );
    }
    println!(
        "attainment {:.4} over {} windows; {} config changes; {} saturated ticks",
        r.attainment(q, 0.0, trace.duration),
        r.windows.len(),
        r.changes.len(),
        r.saturated_ticks
    );
    Ok(())
}
