//! Labelled images for dyce's tools: the reader of Fashion-MNIST's gzipped IDX files with the
//! project's fixed train / calibration / test splits, and the input transform (normalisation,
//! and the training augmentation).
//!
//! Calibration (`dyce-calibrate`), `dyce load`, `dyce demo` and `dyce bench` all read their images
//! here; the runtime does not link it.

mod fashion_mnist;
pub mod transform;

pub use fashion_mnist::{
    load, parse_idx, split, DataError, Images, Splits, CALIBRATION_SIZE, DEFAULT_DIR, LABELS, PIXELS,
    SPLIT_SEED,
};
