//! A trainable ConvNeXt-V2 on candle, under timm's tensor names, so a training checkpoint loads
//! as a bundle's backbone (and as timm's `model.safetensors` would) without renaming.
//!
//! Activations are NHWC throughout, as timm's blocks run them: LayerNorm and the MLP work on the
//! last (channel) dimension, the 2×2 patchify convolutions are im2col + matmul and the 7×7
//! depthwise convolution is a custom op ([`super::fastops`]), so the backward pass stays fast
//! on CPU. There is no batch statistic, so training and inference compute the same function.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use super::fastops::{conv2d_nhwc, depthwise_nhwc, grn_nhwc, layer_norm_last};
use dyce_runtime::model::convnext::spec::{ConvNextSpec, DW_KERNEL, EPS, MLP_RATIO};

/// Standard deviation of timm's truncated-normal initialisation of every conv and linear weight.
const INIT_STD: f64 = 0.02;
/// Added under GRN's square root so its gradient stays finite when a channel is all zero (GELU
/// of exact zeros); 1e-12 is far below any squared activation sum that matters.
const GRN_SQRT_FLOOR: f32 = 1e-12;

struct Norm {
    weight: Tensor,
    bias: Tensor,
}

impl Norm {
    fn new(c: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(c, "weight", Init::Const(1.))?,
            bias: vb.get_with_hints(c, "bias", Init::Const(0.))?,
        })
    }

    /// LayerNorm over the last dimension (timm's `LayerNorm2d` on NCHW is the same per pixel).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        layer_norm_last(x, &self.weight, &self.bias, EPS)
    }
}

/// A convolution or linear layer with bias, weights in timm's layout.
struct Layer {
    weight: Tensor,
    bias: Tensor,
}

impl Layer {
    fn new(shape: &[usize], vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(shape, "weight", Init::Const(0.))?,
            bias: vb.get_with_hints(shape[0], "bias", Init::Const(0.))?,
        })
    }

    /// Patchify convolution (kernel = stride = k) of NHWC `x`.
    fn patchify(&self, x: &Tensor) -> Result<Tensor> {
        let k = self.weight.dim(2)?;
        conv2d_nhwc(x, &self.weight, k, 0)?.broadcast_add(&self.bias)
    }

    /// Linear layer on the last dimension of NHWC `x`.
    fn linear(&self, x: &Tensor) -> Result<Tensor> {
        let (n, h, w, c) = x.dims4()?;
        let y = x.reshape((n * h * w, c))?.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?;
        y.reshape((n, h, w, self.weight.dim(0)?))
    }
}

struct Block {
    downsample: Option<(Norm, Layer)>,
    conv_dw: Layer,
    norm: Norm,
    fc1: Layer,
    grn: Norm,
    fc2: Layer,
}

impl Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = match &self.downsample {
            Some((norm, conv)) => conv.patchify(&norm.forward(x)?)?,
            None => x.clone(),
        };
        let y = depthwise_nhwc(&x, &self.conv_dw.weight)?.broadcast_add(&self.conv_dw.bias)?;
        let y = self.fc1.linear(&self.norm.forward(&y)?)?.gelu_erf()?;
        let y = grn_nhwc(&y, &self.grn.weight, &self.grn.bias, EPS, GRN_SQRT_FLOOR)?;
        self.fc2.linear(&y)? + x
    }
}

/// ConvNeXt-V2 for training; `forward` returns logits.
pub struct TrainConvNext {
    stem: Layer,
    stem_norm: Norm,
    blocks: Vec<Block>,
    head_norm: Norm,
    fc: Layer,
}

impl TrainConvNext {
    /// Creates (or, with a loaded `VarBuilder`, reads) every tensor under timm's names.
    pub fn new(spec: &ConvNextSpec, vb: VarBuilder) -> Result<Self> {
        let p = spec.stem_patch;
        let stem = Layer::new(&[spec.widths[0], spec.in_channels, p, p], vb.pp("stem.0"))?;
        let stem_norm = Norm::new(spec.widths[0], vb.pp("stem.1"))?;
        let mut blocks = Vec::new();
        for b in spec.blocks() {
            let (c, hidden) = (b.channels, b.channels * MLP_RATIO);
            let vbb = vb.pp(&b.name);
            let downsample = b
                .downsample_from
                .map(|cin| {
                    let vd = vb.pp(format!("stages.{}.downsample", b.stage));
                    Ok::<_, candle_core::Error>((
                        Norm::new(cin, vd.pp("0"))?,
                        Layer::new(&[c, cin, 2, 2], vd.pp("1"))?,
                    ))
                })
                .transpose()?;
            blocks.push(Block {
                downsample,
                conv_dw: Layer::new(&[c, 1, DW_KERNEL, DW_KERNEL], vbb.pp("conv_dw"))?,
                norm: Norm::new(c, vbb.pp("norm"))?,
                fc1: Layer::new(&[hidden, c], vbb.pp("mlp.fc1"))?,
                // timm initialises GRN's γ and β to zero: every block starts as the plain MLP.
                grn: Norm {
                    weight: vbb.pp("mlp.grn").get_with_hints(hidden, "weight", Init::Const(0.))?,
                    bias: vbb.pp("mlp.grn").get_with_hints(hidden, "bias", Init::Const(0.))?,
                },
                fc2: Layer::new(&[c, hidden], vbb.pp("mlp.fc2"))?,
            });
        }
        let f = spec.features();
        let head_norm = Norm::new(f, vb.pp("head.norm"))?;
        let fc = Layer::new(&[spec.num_classes, f], vb.pp("head.fc"))?;
        Ok(Self { stem, stem_norm, blocks, head_norm, fc })
    }

    /// Logits for an NCHW batch.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.permute((0, 2, 3, 1))?.contiguous()?;
        let mut y = self.stem_norm.forward(&self.stem.patchify(&x)?)?;
        for b in &self.blocks {
            y = b.forward(&y)?;
        }
        let pooled = self.head_norm.forward(&y.mean((1, 2))?)?;
        pooled.matmul(&self.fc.weight.t()?)?.broadcast_add(&self.fc.bias)
    }
}

/// timm's initialisation, seeded: conv and linear weights from a normal of std 0.02 truncated
/// at ±2 std, everything else as created (LayerNorm 1/0, biases and GRN 0).
pub fn init_weights(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0, INIT_STD).expect("a valid normal");
    for name in names {
        let var = &data[name];
        if var.rank() < 2 {
            continue;
        }
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| loop {
                let v: f64 = normal.sample(&mut rng);
                if v.abs() <= 2.0 * INIT_STD {
                    break v as f32;
                }
            })
            .collect();
        var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?;
    }
    Ok(())
}
