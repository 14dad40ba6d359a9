//! Everything a demo report is made of, shared by the report's files (`report.rs`) and its
//! text (`report_md.rs`).

use dyce_control_core::policy::PolicyDocument;
use dyce_runtime::model::Bundle;
use dyce_runtime::service::ServeConfig;

use super::analysis::RunData;
use super::runs::Capacity;
use super::simulation::SimOutcome;
use super::Scenario;

/// Everything the report is made of.
pub struct Input<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// The policy of the controlled run (and the target of all three).
    pub policy: &'a PolicyDocument,
    /// The served bundle.
    pub bundle: &'a Bundle,
    /// The runtimes' settings.
    pub serve: &'a ServeConfig,
    /// The capacity the trace was scaled by.
    pub capacity: Capacity,
    /// The runs, in order: static full, static cheapest, dyce.
    pub runs: &'a [RunData],
    /// The simulated autoscaling.
    pub sim: &'a SimOutcome,
}
