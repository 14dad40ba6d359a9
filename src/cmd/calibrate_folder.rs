//! `dyce calibrate --weights FILE --arch NAME --images DIR`: a user's torchvision/timm ResNet or
//! timm ConvNeXt-V2 checkpoint and an image folder in, the dataset and backbone the pipeline takes out, with
//! every mistake a user can make caught before the long phases start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use clap::Args;
use dyce_calibrate::dataset::SplitData;
use dyce_calibrate::pipeline::Dataset;
use dyce_data::{DecodeLimits, Interpolation, SplitFractions, Transform};
use dyce_runtime::model::{BackboneSpec, InputSpec};

/// Fewest images a split may have: with fewer, one image moves accuracy by more than a point
/// and the search's thresholds fit noise.
pub const MIN_SPLIT: usize = 100;
/// torchvision's ImageNet normalisation.
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The model and images of `dyce calibrate` for your own checkpoint (docs/your-model.md).
#[derive(Args, Debug, Clone)]
pub struct FolderArgs {
    /// Backbone checkpoint in safetensors: a torchvision/timm ResNet state dict (torchvision
    /// names, BatchNorm not folded) or a timm ConvNeXt-V2 `model.safetensors` (timm's names).
    /// Selects the image-folder path instead of --train-dir.
    #[arg(long, env = "DYCE_WEIGHTS", requires_all = ["arch", "images"])]
    pub weights: Option<PathBuf>,
    /// Architecture of --weights: resnet18/34/50/101/152 (torchvision), resnet20/32/44/56
    /// (small-input), convnextv2_atto/femto/pico/nano/tiny/base (timm) or convnextv2_atto_s.
    /// Input channels and classes are read from the checkpoint.
    #[arg(long, env = "DYCE_ARCH")]
    pub arch: Option<String>,
    /// Image folder in torchvision's ImageFolder layout: train/, val/ and test/ sub-folders,
    /// or one folder per class split by --split.
    #[arg(long, env = "DYCE_IMAGES")]
    pub images: Option<PathBuf>,
    /// Train and calibration fractions of a folder without split folders (the rest is test).
    #[arg(long, env = "DYCE_SPLIT", value_delimiter = ',', default_value = "0.6,0.2")]
    pub split: Vec<f64>,
    /// Seed of the shuffle that splits a folder without split folders.
    #[arg(long, env = "DYCE_SPLIT_SEED", default_value_t = 0)]
    pub split_seed: u64,
    /// Side of the model's square input (the centre crop); default 224 for the ImageNet stem.
    #[arg(long, env = "DYCE_INPUT_SIZE")]
    pub input_size: Option<u32>,
    /// Resize the shorter side to this many pixels before the centre crop, or `none` to resize
    /// straight to the input size; default: input size / --crop-pct (256 for 224).
    #[arg(long, env = "DYCE_RESIZE")]
    pub resize: Option<String>,
    /// timm's crop_pct: the crop's share of the resized shorter side.
    #[arg(long, env = "DYCE_CROP_PCT", default_value_t = 0.875)]
    pub crop_pct: f64,
    /// Resampling filter of the resize: bilinear (torchvision) or bicubic (most timm models).
    #[arg(long, env = "DYCE_INTERPOLATION", default_value = "bilinear")]
    pub interpolation: String,
    /// Per-channel mean of pixels in [0, 1], comma-separated; default ImageNet's for RGB.
    #[arg(long, env = "DYCE_MEAN", value_delimiter = ',')]
    pub mean: Vec<f32>,
    /// Per-channel standard deviation, comma-separated; default ImageNet's for RGB.
    #[arg(long, env = "DYCE_STD", value_delimiter = ',')]
    pub std: Vec<f32>,
    /// Class names, one per line in class-index order; default the folder names.
    #[arg(long, env = "DYCE_LABELS")]
    pub labels: Option<PathBuf>,
}

/// A checkpoint's tensors and the architecture they fill.
pub fn load_checkpoint(weights: &Path, arch: &str) -> Result<(BackboneSpec, HashMap<String, Tensor>)> {
    let tensors = candle_core::safetensors::load(weights, &candle_core::Device::Cpu)
        .with_context(|| format!("{}: not a readable safetensors file", weights.display()))?;
    let mut spec = BackboneSpec::builtin(arch).with_context(|| "--arch".to_string())?;
    let naming = spec.naming();
    let dims = |name: &str| -> Result<Vec<usize>> {
        let t = tensors.get(name).with_context(|| {
            format!("{}: no tensor {name:?}; expected a {naming} state dict", weights.display())
        })?;
        Ok(t.dims().to_vec())
    };
    let (stem_name, fc_name) = spec.io_tensors();
    let (conv1, fc) = (dims(stem_name)?, dims(fc_name)?);
    if conv1.len() != 4 || fc.len() != 2 {
        bail!("{}: {stem_name} {conv1:?} or {fc_name} {fc:?} has the wrong rank", weights.display());
    }
    spec.set_io(conv1[1], fc[0]);
    // Convert to f32 once: the engine folds and packs f32 (timm files may be f16/bf16).
    let tensors = tensors
        .into_iter()
        .map(|(k, v)| Ok((k, v.to_dtype(candle_core::DType::F32)?)))
        .collect::<Result<HashMap<_, _>, candle_core::Error>>()?;
    // The architecture's every tensor, with its shape, before the long phases.
    dyce_runtime::model::Backbone::load(
        &spec,
        &dyce_runtime::model::store::TensorStore::new(tensors.clone()),
    )
    .with_context(|| format!("{} does not hold a {arch}", weights.display()))?;
    Ok((spec, tensors))
}

