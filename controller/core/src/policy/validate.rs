//! Checks a parsed policy beyond what its types enforce; every error names its field.

use std::collections::HashSet;
use std::time::Duration;

use super::document::{PolicyDocument, API_VERSION, KIND};
use super::error::PolicyError;

/// Longest `staleAfter`. Past it a runtime's last answer says little about its load now, yet
/// the law would still count it among the fresh ones (its offered rate, its latency, pushes to
/// it); ten minutes is 3 × the longest interval (60s) with room to spare.
pub const MAX_STALE_AFTER: Duration = Duration::from_secs(600);

/// Longest `restore.after` and `restore.step`. A policy that waits longer than an hour of calm
/// before restoring accuracy is a typo (`60m` meant as `60s`, a value in ms read as seconds),
/// and serving the cheap config that long is the costly way to find out.
pub const MAX_RESTORE: Duration = Duration::from_secs(3600);

fn check(ok: bool, field: &str, message: impl FnOnce() -> String) -> Result<(), PolicyError> {
    if ok {
        Ok(())
    } else {
        Err(PolicyError::new(field, message()))
    }
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn check_url(i: usize, raw: &str) -> Result<(), PolicyError> {
    let field = format!("spec.runtimes[{i}]");
    let url =
        url::Url::parse(raw).map_err(|e| PolicyError::new(&field, format!("{raw:?} is not a URL ({e})")))?;
    check(matches!(url.scheme(), "http" | "https") && url.host().is_some(), &field, || {
        format!("{raw:?} must be an http(s) URL of a runtime's admin port, like http://127.0.0.1:9090")
    })
}

impl PolicyDocument {
    /// Checks every range and exclusive choice; the first problem found is returned.
    pub fn validate(&self) -> Result<(), PolicyError> {
        check(self.api_version == API_VERSION, "apiVersion", || {
            format!("must be {API_VERSION}, got {:?}", self.api_version)
        })?;
        check(self.kind == KIND, "kind", || format!("must be {KIND}, got {:?}", self.kind))?;
        check(is_dns_label(&self.metadata.name), "metadata.name", || {
            format!(
                "{:?} must be a DNS label (lowercase letters, digits and '-', at most 63)",
                self.metadata.name
            )
        })?;
        let s = &self.spec;
        match (&s.selector, s.runtimes.is_empty()) {
            (Some(_), false) => {
                return Err(PolicyError::new(
                    "spec.selector",
                    "set either spec.selector (Kubernetes) or spec.runtimes (local), not both",
                ))
            }
            (None, true) => {
                return Err(PolicyError::new(
                    "spec.runtimes",
                    "set spec.runtimes (local admin URLs) or spec.selector (Kubernetes pods)",
                ))
            }
            (Some(sel), true) => check(!sel.match_labels.is_empty(), "spec.selector.matchLabels", || {
                "must not be empty: an empty selector would steer every pod".into()
            })?,
            (None, false) => {
                let mut seen = HashSet::new();
                for (i, r) in s.runtimes.iter().enumerate() {
                    check_url(i, r)?;
                    check(seen.insert(r.trim_end_matches('/')), &format!("spec.runtimes[{i}]"), || {
                        format!("{r:?} is listed twice")
                    })?;
                }
            }
        }
        let lat = &s.objective.latency;
        check(lat.quantile > 0.0 && lat.quantile < 1.0, "spec.objective.latency.quantile", || {
            format!("must be in (0, 1), got {}", lat.quantile)
        })?;
        let t = lat.threshold.0;
        check(
            t > Duration::ZERO && t <= Duration::from_secs(3600),
            "spec.objective.latency.threshold",
            || format!("must be above 0 and at most 1h, got {}", lat.threshold),
        )?;
        if let Some(q) = s.objective.max_queue_depth {
            check(q >= 1, "spec.objective.maxQueueDepth", || "must be at least 1".into())?;
        }
        check((0.0..=1.0).contains(&s.accuracy_floor), "spec.accuracyFloor", || {
            format!("must be in [0, 1] (a fraction, not a percentage), got {}", s.accuracy_floor)
        })?;
        if let Some(d) = s.max_accuracy_drop {
            // NaN fails the range check too; infinities are outside it.
            check((0.0..1.0).contains(&d), "spec.maxAccuracyDrop", || {
                format!("must be in [0, 1) (a fraction: 0.03 is 3 points below the full model), got {d}")
            })?;
        }
        if let Some(a) = &s.accuracy {
            check(a.min_samples >= 1.0 && a.min_samples <= 1e6, "spec.accuracy.minSamples", || {
                format!("must be between 1 and 1000000 effective shadow samples, got {}", a.min_samples)
            })?;
            check((0.0..0.5).contains(&a.hysteresis), "spec.accuracy.hysteresis", || {
                format!(
                    "must be in [0, 0.5) (a fraction: 0.01 is one point above the floor), got {}",
                    a.hysteresis
                )
            })?;
            let bounded = s.accuracy_floor > 0.0 || s.max_accuracy_drop.is_some();
            check(!a.is_live() || bounded, "spec.accuracy.source", || {
                "live needs a floor to hold: set spec.accuracyFloor or spec.maxAccuracyDrop".into()
            })?;
        }
        let c = &s.control;
        let iv = c.interval.0;
        check(
            iv >= Duration::from_millis(50) && iv <= Duration::from_secs(60),
            "spec.control.interval",
            || format!("must be between 50ms and 60s, got {}", c.interval),
        )?;
        check(
            c.target_utilization > 0.0 && c.target_utilization <= 1.0,
            "spec.control.targetUtilization",
            || format!("must be in (0, 1], got {}", c.target_utilization),
        )?;
        let r = &c.restore;
        check(r.headroom > 0.0 && r.headroom < 1.0, "spec.control.restore.headroom", || {
            format!("must be in (0, 1): restoring needs headroom below the target, got {}", r.headroom)
        })?;
        check(r.after.0 >= iv && r.after.0 <= MAX_RESTORE, "spec.control.restore.after", || {
            format!("must be at least the interval ({}) and at most 1h, got {}", c.interval, r.after)
        })?;
        check(r.step.0 >= iv && r.step.0 <= MAX_RESTORE, "spec.control.restore.step", || {
            format!("must be at least the interval ({}) and at most 1h, got {}", c.interval, r.step)
        })?;
        let stale = c.stale_after();
        check(stale.0 >= iv && stale.0 <= MAX_STALE_AFTER, "spec.control.staleAfter", || {
            format!("must be at least the interval ({}) and at most 10m, got {stale}", c.interval)
        })?;
        let timeout = c.request_timeout();
        check(timeout.0 > Duration::ZERO && timeout <= stale, "spec.control.requestTimeout", || {
            format!("must be above 0 and at most staleAfter ({stale}), got {timeout}")
        })?;
        Ok(())
    }
}
