//! Fixed-seed random checkpoints with the checkpoint names of each family (torchvision's for
//! the ResNets, timm's for ConvNeXt-V2), for tests and benchmarks.
//!
//! They go through the same loading and folding path as trained weights, so what is tested is
//! what serves.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::backbone::BackboneSpec;
use super::convnext::spec::{ConvNextSpec, DW_KERNEL, MLP_RATIO};
use super::exits::{ExitHead, ExitType};
use super::spec::{ConvGeom, ResNetSpec};
use super::ModelError;

struct Gen {
    rng: StdRng,
    out: HashMap<String, Tensor>,
}

impl Gen {
    fn new(seed: u64) -> Self {
        Self { rng: StdRng::seed_from_u64(seed), out: HashMap::new() }
    }

    fn put(&mut self, name: String, shape: &[usize], lo: f32, hi: f32) -> Result<(), ModelError> {
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| self.rng.random_range(lo..hi)).collect();
        let t = Tensor::from_vec(v, shape, &Device::Cpu).map_err(|e| ModelError::Tensor(e.to_string()))?;
        self.out.insert(name, t);
        Ok(())
    }

    /// He-uniform weights and BatchNorm statistics near identity.
    fn conv_bn(&mut self, conv: &str, bn: &str, g: ConvGeom) -> Result<(), ModelError> {
        let a = (6.0 / (g.cin * g.k * g.k) as f32).sqrt();
        self.put(format!("{conv}.weight"), &[g.cout, g.cin, g.k, g.k], -a, a)?;
        self.put(format!("{bn}.weight"), &[g.cout], 0.4, 0.8)?;
        self.put(format!("{bn}.bias"), &[g.cout], -0.1, 0.1)?;
        self.put(format!("{bn}.running_mean"), &[g.cout], -0.1, 0.1)?;
        self.put(format!("{bn}.running_var"), &[g.cout], 0.5, 1.5)
    }

    fn linear(&mut self, prefix: &str, i: usize, o: usize) -> Result<(), ModelError> {
        let a = (1.0 / i as f32).sqrt();
        self.put(format!("{prefix}.weight"), &[o, i], -a, a)?;
        self.put(format!("{prefix}.bias"), &[o], -a, a)
    }
}

/// Exit heads of `exit_types` at position `p` on `channels` pooled features.
fn exits(
    g: &mut Gen,
    p: usize,
    channels: usize,
    classes: usize,
    exit_types: &[ExitType],
) -> Result<(), ModelError> {
    for t in exit_types {
        for (k, (i, o)) in t.layer_dims(channels, classes).into_iter().enumerate() {
            g.linear(&format!("{}.{k}", ExitHead::prefix(p, t)), i, o)?;
        }
    }
    Ok(())
}

/// Random backbone tensors for `spec` plus exit heads of `exit_types` at every position.
pub fn random_checkpoint(
    spec: &BackboneSpec,
    exit_types: &[ExitType],
    seed: u64,
) -> Result<HashMap<String, Tensor>, ModelError> {
    spec.validate()?;
    match spec {
        BackboneSpec::ResNet(s) => resnet_checkpoint(s, exit_types, seed),
        BackboneSpec::ConvNextV2(s) => convnext_checkpoint(s, exit_types, seed),
    }
}

fn resnet_checkpoint(
    spec: &ResNetSpec,
    exit_types: &[ExitType],
    seed: u64,
) -> Result<HashMap<String, Tensor>, ModelError> {
    let mut g = Gen::new(seed);
    g.conv_bn("conv1", "bn1", spec.stem_conv())?;
    for (p, b) in spec.blocks().iter().enumerate() {
        for (i, c) in b.convs.iter().enumerate() {
            g.conv_bn(&format!("{}.conv{}", b.name, i + 1), &format!("{}.bn{}", b.name, i + 1), *c)?;
        }
        if let Some(d) = b.downsample {
            g.conv_bn(&format!("{}.downsample.0", b.name), &format!("{}.downsample.1", b.name), d)?;
        }
        exits(&mut g, p, b.out_channels, spec.num_classes, exit_types)?;
    }
    g.linear("fc", spec.features(), spec.num_classes)?;
    Ok(g.out)
}

fn ln(g: &mut Gen, prefix: &str, c: usize) -> Result<(), ModelError> {
    g.put(format!("{prefix}.weight"), &[c], 0.6, 1.4)?;
    g.put(format!("{prefix}.bias"), &[c], -0.2, 0.2)
}

fn conv_bias(g: &mut Gen, prefix: &str, shape: [usize; 4]) -> Result<(), ModelError> {
    let a = (6.0 / (shape[1] * shape[2] * shape[3]) as f32).sqrt();
    g.put(format!("{prefix}.weight"), &shape, -a, a)?;
    g.put(format!("{prefix}.bias"), &[shape[0]], -0.1, 0.1)
}

/// Random tensors for `spec` (He-uniform weights, affine parameters near identity, GRN's
/// weight of either sign so that it matters) plus exit heads of `exit_types` at every position.
fn convnext_checkpoint(
    spec: &ConvNextSpec,
    exit_types: &[ExitType],
    seed: u64,
) -> Result<HashMap<String, Tensor>, ModelError> {
    let mut g = Gen::new(seed);
    let p = spec.stem_patch;
    conv_bias(&mut g, "stem.0", [spec.widths[0], spec.in_channels, p, p])?;
    ln(&mut g, "stem.1", spec.widths[0])?;
    for (pos, b) in spec.blocks().iter().enumerate() {
        let c = b.channels;
        if let Some(cin) = b.downsample_from {
            ln(&mut g, &format!("stages.{}.downsample.0", b.stage), cin)?;
            conv_bias(&mut g, &format!("stages.{}.downsample.1", b.stage), [c, cin, 2, 2])?;
        }
        conv_bias(&mut g, &format!("{}.conv_dw", b.name), [c, 1, DW_KERNEL, DW_KERNEL])?;
        ln(&mut g, &format!("{}.norm", b.name), c)?;
        let h = c * MLP_RATIO;
        g.linear(&format!("{}.mlp.fc1", b.name), c, h)?;
        g.put(format!("{}.mlp.grn.weight", b.name), &[h], -0.5, 0.5)?;
        g.put(format!("{}.mlp.grn.bias", b.name), &[h], -0.1, 0.1)?;
        g.linear(&format!("{}.mlp.fc2", b.name), h, c)?;
        exits(&mut g, pos, c, spec.num_classes, exit_types)?;
    }
    ln(&mut g, "head.norm", spec.features())?;
    g.linear("head.fc", spec.features(), spec.num_classes)?;
    Ok(g.out)
}
