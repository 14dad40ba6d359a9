//! `dyce calibrate`: attach and train exits on a trained backbone, search configurations, write
//! the bundle and its report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use dyce_calibrate::dataset::SplitData;
use dyce_calibrate::exit_cost::ExitCostModel;
use dyce_calibrate::exit_train::{ExitTrainConfig, Recipe};
use dyce_calibrate::pipeline::{calibrate, CalibrateConfig, Dataset, Job};
use dyce_calibrate::report;
use dyce_data::fashion_mnist as data;
use dyce_runtime::model::{BackboneSpec, InputSpec};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::calibrate_folder::{self, FolderArgs};

/// Arguments of `dyce calibrate`.
#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Your own checkpoint and image folder (instead of --train-dir and --data).
    #[command(flatten)]
    folder: FolderArgs,
    /// Feature cache: pooled features per split, reused by later runs on the same model and
    /// images and resumed after an interruption. Safe to delete.
    #[arg(long, env = "DYCE_CACHE", default_value = "target/dyce-cache")]
    cache: PathBuf,
    /// Images per backbone batch while extracting features.
    #[arg(long, env = "DYCE_BATCH", default_value_t = 32)]
    batch: usize,
    /// Run directory of `dyce train` (reads `train.json` and `backbone.safetensors`).
    #[arg(long, env = "DYCE_TRAIN_DIR", default_value = "target/train")]
    train_dir: PathBuf,
    /// Bundle directory to write (manifest.json, weights.safetensors, configs.json, REPORT.md).
    #[arg(long, env = "DYCE_BUNDLE_OUT", default_value = "target/bundle")]
    out: PathBuf,
    /// Fashion-MNIST directory (gzipped IDX files).
    #[arg(long, env = "DYCE_DATA", default_value = data::DEFAULT_DIR)]
    data: PathBuf,
    /// Model name written into the bundle (served as /v2/models/NAME); default: the --out
    /// folder's name for --weights, `fmnist-resnet` or `fmnist-convnextv2` for --train-dir.
    #[arg(long, env = "DYCE_MODEL_NAME")]
    name: Option<String>,
    /// Exit types trained at every position, comma-separated.
    #[arg(long, env = "DYCE_EXIT_TYPES", value_delimiter = ',', default_value = "mlp1,mlp2x128,mlp3x256")]
    exit_types: Vec<String>,
    /// Passes over the training features when training exits (30: on Fashion-MNIST, 12 saved
    /// four points less of MACs at ≤ 0.5 pt; the heads train on cached features, so this costs
    /// minutes, not a backbone's hours).
    #[arg(long, env = "DYCE_EXIT_EPOCHS", default_value_t = 30)]
    exit_epochs: usize,
    /// Exit-training recipes to try, comma-separated, each `+`-joined parts of `ce` (labels),
    /// `distill` (learn the final head's answer), `mixup` (mix feature pairs), `conf` (weight
    /// images by the final head's confidence); the heads whose calibration-split front saves
    /// the most MACs ship, and the report compares them all.
    #[arg(
        long,
        env = "DYCE_EXIT_RECIPES",
        value_delimiter = ',',
        default_value = "ce,distill,distill+mixup"
    )]
    exit_recipes: Vec<String>,
    /// AdamW learning rate of exit training.
    #[arg(long, env = "DYCE_EXIT_LR", default_value_t = 6e-3)]
    exit_lr: f64,
    /// Seed of exit initialisation and shuffling.
    #[arg(long, env = "DYCE_SEED", default_value_t = 1)]
    seed: u64,
    /// Use at most this many images of each split (smoke tests).
    #[arg(long, env = "DYCE_LIMIT")]
    limit: Option<usize>,
    /// Ship configurations at most this much less accurate than the full model (fraction).
    #[arg(long, env = "DYCE_MAX_ACCURACY_DROP", default_value_t = 0.03)]
    max_accuracy_drop: f64,
    /// Fewest configurations to ship.
    #[arg(long, env = "DYCE_K_MIN", default_value_t = 8)]
    k_min: usize,
    /// Most configurations to ship.
    #[arg(long, env = "DYCE_K_MAX", default_value_t = 16)]
    k_max: usize,
    /// Search cost per MAC of exit types relative to a backbone MAC, as TYPE=FACTOR pairs
    /// (comma-separated; unnamed types cost 1). Measure them with `dyce bench --profile`.
    #[arg(long, env = "DYCE_EXIT_COST", value_delimiter = ',')]
    exit_cost: Vec<String>,
    /// Exit costs the search charges when no --exit-cost factor is given: `auto` measures each
    /// head's time per call and per row on this machine before the search (about 12 s) and
    /// writes them to the bundle's exit_cost.json; a path reuses such a file; `off` charges MACs.
    #[arg(long, env = "DYCE_EXIT_COST_MODEL", default_value = "auto")]
    exit_cost_model: String,
    /// Reuse the exit heads of this bundle instead of training new ones (skips exit training:
    /// re-searching a shipped bundle takes a minute instead of half an hour).
    #[arg(long, env = "DYCE_EXITS_FROM")]
    exits_from: Option<PathBuf>,
    /// Only rewrite REPORT.md and the plot of the bundle at --out from its calibration.json
    /// (keeps the report's "Reproduce" line).
    #[arg(long, env = "DYCE_REPORT_ONLY")]
    report_only: bool,
}

