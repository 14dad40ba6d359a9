//! Datasets and the eval transform, shared by calibration, the load generator, the demo, the
//! benchmarks and the serving path, so that an image becomes the same input tensor everywhere.
//!
//! * [`decode`]: PNG/JPEG bytes to 8-bit pixels in the model's channels, under limits that the
//!   decoder enforces (a small file cannot make it allocate gigabytes).
//! * [`transform`]: torchvision's eval transform (resize the shorter side, centre crop,
//!   antialiased bilinear or bicubic as PIL does it), then normalisation.
//! * [`folder`]: torchvision's `ImageFolder` layout and dyce's calibration splits over it.
//! * [`fashion_mnist`]: Fashion-MNIST's gzipped IDX files with dyce's fixed splits, and
//!   [`augment`]: its normalised (and, for training, augmented) batches; [`export`] writes its
//!   splits as an image folder.

#[cfg(feature = "datasets")]
pub mod augment;
pub mod decode;
mod error;
#[cfg(feature = "datasets")]
pub mod export;
#[cfg(feature = "datasets")]
pub mod fashion_mnist;
#[cfg(feature = "datasets")]
pub mod folder;
pub mod transform;

pub use decode::{decode, DecodeLimits, Pixels};
pub use error::{DataError, ImageError};
#[cfg(feature = "datasets")]
pub use folder::{FolderSplits, Sample, SplitFractions};
pub use transform::{normalize_into, Interpolation, Preprocess, Transform};
