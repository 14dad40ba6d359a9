//! Models: backbones of two families (ResNet, ConvNeXt-V2), exit heads, MACs, and the on-disk
//! bundle.

pub mod backbone;
pub mod bundle;
pub mod convnext;
pub mod embedded;
pub mod exits;
pub mod linear;
pub mod macs;
pub mod random;
pub mod resnet;
pub mod spec;
pub mod store;

use std::path::PathBuf;

pub use backbone::{Backbone, BackboneSpec, PositionLayout};
pub use bundle::{Bundle, InputSpec, Manifest};
pub use convnext::{ConvNext, ConvNextSpec};
pub use exits::{ExitHead, ExitType};
pub use resnet::ResNet;
pub use spec::{BlockKind, ResNetSpec, StemKind};

/// Everything that can go wrong while describing, loading or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A built-in architecture name that does not exist.
    #[error("unknown architecture {0:?} (known: resnet18, resnet34, resnet50, resnet101, resnet152, resnet20, resnet32, resnet44, resnet56, convnextv2_atto, convnextv2_femto, convnextv2_pico, convnextv2_nano, convnextv2_tiny, convnextv2_base, convnextv2_atto_s)")]
    UnknownArch(String),
    /// The backbone description is inconsistent.
    #[error("invalid backbone spec: {0}")]
    BadSpec(String),
    /// An exit type name that does not parse.
    #[error("unknown exit type {0:?} (expected mlp1 or mlp<layers>x<hidden>, e.g. mlp2x256)")]
    UnknownExitType(String),
    /// A tensor the architecture needs is absent from the checkpoint.
    #[error("missing tensor {name:?} (expected shape {expected:?}) in the weights file")]
    MissingTensor {
        /// Tensor name.
        name: String,
        /// Shape the architecture needs.
        expected: Vec<usize>,
    },
    /// A tensor has the wrong shape.
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Tensor name.
        name: String,
        /// Shape the architecture needs.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A JSON file does not parse.
    #[error("{path}: {reason}")]
    Json {
        /// File concerned.
        path: PathBuf,
        /// Parser message.
        reason: String,
    },
    /// The manifest contradicts itself or the weights.
    #[error("invalid manifest: {0}")]
    BadManifest(String),
    /// The configuration table is invalid for this model.
    #[error("invalid configs.json: {0}")]
    BadConfig(String),
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Tensor(String),
}
