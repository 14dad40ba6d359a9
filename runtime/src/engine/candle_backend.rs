//! Reference backend on candle's CPU tensors.

use candle_core::{Device, Tensor};

use super::backend::Backend;
use super::candle_convnext::CandleConvNext;
use super::candle_ops::Conv;
use super::EngineError;
use crate::model::spec::StemKind;
use crate::model::{Backbone, ResNet};

struct Block {
    convs: Vec<Conv>,
    downsample: Option<Conv>,
}

/// A folded ResNet on candle tensors.
struct CandleResNet {
    stem: Conv,
    maxpool: bool,
    blocks: Vec<Block>,
}

enum Net {
    ResNet(CandleResNet),
    ConvNext(CandleConvNext),
}

/// Runs a backbone with candle's operations; the numerical reference for faster backends.
pub struct CandleBackend {
    net: Net,
    shape: [usize; 3],
}

impl CandleBackend {
    /// Uploads a backbone for images of `[c, h, w]`.
    pub fn new(net: &Backbone, shape: [usize; 3]) -> Result<Self, EngineError> {
        let net = match net {
            Backbone::ResNet(r) => Net::ResNet(CandleResNet::new(r)?),
            Backbone::ConvNext(c) => Net::ConvNext(CandleConvNext::new(c)?),
        };
        Ok(Self { net, shape })
    }
}

impl CandleResNet {
    fn new(net: &ResNet) -> Result<Self, EngineError> {
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
        Ok(Self { stem: Conv::new(&net.stem)?, maxpool: net.spec.stem == StemKind::Imagenet, blocks })
    }

    fn stem(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        let mut y = self.stem.forward(x)?.relu()?;
        if self.maxpool {
            // Zero padding equals -inf padding here: inputs are post-ReLU (≥ 0) and every
            // window holds at least one real value.
            y = y.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?.max_pool2d_with_stride(3, 2)?;
        }
        Ok(y)
    }

    fn block(&self, i: usize, x: Tensor) -> Result<Tensor, EngineError> {
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
}

impl Backend for CandleBackend {
    type Act = Tensor;

    fn stem(&mut self, input: &[f32], n: usize) -> Result<Tensor, EngineError> {
        let [c, h, w] = self.shape;
        let x = Tensor::from_slice(input, (n, c, h, w), &Device::Cpu)?;
        match &self.net {
            Net::ResNet(r) => r.stem(&x),
            Net::ConvNext(c) => c.stem(&x),
        }
    }

    fn block(&mut self, i: usize, x: Tensor) -> Result<Tensor, EngineError> {
        match &self.net {
            Net::ResNet(r) => r.block(i, x),
            Net::ConvNext(c) => c.block(i, x),
        }
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
