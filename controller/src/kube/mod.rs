//! `dyce control --kubernetes`: SloPolicy resources and runtime pods from the API server, one
//! control loop per policy, status and Events on the resource, a Lease so one replica acts.
//!
//! The control law and the loop are the same as in local mode (`PolicyLoop`); this module only
//! finds the runtimes (pods matching the policy's selector) and reports back to Kubernetes.

pub mod discovery;
pub mod lease;
pub mod resource;
pub mod status;
mod task;
mod view;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::ControllerMetrics;
use crate::server;
use dyce_control_core::policy::SloPolicySpec;
use lease::{Elector, LeaseConfig};
use resource::SloPolicy;
use view::Cluster;

/// Settings of the Kubernetes-mode controller.
#[derive(Debug, Clone)]
pub struct KubeConfig {
    /// Watch SloPolicies and pods in this namespace only (default: all namespaces).
    pub namespace: Option<String>,
    /// Narrows the pod watch to pods with these labels (`key=value,...`), for large clusters.
    pub pod_label_selector: Option<String>,
    /// Admin port of pods that do not name a container port `admin`.
    pub fallback_admin_port: u16,
    /// Bearer token of the runtimes' admin ports.
    pub admin_token: Option<String>,
    /// Decide and log without pushing or writing status.
    pub dry_run: bool,
    /// The leader Lease.
    pub lease: LeaseConfig,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// Longest time between two status writes while nothing but the numbers changes.
    pub status_refresh: Duration,
}

/// Errors of the Kubernetes-mode controller.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("no Kubernetes configuration (set KUBECONFIG or run in a pod): {0}")]
    Config(String),
    /// The CRD is not installed.
    #[error(
        "the SloPolicy CRD (slopolicies.dyce.dev) is not installed in this cluster: install it with \
         `dyce crd | kubectl apply --server-side -f -` or `helm install dyce charts/dyce`"
    )]
    CrdMissing,
    /// RBAC forbids what the controller needs.
    #[error("forbidden by RBAC ({0}): the controller's ServiceAccount needs list/watch on slopolicies.dyce.dev and pods (the chart's ClusterRole or Role)")]
    Forbidden(String),
    /// Any other API failure at start.
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    /// The HTTP endpoint failed.
    #[error("controller HTTP endpoint: {0}")]
    Io(#[from] std::io::Error),
}

/// Builds a client from `KUBECONFIG`, `~/.kube/config` or the in-cluster service account.
pub async fn connect() -> Result<Client, KubeError> {
    Client::try_default().await.map_err(|e| KubeError::Config(e.to_string()))
}

fn scoped<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Fails with a clear message when the CRD is missing or RBAC forbids listing.
async fn preflight(api: &Api<SloPolicy>) -> Result<(), KubeError> {
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(KubeError::CrdMissing),
        Err(kube::Error::Api(s)) if s.code == 403 => Err(KubeError::Forbidden(s.message)),
        Err(e) => Err(e.into()),
    }
}

/// Keeps a reflector store of `api` filled; errors are logged and retried with backoff.
fn reflect<K>(
    api: Api<K>,
    cfg: watcher::Config,
    what: &'static str,
    metrics: Arc<ControllerMetrics>,
) -> (Store<K>, JoinHandle<()>)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, cfg)
        .default_backoff()
        .modify(|o: &mut K| o.managed_fields_mut().clear())
        .reflect(writer);
    let handle = tokio::spawn(async move {
        stream
            .for_each(|ev| {
                let metrics = metrics.clone();
                async move {
                    if let Err(e) = ev {
                        metrics.api_error("kubernetes");
                        tracing::warn!(error = %e, what, "watch failed; retrying");
                    }
                }
            })
            .await;
    });
    (reader, handle)
}

/// Holds or waits for the Lease until `stop`, publishing leadership on `tx`; releases it on stop.
async fn lead(
    elector: Elector,
    tx: watch::Sender<bool>,
    metrics: Arc<ControllerMetrics>,
    stop: CancellationToken,
) {
    let duration = elector.config().duration;
    let retry = (duration / 3).max(Duration::from_millis(200));
    let mut last_ok = tokio::time::Instant::now();
    loop {
        match elector.try_acquire_or_renew().await {
            Ok(held) => {
                last_ok = tokio::time::Instant::now();
                if held != *tx.borrow() {
                    tracing::info!(identity = %elector.config().identity, leader = held, "leadership changed");
                }
                tx.send_replace(held);
            }
            Err(e) => {
                metrics.api_error("kubernetes");
                tracing::warn!(error = %e, "lease renewal failed");
                // Stop acting before the lease can expire for the others.
                if *tx.borrow() && last_ok.elapsed() > duration * 2 / 3 {
                    tracing::warn!("leadership lost: the lease could not be renewed in time");
                    tx.send_replace(false);
                }
            }
        }
        metrics.leader.set(i64::from(*tx.borrow()));
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = stop.cancelled() => break,
        }
    }
    if *tx.borrow() {
        tx.send_replace(false);
        if let Err(e) = elector.release().await {
            tracing::warn!(error = %e, "could not release the lease");
        }
    }
}

