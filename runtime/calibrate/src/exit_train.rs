//! Trains every exit head (every type at every position) jointly on cached pooled features.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use candle_nn::{loss, AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::features::Features;
use dyce_runtime::model::{ExitHead, ExitType};

/// Hyper-parameters of exit training.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ExitTrainConfig {
    /// Exit types to train at every position.
    pub types: Vec<String>,
    /// Passes over the training features.
    pub epochs: usize,
    /// Samples per step.
    pub batch_size: usize,
    /// AdamW learning rate (cosine-decayed to zero).
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Seed of initialisation and shuffling.
    pub seed: u64,
}

struct Head {
    name: String,
    position: usize,
    layers: Vec<(Var, Var)>,
}

impl Head {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut y = x.clone();
        for (i, (w, b)) in self.layers.iter().enumerate() {
            y = y.matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor())?;
            if i + 1 < self.layers.len() {
                y = y.relu()?;
            }
        }
        Ok(y)
    }
}

/// Trains the heads and returns their tensors under `exits.{position}.{type}.{k}.{weight,bias}`.
pub fn train_exits(
    feats: &Features,
    labels: &[u8],
    classes: usize,
    cfg: &ExitTrainConfig,
    on_epoch: &mut dyn FnMut(usize, f64),
) -> candle_core::Result<HashMap<String, Tensor>> {
    let dev = Device::Cpu;
    let types: Vec<ExitType> = cfg
        .types
        .iter()
        .map(|t| t.parse().map_err(|e| candle_core::Error::Msg(format!("{e}"))))
        .collect::<Result<_, _>>()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut heads = Vec::new();
    for (p, &c) in feats.channels.iter().enumerate() {
        for t in &types {
            let mut layers = Vec::new();
            for (i, o) in t.layer_dims(c, classes) {
                // PyTorch's default Linear initialisation, from our seeded RNG.
                let a = 1.0 / (i as f32).sqrt();
                let w: Vec<f32> = (0..i * o).map(|_| rng.random_range(-a..a)).collect();
                let b: Vec<f32> = (0..o).map(|_| rng.random_range(-a..a)).collect();
                layers.push((Var::from_vec(w, (o, i), &dev)?, Var::from_vec(b, o, &dev)?));
            }
            heads.push(Head { name: ExitHead::prefix(p, t), position: p, layers });
        }
    }
    let vars: Vec<Var> =
        heads.iter().flat_map(|h| h.layers.iter().flat_map(|(w, b)| [w.clone(), b.clone()])).collect();
    let params = ParamsAdamW { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() };
    let mut opt = AdamW::new(vars, params)?;
    let n = feats.n;
    let steps = n.div_ceil(cfg.batch_size.max(1));
    let total = (steps * cfg.epochs).max(1);
    let mut order: Vec<usize> = (0..n).collect();
    for epoch in 0..cfg.epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for (s, chunk) in order.chunks(cfg.batch_size.max(1)).enumerate() {
            let t = (epoch * steps + s) as f64 / total as f64;
            opt.set_learning_rate(cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()));
            let y: Vec<u32> = chunk.iter().map(|&i| labels[i] as u32).collect();
            let y = Tensor::from_vec(y, chunk.len(), &dev)?;
            let mut inputs = Vec::with_capacity(feats.channels.len());
            for (p, &c) in feats.channels.iter().enumerate() {
                let mut rows = Vec::with_capacity(chunk.len() * c);
                for &i in chunk {
                    rows.extend_from_slice(feats.row(p, i));
                }
                inputs.push(Tensor::from_vec(rows, (chunk.len(), c), &dev)?);
            }
            // One summed loss: the heads share no parameters, so this trains each on its own.
            let mut total_loss: Option<Tensor> = None;
            for h in &heads {
                let l = loss::cross_entropy(&h.forward(&inputs[h.position])?, &y)?;
                total_loss = Some(match total_loss {
                    Some(acc) => (acc + l)?,
                    None => l,
                });
            }
            let l = total_loss.expect("at least one head");
            opt.backward_step(&l)?;
            loss_sum += l.to_scalar::<f32>()? as f64 / heads.len() as f64;
        }
        on_epoch(epoch, loss_sum / steps as f64);
    }
    let mut out = HashMap::new();
    for h in &heads {
        for (k, (w, b)) in h.layers.iter().enumerate() {
            out.insert(format!("{}.{k}.weight", h.name), w.as_tensor().detach());
            out.insert(format!("{}.{k}.bias", h.name), b.as_tensor().detach());
        }
    }
    Ok(out)
}
