//! `dyce calibrate`: attach and train exits on a trained backbone, search configurations, write
//! the bundle and its report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use dyce_calibrate::exit_train::ExitTrainConfig;
use dyce_calibrate::pipeline::{calibrate, CalibrateConfig};
use dyce_calibrate::report;
use dyce_data::fashion_mnist as data;
use dyce_runtime::model::BackboneSpec;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

/// Arguments of `dyce calibrate`.
#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Run directory of `dyce train` (reads `train.json` and `backbone.safetensors`).
    #[arg(long, env = "DYCE_TRAIN_DIR", default_value = "target/train")]
    train_dir: PathBuf,
    /// Bundle directory to write (manifest.json, weights.safetensors, configs.json, REPORT.md).
    #[arg(long, env = "DYCE_BUNDLE_OUT", default_value = "target/bundle")]
    out: PathBuf,
    /// Fashion-MNIST directory (gzipped IDX files).
    #[arg(long, env = "DYCE_DATA", default_value = data::DEFAULT_DIR)]
    data: PathBuf,
    /// Model name written into the bundle (served as /v2/models/NAME).
    #[arg(long, env = "DYCE_MODEL_NAME", default_value = "fmnist-resnet")]
    name: String,
    /// Exit types trained at every position, comma-separated.
    #[arg(long, env = "DYCE_EXIT_TYPES", value_delimiter = ',', default_value = "mlp1,mlp2x256,mlp3x512")]
    exit_types: Vec<String>,
    /// Passes over the training features when training exits.
    #[arg(long, env = "DYCE_EXIT_EPOCHS", default_value_t = 12)]
    exit_epochs: usize,
    /// AdamW learning rate of exit training.
    #[arg(long, env = "DYCE_EXIT_LR", default_value_t = 2e-3)]
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
    /// (comma-separated; unnamed types cost 1). Measure them with `dyce bench --exit-cost`.
    #[arg(long, env = "DYCE_EXIT_COST", value_delimiter = ',')]
    exit_cost: Vec<String>,
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

/// Runs `dyce calibrate`.
pub fn run(args: &CalibrateArgs) -> Result<()> {
    if args.report_only {
        return rerender(&args.out);
    }
    let start = Instant::now();
    let exit_cost = parse_costs(&args.exit_cost, &args.exit_types)?;
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
    let cfg = CalibrateConfig {
        name: args.name.clone(),
        exits: ExitTrainConfig {
            types: args.exit_types.clone(),
            epochs: args.exit_epochs,
            batch_size: 256,
            lr: args.exit_lr,
            weight_decay: 1e-4,
            seed: args.seed,
        },
        limit: args.limit,
        max_accuracy_drop: args.max_accuracy_drop,
        k_min: args.k_min,
        k_max: args.k_max,
        exit_cost,
        exits_from: args.exits_from.clone(),
    };
    let command: Vec<String> = std::env::args().collect();
    let provenance = BTreeMap::from([
        ("dataset".to_string(), json!("Fashion-MNIST (Debian dataset-fashion-mnist)")),
        (
            "splits".to_string(),
            json!({"train": 50_000, "calibration": 10_000, "test": 10_000, "split_seed": data::SPLIT_SEED, "limit": args.limit}),
        ),
        ("seed".to_string(), json!(args.seed)),
        ("commit".to_string(), json!(git_commit())),
        ("calibrate_command".to_string(), json!(command.join(" "))),
        (
            "training".to_string(),
            json!({"command": train["command"], "config": train["config"], "test_accuracy": train["test_accuracy"],
            "seconds": train["seconds_training"], "epochs": train["history"].as_array().map_or(0, |h| h.len())}),
        ),
    ]);
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template("{msg:>22} {pos} ({elapsed})")?);
    let (bundle, rep) = calibrate(&spec, backbone, &splits, &cfg, provenance, &args.out, &mut |step, n| {
        bar.set_message(step.to_string());
        bar.inc(n as u64);
    })
    .context("calibrating")?;
    bar.finish_and_clear();
    let extra = format!(
        "Reproduce: `{}` then `{}` (commit {}; calibration took {:.0} s; backbone training took {:.0} s).\n",
        train["command"].as_str().unwrap_or("dyce train"),
        command.join(" "),
        git_commit(),
        start.elapsed().as_secs_f64(),
        train["seconds_training"].as_f64().unwrap_or(f64::NAN)
    );
    report::write(&rep, &extra, &args.out).context("writing the report")?;
    println!(
        "bundle {} written: {} configs; full model {:.2}% test; MACs saved at ≤0.5 pt: ours {:.1}%, onepass {:.1}%",
        args.out.display(),
        bundle.configs.configs.len(),
        100.0 * rep.full_accuracy["test"],
        100.0 * rep.macs_saved_at("ours", 0.005).unwrap_or(0.0),
        100.0 * rep.macs_saved_at("onepass", 0.005).unwrap_or(0.0),
    );
    Ok(())
}
