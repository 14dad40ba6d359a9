//! ConvNeXt-V2 with timm's tensor names: the spec and loading (random checkpoints are in
//! `model/random.rs` with the ResNets').

pub mod load;
pub mod spec;

pub use load::{ConvNext, ConvNextBlock, LayerNormW};
pub use spec::ConvNextSpec;
