//! Packing a loaded convolution for the fast kernels.

use dyce_kernels::{ConvSpec, PackedConv};

use super::EngineError;
use crate::model::resnet::FoldedConv;

/// Packs a convolution's OIHW weights once, at load.
pub(super) fn pack(c: &FoldedConv) -> Result<PackedConv, EngineError> {
    let g = c.geom;
    let spec = ConvSpec { cin: g.cin, cout: g.cout, kh: g.k, kw: g.k, stride: g.stride, pad: g.pad };
    Ok(PackedConv::new(spec, &c.weight, &c.bias)?)
}
