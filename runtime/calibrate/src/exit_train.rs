//! Trains every exit head (every type at every position) jointly on cached pooled features.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use candle_nn::{loss, AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

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

/// Per-position pooled features for exit training: `rows(p)` gives the `n × channels[p]` rows
/// of position `p` (read from the on-disk cache, one position at a time).
pub struct TrainingFeatures<'a> {
    /// Channels at each position.
    pub channels: Vec<usize>,
    /// Images.
    pub n: usize,
    /// Loads one position's rows.
    pub rows: &'a dyn Fn(usize) -> Result<Vec<f32>, crate::error::CalibrateError>,
}

/// Trains the heads, one position at a time (only that position's features are in memory), and
/// returns their tensors under `exits.{position}.{type}.{k}.{weight,bias}`.
pub fn train_exits(
    feats: &TrainingFeatures,
    labels: &[u32],
    classes: usize,
    cfg: &ExitTrainConfig,
    on_epoch: &mut dyn FnMut(usize, usize, f64),
) -> Result<HashMap<String, Tensor>, crate::error::CalibrateError> {
    let types: Vec<ExitType> = cfg.types.iter().map(|t| t.parse()).collect::<Result<_, _>>()?;
    let mut out = HashMap::new();
    for (p, &c) in feats.channels.iter().enumerate() {
        let rows = (feats.rows)(p)?;
        // A seed per position: the heads of one position do not depend on the others'.
        let seed = cfg.seed.wrapping_add(p as u64);
        for (name, tensor) in
            train_position(p, &rows, c, labels, classes, &types, cfg, seed, &mut |e, l| on_epoch(p, e, l))?
        {
            out.insert(name, tensor);
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn train_position(
    p: usize,
    rows: &[f32],
    c: usize,
    labels: &[u32],
    classes: usize,
    types: &[ExitType],
    cfg: &ExitTrainConfig,
    seed: u64,
    on_epoch: &mut dyn FnMut(usize, f64),
) -> candle_core::Result<Vec<(String, Tensor)>> {
    let dev = Device::Cpu;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut heads = Vec::new();
    for t in types {
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
    let vars: Vec<Var> =
        heads.iter().flat_map(|h| h.layers.iter().flat_map(|(w, b)| [w.clone(), b.clone()])).collect();
    let params = ParamsAdamW { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() };
    let mut opt = AdamW::new(vars, params)?;
    let n = labels.len();
    let steps = n.div_ceil(cfg.batch_size.max(1));
    let total = (steps * cfg.epochs).max(1);
    let mut order: Vec<usize> = (0..n).collect();
    for epoch in 0..cfg.epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for (s, chunk) in order.chunks(cfg.batch_size.max(1)).enumerate() {
            let t = (epoch * steps + s) as f64 / total as f64;
            opt.set_learning_rate(cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()));
            let y: Vec<u32> = chunk.iter().map(|&i| labels[i]).collect();
            let y = Tensor::from_vec(y, chunk.len(), &dev)?;
            let mut x = Vec::with_capacity(chunk.len() * c);
            for &i in chunk {
                x.extend_from_slice(&rows[i * c..(i + 1) * c]);
            }
            let x = Tensor::from_vec(x, (chunk.len(), c), &dev)?;
            // One summed loss: the heads share no parameters, so this trains each on its own.
            let mut total_loss: Option<Tensor> = None;
            for h in &heads {
                let l = loss::cross_entropy(&h.forward(&x)?, &y)?;
                total_loss = Some(match total_loss {
                    Some(acc) => (acc + l)?,
                    None => l,
                });
            }
            let Some(l) = total_loss else { break };
            opt.backward_step(&l)?;
            loss_sum += l.to_scalar::<f32>()? as f64 / heads.len() as f64;
        }
        on_epoch(epoch, loss_sum / steps.max(1) as f64);
    }
    let mut out = Vec::new();
    for h in &heads {
        debug_assert_eq!(h.position, p);
        for (k, (w, b)) in h.layers.iter().enumerate() {
            out.push((format!("{}.{k}.weight", h.name), w.as_tensor().detach()));
            out.push((format!("{}.{k}.bias", h.name), b.as_tensor().detach()));
        }
    }
    Ok(out)
}
