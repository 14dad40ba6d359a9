//! ConvNeXt-V2 on candle tensors: the numerical reference for the fast kernels, written
//! operation by operation as timm's modules compute them (NCHW throughout).

use candle_core::{Device, Tensor};

use super::candle_ops::Conv;
use super::EngineError;
use crate::model::convnext::spec::EPS;
use crate::model::convnext::{ConvNext, LayerNormW};

/// LayerNorm over the channels of every pixel (timm's `LayerNorm2d`, or `LayerNorm` on NHWC).
struct Norm {
    weight: Tensor,
    bias: Tensor,
}

impl Norm {
    fn new(n: &LayerNormW) -> Result<Self, EngineError> {
        let c = n.weight.len();
        Ok(Self {
            weight: Tensor::from_slice(&n.weight, (1, c, 1, 1), &Device::Cpu)?,
            bias: Tensor::from_slice(&n.bias, (1, c, 1, 1), &Device::Cpu)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        let centred = x.broadcast_sub(&x.mean_keepdim(1)?)?;
        let var = centred.sqr()?.mean_keepdim(1)?;
        let y = centred.broadcast_div(&(var + f64::from(EPS))?.sqrt()?)?;
        Ok(y.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?)
    }
}

struct Block {
    downsample: Option<(Norm, Conv)>,
    conv_dw: Conv,
    norm: Norm,
    fc1: Conv,
    grn: Norm,
    fc2: Conv,
}

/// A ConvNeXt-V2 on candle tensors.
pub(super) struct CandleConvNext {
    stem: Conv,
    stem_norm: Norm,
    blocks: Vec<Block>,
}

impl CandleConvNext {
    pub(super) fn new(net: &ConvNext) -> Result<Self, EngineError> {
        let blocks = net
            .blocks
            .iter()
            .map(|b| {
                Ok(Block {
                    downsample: b
                        .downsample
                        .as_ref()
                        .map(|(n, c)| Ok::<_, EngineError>((Norm::new(n)?, Conv::new(c)?)))
                        .transpose()?,
                    conv_dw: Conv::grouped(&b.conv_dw, b.conv_dw.geom.cout)?,
                    norm: Norm::new(&b.norm)?,
                    fc1: Conv::new(&b.fc1)?,
                    grn: Norm::new(&b.grn)?,
                    fc2: Conv::new(&b.fc2)?,
                })
            })
            .collect::<Result<_, EngineError>>()?;
        Ok(Self { stem: Conv::new(&net.stem)?, stem_norm: Norm::new(&net.stem_norm)?, blocks })
    }

    pub(super) fn stem(&self, x: &Tensor) -> Result<Tensor, EngineError> {
        self.stem_norm.forward(&self.stem.forward(x)?)
    }

    pub(super) fn block(&self, i: usize, x: Tensor) -> Result<Tensor, EngineError> {
        let b = &self.blocks[i];
        let x = match &b.downsample {
            Some((norm, conv)) => conv.forward(&norm.forward(&x)?)?,
            None => x,
        };
        let y = b.norm.forward(&b.conv_dw.forward(&x)?)?;
        let y = b.fc1.forward(&y)?.gelu_erf()?;
        // GRN (timm's GlobalResponseNorm): x + β + γ·(x·N(x)), N = ‖x‖₂ over the pixels of
        // each channel divided by its mean over channels (+ eps).
        let gx = y.sqr()?.sum_keepdim((2, 3))?.sqrt()?;
        let nx = gx.broadcast_div(&(gx.mean_keepdim(1)? + f64::from(EPS))?)?;
        let scaled = y.broadcast_mul(&nx)?.broadcast_mul(&b.grn.weight)?;
        let y = (y + scaled)?.broadcast_add(&b.grn.bias)?;
        Ok((b.fc2.forward(&y)? + x)?)
    }
}
