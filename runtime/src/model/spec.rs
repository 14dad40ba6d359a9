//! The ResNet family's architecture description: torchvision's ResNet, generalised to any
//! number of stages and a small-input stem.

use serde::{Deserialize, Serialize};

use super::ModelError;

/// Most stages a backbone may have.
pub const MAX_STAGES: usize = 16;
/// Most residual blocks in one stage.
pub const MAX_STAGE_DEPTH: usize = 1024;
/// Widest stage, stem or input, in channels (before a bottleneck's expansion).
pub const MAX_WIDTH: usize = 1 << 16;
/// Most classes.
pub const MAX_CLASSES: usize = 1 << 20;

/// Residual block family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockKind {
    /// Two 3×3 convolutions (resnet18/34, ResNet-20 style).
    Basic,
    /// 1×1 → 3×3 → 1×1 with expansion 4 (resnet50 and deeper); stride on the 3×3 (v1.5).
    Bottleneck,
}

impl BlockKind {
    /// Output channels relative to the stage width.
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// Stem of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StemKind {
    /// 7×7 stride-2 convolution, then 3×3 stride-2 max-pool (ImageNet-sized inputs).
    Imagenet,
    /// 3×3 stride-1 convolution, no pooling (28×28 or 32×32 inputs).
    Small,
}

/// A ResNet backbone: stem, stages of residual blocks, global average pool, `fc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetSpec {
    /// Residual block family.
    pub block: BlockKind,
    /// Number of blocks in each stage (`layer1`, `layer2`, ...).
    pub depths: Vec<usize>,
    /// Base width of each stage; a stage outputs `width × expansion` channels.
    pub widths: Vec<usize>,
    /// Stem type.
    pub stem: StemKind,
    /// Output channels of the stem convolution.
    pub stem_width: usize,
    /// Input image channels.
    pub in_channels: usize,
    /// Classes of the final `fc` head.
    pub num_classes: usize,
}

/// Geometry of one convolution (no dilation, no groups: ResNets need neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Square kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub pad: usize,
}

impl ConvGeom {
    /// Output spatial size for an input of `size`.
    pub fn out_size(&self, size: usize) -> usize {
        (size + 2 * self.pad - self.k) / self.stride + 1
    }
}

/// Layout of one residual block: its checkpoint prefix and convolutions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockLayout {
    /// Checkpoint prefix, e.g. `layer2.0`.
    pub name: String,
    /// Main-path convolutions in order (`conv1`, `conv2`[, `conv3`]).
    pub convs: Vec<ConvGeom>,
    /// The 1×1 projection shortcut (`downsample.0`), when shapes change.
    pub downsample: Option<ConvGeom>,
    /// Channels the block outputs.
    pub out_channels: usize,
}

impl ResNetSpec {
    /// torchvision's resnet18/34/50/101/152 by name.
    pub fn torchvision(name: &str) -> Result<Self, ModelError> {
        let (block, depths) = match name {
            "resnet18" => (BlockKind::Basic, vec![2, 2, 2, 2]),
            "resnet34" => (BlockKind::Basic, vec![3, 4, 6, 3]),
            "resnet50" => (BlockKind::Bottleneck, vec![3, 4, 6, 3]),
            "resnet101" => (BlockKind::Bottleneck, vec![3, 4, 23, 3]),
            "resnet152" => (BlockKind::Bottleneck, vec![3, 8, 36, 3]),
            other => return Err(ModelError::UnknownArch(other.to_string())),
        };
        Ok(Self {
            block,
            depths,
            widths: vec![64, 128, 256, 512],
            stem: StemKind::Imagenet,
            stem_width: 64,
            in_channels: 3,
            num_classes: 1000,
        })
    }

    /// A small-input ResNet in the style of He et al.'s CIFAR ResNet-(6n+2), with projection
    /// shortcuts: `resnet20` is depths [3,3,3] and widths [16,32,64].
    pub fn small(depths: Vec<usize>, widths: Vec<usize>, in_channels: usize, classes: usize) -> Self {
        Self {
            block: BlockKind::Basic,
            stem_width: widths.first().copied().unwrap_or(16),
            depths,
            widths,
            stem: StemKind::Small,
            in_channels,
            num_classes: classes,
        }
    }

    /// Resolves a built-in architecture name: torchvision's or `resnet20`/`resnet32`/`resnet56`
    /// (small-input, for 28×28 grayscale with 10 classes).
    pub fn builtin(name: &str) -> Result<Self, ModelError> {
        let small_n = match name {
            "resnet20" => Some(3),
            "resnet32" => Some(5),
            "resnet44" => Some(7),
            "resnet56" => Some(9),
            _ => None,
        };
        match small_n {
            Some(n) => Ok(Self::small(vec![n; 3], vec![16, 32, 64], 1, 10)),
            None => Self::torchvision(name),
        }
    }

