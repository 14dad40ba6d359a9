//! SloPolicy: what a controller keeps (a latency objective) and what it may spend (accuracy).
//!
//! The same types are the policy file (`dyce control --policy`), its JSON schema and the
//! Kubernetes resource's spec. Parsing reports the path of a bad field (`spec.control.interval`);
//! validation checks what types cannot (ranges, exclusive fields) and names the field too.

mod document;
mod duration;
mod error;
mod parse;
mod validate;

pub use document::{
    AccuracyKind, AccuracySource, Control, LabelSelector, LatencyObjective, Metadata, MissingSignals,
    Objective, PolicyDocument, Restore, SloPolicySpec, API_VERSION, KIND,
};
pub use duration::HumanDuration;
pub use error::PolicyError;
pub use parse::{MAX_FLOW_OPENERS, MAX_POLICY_BYTES};
pub use validate::MAX_STALE_AFTER;

#[cfg(test)]
mod tests;