fn parse_resize(a: &FolderArgs, size: u32) -> Result<Transform> {
    let interpolation = match a.interpolation.as_str() {
        "bilinear" => Interpolation::Bilinear,
        "bicubic" => Interpolation::Bicubic,
        other => bail!("--interpolation: `{other}` is not bilinear or bicubic"),
    };
    if !(a.crop_pct > 0.0 && a.crop_pct <= 1.0) {
        bail!("--crop-pct: {} is not in (0, 1]", a.crop_pct);
    }
    Ok(match a.resize.as_deref() {
        Some("none") => Transform { resize: None, interpolation },
        Some(n) => {
            let n: u32 =
                n.parse().ok().filter(|&n| n >= 1).with_context(|| {
                    format!("--resize: `{n}` is not a positive number of pixels or `none`")
                })?;
            Transform { resize: Some(n), interpolation }
        }
        None => Transform::with_crop_pct(size, a.crop_pct, interpolation),
    })
}

fn normalisation(a: &FolderArgs, channels: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let (mean, std) = match (a.mean.is_empty(), a.std.is_empty(), channels) {
        (true, true, 3) => (IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec()),
        (true, true, c) => {
            bail!("--mean and --std are needed for a {c}-channel model (ImageNet's are for RGB)")
        }
        _ => (a.mean.clone(), a.std.clone()),
    };
    if mean.len() != channels || std.len() != channels {
        bail!(
            "--mean and --std need {channels} values each (the checkpoint's conv1 takes {channels} channels)"
        );
    }
    if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || mean.iter().any(|m| !m.is_finite()) {
        bail!("--std values must be positive and --mean values finite");
    }
    Ok((mean, std))
}

fn class_names(a: &FolderArgs, folders: &[String], classes: usize) -> Result<Vec<String>> {
    let Some(path) = &a.labels else { return Ok(folders.to_vec()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("--labels {}", path.display()))?;
    let names: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.len() != classes {
        bail!("--labels {}: {} names for a checkpoint of {classes} classes", path.display(), names.len());
    }
    Ok(names)
}

/// The dataset of an image folder for `spec`, every split checked.
pub fn dataset(a: &FolderArgs, spec: &BackboneSpec, limit: Option<usize>, training: bool) -> Result<Dataset> {
    let root = a.images.as_ref().context("--images is needed with --weights")?;
    let size = match (a.input_size, spec.default_input()) {
        (Some(s), _) => s,
        (None, 224) => 224,
        (None, _) => bail!("--input-size is needed for a small-input architecture"),
    };
    let [train, calibration] = a.split[..] else { bail!("--split takes two fractions: train,calibration") };
    let splits = dyce_data::folder::open(root, SplitFractions { train, calibration }, a.split_seed)?;
    if splits.classes.len() != spec.num_classes() {
        bail!(
            "{}: {} class folders, but the checkpoint's fc has {} outputs",
            root.display(),
            splits.classes.len(),
            spec.num_classes()
        );
    }
    let c = spec.in_channels();
    let (mean, std) = normalisation(a, c)?;
    let transform = parse_resize(a, size)?;
    let shape = [c, size as usize, size as usize];
    let labels = class_names(a, &splits.classes, spec.num_classes())?;
    let input = InputSpec { shape, mean, std, labels, transform };
    let preprocess = input.preprocess(DecodeLimits::FILES);
    let files = |s: Vec<dyce_data::Sample>| SplitData::Files { samples: s, preprocess: preprocess.clone() };
    let data = Dataset {
        train: files(splits.train),
        calibration: files(splits.calibration),
        test: files(splits.test),
        input,
    };
    for (name, split, needed) in [
        ("train", &data.train, training),
        ("calibration", &data.calibration, true),
        ("test", &data.test, true),
    ] {
        let n = split.limited(limit).len();
        if needed && n < MIN_SPLIT {
            bail!(
                "{}: the {name} split has {n} images, too few to search on (at least {MIN_SPLIT}); add images or change --split",
                root.display()
            );
        }
    }
    Ok(data)
}
