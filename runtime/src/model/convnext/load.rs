//! A ConvNeXt-V2 loaded under timm's names (`model.safetensors` of `timm/convnextv2_*` loads
//! unrenamed). Nothing is folded: LayerNorm normalises per pixel, so unlike BatchNorm it cannot
//! be merged into the convolution before it.

use super::super::linear::Linear;
use super::super::resnet::{load_linear, FoldedConv};
use super::super::spec::ConvGeom;
use super::super::store::TensorStore;
use super::super::ModelError;
use super::spec::{ConvNextSpec, DW_KERNEL, MLP_RATIO};

/// A LayerNorm's affine parameters (`{prefix}.weight`, `{prefix}.bias`).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNormW {
    /// Scale.
    pub weight: Vec<f32>,
    /// Shift.
    pub bias: Vec<f32>,
}

/// One ConvNeXt-V2 block, with its stage's downsample when it opens a stage.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvNextBlock {
    /// Checkpoint prefix, e.g. `stages.1.blocks.0`.
    pub name: String,
    /// `stages.{i}.downsample`: LayerNorm then a 2×2 stride-2 convolution.
    pub downsample: Option<(LayerNormW, FoldedConv)>,
    /// Depthwise 7×7 convolution (`conv_dw`), weights `[c, 1, 7, 7]`.
    pub conv_dw: FoldedConv,
    /// LayerNorm over channels (`norm`).
    pub norm: LayerNormW,
    /// `mlp.fc1` (c → 4c) as a 1×1 convolution (a Linear's `[out, in]` is OIHW with 1×1).
    pub fc1: FoldedConv,
    /// `mlp.grn`: GRN's weight (γ) and bias (β) over the 4c channels.
    pub grn: LayerNormW,
    /// `mlp.fc2` (4c → c) as a 1×1 convolution.
    pub fc2: FoldedConv,
}

/// A ConvNeXt-V2 backbone ready for inference, plus its head.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvNext {
    /// Architecture.
    pub spec: ConvNextSpec,
    /// `stem.0`: the patchify convolution.
    pub stem: FoldedConv,
    /// `stem.1`: LayerNorm after it.
    pub stem_norm: LayerNormW,
    /// Blocks; block `i` is exit position `i`.
    pub blocks: Vec<ConvNextBlock>,
    /// `head.norm`: LayerNorm on the pooled features.
    pub head_norm: LayerNormW,
    /// `head.fc`.
    pub fc: Linear,
}

fn conv(store: &TensorStore, prefix: &str, g: ConvGeom, groups_in: usize) -> Result<FoldedConv, ModelError> {
    let weight = store.get(&format!("{prefix}.weight"), &[g.cout, groups_in, g.k, g.k])?;
    let bias = store.get(&format!("{prefix}.bias"), &[g.cout])?;
    Ok(FoldedConv { geom: g, weight, bias })
}

fn linear_as_conv(
    store: &TensorStore,
    prefix: &str,
    cin: usize,
    cout: usize,
) -> Result<FoldedConv, ModelError> {
    let weight = store.get(&format!("{prefix}.weight"), &[cout, cin])?;
    let bias = store.get(&format!("{prefix}.bias"), &[cout])?;
    Ok(FoldedConv { geom: ConvGeom { cin, cout, k: 1, stride: 1, pad: 0 }, weight, bias })
}

fn norm(store: &TensorStore, prefix: &str, c: usize) -> Result<LayerNormW, ModelError> {
    Ok(LayerNormW {
        weight: store.get(&format!("{prefix}.weight"), &[c])?,
        bias: store.get(&format!("{prefix}.bias"), &[c])?,
    })
}

impl ConvNext {
    /// Loads the backbone named as timm names it.
    pub fn load(spec: &ConvNextSpec, store: &TensorStore) -> Result<Self, ModelError> {
        spec.validate()?;
        let stem = conv(store, "stem.0", spec.stem_conv(), spec.in_channels)?;
        let stem_norm = norm(store, "stem.1", spec.widths[0])?;
        let blocks = spec
            .blocks()
            .into_iter()
            .map(|b| {
                let c = b.channels;
                let downsample = b
                    .downsample_from
                    .map(|cin| {
                        let pre = format!("stages.{}.downsample", b.stage);
                        Ok::<_, ModelError>((
                            norm(store, &format!("{pre}.0"), cin)?,
                            conv(store, &format!("{pre}.1"), ConvNextSpec::downsample_conv(cin, c), cin)?,
                        ))
                    })
                    .transpose()?;
                let dw = ConvGeom { cin: c, cout: c, k: DW_KERNEL, stride: 1, pad: DW_KERNEL / 2 };
                let hidden = c * MLP_RATIO;
                Ok(ConvNextBlock {
                    downsample,
                    conv_dw: conv(store, &format!("{}.conv_dw", b.name), dw, 1)?,
                    norm: norm(store, &format!("{}.norm", b.name), c)?,
                    fc1: linear_as_conv(store, &format!("{}.mlp.fc1", b.name), c, hidden)?,
                    grn: norm(store, &format!("{}.mlp.grn", b.name), hidden)?,
                    fc2: linear_as_conv(store, &format!("{}.mlp.fc2", b.name), hidden, c)?,
                    name: b.name,
                })
            })
            .collect::<Result<_, ModelError>>()?;
        let head_norm = norm(store, "head.norm", spec.features())?;
        let fc = load_linear(store, "head.fc", spec.features(), spec.num_classes)?;
        Ok(Self { spec: spec.clone(), stem, stem_norm, blocks, head_norm, fc })
    }
}

impl ConvNextSpec {
    /// The stem convolution (`stem.0`): a patch × patch convolution with stride patch.
    pub fn stem_conv(&self) -> ConvGeom {
        let p = self.stem_patch;
        ConvGeom { cin: self.in_channels, cout: self.widths[0], k: p, stride: p, pad: 0 }
    }

    /// A stage's downsample convolution (`downsample.1`): 2×2, stride 2.
    pub fn downsample_conv(cin: usize, cout: usize) -> ConvGeom {
        ConvGeom { cin, cout, k: 2, stride: 2, pad: 0 }
    }
}
