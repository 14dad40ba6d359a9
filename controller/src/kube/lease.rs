//! Leader election on a `coordination.k8s.io/v1` Lease, so that only one controller replica
//! steers. Written here rather than taken from a crate because the published lease crates
//! trail kube's releases; this is the client-go algorithm in a hundred lines:
//!
//! - expiry is judged on the local monotonic clock from the moment this replica last saw the
//!   lease record change, never by comparing another node's timestamps with ours (clock skew);
//! - every write is an update with the `resourceVersion` that was read, so two candidates racing
//!   for an expired lease cannot both win (the loser gets 409 Conflict).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::Api;

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Lease object name.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub duration: Duration,
}

/// What this replica last saw of the lease record, and when.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    holder: Option<String>,
    renew: Option<MicroTime>,
    at: Instant,
}

/// Tries to take or keep a Lease.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    observed: Mutex<Option<Observed>>,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl Elector {
    /// An elector over `api` (namespaced to where the Lease lives).
    pub fn new(api: Api<Lease>, cfg: LeaseConfig) -> Self {
        Self { api, cfg, observed: Mutex::new(None) }
    }

    /// The settings.
    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    fn spec(&self, acquire: Option<MicroTime>, transitions: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.cfg.duration.as_secs().max(1) as i32),
            acquire_time: acquire,
            renew_time: Some(MicroTime(Timestamp::now())),
            lease_transitions: transitions,
            ..Default::default()
        }
    }

    /// Remembers the record; returns how long ago it last changed.
    fn observe(&self, holder: Option<String>, renew: Option<MicroTime>) -> Duration {
        let mut o = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        match o.as_ref() {
            Some(prev) if prev.holder == holder && prev.renew == renew => prev.at.elapsed(),
            _ => {
                *o = Some(Observed { holder, renew, at: Instant::now() });
                Duration::ZERO
            }
        }
    }

    /// One attempt: `Ok(true)` when this replica holds the lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let Some(current) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.cfg.name.clone()), ..Default::default() },
                spec: Some(self.spec(Some(now), Some(0))),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let unchanged_for = self.observe(holder.clone(), spec.renew_time.clone());
        let lasts = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        let mine = holder.as_deref() == Some(self.cfg.identity.as_str());
        let free = holder.is_none() || unchanged_for > lasts;
        if !mine && !free {
            return Ok(false);
        }
        let new_spec = if mine {
            self.spec(spec.acquire_time.clone(), spec.lease_transitions)
        } else {
            self.spec(Some(now), Some(spec.lease_transitions.unwrap_or(0) + 1))
        };
        // `current` carries its resourceVersion: the update fails with 409 if anyone wrote since.
        let lease = Lease { metadata: current.metadata.clone(), spec: Some(new_spec) };
        match self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await {
            Ok(l) => {
                let s = l.spec.unwrap_or_default();
                self.observe(s.holder_identity, s.renew_time);
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (on shutdown), so a standby takes over at once instead of after
    /// the lease expires. Best effort.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(current) = self.api.get_opt(&self.cfg.name).await? else { return Ok(()) };
        let spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        let released = LeaseSpec { holder_identity: None, lease_duration_seconds: Some(1), ..spec };
        let lease = Lease { metadata: current.metadata, spec: Some(released) };
        self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await?;
        Ok(())
    }
}
