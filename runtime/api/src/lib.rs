//! Serde types of the dyce runtime's HTTP contract: the admin port and dyce's own data-port
//! answers (the OIP v2 routes follow KServe's protocol and are typed in the runtime).
//!
//! These are shared by the runtime (which serves them) and the controller (which reads them
//! over HTTP), so the controller never needs to link the tensor stack. Every type derives
//! `utoipa::ToSchema` (a macro crate, no web framework): the runtime's OpenAPI documents take
//! their schemas from these very definitions.
//!
//! Also here, because both sides compute with them: the load window behind `GET /v1/load`
//! ([`window`], pure: the runtime feeds it its clock, the controller's simulator simulated
//! time) and the workspace's one quantile function ([`stats`]).

mod admin;
mod config;
mod data;
pub mod exposition;
pub mod live;
pub mod stats;
pub mod window;

pub use admin::{ActiveConfig, ConfigsView, ErrorBody, LoadReport, Quantiles, SwitchRequest};
pub use config::{ConfigEntry, ConfigError, ConfigTable, ExitChoice, FULL_CONFIG_ID};
pub use data::{ClassifyResponse, FeedbackItem, FeedbackLabel, FeedbackRequest, FeedbackResponse};
pub use live::{LiveAccuracy, LiveConfig};
pub use window::{LoadSnapshot, LoadWindow, QueueState, Totals, WindowSample};
