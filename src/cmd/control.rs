//! `dyce control` (local controller), `dyce control simulate`, and `dyce policy`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use dyce_control_core::policy::PolicyDocument;
use dyce_controller::local::{run_local, LocalConfig};
use dyce_controller::prom::PromConfig;

use crate::cmd::serve::{cancel_on_signal, read_token};
use crate::cmd::simulate::{simulate_cmd, SimulateArgs};

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