/// `TYPE=FACTOR` pairs, each type one of `types`, each factor finite and positive.
fn parse_costs(pairs: &[String], types: &[String]) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for s in pairs {
        let (t, f) = s.split_once('=').with_context(|| format!("--exit-cost: `{s}` is not TYPE=FACTOR"))?;
        let f: f64 = f.parse().with_context(|| format!("--exit-cost: `{f}` in `{s}` is not a number"))?;
        if !(f.is_finite() && f > 0.0) {
            bail!("--exit-cost: the factor of `{t}` must be a finite positive number, got {f}");
        }
        if !types.iter().any(|x| x == t) {
            bail!("--exit-cost names `{t}`, which is not one of --exit-types {types:?}");
        }
        out.insert(t.to_string(), f);
    }
    Ok(out)
}

fn rerender(out: &std::path::Path) -> Result<()> {
    let json = out.join("calibration.json");
    let rep: dyce_calibrate::pipeline::CalibrationReport = serde_json::from_str(
        &std::fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?,
    )
    .with_context(|| format!("parsing {}", json.display()))?;
    let old = std::fs::read_to_string(out.join("REPORT.md")).unwrap_or_default();
    let extra = old.lines().find(|l| l.starts_with("Reproduce:")).map_or(String::new(), |l| format!("{l}\n"));
    report::write(&rep, &extra, out).context("writing the report")?;
    println!("{} rewritten", out.join("REPORT.md").display());
    Ok(())
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The IDX path: `dyce train`'s backbone and Fashion-MNIST's fixed splits.
fn idx_source(args: &CalibrateArgs) -> Result<(BackboneSpec, Source)> {
    let train_json = args.train_dir.join("train.json");
    let train: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&train_json)
            .with_context(|| format!("reading {} (run `dyce train` first)", train_json.display()))?,
    )
    .with_context(|| format!("parsing {}", train_json.display()))?;
    let spec: BackboneSpec =
        serde_json::from_value(train["spec"].clone()).context("train.json has no valid spec")?;
    let weights = args.train_dir.join("backbone.safetensors");
    let backbone = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu)
        .with_context(|| format!("reading {}", weights.display()))?;
    let splits = data::load(&args.data)?;
    let data = Dataset {
        train: SplitData::Idx(splits.train),
        calibration: SplitData::Idx(splits.calibration),
        test: SplitData::Idx(splits.test),
        input: InputSpec {
            shape: [spec.in_channels(), 28, 28],
            mean: vec![dyce_data::augment::FMNIST_MEAN],
            std: vec![dyce_data::augment::FMNIST_STD],
            labels: data::LABELS.iter().map(|s| s.to_string()).collect(),
            transform: Default::default(),
        },
    };
    let provenance = BTreeMap::from([
        ("dataset".to_string(), json!("Fashion-MNIST (Debian dataset-fashion-mnist)")),
        (
            "splits".to_string(),
            json!({"train": 50_000, "calibration": 10_000, "test": 10_000, "split_seed": data::SPLIT_SEED, "limit": args.limit}),
        ),
        (
            "training".to_string(),
            json!({"command": train["command"], "config": train["config"], "test_accuracy": train["test_accuracy"],
            "seconds": train["seconds_training"], "epochs": train["history"].as_array().map_or(0, |h| h.len())}),
        ),
    ]);
    let reproduce = format!("`{}` then ", train["command"].as_str().unwrap_or("dyce train"),);
    let trained =
        format!("; backbone training took {:.0} s", train["seconds_training"].as_f64().unwrap_or(f64::NAN));
    Ok((spec, Source { backbone, data, provenance, reproduce, trained }))
}

/// The image-folder path: a user's checkpoint and images.
fn folder_source(args: &CalibrateArgs, weights: &std::path::Path) -> Result<(BackboneSpec, Source)> {
    let arch = args.folder.arch.as_deref().context("--arch is needed with --weights")?;
    let (spec, backbone) = calibrate_folder::load_checkpoint(weights, arch)?;
    let data = calibrate_folder::dataset(&args.folder, &spec, args.limit, args.exits_from.is_none())?;
    let provenance = BTreeMap::from([
        ("dataset".to_string(), json!(args.folder.images.as_ref().map(|p| p.display().to_string()))),
        ("weights".to_string(), json!(weights.display().to_string())),
        (
            "splits".to_string(),
            json!({"train": data.train.len(), "calibration": data.calibration.len(), "test": data.test.len(),
                   "split": args.folder.split, "split_seed": args.folder.split_seed, "limit": args.limit}),
        ),
    ]);
    Ok((spec, Source { backbone, data, provenance, reproduce: String::new(), trained: String::new() }))
}

