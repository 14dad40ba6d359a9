//! dyce controller: SLO policies, signal collection, the pure control law, actuation, a
//! simulator of batching runtimes, and the local control loop.
//!
//! The controller sees runtimes only through `dyce-api` types over HTTP; it never links candle.

pub mod actuate;
pub mod client;
pub mod kube;
pub mod ladder;
pub mod law;
pub mod local;
pub mod metrics;
pub mod policy;
pub mod policy_loop;
pub mod prom;
pub mod signals;
pub mod sim;

pub use dyce_api as api;
