//! ConvNeXt-V2 with timm's tensor names: the spec, loading, and random checkpoints.

pub mod load;
pub mod random;
pub mod spec;

pub use load::{ConvNext, ConvNextBlock, LayerNormW};
pub use spec::ConvNextSpec;
