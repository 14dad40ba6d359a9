//! The one error of a calibration run.

/// Errors of a calibration run.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// A tensor operation failed.
    #[error("tensor operation failed")]
    Tensor(#[from] candle_core::Error),
    /// The model or bundle is invalid.
    #[error("model")]
    Model(#[from] dyce_runtime::model::ModelError),
    /// Running the backbone failed.
    #[error("engine")]
    Engine(#[from] dyce_runtime::engine::EngineError),
    /// The records are inconsistent (a bug upstream).
    #[error("records")]
    Records(#[from] dyce_search::RecordsError),
    /// The settings cannot be run.
    #[error("{0}")]
    Invalid(String),
    /// The report could not be written.
    #[error("{path}: {reason}")]
    Io {
        /// File concerned.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
}