/// Runs until `shutdown` is cancelled.
pub async fn run_kubernetes(
    cfg: KubeConfig,
    client: Client,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), KubeError> {
    let ns = cfg.namespace.as_deref();
    let policies_api: Api<SloPolicy> = scoped(&client, ns);
    preflight(&policies_api).await?;
    let pods_api: Api<Pod> = scoped(&client, ns);
    let mut pod_cfg = watcher::Config::default();
    if let Some(sel) = &cfg.pod_label_selector {
        pod_cfg = pod_cfg.labels(sel);
    }
    let metrics = Arc::new(ControllerMetrics::new());
    let (policies, pol_watch) =
        reflect(policies_api, watcher::Config::default(), "slopolicies", metrics.clone());
    let (pods, pod_watch) = reflect(pods_api, pod_cfg, "pods", metrics.clone());

    metrics.leader.set(0);
    let (leader_tx, leader_rx) = watch::channel(false);
    let elector =
        Elector::new(Api::<Lease>::namespaced(client.clone(), &cfg.lease_namespace), cfg.lease.clone());
    let leading = tokio::spawn(lead(elector, leader_tx, metrics.clone(), shutdown.clone()));

    let shared = Cluster {
        metrics: metrics.clone(),
        statuses: Arc::default(),
        synced: Arc::default(),
        leader: leader_rx.clone(),
        identity: cfg.lease.identity.clone(),
    };
    let addr = listener.local_addr()?;
    let server = tokio::spawn(server::serve(listener, Arc::new(shared.clone()), shutdown.clone()));
    tracing::info!(%addr, namespace = ns.unwrap_or("(all)"), identity = %cfg.lease.identity, "controller started (kubernetes)");

    tokio::select! {
        r = async { tokio::try_join!(policies.wait_until_ready(), pods.wait_until_ready()) } => {
            if r.is_err() {
                tracing::warn!("watch ended before it was ready");
            }
        }
        _ = shutdown.cancelled() => {}
    }
    shared.synced.store(true, Ordering::Relaxed);

    let ctx = task::TaskCtx {
        client: client.clone(),
        pods,
        leader: leader_rx,
        metrics: metrics.clone(),
        statuses: shared.statuses.clone(),
        recorder: Recorder::new(
            client,
            Reporter { controller: "dyce-controller".into(), instance: Some(cfg.lease.identity.clone()) },
        ),
        cfg: Arc::new(cfg),
    };
    let mut tasks: BTreeMap<String, (SloPolicySpec, JoinHandle<()>)> = BTreeMap::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        supervise(&ctx, &policies, &mut tasks);
    }
    tracing::info!("controller stopping");
    for (_, (_, h)) in tasks {
        h.abort();
    }
    pol_watch.abort();
    pod_watch.abort();
    let _ = leading.await;
    server.await.map_err(|e| std::io::Error::other(e.to_string()))??;
    Ok(())
}

/// Starts a loop for every new policy, restarts those whose spec changed, stops those deleted.
fn supervise(
    ctx: &task::TaskCtx,
    policies: &Store<SloPolicy>,
    tasks: &mut BTreeMap<String, (SloPolicySpec, JoinHandle<()>)>,
) {
    let current: BTreeMap<String, Arc<SloPolicy>> = policies
        .state()
        .into_iter()
        .map(|p| (task::policy_key(p.namespace().as_deref(), &p.name_any()), p))
        .collect();
    tasks.retain(|key, (_, handle)| {
        let keep = current.contains_key(key);
        if !keep {
            tracing::info!(policy = %key, "policy deleted; its loop stops");
            handle.abort();
            ctx.statuses.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
            ctx.metrics.forget(key);
        }
        keep
    });
    for (key, policy) in current {
        if let Some((spec, handle)) = tasks.get(&key) {
            if *spec == policy.spec.0 && !handle.is_finished() {
                continue;
            }
            handle.abort();
            tracing::info!(policy = %key, "policy changed; its loop restarts");
        }
        let handle = tokio::spawn(task::run_policy(ctx.clone(), policy.clone()));
        tasks.insert(key, (policy.spec.0.clone(), handle));
    }
}
