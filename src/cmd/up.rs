//! `dyce up`: a runtime with the embedded model and a controller with the default policy, on
//! loopback, in one process: the quickest way to see dyce steer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use dyce_control_core::policy::PolicyDocument;

use crate::cmd::serve::{bind, cancel_on_signal, load_bundle, OptionalAddr};
use crate::cmd::stack::{Listeners, Stack};

/// The policy `dyce up` uses unless given another.
pub const DEFAULT_POLICY: &str = include_str!("../../policies/default.yaml");

/// Arguments of `dyce up`.
#[derive(Args, Debug)]
pub struct UpArgs {
    /// Model bundle directory (default: the embedded Fashion-MNIST ResNet-20).
    #[arg(long, env = "DYCE_MODEL")]
    model: Option<PathBuf>,
    /// SloPolicy file (default: policies/default.yaml, built in).
    #[arg(long, env = "DYCE_POLICY")]
    policy: Option<PathBuf>,
    /// Data port (OIP v2 inference, /v1/classify).
    #[arg(long, env = "DYCE_DATA_ADDR", default_value = "127.0.0.1:8080")]
    data_addr: SocketAddr,
    /// gRPC port (KServe v2 `GRPCInferenceService`); `off` or empty serves none.
    #[arg(long, env = "DYCE_GRPC_ADDR", default_value = "127.0.0.1:8081", value_parser = OptionalAddr::parse)]
    grpc_addr: OptionalAddr,
    /// Runtime admin port (loopback only: `up` sets no token).
    #[arg(long, env = "DYCE_ADMIN_ADDR", default_value = "127.0.0.1:9090")]
    admin_addr: SocketAddr,
    /// Controller endpoints (/metrics, /healthz, /readyz, /v1/status).
    #[arg(long, env = "DYCE_CONTROLLER_ADDR", default_value = "127.0.0.1:9100")]
    controller_addr: SocketAddr,
    #[command(flatten)]
    engine: crate::cmd::serve::EngineFlags,
}

/// The policy file at `path`, or the built-in default policy.
pub fn policy_or_default(path: Option<&std::path::Path>) -> Result<PolicyDocument> {
    match path {
        Some(p) => PolicyDocument::load(p).with_context(|| format!("policy {}", p.display())),
        None => PolicyDocument::parse(DEFAULT_POLICY).context("the built-in default policy"),
    }
}

/// Runs `dyce up` until SIGTERM or Ctrl-C.
pub fn run(args: &UpArgs) -> Result<()> {
    anyhow::ensure!(args.admin_addr.ip().is_loopback(), "dyce up keeps the admin port on loopback");
    let policy = policy_or_default(args.policy.as_deref())?;
    let bundle = load_bundle(args.model.as_deref())?;
    let cfg = args.engine.serve_config();
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    tokio.block_on(async move {
        let stop = cancel_on_signal();
        let data = bind(args.data_addr).await?;
        let admin = bind(args.admin_addr).await?;
        let ctl = bind(args.controller_addr).await?;
        println!("{}", serde_json::json!({"controller": ctl.local_addr()?.to_string()}));
        let grpc = args.grpc_addr.bind().await?;
        let listeners = Listeners { data, admin, grpc, controller: Some(ctl) };
        let stack = Stack::start(bundle, &cfg, Some(policy), listeners, stop)?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let grpc = args.grpc_addr.0.map_or_else(String::new, |g| format!(" and gRPC on {g}"));
        eprintln!(
            "dyce up: inference on http://{}/v2/models/{{model}}/infer{grpc}; controller status on http://{}/v1/status; Ctrl-C stops",
            args.data_addr, args.controller_addr
        );
        stack.join().await
    })
}
