//! `dyce control --kubernetes`: the flags and the start-up of the Kubernetes-mode controller.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use dyce_controller::kube::lease::LeaseConfig;
use dyce_controller::kube::{connect, run_kubernetes, KubeConfig};

use crate::cmd::serve::cancel_on_signal;

/// Flags of Kubernetes mode (ignored without `--kubernetes`).
#[derive(Args, Debug)]
#[command(next_help_heading = "Kubernetes mode")]
pub struct KubeArgs {
    /// Steer the runtime pods selected by SloPolicy resources (kubeconfig from KUBECONFIG,
    /// ~/.kube/config or the pod's service account) instead of a policy file.
    #[arg(long, env = "DYCE_KUBERNETES")]
    pub kubernetes: bool,
    /// Watch SloPolicies and pods in this namespace only (default: all namespaces).
    #[arg(long, env = "DYCE_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Watch only pods with these labels (`key=value,...`); narrows the pod cache on large clusters.
    #[arg(long, env = "DYCE_POD_SELECTOR")]
    pod_selector: Option<String>,
    /// Admin port of runtime pods that do not name a container port `admin`.
    #[arg(long, env = "DYCE_ADMIN_PORT", default_value_t = 9090)]
    admin_port: u16,
    /// Name of the leader-election Lease.
    #[arg(long, env = "DYCE_LEASE_NAME", default_value = "dyce-controller")]
    lease_name: String,
    /// Namespace of the Lease (default: POD_NAMESPACE, else --namespace, else `default`).
    #[arg(long, env = "DYCE_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Lease duration in seconds: how long a standby waits for a leader that stopped renewing.
    #[arg(long, env = "DYCE_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// This replica's identity in the Lease (default: POD_NAME, else the host name).
    #[arg(long, env = "DYCE_IDENTITY")]
    identity: Option<String>,
    /// Longest time between two status writes while only the numbers change, in seconds.
    #[arg(long, env = "DYCE_STATUS_REFRESH", default_value_t = 10)]
    status_refresh: u64,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn identity(a: &KubeArgs) -> String {
    a.identity
        .clone()
        .or_else(|| env_nonempty("POD_NAME"))
        .or_else(|| env_nonempty("HOSTNAME"))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| format!("dyce-controller-{}", std::process::id()))
}

/// Runs the Kubernetes-mode controller until SIGTERM or Ctrl-C.
pub fn run(a: &KubeArgs, listen: SocketAddr, admin_token: Option<String>, dry_run: bool) -> Result<()> {
    anyhow::ensure!(a.lease_seconds >= 2, "--lease-seconds must be at least 2");
    let lease_namespace = a
        .lease_namespace
        .clone()
        .or_else(|| env_nonempty("POD_NAMESPACE"))
        .or_else(|| a.namespace.clone())
        .unwrap_or_else(|| "default".into());
    let cfg = KubeConfig {
        namespace: a.namespace.clone(),
        pod_label_selector: a.pod_selector.clone(),
        fallback_admin_port: a.admin_port,
        admin_token,
        dry_run,
        lease: LeaseConfig {
            name: a.lease_name.clone(),
            identity: identity(a),
            duration: Duration::from_secs(a.lease_seconds),
        },
        lease_namespace,
        status_refresh: Duration::from_secs(a.status_refresh.max(1)),
    };
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    tokio.block_on(async move {
        let client = connect().await?;
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        println!("{}", serde_json::json!({"controller": listener.local_addr()?.to_string()}));
        run_kubernetes(cfg, client, listener, cancel_on_signal()).await?;
        anyhow::Ok(())
    })
}
