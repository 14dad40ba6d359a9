//! dyce runtime: early-exit engine, model bundles and serving.

pub mod engine;
pub mod model;
pub mod server;
