//! Reference backend on candle's CPU tensors.

use candle_core::{Device, Tensor};

use super::backend::Backend;
use super::EngineError;
use crate::model::resnet::FoldedConv;
use crate::model::spec::StemKind;
use crate::model::ResNet;

struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    pad: usize,
}

impl Conv {
    fn new(c: &FoldedConv) -> Result<Self, EngineError> {
        let g = c.geom;
        Ok(Self {
            weight: Tensor::from_slice(&c.weight, (g.cout, g.cin, g.k, g.k), &Device::Cpu)?,
            bias: Tensor::from_slice(&c.bias, (1, g.cout, 1, 1), &Device::Cpu)?,
            stride: g.stride,
            pad: g.pad,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        Ok(x.conv2d(&self.weight, self.pad, self.stride, 1, 1)?.broadcast_add(&self.bias)?)
    }
}

struct Block {
    convs: Vec<Conv>,
    downsample: Option<Conv>,
}

/// Runs a folded ResNet with candle's convolutions; the numerical reference for faster backends.
pub struct CandleBackend {
    stem: Conv,
    maxpool: bool,
    blocks: Vec<Block>,
    shape: [usize; 3],
}

impl CandleBackend {
    /// Uploads a folded backbone for images of `[c, h, w]`.
    pub fn new(net: &ResNet, shape: [usize; 3]) -> Result<Self, EngineError> {
        let blocks = net
            .blocks
            .iter()
            .map(|b| {
                Ok(Block {
                    convs: b.convs.iter().map(Conv::new).collect::<Result<_, EngineError>>()?,
                    downsample: b.downsample.as_ref().map(Conv::new).transpose()?,
                })
            })
            .collect::<Result<_, EngineError>>()?;
        Ok(Self { stem: Conv::new(&net.stem)?, maxpool: net.spec.stem == StemKind::Imagenet, blocks, shape })
    }
}

impl Backend for CandleBackend {
    type Act = Tensor;

    fn stem(&mut self, input: &[f32], n: usize) -> Result<Tensor, EngineError> {
        let [c, h, w] = self.shape;
        let x = Tensor::from_slice(input, (n, c, h, w), &Device::Cpu)?;
        let mut y = self.stem.forward(&x)?.relu()?;
        if self.maxpool {
            // Zero padding equals -inf padding here: inputs are post-ReLU (≥ 0) and every
            // window holds at least one real value.
            y = y.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?.max_pool2d_with_stride(3, 2)?;
        }
        Ok(y)
    }

    fn block(&mut self, i: usize, x: Tensor) -> Result<Tensor, EngineError> {
        let b = &self.blocks[i];
        let mut y = x.clone();
        for (k, conv) in b.convs.iter().enumerate() {
            y = conv.forward(&y)?;
            if k + 1 < b.convs.len() {
                y = y.relu()?;
            }
        }
        let shortcut = match &b.downsample {
            Some(d) => d.forward(&x)?,
            None => x,
        };
        Ok((y + shortcut)?.relu()?)
    }

    fn pool(&mut self, x: &Tensor) -> Result<Vec<f32>, EngineError> {
        Ok(x.mean((2, 3))?.flatten_all()?.to_vec1::<f32>()?)
    }

    fn select(&mut self, x: Tensor, keep: &[usize]) -> Result<Tensor, EngineError> {
        let idx: Vec<u32> = keep.iter().map(|&i| i as u32).collect();
        let idx = Tensor::from_vec(idx, keep.len(), &Device::Cpu)?;
        Ok(x.index_select(&idx, 0)?)
    }
}
