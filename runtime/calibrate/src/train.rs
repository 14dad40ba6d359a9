//! `dyce train`: trains a backbone on Fashion-MNIST with candle-nn, with checkpoints and resume.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{loss, VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::adamw::AdamW;
use super::checkpoint;
pub use super::checkpoint::RunFiles;
use super::sgd::{Optimizer, Sgd};
use super::trainconvnext::{self, TrainConvNext};
use super::trainnet::TrainResNet;
use dyce_data::augment;
use dyce_data::fashion_mnist::{Images, Splits};
use dyce_runtime::engine::{default_pool, run_batch, FastBackend, ResolvedConfig};
use dyce_runtime::model::store::TensorStore;
use dyce_runtime::model::{Backbone, BackboneSpec};

/// Errors of training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed.
    #[error("tensor operation failed")]
    Tensor(#[from] candle_core::Error),
    /// A checkpoint or report could not be written or read.
    #[error("{path}: {reason}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The trained weights do not load as a backbone (a naming bug).
    #[error("loading the trained weights")]
    Model(#[from] dyce_runtime::model::ModelError),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] super::checkpoint::CheckpointError),
    /// Evaluation failed.
    #[error("evaluating")]
    Engine(#[from] dyce_runtime::engine::EngineError),
}

/// Hyper-parameters and paths of a training run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    /// Architecture to train.
    pub spec: BackboneSpec,
    /// Passes over the training split.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate of the one-cycle schedule.
    pub lr: f64,
    /// L2 weight decay on conv and linear weights.
    pub weight_decay: f64,
    /// Nesterov momentum (SGD only).
    pub momentum: f64,
    /// The optimiser (runs recorded before AdamW existed were SGD).
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Random shift in pixels for the crop augmentation.
    pub crop_pad: usize,
    /// Seed of initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Use only the first N training images (smoke tests).
    pub limit: Option<usize>,
}

/// Which optimiser a run uses.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with Nesterov momentum and L2 weight decay (the ResNets' recipe).
    #[default]
    Sgd,
    /// AdamW with decoupled weight decay (ConvNeXt's recipe).
    AdamW,
}

/// The network being trained.
enum Net {
    ResNet(TrainResNet),
    ConvNext(TrainConvNext),
}

impl Net {
    fn new(spec: &BackboneSpec, varmap: &VarMap, seed: u64) -> Result<Self, TrainError> {
        let vb = VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu);
        // candle's CPU device cannot be seeded, so initialisation is redone from our own RNG.
        Ok(match spec {
            BackboneSpec::ResNet(s) => {
                let net = Net::ResNet(TrainResNet::new(s, vb)?);
                init_weights(varmap, seed)?;
                net
            }
            BackboneSpec::ConvNextV2(s) => {
                let net = Net::ConvNext(TrainConvNext::new(s, vb)?);
                trainconvnext::init_weights(varmap, seed)?;
                net
            }
        })
    }

    /// Logits; `train` selects the ResNet's batch statistics (ConvNeXt has none).
    fn forward(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        match self {
            Net::ResNet(n) => n.forward_t(x, train),
            Net::ConvNext(n) => n.forward(x),
        }
    }
}

/// Progress of a run, saved next to each checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// The configuration the run started with.
    pub config: TrainConfig,
    /// Epochs finished.
    pub epochs_done: usize,
    /// Per finished epoch: mean training loss, calibration accuracy, seconds.
    pub history: Vec<EpochStats>,
}

/// One epoch's summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochStats {
    /// Epoch index (0-based).
    pub epoch: usize,
    /// Mean cross-entropy over the epoch.
    pub loss: f64,
    /// Top-1 accuracy on the calibration split (monitoring only).
    pub calibration_accuracy: f64,
    /// Wall-clock seconds of the epoch.
    pub seconds: f64,
}

/// Learning rate at `step` of `total`: linear warm-up over the first 15% from lr/10, then a
/// cosine decay to zero (one-cycle).
pub fn lr_at(step: usize, total: usize, lr: f64) -> f64 {
    let warm = (total as f64 * 0.15).max(1.0);
    let s = step as f64;
    if s < warm {
        lr * (0.1 + 0.9 * s / warm)
    } else {
        let t = (s - warm) / (total as f64 - warm).max(1.0);
        lr * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
    }
}

