//! The model bundle: `manifest.json`, `weights.safetensors`, `configs.json`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::Tensor;
use dyce_api::ConfigTable;
use serde::{Deserialize, Serialize};

use super::backbone::{Backbone, BackboneSpec};
use super::exits::{ExitHead, ExitType};
use super::macs::{backbone_macs, exit_macs, BackboneMacs};
use super::resnet::load_exit;
use super::store::TensorStore;
use dyce_data::Transform;

use super::ModelError;

/// Bundle format version this build reads and writes.
pub const FORMAT: u32 = 1;

/// What the model expects as input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// `[channels, height, width]` of one image.
    pub shape: [usize; 3],
    /// Per-channel mean subtracted from pixels scaled to [0, 1].
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided out after the mean.
    pub std: Vec<f32>,
    /// Class names, index = class id.
    pub labels: Vec<String>,
    /// How an image of any size becomes this input (resize, crop, interpolation): the same
    /// code for calibration, `dyce load` and `/v1/classify`. Absent: resized to exactly the
    /// input size (bundles made before transforms were recorded).
    #[serde(default, skip_serializing_if = "is_default_transform")]
    pub transform: Transform,
}

impl InputSpec {
    /// The whole preprocessing of this input (decode, transform, normalise) under `limits`.
    pub fn preprocess(&self, limits: dyce_data::DecodeLimits) -> dyce_data::Preprocess {
        dyce_data::Preprocess {
            shape: self.shape,
            transform: self.transform,
            mean: self.mean.clone(),
            std: self.std.clone(),
            limits,
        }
    }
}

fn is_default_transform(t: &Transform) -> bool {
    *t == Transform::default()
}

/// A candidate exit position as recorded in the manifest (derived from the backbone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PositionInfo {
    /// Position index (block index in execution order).
    pub index: usize,
    /// Block name in the checkpoint, e.g. `layer2.1`.
    pub block: String,
    /// Channels at this position.
    pub channels: usize,
    /// Backbone MACs from the input through this block.
    pub cumulative_macs: u64,
}

/// A trained exit head as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitInfo {
    /// Position index.
    pub position: usize,
    /// Exit type, e.g. `mlp2x256`.
    #[serde(rename = "type")]
    pub exit_type: String,
    /// MACs of the head (derived; filled in on save).
    #[serde(default)]
    pub macs: u64,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Bundle format version.
    pub format: u32,
    /// Model name, as served (`/v2/models/{name}`).
    pub name: String,
    /// Input description.
    pub input: InputSpec,
    /// Backbone architecture.
    pub backbone: BackboneSpec,
    /// Candidate exit positions (derived; filled in on save, checked on load).
    #[serde(default)]
    pub positions: Vec<PositionInfo>,
    /// MACs of the full model (derived).
    #[serde(default)]
    pub full_macs: u64,
    /// Trained exit heads.
    #[serde(default)]
    pub exits: Vec<ExitInfo>,
    /// Where the weights came from: data set, split sizes, seed, commit, command.
    #[serde(default)]
    pub provenance: BTreeMap<String, serde_json::Value>,
}

/// A loaded bundle: folded backbone, exit heads, configuration table.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The manifest, with derived fields filled in.
    pub manifest: Manifest,
    /// The loaded backbone and its final head.
    pub backbone: Backbone,
    /// Trained exit heads, in manifest order.
    pub exits: Vec<ExitHead>,
    /// Configuration table.
    pub configs: ConfigTable,
    /// Analytic costs at the manifest's input size.
    pub macs: BackboneMacs,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ModelError> {
    let bytes =
        std::fs::read(path).map_err(|e| ModelError::Io { path: path.into(), reason: e.to_string() })?;
    serde_json::from_slice(&bytes).map_err(|e| ModelError::Json { path: path.into(), reason: e.to_string() })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ModelError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| ModelError::Tensor(e.to_string()))?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| ModelError::Io { path: path.into(), reason: e.to_string() })
}

impl Manifest {
    /// Reads and checks a bundle directory's `manifest.json` alone, without its weights: what
    /// a tool that only needs the input description (`dyce load --bundle`) reads.
    pub fn read(dir: &Path) -> Result<Self, ModelError> {
        let m: Manifest = read_json(&dir.join("manifest.json"))?;
        m.validate()?;
        Ok(m)
    }

    /// Fills in the derived fields (positions, full MACs, exit MACs) from the backbone.
    pub fn fill_derived(&mut self) -> Result<(), ModelError> {
        let m = self.derive_macs();
        self.positions = derived_positions(&self.backbone, &m);
        self.full_macs = m.total;
        for e in &mut self.exits {
            let ty: ExitType = e.exit_type.parse()?;
            let ch = m.shapes.get(e.position).map(|s| s.0).ok_or_else(|| {
                ModelError::BadManifest(format!(
                    "exit at position {} but the backbone has {} positions",
                    e.position,
                    m.shapes.len()
                ))
            })?;
            e.macs = exit_macs(&ty, ch, self.backbone.num_classes());
        }
        Ok(())
    }

    fn derive_macs(&self) -> BackboneMacs {
        backbone_macs(&self.backbone, self.input.shape[1], self.input.shape[2])
    }

