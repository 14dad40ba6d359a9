//! `dyce train`: train a small-input ResNet or ConvNeXt-V2 backbone on Fashion-MNIST.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use dyce_calibrate::train::{evaluate, train, OptimizerKind, RunControl, RunFiles, TrainConfig, TrainState};
use dyce_data::fashion_mnist as data;
use dyce_runtime::model::convnext::spec::ConvNextSpec;
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
    /// Architecture: `resnet` (the small-input ResNet of --depths/--widths) or a ConvNeXt-V2 of
    /// timm's sizes (`convnextv2_atto_s`, the 2×2-stem variant for 28 px; or `convnextv2_atto`
    /// ... `_base`, whose 4×4 stem leaves 7 px for four stages and is refused at 28 px).
    #[arg(long, env = "DYCE_ARCH", default_value = "resnet")]
    arch: String,
    /// Optimiser: `sgd` (Nesterov) or `adamw`; default sgd for ResNets, adamw for ConvNeXt.
    #[arg(long, env = "DYCE_OPTIMIZER", value_parser = parse_optimizer)]
    optimizer: Option<OptimizerKind>,
    /// Small-input ResNet: stage depths, comma-separated.
    #[arg(long, env = "DYCE_DEPTHS", value_delimiter = ',', default_value = "3,3,3")]
    depths: Vec<usize>,
    /// Small-input ResNet: stage widths, comma-separated.
    #[arg(long, env = "DYCE_WIDTHS", value_delimiter = ',', default_value = "16,32,64")]
    widths: Vec<usize>,
    /// Passes over the 50,000 training images.
    #[arg(long, env = "DYCE_EPOCHS", default_value_t = 12)]
    epochs: usize,
    /// Images per optimiser step.
    #[arg(long, env = "DYCE_BATCH_SIZE", default_value_t = 128)]
    batch_size: usize,
    /// Peak learning rate (one-cycle schedule); default 0.1 for SGD, 0.002 for AdamW.
    #[arg(long, env = "DYCE_LR")]
    lr: Option<f64>,
    /// Weight decay on conv and linear weights; default 5e-4 for SGD (L2), 0.05 for AdamW
    /// (decoupled).
    #[arg(long, env = "DYCE_WEIGHT_DECAY")]
    weight_decay: Option<f64>,
    /// Nesterov momentum (SGD).
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
    /// Stop after this many epochs of this invocation, leaving a checkpoint that `--resume`
    /// continues from (for time-boxed machines); the run's schedule still spans --epochs.
    #[arg(long, env = "DYCE_STOP_AFTER_EPOCHS")]
    stop_after_epochs: Option<usize>,
}

/// Runs `dyce train`.
pub fn run(args: &TrainArgs) -> Result<()> {
    let spec = spec_of(args)?;
    let optimizer = args.optimizer.unwrap_or(match spec {
        BackboneSpec::ResNet(_) => OptimizerKind::Sgd,
        BackboneSpec::ConvNextV2(_) => OptimizerKind::AdamW,
    });
    let (lr, weight_decay) = match optimizer {
        OptimizerKind::Sgd => (0.1, 5e-4),
        OptimizerKind::AdamW => (2e-3, 0.05),
    };
    let splits = data::load(&args.data)?;
    let cfg = TrainConfig {
        spec: spec.clone(),
        epochs: args.epochs,
        batch_size: args.batch_size.max(1),
        lr: args.lr.unwrap_or(lr),
        weight_decay: args.weight_decay.unwrap_or(weight_decay),
        momentum: args.momentum,
        optimizer,
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
    let control = RunControl { resume: args.resume, stop_after: args.stop_after_epochs };
    let state: TrainState = train(&cfg, &splits, &args.out, control, &mut |epoch, step, steps, loss| {
        if step == 1 {
            bar.set_length(steps as u64);
            bar.set_prefix(format!("{}/{}", epoch + 1, cfg.epochs));
        }
        bar.set_position(step as u64);
        bar.set_message(format!("loss {loss:.4}"));
    })
    .with_context(|| format!("training in {}", args.out.display()))?;
    bar.finish_and_clear();
    if state.epochs_done < cfg.epochs {
        println!(
            "stopped after {} of {} epochs; continue with the same command and --resume",
            state.epochs_done, cfg.epochs
        );
        return Ok(());
    }
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

/// Fashion-MNIST's image side.
const SIDE: usize = 28;

fn parse_optimizer(s: &str) -> Result<OptimizerKind, String> {
    match s {
        "sgd" => Ok(OptimizerKind::Sgd),
        "adamw" => Ok(OptimizerKind::AdamW),
        _ => Err(format!("unknown optimizer {s:?}: expected sgd or adamw")),
    }
}

/// The architecture `--arch` names, for 1-channel 28 px images and 10 classes.
fn spec_of(args: &TrainArgs) -> Result<BackboneSpec> {
    if args.arch == "resnet" {
        let spec = BackboneSpec::small(args.depths.clone(), args.widths.clone(), 1, 10);
        spec.validate()?;
        return Ok(spec);
    }
    let Some(mut c) = ConvNextSpec::builtin(&args.arch) else {
        bail!(
            "unknown --arch {:?}: expected resnet or convnextv2_{{atto_s,atto,femto,pico,nano,tiny,base}}",
            args.arch
        )
    };
    c.in_channels = 1;
    c.num_classes = 10;
    c.validate()?;
    // The stem divides the side by its patch and each later stage's downsample by 2 (rounding
    // down); every stage needs at least one pixel.
    let last = (1..c.depths.len()).fold(SIDE / c.stem_patch, |s, _| s / 2);
    if last == 0 {
        bail!(
            "--arch {}: a {SIDE} px image is empty before the last stage (stem patch {})",
            args.arch,
            c.stem_patch
        )
    }
    Ok(BackboneSpec::ConvNextV2(c))
}
