//! Serde types of the dyce runtime's admin contract.
//!
//! These are shared by the runtime (which serves them) and the controller (which reads them
//! over HTTP), so the controller never needs to link the tensor stack.

mod admin;
mod config;

pub use admin::{ActiveConfig, ConfigsView, ErrorBody, LoadReport, Quantiles, SwitchRequest};
pub use config::{ConfigEntry, ConfigError, ConfigTable, ExitChoice, FULL_CONFIG_ID};
