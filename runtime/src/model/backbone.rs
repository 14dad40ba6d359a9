//! The backbone families behind one type: the spec a manifest names, and the loaded network.
//!
//! In `manifest.json` a ConvNeXt-V2 spec carries `"family": "convnextv2"`; a spec without
//! `family` is a ResNet, so bundles written before there was a second family load unchanged
//! (and a ResNet is still written without the tag).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::convnext::{ConvNext, ConvNextSpec};
use super::linear::Linear;
use super::resnet::ResNet;
use super::spec::ResNetSpec;
use super::store::TensorStore;
use super::ModelError;

/// A backbone architecture of any family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackboneSpec {
    /// torchvision's ResNet (and the small-input ResNets).
    ResNet(ResNetSpec),
    /// timm's ConvNeXt-V2.
    ConvNextV2(ConvNextSpec),
}

/// An exit position as the architecture defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionLayout {
    /// Block name in the checkpoint, e.g. `layer2.1` or `stages.1.blocks.0`.
    pub name: String,
    /// Channels at this position.
    pub channels: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "lowercase")]
enum Tagged {
    Resnet(ResNetSpec),
    Convnextv2(ConvNextSpec),
}

impl Serialize for BackboneSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BackboneSpec::ResNet(r) => r.serialize(s),
            BackboneSpec::ConvNextV2(c) => Tagged::Convnextv2(c.clone()).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for BackboneSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        let tagged = v.get("family").is_some();
        if tagged {
            match Tagged::deserialize(v).map_err(D::Error::custom)? {
                Tagged::Resnet(r) => Ok(BackboneSpec::ResNet(r)),
                Tagged::Convnextv2(c) => Ok(BackboneSpec::ConvNextV2(c)),
            }
        } else {
            ResNetSpec::deserialize(v).map(BackboneSpec::ResNet).map_err(D::Error::custom)
        }
    }
}

impl BackboneSpec {
    /// A built-in architecture by name: torchvision's ResNets, the small ResNets
    /// (`resnet20/32/44/56`), timm's `convnextv2_*` and the small-input `convnextv2_atto_s`.
    pub fn builtin(name: &str) -> Result<Self, ModelError> {
        match ConvNextSpec::builtin(name) {
            Some(c) => Ok(BackboneSpec::ConvNextV2(c)),
            None => ResNetSpec::builtin(name).map(BackboneSpec::ResNet),
        }
    }

    /// torchvision's resnet18/34/50/101/152.
    pub fn torchvision(name: &str) -> Result<Self, ModelError> {
        ResNetSpec::torchvision(name).map(BackboneSpec::ResNet)
    }

    /// A small-input ResNet (see [`ResNetSpec::small`]).
    pub fn small(depths: Vec<usize>, widths: Vec<usize>, in_channels: usize, classes: usize) -> Self {
        BackboneSpec::ResNet(ResNetSpec::small(depths, widths, in_channels, classes))
    }

    /// Checks that the description is usable.
    pub fn validate(&self) -> Result<(), ModelError> {
        match self {
            BackboneSpec::ResNet(r) => r.validate(),
            BackboneSpec::ConvNextV2(c) => c.validate(),
        }
    }

    /// Input image channels.
    pub fn in_channels(&self) -> usize {
        match self {
            BackboneSpec::ResNet(r) => r.in_channels,
            BackboneSpec::ConvNextV2(c) => c.in_channels,
        }
    }

    /// Classes of the final head.
    pub fn num_classes(&self) -> usize {
        match self {
            BackboneSpec::ResNet(r) => r.num_classes,
            BackboneSpec::ConvNextV2(c) => c.num_classes,
        }
    }

    /// Sets the input channels and classes (a user's checkpoint decides them).
    pub fn set_io(&mut self, in_channels: usize, num_classes: usize) {
        match self {
            BackboneSpec::ResNet(r) => (r.in_channels, r.num_classes) = (in_channels, num_classes),
            BackboneSpec::ConvNextV2(c) => (c.in_channels, c.num_classes) = (in_channels, num_classes),
        }
    }

    /// Channels entering the final head.
    pub fn features(&self) -> usize {
        match self {
            BackboneSpec::ResNet(r) => r.features(),
            BackboneSpec::ConvNextV2(c) => c.features(),
        }
    }

