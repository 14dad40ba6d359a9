//! Layers the candle reference backend builds its families from.

use candle_core::{Device, Tensor};

use super::EngineError;
use crate::model::resnet::FoldedConv;

/// A convolution with bias on candle tensors.
pub(super) struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    pad: usize,
    groups: usize,
}

impl Conv {
    pub(super) fn new(c: &FoldedConv) -> Result<Self, EngineError> {
        Self::grouped(c, 1)
    }

    /// A convolution in `groups` groups (depthwise: as many groups as channels).
    pub(super) fn grouped(c: &FoldedConv, groups: usize) -> Result<Self, EngineError> {
        let g = c.geom;
        Ok(Self {
            weight: Tensor::from_slice(&c.weight, (g.cout, g.cin / groups, g.k, g.k), &Device::Cpu)?,
            bias: Tensor::from_slice(&c.bias, (1, g.cout, 1, 1), &Device::Cpu)?,
            stride: g.stride,
            pad: g.pad,
            groups,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        Ok(x.conv2d(&self.weight, self.pad, self.stride, 1, self.groups)?.broadcast_add(&self.bias)?)
    }
}
