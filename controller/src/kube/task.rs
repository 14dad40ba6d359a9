//! The loop of one SloPolicy resource: discover pods, tick, write status, emit Events.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tracing::Instrument;

use super::discovery::runtime_endpoints;
use super::resource::{SloPolicy, SloPolicyStatus};
use super::status::{
    accuracy_events, apply_status, changed_materially, events_for, invalid_status, publish, running_status,
    StatusInput,
};
use super::KubeConfig;
use crate::metrics::ControllerMetrics;
use crate::policy_loop::{PolicyLoop, PolicyStatus};
use dyce_control_core::policy::{Metadata, PolicyDocument, API_VERSION, KIND};

/// What every policy loop shares.
#[derive(Clone)]
pub(super) struct TaskCtx {
    pub client: Client,
    pub pods: Store<Pod>,
    pub leader: watch::Receiver<bool>,
    pub metrics: Arc<ControllerMetrics>,
    pub statuses: Arc<Mutex<BTreeMap<String, PolicyStatus>>>,
    pub recorder: Recorder,
    pub cfg: Arc<KubeConfig>,
}

/// The name a policy goes by in metrics, logs and `/v1/status`: `namespace/name`.
pub(super) fn policy_key(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or("default"))
}

/// The resource as a policy document, so that it gets exactly the validation a file gets.
fn as_document(p: &SloPolicy) -> PolicyDocument {
    PolicyDocument {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        metadata: Metadata {
            name: p.name_any(),
            namespace: p.namespace(),
            labels: Default::default(),
            annotations: Default::default(),
        },
        spec: p.spec.0.clone(),
    }
}

/// Runs one policy's loop until aborted (deletion or a spec change restarts it).
pub(super) async fn run_policy(ctx: TaskCtx, policy: Arc<SloPolicy>) {
    let ns = policy.namespace().unwrap_or_else(|| "default".into());
    let key = policy_key(Some(&ns), &policy.name_any());
    let span = tracing::info_span!("policy", policy = %key);
    async move {
        let api: Api<SloPolicy> = Api::namespaced(ctx.client.clone(), &ns);
        match as_document(&policy).validate() {
            Err(e) => invalid(&ctx, &api, &policy, &e.to_string()).await,
            Ok(()) => steer(ctx, api, policy, ns, key).await,
        }
    }
    .instrument(span)
    .await
}

/// A policy that cannot be used: say so in its status (once per leadership) and wait.
async fn invalid(ctx: &TaskCtx, api: &Api<SloPolicy>, policy: &SloPolicy, why: &str) {
    tracing::warn!(error = %why, "invalid policy; not steering");
    let mut leader = ctx.leader.clone();
    loop {
        if leader.wait_for(|l| *l).await.is_err() {
            return;
        }
        if !ctx.cfg.dry_run {
            let st =
                invalid_status(why, policy.metadata.generation, policy.status.as_ref(), Timestamp::now());
            if let Err(e) = apply_status(api, &policy.name_any(), &st).await {
                ctx.metrics.api_error("kubernetes");
                tracing::warn!(error = %e, "could not write status");
            }
        }
        if leader.wait_for(|l| !*l).await.is_err() {
            return;
        }
    }
}

async fn steer(ctx: TaskCtx, api: Api<SloPolicy>, policy: Arc<SloPolicy>, ns: String, key: String) {
    let spec = policy.spec.0.clone();
    let name = policy.name_any();
    let cfg = &ctx.cfg;
    let mut lp =
        PolicyLoop::new(&key, spec.clone(), &[], cfg.admin_token.clone(), cfg.dry_run, ctx.metrics.clone());
    let mut written: Option<SloPolicyStatus> = policy.status.clone();
    let mut written_at: Option<Instant> = None;
    let mut was_saturated = false;
    let start = Instant::now();
    let mut ticker = tokio::time::interval(spec.control.interval.0);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tracing::info!(selector = ?spec.selector, "steering");
    loop {
        ticker.tick().await;
        // A standby replica watches but neither pushes nor writes.
        if !*ctx.leader.borrow() {
            continue;
        }
        let urls: Vec<String> = match &spec.selector {
            Some(sel) => {
                let pods = ctx.pods.state();
                runtime_endpoints(pods.iter().map(|p| &**p), &ns, &sel.match_labels, cfg.fallback_admin_port)
                    .into_iter()
                    .map(|e| e.url)
                    .collect()
            }
            None => spec.runtimes.clone(),
        };
        lp.set_runtimes(&urls);
        let decision = lp.tick(start.elapsed().as_secs_f64()).await;
        ctx.statuses.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), lp.status().clone());
        if cfg.dry_run {
            continue;
        }
        if let (Some(d), Some(last)) = (&decision, &lp.status().last) {
            let mut events = accuracy_events(lp.accuracy_changes());
            events.extend(events_for(d, &last.config, was_saturated));
            was_saturated = d.saturated;
            if !events.is_empty() {
                publish(&ctx.recorder, &policy, &events).await;
            }
        }
        let input = StatusInput {
            loop_status: lp.status(),
            runtimes: urls.len(),
            generation: policy.metadata.generation,
        };
        let st = running_status(&input, written.as_ref(), Timestamp::now());
        let due = written_at.is_none_or(|t| t.elapsed() >= cfg.status_refresh);
        if (changed_materially(written.as_ref(), &st) || due) && written.as_ref() != Some(&st) {
            match apply_status(&api, &name, &st).await {
                Ok(()) => {
                    written = Some(st);
                    written_at = Some(Instant::now());
                }
                Err(e) => {
                    ctx.metrics.api_error("kubernetes");
                    tracing::warn!(error = %e, "could not write status");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resource as the API server returns it: metadata the file's `Metadata` refuses (uid,
    /// resourceVersion, managedFields...) and a status. It goes through kube's `ObjectMeta`, so
    /// it validates exactly as the same spec in a file would, relative accuracy floor included.
    #[test]
    fn a_served_resource_validates_like_a_file() {
        let served = serde_json::json!({
            "apiVersion": "dyce.dev/v1alpha1",
            "kind": "SloPolicy",
            "metadata": {
                "name": "fmnist", "namespace": "ml", "uid": "0f1c", "resourceVersion": "42",
                "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"app.kubernetes.io/name": "dyce"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "dyce.dev/v1alpha1"}]
            },
            "spec": {
                "selector": {"matchLabels": {"app": "dyce"}},
                "objective": {"latency": {"threshold": "50ms"}},
                "maxAccuracyDrop": 0.03
            },
            "status": {"state": "Steady"}
        });
        let p: SloPolicy = serde_json::from_value(served).unwrap();
        let doc = as_document(&p);
        doc.validate().unwrap();
        assert_eq!(doc.spec.max_accuracy_drop, Some(0.03));
        assert_eq!(doc.metadata.namespace.as_deref(), Some("ml"));
    }
}
