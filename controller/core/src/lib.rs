//! dyce controller core: SLO policies, the ladder of allowed configs, signals, the pure control
//! law, the one control step, and a simulator of batching runtimes that runs that same step.
//!
//! No I/O and no clock of its own: the drivers (`dyce-controller`'s local and Kubernetes loops,
//! and [`sim`] here) poll runtimes, feed the answers and the time in, and carry out the pushes
//! the step returns. It builds without kube, k8s-openapi, reqwest, axum or tokio, which its
//! manifest enforces; it sees runtimes only through `dyce-api` types and never links candle.

pub mod ladder;
pub mod law;
pub mod live;
pub mod policy;
pub mod signals;
pub mod sim;
pub mod source;
pub mod step;

pub use dyce_api as api;