/// Where a calibration's backbone and images come from.
struct Source {
    backbone: std::collections::HashMap<String, candle_core::Tensor>,
    data: Dataset,
    provenance: BTreeMap<String, serde_json::Value>,
    /// The command that made the backbone, for the report's "Reproduce" line.
    reproduce: String,
    /// How long the backbone took to train, when dyce trained it.
    trained: String,
}

/// One progress bar per long phase, with rate and ETA.
struct Bars {
    bar: Option<(String, ProgressBar)>,
}

impl Bars {
    fn update(&mut self, phase: &str, done: usize, total: usize) {
        if self.bar.as_ref().is_none_or(|(p, _)| p != phase) {
            if let Some((_, old)) = self.bar.take() {
                old.finish();
            }
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template(
                "{msg:>22} [{bar:30}] {pos}/{len} ({per_sec}, {elapsed} elapsed, ETA {eta})",
            )
            .expect("a valid template")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(phase.to_string());
            bar.reset_eta();
            self.bar = Some((phase.to_string(), bar));
        }
        if let Some((_, bar)) = &self.bar {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    }
}

/// The bundle's model name: `--name`, else the output folder's name for a user's model.
fn model_name(args: &CalibrateArgs, spec: &BackboneSpec) -> String {
    let out_name = || args.out.file_name().map(|n| n.to_string_lossy().into_owned());
    match (&args.name, &args.folder.weights) {
        (Some(n), _) => n.clone(),
        (None, Some(_)) => out_name().unwrap_or_else(|| "model".into()),
        (None, None) => match spec {
            BackboneSpec::ResNet(_) => "fmnist-resnet".into(),
            BackboneSpec::ConvNextV2(_) => "fmnist-convnextv2".into(),
        },
    }
}

/// Runs `dyce calibrate`.
pub fn run(args: &CalibrateArgs) -> Result<()> {
    if args.report_only {
        return rerender(&args.out);
    }
    let start = Instant::now();
    let exit_cost = parse_costs(&args.exit_cost, &args.exit_types)?;
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let recipes: Vec<Recipe> = args.exit_recipes.iter().map(|r| r.parse()).collect::<Result<_, _>>()?;
    if recipes.is_empty() {
        bail!("--exit-recipes needs at least one recipe");
    }
    let (measure_exit_costs, exit_cost_model) = match args.exit_cost_model.as_str() {
        _ if !exit_cost.is_empty() => (false, None),
        "auto" => (true, None),
        "off" => (false, None),
        path => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--exit-cost-model: reading {path}"))?;
            let m: ExitCostModel =
                serde_json::from_str(&text).with_context(|| format!("--exit-cost-model: parsing {path}"))?;
            (false, Some(m))
        }
    };
    let (spec, source) = match &args.folder.weights {
        Some(w) => folder_source(args, w)?,
        None => idx_source(args)?,
    };
    let cfg = CalibrateConfig {
        name: model_name(args, &spec),
        exits: ExitTrainConfig {
            types: args.exit_types.clone(),
            epochs: args.exit_epochs,
            batch_size: 256,
            lr: args.exit_lr,
            weight_decay: 1e-4,
            seed: args.seed,
            recipe: recipes[0].clone(),
        },
        limit: args.limit,
        max_accuracy_drop: args.max_accuracy_drop,
        k_min: args.k_min,
        k_max: args.k_max,
        exit_cost,
        exits_from: args.exits_from.clone(),
        recipes,
        measure_exit_costs,
        exit_cost_model,
    };
    let command: Vec<String> = std::env::args().collect();
    let mut provenance = source.provenance;
    provenance.insert("seed".to_string(), json!(args.seed));
    provenance.insert("commit".to_string(), json!(git_commit()));
    provenance.insert("calibrate_command".to_string(), json!(command.join(" ")));
    let mut bars = Bars { bar: None };
    let job = Job {
        spec: &spec,
        backbone: source.backbone,
        data: &source.data,
        cfg: &cfg,
        provenance,
        out: &args.out,
        cache: args.cache.clone(),
        batch: args.batch,
    };
    let (bundle, rep) =
        calibrate(job, &mut |phase, done, total| bars.update(phase, done, total)).context("calibrating")?;
    if let Some((_, bar)) = bars.bar.take() {
        bar.finish();
    }
    let extra = format!(
        "Reproduce: {}`{}` (commit {}; calibration took {:.0} s{}).\n",
        source.reproduce,
        command.join(" "),
        git_commit(),
        start.elapsed().as_secs_f64(),
        source.trained,
    );
    report::write(&rep, &extra, &args.out).context("writing the report")?;
    println!(
        "bundle {} written: {} configs; full model {:.2}% test; MACs saved at ≤0.5 pt (chosen on calibration, measured on test): ours {:.1}%, onepass {:.1}%",
        args.out.display(),
        bundle.configs.configs.len(),
        100.0 * rep.full_accuracy["test"],
        100.0 * rep.macs_saved_at("ours", 0.005).unwrap_or(0.0),
        100.0 * rep.macs_saved_at("onepass", 0.005).unwrap_or(0.0),
    );
    Ok(())
}
