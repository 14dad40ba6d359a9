//! dyce controller: SLO policies, signal collection, the pure control law and actuation.
//!
//! The controller sees runtimes only through `dyce-api` types over HTTP; it never links candle.

pub use dyce_api as api;