/// The settings that differ between two configurations, as `name a vs b`.
fn config_diff(a: &TrainConfig, b: &TrainConfig) -> String {
    let (a, b) = (serde_json::to_value(a).unwrap_or_default(), serde_json::to_value(b).unwrap_or_default());
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return String::new() };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k} {v} vs {}", b.get(k).cloned().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn io_err(path: &Path, e: impl ToString) -> TrainError {
    TrainError::Io { path: path.into(), reason: e.to_string() }
}

fn snapshot(varmap: &VarMap) -> HashMap<String, Tensor> {
    varmap
        .data()
        .lock()
        .expect("varmap lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect()
}

/// Seeded initialisation: He-uniform convolutions, PyTorch-style linear layers, identity BN.
fn init_weights(varmap: &VarMap, seed: u64) -> Result<(), TrainError> {
    use rand::Rng;
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let fill = |v: f32| vec![v; n];
        let values = if name.ends_with("running_var")
            || (name.contains(".bn") || name.starts_with("bn") || name.contains("downsample.1"))
                && name.ends_with(".weight")
        {
            fill(1.0)
        } else if name.ends_with("running_mean")
            || (name.contains(".bn") || name.starts_with("bn") || name.contains("downsample.1"))
                && name.ends_with(".bias")
        {
            fill(0.0)
        } else {
            let fan_in = if dims.len() > 1 {
                dims[1..].iter().product::<usize>()
            } else {
                *data.get(&name.replace(".bias", ".weight")).map(|w| &w.dims()[1]).unwrap_or(&1)
            };
            let a = if dims.len() == 4 { (6.0 / fan_in as f32).sqrt() } else { 1.0 / (fan_in as f32).sqrt() };
            (0..n).map(|_| rng.random_range(-a..a)).collect()
        };
        var.set(&Tensor::from_vec(values, dims.as_slice(), &Device::Cpu)?)?;
    }
    Ok(())
}

/// Top-1 accuracy of a checkpoint on `set`, through the serving path (folded BN, fast kernels).
pub fn evaluate(
    spec: &BackboneSpec,
    tensors: HashMap<String, Tensor>,
    set: &Images,
) -> Result<f64, TrainError> {
    let net = Backbone::load(spec, &TensorStore::new(tensors))?;
    let bundle = dyce_runtime::model::Bundle::from_backbone(net, "eval", [1, 28, 28])?;
    let mut be = FastBackend::new(&bundle.backbone, [1, 28, 28], default_pool(None)?)?;
    let cfg = ResolvedConfig::from_slots("full", vec![None; bundle.backbone.positions()]);
    let mut correct = 0usize;
    let idx: Vec<usize> = (0..set.len()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for chunk in idx.chunks(256) {
        let x = augment::batch(set, chunk, 0, false, &mut rng);
        for (r, &i) in run_batch(&bundle, &mut be, &cfg, &x, chunk.len())?.iter().zip(chunk) {
            correct += usize::from(r.label == set.labels[i] as usize);
        }
    }
    Ok(correct as f64 / set.len().max(1) as f64)
}

/// How an invocation runs: whether it continues the directory's checkpoint, and whether it
/// stops early (leaving a checkpoint to continue from).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunControl {
    /// Continue from the last checkpoint, if there is one.
    pub resume: bool,
    /// Stop after this many epochs of this invocation (time-boxed machines, tests).
    pub stop_after: Option<usize>,
}

