//! ResNet with torchvision tensor names, BatchNorm folded into the convolutions at load time.

use super::exits::ExitHead;
use super::linear::Linear;
use super::spec::{BlockLayout, ConvGeom, ResNetSpec};
use super::store::TensorStore;
use super::ModelError;

/// BatchNorm epsilon used by torchvision.
pub const BN_EPS: f32 = 1e-5;

/// A convolution with its BatchNorm folded in: `W' = W·γ/σ`, `b' = β − μ·γ/σ`.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedConv {
    /// Geometry.
    pub geom: ConvGeom,
    /// Weights in OIHW order.
    pub weight: Vec<f32>,
    /// Per-output-channel bias.
    pub bias: Vec<f32>,
}

/// One residual block, inference form.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedBlock {
    /// Checkpoint prefix, e.g. `layer1.0`.
    pub name: String,
    /// Main path; ReLU after each but the last, whose ReLU follows the residual add.
    pub convs: Vec<FoldedConv>,
    /// Projection shortcut, or identity when `None`.
    pub downsample: Option<FoldedConv>,
}

/// A ResNet backbone ready for inference, plus its final head.
#[derive(Debug, Clone, PartialEq)]
pub struct ResNet {
    /// Architecture.
    pub spec: ResNetSpec,
    /// Stem convolution (followed by ReLU, and max-pool for the ImageNet stem).
    pub stem: FoldedConv,
    /// Residual blocks; block `i` is exit position `i`.
    pub blocks: Vec<FoldedBlock>,
    /// Final classifier on globally pooled features.
    pub fc: Linear,
}

fn load_conv(store: &TensorStore, conv: &str, bn: &str, g: ConvGeom) -> Result<FoldedConv, ModelError> {
    let mut weight = store.get(&format!("{conv}.weight"), &[g.cout, g.cin, g.k, g.k])?;
    let c = [g.cout];
    let gamma = store.get(&format!("{bn}.weight"), &c)?;
    let beta = store.get(&format!("{bn}.bias"), &c)?;
    let mean = store.get(&format!("{bn}.running_mean"), &c)?;
    let var = store.get(&format!("{bn}.running_var"), &c)?;
    let per_out = g.cin * g.k * g.k;
    let mut bias = Vec::with_capacity(g.cout);
    for o in 0..g.cout {
        let scale = gamma[o] / (var[o] + BN_EPS).sqrt();
        weight[o * per_out..(o + 1) * per_out].iter_mut().for_each(|w| *w *= scale);
        bias.push(beta[o] - mean[o] * scale);
    }
    Ok(FoldedConv { geom: g, weight, bias })
}

/// Loads a dense layer stored as `{prefix}.weight` `[out, in]` and `{prefix}.bias` `[out]`.
pub fn load_linear(
    store: &TensorStore,
    prefix: &str,
    inputs: usize,
    outputs: usize,
) -> Result<Linear, ModelError> {
    let weight = store.get(&format!("{prefix}.weight"), &[outputs, inputs])?;
    let bias = store.get(&format!("{prefix}.bias"), &[outputs])?;
    Ok(Linear::new(inputs, outputs, weight, bias))
}

fn load_block(store: &TensorStore, b: &BlockLayout) -> Result<FoldedBlock, ModelError> {
    let convs = b
        .convs
        .iter()
        .enumerate()
        .map(|(i, g)| {
            load_conv(store, &format!("{}.conv{}", b.name, i + 1), &format!("{}.bn{}", b.name, i + 1), *g)
        })
        .collect::<Result<_, _>>()?;
    let downsample = b
        .downsample
        .map(|g| {
            load_conv(store, &format!("{}.downsample.0", b.name), &format!("{}.downsample.1", b.name), g)
        })
        .transpose()?;
    Ok(FoldedBlock { name: b.name.clone(), convs, downsample })
}

impl ResNet {
    /// Loads and folds the backbone named as torchvision names it.
    pub fn load(spec: &ResNetSpec, store: &TensorStore) -> Result<Self, ModelError> {
        spec.validate()?;
        let stem = load_conv(store, "conv1", "bn1", spec.stem_conv())?;
        let blocks = spec.blocks().iter().map(|b| load_block(store, b)).collect::<Result<_, _>>()?;
        let fc = load_linear(store, "fc", spec.features(), spec.num_classes)?;
        Ok(Self { spec: spec.clone(), stem, blocks, fc })
    }

    /// Channels at the output of block `i`.
    pub fn channels_at(&self, i: usize) -> usize {
        self.blocks[i].convs.last().map_or(0, |c| c.geom.cout)
    }
}

/// Loads the exit head `ty` at `position` (`exits.{position}.{ty}.{k}.{weight,bias}`).
pub fn load_exit(
    store: &TensorStore,
    position: usize,
    ty: super::exits::ExitType,
    channels: usize,
    classes: usize,
) -> Result<ExitHead, ModelError> {
    let prefix = ExitHead::prefix(position, &ty);
    let layers = ty
        .layer_dims(channels, classes)
        .iter()
        .enumerate()
        .map(|(k, &(i, o))| load_linear(store, &format!("{prefix}.{k}"), i, o))
        .collect::<Result<_, _>>()?;
    Ok(ExitHead { position, ty, layers })
}
