//! From a loop's view to the resource's status and Events (pure), and the calls that write them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource};
use serde_json::json;

use super::resource::{SloPolicy, SloPolicyStatus, StatusCondition};
use crate::policy_loop::PolicyStatus;
use dyce_control_core::law::{Decision, Direction};
use dyce_control_core::live::GuardChange;
use dyce_control_core::policy::{API_VERSION, KIND};

/// Field manager of every write the controller makes (server-side apply).
pub const FIELD_MANAGER: &str = "dyce-controller";

/// What the status is computed from.
#[derive(Debug, Clone, Copy)]
pub struct StatusInput<'a> {
    /// The loop's status.
    pub loop_status: &'a PolicyStatus,
    /// Ready pods matching the selector.
    pub runtimes: usize,
    /// `metadata.generation` of the spec in use.
    pub generation: Option<i64>,
}

fn fmt_latency(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{secs:.2}s")
    } else {
        format!("{:.1}ms", secs * 1e3)
    }
}

fn conditions_of(i: &StatusInput<'_>) -> (String, Vec<StatusCondition>) {
    let st = i.loop_status;
    let richest = st.ladder.last();
    let cond = |type_, status, reason: &str, message: String| StatusCondition {
        type_,
        status,
        reason: reason.into(),
        message,
    };
    let Some(last) = &st.last else {
        let why = if i.runtimes == 0 {
            "no ready pod matches spec.selector".to_string()
        } else {
            st.last_error.clone().unwrap_or_else(|| "waiting for the first decision".into())
        };
        let reason = if i.runtimes == 0 { "NoRuntimes" } else { "NoDecision" };
        return ("Waiting".into(), vec![cond("Ready", false, reason, why)]);
    };
    let degraded = richest.is_some_and(|r| *r != last.config);
    let state = if last.saturated {
        "Saturated"
    } else if degraded {
        "Degraded"
    } else {
        "Steady"
    };
    let ready = if st.runtimes_fresh > 0 {
        cond(
            "Ready",
            true,
            "Steering",
            format!("steering {} runtime(s) on {}", st.runtimes_fresh, last.config),
        )
    } else {
        cond(
            "Ready",
            false,
            "NoRuntimes",
            st.last_error.clone().unwrap_or_else(|| "no runtime answers".into()),
        )
    };
    let deg = if degraded {
        cond(
            "Degraded",
            true,
            "CheaperConfig",
            format!("running {} instead of {}: {}", last.config, richest.map_or("", |s| s), last.reason),
        )
    } else {
        cond(
            "Degraded",
            false,
            "RichestConfig",
            format!("running the richest allowed config {}", last.config),
        )
    };
    let sat = if last.saturated {
        let need = last.desired_replicas.map_or(String::new(), |n| format!("; {n} replicas needed"));
        cond(
            "Saturated",
            true,
            "CheapestConfigOverloaded",
            format!("the cheapest allowed config cannot hold the objective{need}"),
        )
    } else {
        cond("Saturated", false, "WithinCapacity", "the allowed configs hold the objective".into())
    };
    (state.into(), vec![ready, deg, sat])
}

/// Turns computed conditions into Kubernetes conditions, keeping `lastTransitionTime` of those
/// whose status did not change (so `kubectl describe` shows when a state began).
fn stamp(
    conds: Vec<StatusCondition>,
    prev: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    conds
        .into_iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            let since = prev
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: c.type_.into(),
                status: status.into(),
                reason: c.reason,
                message: c.message,
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect()
}

/// The status of a policy whose loop runs.
pub fn running_status(
    i: &StatusInput<'_>,
    prev: Option<&SloPolicyStatus>,
    now: Timestamp,
) -> SloPolicyStatus {
    let st = i.loop_status;
    let (state, conds) = conditions_of(i);
    let prev_conds = prev.map(|p| p.conditions.as_slice()).unwrap_or_default();
    let last = st.last.as_ref();
    let last_change = st.changes.back();
    SloPolicyStatus {
        observed_generation: i.generation,
        state: Some(state),
        config: last.map(|l| l.config.clone()),
        observed_latency: last.and_then(|l| l.observed_latency).map(fmt_latency),
        observed_latency_seconds: last.and_then(|l| l.observed_latency),
        offered_per_second: last.and_then(|l| l.offered_per_second).map(|r| (r * 10.0).round() / 10.0),
        runtimes: Some(i.runtimes as u32),
        runtimes_answering: Some(st.runtimes_fresh as u32),
        desired_replicas: last.and_then(|l| l.desired_replicas).map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        reason: last_change.map(|c| c.reason.clone()),
        conditions: stamp(conds, prev_conds, i.generation, now),
    }
}