/// Trains (or resumes) a run in `dir`; `on_step` sees (epoch, step in epoch, steps per epoch,
/// running loss) for a progress bar. Returns the state when the run stops; `backbone` is
/// written only when every epoch is done.
pub fn train(
    cfg: &TrainConfig,
    splits: &Splits,
    dir: &Path,
    control: RunControl,
    on_step: &mut dyn FnMut(usize, usize, usize, f64),
) -> Result<TrainState, TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let files = RunFiles::new(dir);
    super::fastops::keep_freed_memory();
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let net = Net::new(&cfg.spec, &varmap, cfg.seed)?;
    let named: Vec<(String, candle_core::Var)> =
        varmap.data().lock().expect("varmap lock").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut opt: Box<dyn Optimizer> = match cfg.optimizer {
        OptimizerKind::Sgd => Box::new(Sgd::new(named, cfg.momentum, cfg.weight_decay)),
        OptimizerKind::AdamW => Box::new(AdamW::new(named, cfg.weight_decay)),
    };
    let mut state = TrainState { config: cfg.clone(), epochs_done: 0, history: vec![] };
    if control.resume {
        if let Some((saved_state, saved)) = checkpoint::load::<TrainState>(&files)? {
            // Other settings would silently make a different run (the schedule spans them all).
            if saved_state.config != *cfg {
                return Err(TrainError::Io {
                    path: files.checkpoint.clone(),
                    reason: format!(
                        "was made with other settings ({}); resume with the same ones or start a new --out",
                        config_diff(&saved_state.config, cfg)
                    ),
                });
            }
            state = saved_state;
            let vars = varmap.data().lock().expect("varmap lock");
            for (name, var) in vars.iter() {
                let t =
                    saved.get(name).ok_or_else(|| io_err(&files.checkpoint, format!("no tensor {name}")))?;
                var.set(t)?;
            }
            drop(vars);
            opt.load_state(&saved);
            tracing::info!(epochs_done = state.epochs_done, "resumed from {}", files.checkpoint.display());
        }
    }
    let train = match cfg.limit {
        Some(n) => splits.train.take(n),
        None => splits.train.clone(),
    };
    let steps = train.len().div_ceil(cfg.batch_size);
    let total = steps * cfg.epochs;
    let last = control.stop_after.map_or(cfg.epochs, |k| (state.epochs_done + k).min(cfg.epochs));
    for epoch in state.epochs_done..last {
        let start = Instant::now();
        // Seeded per epoch, so a resumed run sees the same batches as an uninterrupted one.
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(cfg.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for (s, chunk) in order.chunks(cfg.batch_size).enumerate() {
            opt.set_lr(lr_at(epoch * steps + s, total, cfg.lr));
            let x = augment::batch(&train, chunk, cfg.crop_pad, true, &mut rng);
            let x = Tensor::from_vec(x, (chunk.len(), 1, 28, 28), &dev)?;
            let y: Vec<u32> = chunk.iter().map(|&i| train.labels[i] as u32).collect();
            let y = Tensor::from_vec(y, chunk.len(), &dev)?;
            let logits = net.forward(&x, true)?;
            let l = loss::cross_entropy(&logits, &y)?;
            opt.step(&l.backward()?)?;
            loss_sum += l.to_scalar::<f32>()? as f64;
            on_step(epoch, s + 1, steps, loss_sum / (s + 1) as f64);
        }
        let weights = snapshot(&varmap);
        let cal = evaluate(&cfg.spec, weights.clone(), &splits.calibration)?;
        let stats = EpochStats {
            epoch,
            loss: loss_sum / steps as f64,
            calibration_accuracy: cal,
            seconds: start.elapsed().as_secs_f64(),
        };
        tracing::info!(
            epoch,
            loss = stats.loss,
            calibration_accuracy = cal,
            seconds = stats.seconds,
            "epoch done"
        );
        state.history.push(stats);
        state.epochs_done = epoch + 1;
        let mut ck = weights;
        ck.extend(opt.state());
        checkpoint::save(&files, &ck, &state)?;
    }
    if state.epochs_done == cfg.epochs {
        candle_core::safetensors::save(&snapshot(&varmap), &files.backbone)?;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cycle_schedule_shape() {
        assert!((lr_at(0, 100, 1.0) - 0.1).abs() < 1e-9);
        assert!((lr_at(15, 100, 1.0) - 1.0).abs() < 1e-9);
        assert!(lr_at(99, 100, 1.0) < 0.01);
        assert!(lr_at(50, 100, 1.0) < lr_at(20, 100, 1.0));
    }
}
