//! dyce calibration, apart from serving: training of small-input ResNet and ConvNeXt-V2
//! backbones (`dyce train`), exit training on the frozen backbone's pooled features, the records the search reads,
//! the configuration searches (`dyce-search`), and the bundle, report and plot (`dyce
//! calibrate`). Images come from `dyce-data` (IDX files or image folders, decoded and transformed as serving does); pooled features are cached on disk per split (`cache`); the backbone runs on `dyce-runtime`'s serving
//! path (folded BN, fast kernels), so calibration measures what is served.

pub mod adamw;
pub mod cache;
pub mod checkpoint;
pub mod dataset;
mod error;
pub mod exit_cost;
pub mod exit_train;
pub mod fastops;
pub mod outcome;
pub mod pipeline;
pub mod recipe;
pub mod recipes;
pub mod record;
pub mod report;
pub mod sgd;
pub mod train;
pub mod trainconvnext;
pub mod trainnet;

pub use error::CalibrateError;
