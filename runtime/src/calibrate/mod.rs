//! Calibration: data sets, training of backbones and exits, recording, search and reports.

pub mod augment;
pub mod data;
pub mod exit_train;
pub mod fastops;
pub mod features;
pub mod pipeline;
pub mod record;
pub mod report;
pub mod sgd;
pub mod train;
pub mod trainnet;

/// Errors of a calibration run.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// A tensor operation failed.
    #[error("tensor operation failed")]
    Tensor(#[from] candle_core::Error),
    /// The model or bundle is invalid.
    #[error("model")]
    Model(#[from] crate::model::ModelError),
    /// Running the backbone failed.
    #[error("engine")]
    Engine(#[from] crate::engine::EngineError),
    /// The records are inconsistent (a bug upstream).
    #[error("records")]
    Records(#[from] dyce_search::RecordsError),
    /// The report could not be written.
    #[error("{path}: {reason}")]
    Io {
        /// File concerned.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
}
