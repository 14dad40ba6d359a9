//! A trainable ResNet on candle, with the same torchvision tensor names as the inference
//! loader, so a training checkpoint is a bundle's backbone without any renaming.
//!
//! Activations are NHWC internally: convolutions are im2col + matmul and batch norm is a fused
//! op (see [`super::fastops`]), which makes the backward pass fast on CPU. Weights keep the
//! torchvision OIHW layout.

use candle_core::{Module, Result, Tensor, Var};
use candle_nn::{linear, Init, Linear, VarBuilder};

use super::fastops::{add_relu, conv2d_nhwc, conv_bn_train, BnStats, BN_EPS};
use dyce_runtime::model::spec::{ConvGeom, ResNetSpec, StemKind};

/// Running-statistics momentum, as torchvision.
const BN_MOMENTUM: f64 = 0.1;

struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
}

impl BatchNorm {
    fn new(c: usize, vb: VarBuilder) -> Result<Self> {
        let running_mean = vb.get_with_hints(c, "running_mean", Init::Const(0.))?;
        let running_var = vb.get_with_hints(c, "running_var", Init::Const(1.))?;
        Ok(Self {
            weight: vb.get_with_hints(c, "weight", Init::Const(1.))?,
            bias: vb.get_with_hints(c, "bias", Init::Const(0.))?,
            // Shares storage with the VarMap's variable, so updates land in checkpoints.
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
        })
    }

    /// Running-average update from batch statistics (unbiased variance, as PyTorch).
    fn update_running(&self, st: &BnStats) -> Result<()> {
        let dev = self.weight.device();
        let m = BN_MOMENTUM;
        let unbias = st.count as f64 / (st.count as f64 - 1.0).max(1.0);
        let mean = Tensor::new(st.mean.as_slice(), dev)?;
        let var = (Tensor::new(st.var.as_slice(), dev)? * (m * unbias))?;
        self.running_mean.set(&((self.running_mean.as_tensor() * (1.0 - m))? + (mean * m)?)?)?;
        self.running_var.set(&((self.running_var.as_tensor() * (1.0 - m))? + var)?)
    }

    /// Inference-mode NHWC batch norm (+ ReLU) from the running statistics.
    fn forward_eval(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let scale = (&self.weight / (self.running_var.as_tensor() + BN_EPS)?.sqrt()?)?;
        let shift = (&self.bias - (self.running_mean.as_tensor() * &scale)?)?;
        let y = x.broadcast_mul(&scale)?.broadcast_add(&shift)?;
        if relu {
            y.relu()
        } else {
            Ok(y)
        }
    }
}

struct ConvBn {
    weight: Tensor,
    stride: usize,
    pad: usize,
    bn: BatchNorm,
}

impl ConvBn {
    fn new(g: ConvGeom, vb_conv: VarBuilder, vb_bn: VarBuilder) -> Result<Self> {
        let fan_in = (g.cin * g.k * g.k) as f64;
        let bound = (1.0 / fan_in).sqrt();
        let weight = vb_conv.get_with_hints(
            (g.cout, g.cin, g.k, g.k),
            "weight",
            Init::Uniform { lo: -bound, up: bound },
        )?;
        Ok(Self { weight, stride: g.stride, pad: g.pad, bn: BatchNorm::new(g.cout, vb_bn)? })
    }

    /// NHWC in, NHWC out.
    fn forward_t(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        if train {
            let bn = &self.bn;
            let (y, st) = conv_bn_train(x, &self.weight, &bn.weight, &bn.bias, self.stride, self.pad, relu)?;
            bn.update_running(&st)?;
            Ok(y)
        } else {
            self.bn.forward_eval(&conv2d_nhwc(x, &self.weight, self.stride, self.pad)?, relu)
        }
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
    pub fn new(spec: &ResNetSpec, vb: VarBuilder) -> Result<Self> {
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
        let x = if x.dim(1)? == 1 {
            // One channel: NCHW and NHWC share the memory layout.
            let (n, _, h, w) = x.dims4()?;
            x.reshape((n, h, w, 1))?
        } else {
            x.permute((0, 2, 3, 1))?.contiguous()?
        };
        let mut y = self.stem.forward_t(&x, train, true)?;
        if self.maxpool {
            // candle pools NCHW; the ImageNet stem is not the fast path.
            y = y
                .permute((0, 3, 1, 2))?
                .pad_with_zeros(2, 1, 1)?
                .pad_with_zeros(3, 1, 1)?
                .max_pool2d_with_stride(3, 2)?
                .permute((0, 2, 3, 1))?
                .contiguous()?;
        }
        for b in &self.blocks {
            let mut z = y.clone();
            for (i, c) in b.convs.iter().enumerate() {
                z = c.forward_t(&z, train, i + 1 < b.convs.len())?;
            }
            let short = match &b.downsample {
                Some(d) => d.forward_t(&y, train, false)?,
                None => y,
            };
            y = add_relu(&z, &short)?;
        }
        let (n, h, w, c) = y.dims4()?;
        self.fc.forward(&y.reshape((n, h * w, c))?.mean(1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    /// Training throughput of ResNet-20 (`cargo test --release -p dyce-runtime train_step_speed
    /// -- --ignored --nocapture`); `DYCE_BENCH_BATCH` / `DYCE_BENCH_DEPTHS` override the shape.
    #[test]
    #[ignore]
    fn train_step_speed() {
        use super::super::sgd::{Optimizer, Sgd};
        let batch: usize = std::env::var("DYCE_BENCH_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(128);
        let depths: Vec<usize> = std::env::var("DYCE_BENCH_DEPTHS")
            .ok()
            .map(|v| v.split(',').map(|d| d.parse().unwrap()).collect())
            .unwrap_or(vec![3, 3, 3]);
        super::super::fastops::keep_freed_memory();
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let spec = ResNetSpec::small(depths.clone(), vec![16, 32, 64], 1, 10);
        let net = TrainResNet::new(&spec, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
        let named: Vec<(String, Var)> =
            varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut sgd = Sgd::new(named, 0.9, 5e-4);
        sgd.set_lr(0.01);
        let x = Tensor::randn(0f32, 1.0, (batch, 1, 28, 28), &dev).unwrap();
        let y = Tensor::from_vec((0..batch as u32).map(|i| i % 10).collect::<Vec<_>>(), batch, &dev).unwrap();
        let mut step = || {
            let t0 = std::time::Instant::now();
            let l = candle_nn::loss::cross_entropy(&net.forward_t(&x, true).unwrap(), &y).unwrap();
            let t1 = std::time::Instant::now();
            let g = l.backward().unwrap();
            let t2 = std::time::Instant::now();
            sgd.step(&g).unwrap();
            let _ = l.to_scalar::<f32>().unwrap();
            (t1 - t0, t2 - t1, t2.elapsed())
        };
        step();
        let n = 5;
        let start = std::time::Instant::now();
        let mut parts = [0f64; 3];
        for _ in 0..n {
            let (f, b, s) = step();
            parts[0] += f.as_secs_f64();
            parts[1] += b.as_secs_f64();
            parts[2] += s.as_secs_f64();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "depths {depths:?} batch {batch}: {:.1} images/s (per step: forward {:.0} ms, backward {:.0} ms, sgd {:.0} ms)",
            (n * batch) as f64 / secs,
            1e3 * parts[0] / n as f64,
            1e3 * parts[1] / n as f64,
            1e3 * parts[2] / n as f64
        );
    }
}
