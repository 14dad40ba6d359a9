//! What the controller's endpoints show in Kubernetes mode: ready once the first lists of
//! policies and pods arrived, and every policy this replica steers in `/v1/status`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tokio::sync::watch;

use crate::metrics::ControllerMetrics;
use crate::policy_loop::PolicyStatus;
use crate::server::ControllerView;

/// `/v1/status` in Kubernetes mode.
#[derive(Debug, Serialize)]
struct ClusterStatus {
    /// This replica (the pod name).
    identity: String,
    /// Whether it holds the Lease and steers.
    leader: bool,
    /// One entry per policy (`namespace/name`), empty on a standby replica.
    policies: Vec<PolicyStatus>,
}

/// What the endpoints read.
#[derive(Clone)]
pub(super) struct Cluster {
    pub metrics: Arc<ControllerMetrics>,
    pub statuses: Arc<Mutex<BTreeMap<String, PolicyStatus>>>,
    pub synced: Arc<AtomicBool>,
    pub leader: watch::Receiver<bool>,
    pub identity: String,
}

impl ControllerView for Cluster {
    /// A standby replica is ready too (it is healthy and can take over), which keeps rolling
    /// updates moving.
    fn ready(&self) -> Result<(), String> {
        if self.synced.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("waiting for the first list of SloPolicies and pods".into())
        }
    }

    fn status(&self) -> Response {
        let policies = self.statuses.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        Json(ClusterStatus { identity: self.identity.clone(), leader: *self.leader.borrow(), policies })
            .into_response()
    }

    fn metrics(&self) -> &ControllerMetrics {
        &self.metrics
    }
}
