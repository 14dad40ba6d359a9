//! Error type shared by every public entry point of the crate.

use thiserror::Error;

/// Errors returned by the public API; bad shapes never panic.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// Two shapes that must agree do not; both are named.
    #[error("shape mismatch in {context}: expected {expected}, got {got}")]
    ShapeMismatch {
        /// Which operation and operand detected the mismatch.
        context: &'static str,
        /// The shape the operation required.
        expected: String,
        /// The shape it was given.
        got: String,
    },
    /// A convolution or layer description is unusable (zero sizes, output smaller than 1, ...).
    #[error("invalid specification: {0}")]
    InvalidSpec(String),
    /// `DYCE_KERNELS` (or a string passed to the parser) names no known ISA.
    #[error("unknown ISA override {0:?} (expected \"avx512\", \"avx2\", \"portable\", \"portable16\" or \"auto\")")]
    UnknownIsa(String),
    /// The requested ISA cannot run on this CPU.
    #[error("ISA {0:?} is not supported by this CPU")]
    UnsupportedIsa(crate::Isa),
    /// A batch index passed to `gather_batch` is outside the input batch.
    #[error("batch index {index} out of range for batch of {batch}")]
    IndexOutOfRange {
        /// The offending index.
        index: usize,
        /// The input batch size.
        batch: usize,
    },
}
