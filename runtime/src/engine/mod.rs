//! The early-exit engine: backends that run backbone blocks, the executor that stops samples
//! early and compacts the batch, and the atomically switchable active configuration.

pub mod active;
pub mod backend;
pub mod candle_backend;
mod candle_convnext;
mod candle_ops;
pub mod executor;
pub mod fast_backend;
mod fast_convnext;
mod packing;
pub mod queue;
mod replies;
pub mod shadow;

pub use active::{ActiveConfig, ConfigSwitch, ExitSlot, ResolvedConfig};
pub use backend::Backend;
pub use candle_backend::CandleBackend;
pub use executor::{run_batch, run_batch_answering, run_profiled, AnswerSink, Profiler, SampleResult, Stage};
pub use fast_backend::{default_pool, FastBackend};
pub use shadow::{simulate, HeadAnswers, ShadowConfig};

/// Errors of the engine layer.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A configuration id that is not in the table.
    #[error("unknown config id {0:?}")]
    UnknownConfig(String),
    /// A generation that does not follow the active one.
    #[error("stale generation {given}: the active generation is {active}")]
    StaleGeneration {
        /// Generation in the request.
        given: u64,
        /// Generation now active.
        active: u64,
    },
    /// A generation above [`MAX_GENERATION`](active::MAX_GENERATION): refused rather than
    /// applied, since no write could follow it.
    #[error("generation {given} is above the largest accepted, {max} (2^63 - 1)")]
    GenerationTooLarge {
        /// Generation in the request.
        given: u64,
        /// The largest accepted.
        max: u64,
    },
    /// A write without a generation when the active one is the largest accepted.
    #[error("the active generation {active} is the largest accepted: a switch needs a restart of the runtime, which starts again at 0")]
    GenerationExhausted {
        /// Generation now active.
        active: u64,
    },
    /// A configuration that cannot run on this bundle.
    #[error("config {id:?}: {reason}")]
    BadConfig {
        /// Config id.
        id: String,
        /// Why.
        reason: String,
    },
    /// Input of the wrong size.
    #[error("input has {got} values, expected {expected} ({n} images of {per} values)")]
    InputSize {
        /// Values given.
        got: usize,
        /// Values expected.
        expected: usize,
        /// Images.
        n: usize,
        /// Values per image.
        per: usize,
    },
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Tensor(String),
}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        EngineError::Tensor(e.to_string())
    }
}
