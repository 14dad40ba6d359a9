//! The runtime service, whatever the protocol: [`Runtime`] holds the model queue, the active
//! configuration, the load window and the metrics, and [`Runtime::infer`] is the one entry point
//! every inference route calls (admission, load accounting, the wait for the batch). The HTTP
//! layer (`crate::server`) only translates.

pub mod feedback;
pub mod live;
pub mod load;
pub mod metrics;
pub mod process;
mod runtime;
pub mod stats;

pub use runtime::{start, warm_up, Runtime, ServeConfig, ServeError};
