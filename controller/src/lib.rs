//! dyce controller: the drivers of the controller core's control step. Local mode (one policy,
//! runtimes by URL) and Kubernetes mode (SloPolicy resources, runtime pods, a Lease) run the same
//! `PolicyLoop`: poll the runtimes over HTTP (or read Prometheus), step, push configs; plus the
//! controller's metrics and its HTTP endpoints.
//!
//! The policy, the law and the step live in `dyce-control-core`, which has no I/O; this crate
//! brings reqwest, axum, tokio and kube. It sees runtimes only through `dyce-api` types over
//! HTTP; it never links candle.

pub mod actuate;
pub mod body;
pub mod client;
pub mod kube;
pub mod local;
pub mod metrics;
pub mod policy_loop;
pub mod poll;
pub mod prom;
pub mod server;

pub use dyce_api as api;
pub use dyce_control_core as core;
