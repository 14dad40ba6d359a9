//! The ConvNeXt-V2 family's architecture description, as timm builds it (`convnextv2_*`).
//!
//! A patchify stem (`stem.0`: a k×k stride-k convolution, `stem.1`: LayerNorm over channels),
//! then stages of blocks; every stage after the first opens with a downsample (`downsample.0`:
//! LayerNorm, `downsample.1`: a 2×2 stride-2 convolution). A block is a depthwise 7×7
//! convolution, LayerNorm, `mlp.fc1` (c → 4c), exact GELU, GRN over the 4c channels, `mlp.fc2`
//! (4c → c) and the residual add (no layer scale in V2). The head is global average pooling,
//! LayerNorm (`head.norm`) and `head.fc`.

use serde::{Deserialize, Serialize};

use super::super::spec::{MAX_CLASSES, MAX_STAGES, MAX_STAGE_DEPTH, MAX_WIDTH};
use super::super::ModelError;

/// Kernel of the depthwise convolution in every block.
pub const DW_KERNEL: usize = 7;
/// Hidden width of a block's MLP relative to its width.
pub const MLP_RATIO: usize = 4;
/// Epsilon of every LayerNorm and of GRN (timm's `LayerNorm2d(eps=1e-6)`, `GlobalResponseNorm`).
pub const EPS: f32 = 1e-6;
/// Largest stem patch (kernel = stride).
pub const MAX_PATCH: usize = 16;

/// A ConvNeXt-V2 backbone: patchify stem, stages of blocks, global average pool, LayerNorm, `fc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvNextSpec {
    /// Number of blocks in each stage (`stages.0`, `stages.1`, ...).
    pub depths: Vec<usize>,
    /// Channels of each stage.
    pub widths: Vec<usize>,
    /// Kernel and stride of the stem convolution: 4 in timm (224 → 56); 2 for small inputs.
    pub stem_patch: usize,
    /// Input image channels.
    pub in_channels: usize,
    /// Classes of the final `head.fc`.
    pub num_classes: usize,
}

/// One block of a ConvNeXt-V2 as the checkpoint names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvNextBlockLayout {
    /// Checkpoint prefix, e.g. `stages.1.blocks.0`.
    pub name: String,
    /// Stage index.
    pub stage: usize,
    /// Channels of the block.
    pub channels: usize,
    /// The stage's downsample (`stages.{i}.downsample`, input channels) when this block is the
    /// first of a stage after the first: it runs before the block, as part of its position.
    pub downsample_from: Option<usize>,
}

impl ConvNextSpec {
    /// timm's `convnextv2_{atto,femto,pico,nano,tiny,base}` (ImageNet: 3 channels, 1000 classes),
    /// or `convnextv2_atto_s`: atto's stages behind a 2×2 stride-2 stem for 28–32 px images
    /// (1 channel, 10 classes: 28 px → 14, 7, 3, 1 per stage).
    pub fn builtin(name: &str) -> Option<Self> {
        let (depths, widths): (&[usize], &[usize]) = match name.strip_prefix("convnextv2_")? {
            "atto" | "atto_s" => (&[2, 2, 6, 2], &[40, 80, 160, 320]),
            "femto" => (&[2, 2, 6, 2], &[48, 96, 192, 384]),
            "pico" => (&[2, 2, 6, 2], &[64, 128, 256, 512]),
            "nano" => (&[2, 2, 8, 2], &[80, 160, 320, 640]),
            "tiny" => (&[3, 3, 9, 3], &[96, 192, 384, 768]),
            "base" => (&[3, 3, 27, 3], &[128, 256, 512, 1024]),
            _ => return None,
        };
        let small = name.ends_with("_s");
        Some(Self {
            depths: depths.to_vec(),
            widths: widths.to_vec(),
            stem_patch: if small { 2 } else { 4 },
            in_channels: if small { 1 } else { 3 },
            num_classes: if small { 10 } else { 1000 },
        })
    }

    /// Checks that the description is usable (bounds as for the ResNets).
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |why: &str| Err(ModelError::BadSpec(why.to_string()));
        if self.depths.is_empty() || self.depths.len() != self.widths.len() {
            return bad("depths and widths must be non-empty and of one length");
        }
        if self.depths.contains(&0) || self.widths.contains(&0) {
            return bad("every stage needs at least one block and a non-zero width");
        }
        if self.in_channels == 0 || self.num_classes == 0 {
            return bad("in_channels and num_classes must be positive");
        }
        if !(1..=MAX_PATCH).contains(&self.stem_patch) {
            return bad(&format!("stem_patch must be in 1..={MAX_PATCH}"));
        }
        if self.depths.len() > MAX_STAGES || self.depths.iter().any(|&d| d > MAX_STAGE_DEPTH) {
            return bad(&format!("at most {MAX_STAGES} stages of at most {MAX_STAGE_DEPTH} blocks"));
        }
        // The MLP is 4× the width: bound that, so the hidden layer stays under MAX_WIDTH too.
        if self.widths.iter().any(|&w| w * MLP_RATIO > MAX_WIDTH) || self.in_channels > MAX_WIDTH {
            return bad(&format!("widths times {MLP_RATIO} and in_channels must be at most {MAX_WIDTH}"));
        }
        if self.num_classes > MAX_CLASSES {
            return bad(&format!("num_classes must be at most {MAX_CLASSES}"));
        }
        Ok(())
    }

    /// Every block in execution order; block `i` is exit position `i`.
    pub fn blocks(&self) -> Vec<ConvNextBlockLayout> {
        let mut out = Vec::new();
        for (s, (&depth, &width)) in self.depths.iter().zip(&self.widths).enumerate() {
            for j in 0..depth {
                let downsample_from = (s > 0 && j == 0).then(|| self.widths[s - 1]);
                out.push(ConvNextBlockLayout {
                    name: format!("stages.{s}.blocks.{j}"),
                    stage: s,
                    channels: width,
                    downsample_from,
                });
            }
        }
        out
    }

    /// Channels entering the head.
    pub fn features(&self) -> usize {
        self.widths.last().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_layout_matches_timm() {
        let s = ConvNextSpec::builtin("convnextv2_tiny").unwrap();
        s.validate().unwrap();
        let b = s.blocks();
        assert_eq!(b.len(), 18);
        assert_eq!(b[0].name, "stages.0.blocks.0");
        assert_eq!(b[0].downsample_from, None, "stage 0 has no downsample");
        assert_eq!(b[3].name, "stages.1.blocks.0");
        assert_eq!(b[3].downsample_from, Some(96));
        assert_eq!(b[17].channels, 768);
        assert_eq!(s.features(), 768);
        assert!(ConvNextSpec::builtin("convnextv2_huge").is_none());
        assert!(ConvNextSpec::builtin("resnet50").is_none());
    }

    #[test]
    fn bad_specs_are_refused() {
        let mut s = ConvNextSpec::builtin("convnextv2_atto_s").unwrap();
        s.stem_patch = 0;
        assert!(s.validate().is_err());
        let mut s = ConvNextSpec::builtin("convnextv2_atto").unwrap();
        s.widths[3] = MAX_WIDTH;
        assert!(matches!(s.validate(), Err(ModelError::BadSpec(m)) if m.contains("times 4")));
    }
}
