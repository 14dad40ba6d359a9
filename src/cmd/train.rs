//! `dyce train`: train a small-input ResNet backbone on Fashion-MNIST.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use dyce_calibrate::train::{evaluate, train, RunFiles, TrainConfig, TrainState};
use dyce_data::fashion_mnist as data;
use dyce_runtime::model::BackboneSpec;
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `dyce train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Run directory: checkpoints, `checkpoint.json` and the final `backbone.safetensors`.
    #[arg(long, env = "DYCE_TRAIN_OUT", default_value = "target/train")]
    out: PathBuf,
    /// Fashion-MNIST directory (gzipped IDX files).
    #[arg(long, env = "DYCE_DATA", default_value = data::DEFAULT_DIR)]
    data: PathBuf,
    /// Small-input architecture: stage depths, comma-separated.
    #[arg(long, env = "DYCE_DEPTHS", value_delimiter = ',', default_value = "3,3,3")]
    depths: Vec<usize>,
    /// Small-input architecture: stage widths, comma-separated.
    #[arg(long, env = "DYCE_WIDTHS", value_delimiter = ',', default_value = "16,32,64")]
    widths: Vec<usize>,
    /// Passes over the 50,000 training images.
    #[arg(long, env = "DYCE_EPOCHS", default_value_t = 12)]
    epochs: usize,
    /// Images per optimiser step.
    #[arg(long, env = "DYCE_BATCH_SIZE", default_value_t = 128)]
    batch_size: usize,
    /// Peak learning rate (one-cycle schedule).
    #[arg(long, env = "DYCE_LR", default_value_t = 0.1)]
    lr: f64,
    /// Weight decay on conv and linear weights.
    #[arg(long, env = "DYCE_WEIGHT_DECAY", default_value_t = 5e-4)]
    weight_decay: f64,
    /// Nesterov momentum.
    #[arg(long, env = "DYCE_MOMENTUM", default_value_t = 0.9)]
    momentum: f64,
    /// Random shift in pixels of the crop augmentation.
    #[arg(long, env = "DYCE_CROP_PAD", default_value_t = 2)]
    crop_pad: usize,
    /// Seed of initialisation, shuffling and augmentation.
    #[arg(long, env = "DYCE_SEED", default_value_t = 1)]
    seed: u64,
    /// Train on only the first N training images (smoke tests).
    #[arg(long, env = "DYCE_LIMIT")]
    limit: Option<usize>,
    /// Continue from the run directory's last checkpoint.
    #[arg(long, env = "DYCE_RESUME")]
    resume: bool,
}

/// Runs `dyce train`.
pub fn run(args: &TrainArgs) -> Result<()> {
    let spec = BackboneSpec::small(args.depths.clone(), args.widths.clone(), 1, 10);
    spec.validate()?;
    let splits = data::load(&args.data)?;
    let cfg = TrainConfig {
        spec: spec.clone(),
        epochs: args.epochs,
        batch_size: args.batch_size.max(1),
        lr: args.lr,
        weight_decay: args.weight_decay,
        momentum: args.momentum,
        crop_pad: args.crop_pad,
        seed: args.seed,
        limit: args.limit,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")?
            .progress_chars("=> "),
    );
    let start = Instant::now();
    let state: TrainState = train(&cfg, &splits, &args.out, args.resume, &mut |epoch, step, steps, loss| {
        if step == 1 {
            bar.set_length(steps as u64);
            bar.set_prefix(format!("{}/{}", epoch + 1, cfg.epochs));
        }
        bar.set_position(step as u64);
        bar.set_message(format!("loss {loss:.4}"));
    })
    .with_context(|| format!("training in {}", args.out.display()))?;
    bar.finish_and_clear();
    let files = RunFiles::new(&args.out);
    let weights = candle_core::safetensors::load(&files.backbone, &candle_core::Device::Cpu)?;
    // The test split is read only here, after training, to report the final figure.
    let test = evaluate(&spec, weights, &splits.test)?;
    let report = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "), "spec": spec, "config": cfg, "history": state.history, "test_accuracy": test,
        "seconds_this_invocation": start.elapsed().as_secs_f64(),
        "seconds_training": state.history.iter().map(|h| h.seconds).sum::<f64>(),
    });
    std::fs::write(args.out.join("train.json"), serde_json::to_string_pretty(&report)?)?;
    println!(
        "test accuracy {:.2}% after {} epochs; weights in {}",
        100.0 * test,
        state.epochs_done,
        files.backbone.display()
    );
    Ok(())
}
