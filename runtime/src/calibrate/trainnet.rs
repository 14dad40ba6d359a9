//! A trainable ResNet on candle-nn, with the same torchvision tensor names as the inference
//! loader, so a training checkpoint is a bundle's backbone without any renaming.

use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::{
    batch_norm, conv2d_no_bias, linear, BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig, Linear, VarBuilder,
};

use crate::model::spec::{BackboneSpec, ConvGeom, StemKind};

struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvBn {
    fn new(g: ConvGeom, vb_conv: VarBuilder, vb_bn: VarBuilder) -> Result<Self> {
        let cfg = Conv2dConfig { padding: g.pad, stride: g.stride, ..Default::default() };
        let bn_cfg = BatchNormConfig { eps: 1e-5, momentum: 0.1, ..Default::default() };
        Ok(Self {
            conv: conv2d_no_bias(g.cin, g.cout, g.k, cfg, vb_conv)?,
            bn: batch_norm(g.cout, bn_cfg, vb_bn)?,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn.forward_t(&self.conv.forward(x)?, train)
    }
}

struct Block {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

/// ResNet for training; `forward_t` returns logits.
pub struct TrainResNet {
    stem: ConvBn,
    maxpool: bool,
    blocks: Vec<Block>,
    fc: Linear,
}

impl TrainResNet {
    /// Creates (or, with a loaded `VarBuilder`, reads) every tensor under torchvision names.
    pub fn new(spec: &BackboneSpec, vb: VarBuilder) -> Result<Self> {
        let stem = ConvBn::new(spec.stem_conv(), vb.pp("conv1"), vb.pp("bn1"))?;
        let mut blocks = Vec::new();
        for b in spec.blocks() {
            let vbb = vb.pp(&b.name);
            let convs = b
                .convs
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    ConvBn::new(*g, vbb.pp(format!("conv{}", i + 1)), vbb.pp(format!("bn{}", i + 1)))
                })
                .collect::<Result<_>>()?;
            let downsample = b
                .downsample
                .map(|g| ConvBn::new(g, vbb.pp("downsample").pp("0"), vbb.pp("downsample").pp("1")))
                .transpose()?;
            blocks.push(Block { convs, downsample });
        }
        let fc = linear(spec.features(), spec.num_classes, vb.pp("fc"))?;
        Ok(Self { stem, maxpool: spec.stem == StemKind::Imagenet, blocks, fc })
    }

    /// Logits for an NCHW batch; `train` selects batch statistics and updates running ones.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = self.stem.forward_t(x, train)?.relu()?;
        if self.maxpool {
            y = y.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?.max_pool2d_with_stride(3, 2)?;
        }
        for b in &self.blocks {
            let mut z = y.clone();
            for (i, c) in b.convs.iter().enumerate() {
                z = c.forward_t(&z, train)?;
                if i + 1 < b.convs.len() {
                    z = z.relu()?;
                }
            }
            let short = match &b.downsample {
                Some(d) => d.forward_t(&y, train)?,
                None => y,
            };
            y = (z + short)?.relu()?;
        }
        self.fc.forward(&y.mean((2, 3))?)
    }
}