/// The status of a policy whose spec cannot be used.
pub fn invalid_status(
    message: &str,
    generation: Option<i64>,
    prev: Option<&SloPolicyStatus>,
    now: Timestamp,
) -> SloPolicyStatus {
    let cond = StatusCondition {
        type_: "Ready",
        status: false,
        reason: "InvalidPolicy".into(),
        message: message.into(),
    };
    let prev_conds = prev.map(|p| p.conditions.as_slice()).unwrap_or_default();
    SloPolicyStatus {
        observed_generation: generation,
        state: Some("Invalid".into()),
        conditions: stamp(vec![cond], prev_conds, generation, now),
        ..Default::default()
    }
}

/// True when `new` differs from `old` in anything but the fast-moving numbers (latency and
/// offered rate), i.e. when it is worth a write right away rather than at the next refresh.
pub fn changed_materially(old: Option<&SloPolicyStatus>, new: &SloPolicyStatus) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &SloPolicyStatus| SloPolicyStatus {
        observed_latency: None,
        observed_latency_seconds: None,
        offered_per_second: None,
        conditions: s.conditions.iter().map(|c| Condition { message: String::new(), ..c.clone() }).collect(),
        reason: None,
        ..s.clone()
    };
    strip(old) != strip(new)
}

/// Writes the status subresource with server-side apply (only the fields dyce owns).
pub async fn apply_status(
    api: &Api<SloPolicy>,
    name: &str,
    status: &SloPolicyStatus,
) -> Result<(), kube::Error> {
    let patch = json!({ "apiVersion": API_VERSION, "kind": KIND, "status": status });
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    Ok(())
}

/// The Events a decision deserves: one per degrade or restore, and one when saturation begins.
pub fn events_for(d: &Decision, config: &str, was_saturated: bool) -> Vec<Event> {
    let mut out = Vec::new();
    let ev = |type_, reason: &str, note: String| Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "SwitchConfig".into(),
        secondary: None,
    };
    match d.direction {
        Direction::Degrade => {
            out.push(ev(EventType::Normal, "Degraded", format!("switched to {config}: {}", d.reason)))
        }
        Direction::Restore => {
            out.push(ev(EventType::Normal, "Restored", format!("switched to {config}: {}", d.reason)))
        }
        Direction::Hold => {}
    }
    if d.saturated && !was_saturated {
        let need = d.desired_replicas.map_or(String::new(), |n| format!("; {n} replicas needed"));
        out.push(Event {
            action: "Saturate".into(),
            ..ev(
                EventType::Warning,
                "Saturated",
                format!("the cheapest allowed config {config} cannot hold the objective{need}"),
            )
        });
    }
    out
}

/// The Events of the live accuracy guard: a Warning when a config is excluded (its live lower
/// bound under the floor), a Normal event when it is allowed again.
pub fn accuracy_events(changes: &[GuardChange]) -> Vec<Event> {
    changes
        .iter()
        .map(|c| Event {
            type_: if c.excluded { EventType::Warning } else { EventType::Normal },
            reason: match (c.last_resort, c.excluded) {
                (false, true) => "AccuracyExcluded",
                (false, false) => "AccuracyRestored",
                (true, true) => "AccuracyUnderFloorServingFull",
                (true, false) => "AccuracyFullRecovered",
            }
            .into(),
            note: Some(format!("config {}: {}", c.config, c.message)),
            action: "GuardAccuracy".into(),
            secondary: None,
        })
        .collect()
}

/// Publishes `events` on `policy`; failures are logged, not fatal (Events are best effort).
pub async fn publish(recorder: &Recorder, policy: &SloPolicy, events: &[Event]) {
    let reference = policy.object_ref(&());
    for e in events {
        if let Err(err) = recorder.publish(e, &reference).await {
            tracing::warn!(error = %err, reason = %e.reason, "could not publish an event");
        }
    }
}