    /// The exit positions in execution order: one per block.
    pub fn positions(&self) -> Vec<PositionLayout> {
        match self {
            BackboneSpec::ResNet(r) => r
                .blocks()
                .into_iter()
                .map(|b| PositionLayout { name: b.name, channels: b.out_channels })
                .collect(),
            BackboneSpec::ConvNextV2(c) => c
                .blocks()
                .into_iter()
                .map(|b| PositionLayout { name: b.name, channels: b.channels })
                .collect(),
        }
    }

    /// The input size the architecture is made for: 28 for the small-input variants, else 224.
    pub fn default_input(&self) -> usize {
        let small = match self {
            BackboneSpec::ResNet(r) => r.stem == super::spec::StemKind::Small,
            BackboneSpec::ConvNextV2(c) => c.stem_patch < 4,
        };
        if small {
            28
        } else {
            224
        }
    }

    /// Smallest input height and width the architecture runs on: every stride-2 step must
    /// leave at least one pixel.
    pub fn min_input(&self) -> usize {
        match self {
            BackboneSpec::ResNet(_) => 4,
            BackboneSpec::ConvNextV2(c) => (c.stem_patch << c.depths.len().saturating_sub(1)).max(4),
        }
    }

    /// The tensor naming the checkpoint follows, for messages.
    pub fn naming(&self) -> &'static str {
        match self {
            BackboneSpec::ResNet(_) => "torchvision ResNet",
            BackboneSpec::ConvNextV2(_) => "timm ConvNeXt-V2",
        }
    }

    /// The tensors that give the input channels (dim 1) and classes (dim 0) of a checkpoint.
    pub fn io_tensors(&self) -> (&'static str, &'static str) {
        match self {
            BackboneSpec::ResNet(_) => ("conv1.weight", "fc.weight"),
            BackboneSpec::ConvNextV2(_) => ("stem.0.weight", "head.fc.weight"),
        }
    }
}

/// A loaded backbone of any family, with its final head.
#[derive(Debug, Clone, PartialEq)]
pub enum Backbone {
    /// A ResNet with BatchNorm folded.
    ResNet(ResNet),
    /// A ConvNeXt-V2.
    ConvNext(ConvNext),
}

impl Backbone {
    /// Loads the backbone `spec` from checkpoint tensors under the family's names; a missing
    /// tensor or a wrong shape is an error naming the tensor and the shapes.
    pub fn load(spec: &BackboneSpec, store: &TensorStore) -> Result<Self, ModelError> {
        match spec {
            BackboneSpec::ResNet(r) => ResNet::load(r, store).map(Backbone::ResNet),
            BackboneSpec::ConvNextV2(c) => ConvNext::load(c, store).map(Backbone::ConvNext),
        }
    }

    /// The architecture.
    pub fn spec(&self) -> BackboneSpec {
        match self {
            Backbone::ResNet(r) => BackboneSpec::ResNet(r.spec.clone()),
            Backbone::ConvNext(c) => BackboneSpec::ConvNextV2(c.spec.clone()),
        }
    }

    /// Number of exit positions (blocks).
    pub fn positions(&self) -> usize {
        match self {
            Backbone::ResNet(r) => r.blocks.len(),
            Backbone::ConvNext(c) => c.blocks.len(),
        }
    }

    /// Channels at the output of block `i`.
    pub fn channels_at(&self, i: usize) -> usize {
        match self {
            Backbone::ResNet(r) => r.channels_at(i),
            Backbone::ConvNext(c) => c.blocks[i].fc2.geom.cout,
        }
    }

    /// Classes of the final head.
    pub fn num_classes(&self) -> usize {
        self.fc().outputs
    }

    /// The final linear layer.
    pub fn fc(&self) -> &Linear {
        match self {
            Backbone::ResNet(r) => &r.fc,
            Backbone::ConvNext(c) => &c.fc,
        }
    }

    /// Logits of the final head for `n` rows of globally pooled features (ConvNeXt's head
    /// normalises them first).
    pub fn head(&self, pooled: &[f32], n: usize) -> Vec<f32> {
        match self {
            Backbone::ResNet(r) => r.fc.forward(pooled, n, false),
            Backbone::ConvNext(c) => {
                let ln = dyce_kernels::LayerNormC::new(
                    c.fc.inputs,
                    super::convnext::spec::EPS,
                    &c.head_norm.weight,
                    &c.head_norm.bias,
                )
                .expect("head.norm shapes checked at load");
                let mut normed = Vec::with_capacity(pooled.len());
                ln.forward_rows(pooled, &mut normed);
                c.fc.forward(&normed, n, false)
            }
        }
    }
}
