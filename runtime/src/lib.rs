//! dyce runtime: early-exit engine, model bundles and serving.

pub mod engine;
pub mod input;
pub mod model;
pub mod server;
pub mod service;
