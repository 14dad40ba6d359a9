//! `dyce train`: trains a backbone on Fashion-MNIST with candle-nn, with checkpoints and resume.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{loss, VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::sgd::Sgd;
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
    /// The architecture has no training path.
    #[error("{0} is not supported")]
    Unsupported(String),
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
    /// Nesterov momentum.
    pub momentum: f64,
    /// Random shift in pixels for the crop augmentation.
    pub crop_pad: usize,
    /// Seed of initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Use only the first N training images (smoke tests).
    pub limit: Option<usize>,
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

/// Files of a run directory.
pub struct RunFiles {
    /// Weights and optimiser state of the last finished epoch.
    pub checkpoint: PathBuf,
    /// `TrainState` of the last finished epoch.
    pub state: PathBuf,
    /// Final weights (torchvision names, BN statistics included).
    pub backbone: PathBuf,
}

impl RunFiles {
    /// The files under `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            checkpoint: dir.join("checkpoint.safetensors"),
            state: dir.join("checkpoint.json"),
            backbone: dir.join("backbone.safetensors"),
        }
    }
}

/// Trains (or resumes) a run in `dir`; `on_step` sees (epoch, step in epoch, steps per epoch,
/// running loss) for a progress bar. Returns the final state.
pub fn train(
    cfg: &TrainConfig,
    splits: &Splits,
    dir: &Path,
    resume: bool,
    on_step: &mut dyn FnMut(usize, usize, usize, f64),
) -> Result<TrainState, TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let files = RunFiles::new(dir);
    super::fastops::keep_freed_memory();
    let dev = Device::Cpu;
    let mut varmap = VarMap::new();
    let BackboneSpec::ResNet(spec) = &cfg.spec else {
        return Err(TrainError::Unsupported(format!("training a {} backbone", cfg.spec.naming())));
    };
    let net = TrainResNet::new(spec, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
    // candle's CPU device cannot be seeded, so initialisation is redone from our own RNG.
    init_weights(&varmap, cfg.seed)?;
    let named: Vec<(String, candle_core::Var)> =
        varmap.data().lock().expect("varmap lock").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut sgd = Sgd::new(named, cfg.momentum, cfg.weight_decay);
    let mut state = TrainState { config: cfg.clone(), epochs_done: 0, history: vec![] };
    if resume && files.state.exists() {
        let text = std::fs::read_to_string(&files.state).map_err(|e| io_err(&files.state, e))?;
        state = serde_json::from_str(&text).map_err(|e| io_err(&files.state, e))?;
        varmap.load(&files.checkpoint)?;
        let saved = candle_core::safetensors::load(&files.checkpoint, &dev)?;
        sgd.load_state(&saved);
        tracing::info!(epochs_done = state.epochs_done, "resumed from {}", files.checkpoint.display());
    }
    let train = match cfg.limit {
        Some(n) => splits.train.take(n),
        None => splits.train.clone(),
    };
    let steps = train.len().div_ceil(cfg.batch_size);
    let total = steps * cfg.epochs;
    for epoch in state.epochs_done..cfg.epochs {
        let start = Instant::now();
        // Seeded per epoch, so a resumed run sees the same batches as an uninterrupted one.
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(cfg.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for (s, chunk) in order.chunks(cfg.batch_size).enumerate() {
            sgd.lr = lr_at(epoch * steps + s, total, cfg.lr);
            let x = augment::batch(&train, chunk, cfg.crop_pad, true, &mut rng);
            let x = Tensor::from_vec(x, (chunk.len(), 1, 28, 28), &dev)?;
            let y: Vec<u32> = chunk.iter().map(|&i| train.labels[i] as u32).collect();
            let y = Tensor::from_vec(y, chunk.len(), &dev)?;
            let logits = net.forward_t(&x, true)?;
            let l = loss::cross_entropy(&logits, &y)?;
            sgd.step(&l.backward()?)?;
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
        ck.extend(sgd.state());
        candle_core::safetensors::save(&ck, &files.checkpoint)?;
        let text = serde_json::to_string_pretty(&state).map_err(|e| io_err(&files.state, e))?;
        std::fs::write(&files.state, text).map_err(|e| io_err(&files.state, e))?;
    }
    candle_core::safetensors::save(&snapshot(&varmap), &files.backbone)?;
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
