//! Developer tools: load generation, the demo and benchmarks. They may use the product's
//! commands' helpers (`crate::cmd`); the commands never use them.

pub mod bench;
pub mod bench_backbone;
pub mod bench_profile;
pub mod demo;
pub mod load;
