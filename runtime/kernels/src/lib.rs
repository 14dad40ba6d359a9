//! Inference-only CPU kernels.