    /// Checks the manifest against itself.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |s: String| Err(ModelError::BadManifest(s));
        if self.format != FORMAT {
            return bad(format!("format {} is not supported (this build reads {FORMAT})", self.format));
        }
        self.backbone.validate()?;
        let [c, h, w] = self.input.shape;
        if c != self.backbone.in_channels() {
            return bad(format!(
                "input has {c} channels but the backbone expects {}",
                self.backbone.in_channels()
            ));
        }
        let min = self.backbone.min_input();
        if h < min || w < min || h > 4096 || w > 4096 {
            return bad(format!("input size {h}x{w} is outside {min}..4096"));
        }
        if self.input.mean.len() != c || self.input.std.len() != c {
            return bad(format!("input.mean and input.std need {c} values each"));
        }
        if self.input.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return bad("input.std values must be positive".into());
        }
        if self.input.labels.len() != self.backbone.num_classes() {
            return bad(format!(
                "{} labels for {} classes",
                self.input.labels.len(),
                self.backbone.num_classes()
            ));
        }
        let derived = derived_positions(&self.backbone, &self.derive_macs());
        if !self.positions.is_empty() && self.positions != derived {
            return bad("positions disagree with the backbone (regenerate the manifest)".into());
        }
        let mut seen = std::collections::HashSet::new();
        for e in &self.exits {
            let ty: ExitType = e.exit_type.parse()?;
            if e.position >= derived.len() {
                return bad(format!(
                    "exit {} at position {}: the backbone has {} positions",
                    e.exit_type,
                    e.position,
                    derived.len()
                ));
            }
            if !seen.insert((e.position, ty)) {
                return bad(format!("exit {} at position {} is listed twice", e.exit_type, e.position));
            }
        }
        Ok(())
    }
}

fn derived_positions(spec: &BackboneSpec, m: &BackboneMacs) -> Vec<PositionInfo> {
    spec.positions()
        .into_iter()
        .enumerate()
        .map(|(i, b)| PositionInfo {
            index: i,
            block: b.name,
            channels: b.channels,
            cumulative_macs: m.cumulative[i],
        })
        .collect()
}

impl Bundle {
    /// Builds a bundle from a manifest, a tensor store and a configuration table.
    pub fn from_parts(
        mut manifest: Manifest,
        store: &TensorStore,
        configs: ConfigTable,
    ) -> Result<Self, ModelError> {
        manifest.validate()?;
        manifest.fill_derived()?;
        let backbone = Backbone::load(&manifest.backbone, store)?;
        let classes = manifest.backbone.num_classes();
        let exits = manifest
            .exits
            .iter()
            .map(|e| {
                let ty: ExitType = e.exit_type.parse()?;
                load_exit(store, e.position, ty, backbone.channels_at(e.position), classes)
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_configs(&configs, &exits)?;
        let macs = manifest.derive_macs();
        Ok(Self { manifest, backbone, exits, configs, macs })
    }

    /// Loads a bundle directory.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let manifest: Manifest = read_json(&dir.join("manifest.json"))?;
        let store = TensorStore::load(&dir.join("weights.safetensors"))?;
        let configs: ConfigTable = read_json(&dir.join("configs.json"))?;
        Self::from_parts(manifest, &store, configs)
    }

    /// Writes a bundle directory from raw (unfolded, checkpoint-named) tensors and loads it back.
    pub fn write(
        dir: &Path,
        mut manifest: Manifest,
        tensors: &HashMap<String, Tensor>,
        configs: &ConfigTable,
    ) -> Result<Self, ModelError> {
        manifest.validate()?;
        manifest.fill_derived()?;
        std::fs::create_dir_all(dir)
            .map_err(|e| ModelError::Io { path: dir.into(), reason: e.to_string() })?;
        let weights = dir.join("weights.safetensors");
        candle_core::safetensors::save(tensors, &weights)
            .map_err(|e| ModelError::Io { path: weights.clone(), reason: e.to_string() })?;
        write_json(&dir.join("manifest.json"), &manifest)?;
        write_json(&dir.join("configs.json"), configs)?;
        Self::load(dir)
    }

    /// A bundle of just a backbone (no exits, only the full configuration), for evaluation.
    pub fn from_backbone(backbone: Backbone, name: &str, shape: [usize; 3]) -> Result<Self, ModelError> {
        let spec = backbone.spec();
        let mut manifest = Manifest {
            format: FORMAT,
            name: name.to_string(),
            input: InputSpec {
                shape,
                mean: vec![0.0; shape[0]],
                std: vec![1.0; shape[0]],
                labels: (0..spec.num_classes()).map(|i| i.to_string()).collect(),
                transform: Default::default(),
            },
            backbone: spec,
            positions: vec![],
            full_macs: 0,
            exits: vec![],
            provenance: BTreeMap::new(),
        };
        manifest.validate()?;
        manifest.fill_derived()?;
        let macs = manifest.derive_macs();
        Ok(Self { manifest, backbone, exits: vec![], configs: ConfigTable::full_only(name), macs })
    }

    /// Index into `exits` of the head `ty` at `position`, if trained.
    pub fn exit_index(&self, position: usize, ty: &ExitType) -> Option<usize> {
        self.exits.iter().position(|e| e.position == position && e.ty == *ty)
    }
}

fn check_configs(configs: &ConfigTable, exits: &[ExitHead]) -> Result<(), ModelError> {
    configs.validate().map_err(|e| ModelError::BadConfig(e.to_string()))?;
    for c in &configs.configs {
        for e in &c.exits {
            let ty: ExitType = e.exit_type.parse()?;
            if !exits.iter().any(|h| h.position == e.position && h.ty == ty) {
                return Err(ModelError::BadConfig(format!(
                    "config {:?} uses exit {} at position {}, which the bundle has not trained",
                    c.id, e.exit_type, e.position
                )));
            }
        }
    }
    Ok(())
}