    /// Checks that the description is usable.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |why: &str| Err(ModelError::BadSpec(why.to_string()));
        if self.depths.is_empty() {
            return bad("depths is empty");
        }
        if self.depths.len() != self.widths.len() {
            return bad("depths and widths differ in length");
        }
        if self.depths.contains(&0) || self.widths.contains(&0) {
            return bad("every stage needs at least one block and a non-zero width");
        }
        if self.stem_width == 0 || self.in_channels == 0 || self.num_classes == 0 {
            return bad("stem_width, in_channels and num_classes must be positive");
        }
        // Bounds far above any ResNet (resnet152: 36 blocks in a stage, widths to 512), so a
        // manifest's number cannot make `blocks()` loop for ever or the MACs overflow.
        if self.depths.len() > MAX_STAGES || self.depths.iter().any(|&d| d > MAX_STAGE_DEPTH) {
            return bad(&format!("at most {MAX_STAGES} stages of at most {MAX_STAGE_DEPTH} blocks"));
        }
        if self.widths.iter().chain([&self.stem_width, &self.in_channels]).any(|&w| w > MAX_WIDTH) {
            return bad(&format!("widths, stem_width and in_channels must be at most {MAX_WIDTH}"));
        }
        if self.num_classes > MAX_CLASSES {
            return bad(&format!("num_classes must be at most {MAX_CLASSES}"));
        }
        Ok(())
    }

    /// The stem convolution.
    pub fn stem_conv(&self) -> ConvGeom {
        match self.stem {
            StemKind::Imagenet => {
                ConvGeom { cin: self.in_channels, cout: self.stem_width, k: 7, stride: 2, pad: 3 }
            }
            StemKind::Small => {
                ConvGeom { cin: self.in_channels, cout: self.stem_width, k: 3, stride: 1, pad: 1 }
            }
        }
    }

    /// Every residual block in execution order; block `i` is exit position `i`.
    pub fn blocks(&self) -> Vec<BlockLayout> {
        let exp = self.block.expansion();
        let mut inplanes = self.stem_width;
        let mut out = Vec::new();
        for (s, (&depth, &width)) in self.depths.iter().zip(&self.widths).enumerate() {
            for j in 0..depth {
                let stride = if s > 0 && j == 0 { 2 } else { 1 };
                let outc = width * exp;
                let convs = match self.block {
                    BlockKind::Basic => vec![
                        ConvGeom { cin: inplanes, cout: width, k: 3, stride, pad: 1 },
                        ConvGeom { cin: width, cout: width, k: 3, stride: 1, pad: 1 },
                    ],
                    BlockKind::Bottleneck => vec![
                        ConvGeom { cin: inplanes, cout: width, k: 1, stride: 1, pad: 0 },
                        ConvGeom { cin: width, cout: width, k: 3, stride, pad: 1 },
                        ConvGeom { cin: width, cout: outc, k: 1, stride: 1, pad: 0 },
                    ],
                };
                let downsample = (stride != 1 || inplanes != outc).then_some(ConvGeom {
                    cin: inplanes,
                    cout: outc,
                    k: 1,
                    stride,
                    pad: 0,
                });
                out.push(BlockLayout {
                    name: format!("layer{}.{}", s + 1, j),
                    convs,
                    downsample,
                    out_channels: outc,
                });
                inplanes = outc;
            }
        }
        out
    }

    /// Channels entering the final `fc`.
    pub fn features(&self) -> usize {
        self.widths.last().copied().unwrap_or(0) * self.block.expansion()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnet50_layout_matches_torchvision() {
        let s = ResNetSpec::torchvision("resnet50").unwrap();
        let b = s.blocks();
        assert_eq!(b.len(), 16);
        assert_eq!(b[0].name, "layer1.0");
        assert!(b[0].downsample.is_some(), "64 -> 256 needs a projection");
        assert!(b[1].downsample.is_none());
        assert_eq!(b[3].name, "layer2.0");
        assert_eq!(b[3].convs[1].stride, 2, "v1.5 strides on the 3x3");
        assert_eq!(s.features(), 2048);
    }

    #[test]
    fn resnet18_has_no_projection_in_layer1() {
        let b = ResNetSpec::torchvision("resnet18").unwrap().blocks();
        assert_eq!(b.len(), 8);
        assert!(b[0].downsample.is_none());
        assert!(b[2].downsample.is_some());
    }

    #[test]
    fn rejects_unknown_and_bad_specs() {
        assert!(matches!(ResNetSpec::builtin("resnet7"), Err(ModelError::UnknownArch(_))));
        let mut s = ResNetSpec::builtin("resnet20").unwrap();
        s.widths.pop();
        assert!(s.validate().is_err());
    }

    /// Found by fuzzing the manifest: a depth of u64::MAX made `blocks()` loop for ever and a
    /// width of 2^29 overflowed the MACs count (a panic under overflow checks).
    #[test]
    fn absurd_sizes_are_refused_before_anything_is_derived() {
        let deep = ResNetSpec::small(vec![3, 3, usize::MAX], vec![16, 32, 64], 1, 10);
        assert!(matches!(deep.validate(), Err(ModelError::BadSpec(m)) if m.contains("1024 blocks")));
        let wide = ResNetSpec::small(vec![2, 1, 1], vec![4, 8, 1 << 29], 1, 5);
        assert!(matches!(wide.validate(), Err(ModelError::BadSpec(m)) if m.contains("at most 65536")));
        let classes = ResNetSpec::small(vec![1], vec![4], 1, usize::MAX);
        assert!(classes.validate().is_err());
    }
}
