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
use super::exits::{ExitHead, ExitType};
use super::spec::{ConvGeom, ResNetSpec};
use super::ModelError;

pub(crate) struct Gen {
    rng: StdRng,
    pub(crate) out: HashMap<String, Tensor>,
}

impl Gen {
    pub(crate) fn new(seed: u64) -> Self {
        Self { rng: StdRng::seed_from_u64(seed), out: HashMap::new() }
    }

    pub(crate) fn put(&mut self, name: String, shape: &[usize], lo: f32, hi: f32) -> Result<(), ModelError> {
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

    pub(crate) fn linear(&mut self, prefix: &str, i: usize, o: usize) -> Result<(), ModelError> {
        let a = (1.0 / i as f32).sqrt();
        self.put(format!("{prefix}.weight"), &[o, i], -a, a)?;
        self.put(format!("{prefix}.bias"), &[o], -a, a)
    }
}

/// Exit heads of `exit_types` at position `p` on `channels` pooled features.
pub(crate) fn exits(
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
        BackboneSpec::ConvNextV2(s) => super::convnext::random::checkpoint(s, exit_types, seed),
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
