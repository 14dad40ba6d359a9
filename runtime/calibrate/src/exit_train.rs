//! Trains every exit head (every type at every position) jointly on cached pooled features,
//! with a recipe: plain cross-entropy, distillation from the frozen backbone's final head,
//! mixup of the pooled features, confidence weighting, or a mix (`recipe.rs`).

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use candle_nn::{ops::log_softmax, AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution};

pub use crate::recipe::Recipe;
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
    /// How the heads learn (loss and augmentation); plain cross-entropy in bundles made before
    /// recipes existed.
    #[serde(default)]
    pub recipe: Recipe,
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
    /// The final head's logits for every image (`n × classes`), the teacher of distillation;
    /// `None` when no recipe needs it.
    pub teacher: Option<&'a [f32]>,
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
    if cfg.recipe.needs_teacher() && feats.teacher.is_none_or(|t| t.len() != feats.n * classes) {
        return Err(crate::error::CalibrateError::Invalid(format!(
            "exit recipe `{}` needs the final head's logits for every training image",
            cfg.recipe
        )));
    }
    let mut out = HashMap::new();
    for (p, &c) in feats.channels.iter().enumerate() {
        let rows = (feats.rows)(p)?;
        // A seed per position: the heads of one position do not depend on the others'.
        let seed = cfg.seed.wrapping_add(p as u64);
        let data = PositionData { rows: &rows, c, labels, classes, teacher: feats.teacher };
        for (name, tensor) in train_position(p, &data, &types, cfg, seed, &mut |e, l| on_epoch(p, e, l))? {
            out.insert(name, tensor);
        }
    }
    Ok(out)
}

/// One position's training data.
struct PositionData<'a> {
    rows: &'a [f32],
    c: usize,
    labels: &'a [u32],
    classes: usize,
    teacher: Option<&'a [f32]>,
}

impl PositionData<'_> {
    /// Rows `chunk` of the features, and of `per_row` values of `src`, as tensors.
    fn gather(&self, src: &[f32], per_row: usize, chunk: &[usize]) -> Vec<f32> {
        let mut x = Vec::with_capacity(chunk.len() * per_row);
        for &i in chunk {
            x.extend_from_slice(&src[i * per_row..(i + 1) * per_row]);
        }
        x
    }

    /// One-hot labels of a batch.
    fn hard(&self, chunk: &[usize]) -> candle_core::Result<Tensor> {
        let mut hard = vec![0f32; chunk.len() * self.classes];
        for (r, &i) in chunk.iter().enumerate() {
            hard[r * self.classes + self.labels[i] as usize] = 1.0;
        }
        Tensor::from_vec(hard, (chunk.len(), self.classes), &Device::Cpu)
    }

    /// The teacher's probabilities at `temperature` for a batch; `None` without a teacher.
    fn teacher_probs(&self, chunk: &[usize], temperature: f64) -> candle_core::Result<Option<Tensor>> {
        let Some(t) = self.teacher else { return Ok(None) };
        let logits =
            Tensor::from_vec(self.gather(t, self.classes, chunk), (chunk.len(), self.classes), &Device::Cpu)?;
        Ok(Some(candle_nn::ops::softmax_last_dim(&(logits / temperature)?)?))
    }
}

/// `−Σ target · log_softmax(logits)` per row.
fn soft_ce(logits: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
    (log_softmax(logits, 1)? * target)?.sum(1)?.neg()
}

/// One batch's loss for one head under the recipe (mean over rows).
fn head_loss(
    logits: &Tensor,
    hard: &Tensor,
    soft: Option<&Tensor>,
    weight: Option<&Tensor>,
    recipe: &Recipe,
) -> candle_core::Result<Tensor> {
    let mut per_row = soft_ce(logits, hard)?;
    if let (Some(soft), true) = (soft, recipe.distill > 0.0) {
        // Hinton's T² keeps the soft term's gradient on the hard term's scale.
        let t = recipe.temperature;
        let kd = (soft_ce(&(logits / t)?, soft)? * (t * t))?;
        per_row = ((per_row * (1.0 - recipe.distill))? + (kd * recipe.distill)?)?;
    }
    if let Some(w) = weight {
        per_row = (per_row * w)?;
    }
    per_row.mean_all()
}

/// The confidence weight of each row: the teacher's probability of the true label, scaled to a
/// mean of 1 over the batch. An exit only answers images it is sure of and leaves the rest to
/// deeper blocks, so the images the full model itself is unsure of matter least to it.
fn confidence_weights(soft_t1: &Tensor, hard: &Tensor) -> candle_core::Result<Tensor> {
    let p = (soft_t1 * hard)?.sum(1)?;
    let mean = p.mean_all()?.to_scalar::<f32>()?.max(1e-6);
    p / mean as f64
}

fn train_position(
    p: usize,
    d: &PositionData,
    types: &[ExitType],
    cfg: &ExitTrainConfig,
    seed: u64,
    on_epoch: &mut dyn FnMut(usize, f64),
) -> candle_core::Result<Vec<(String, Tensor)>> {
    let dev = Device::Cpu;
    let recipe = &cfg.recipe;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut heads = Vec::new();
    for t in types {
        let mut layers = Vec::new();
        for (i, o) in t.layer_dims(d.c, d.classes) {
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
    let beta = match recipe.mixup > 0.0 {
        true => {
            Some(Beta::new(recipe.mixup, recipe.mixup).map_err(|e| candle_core::Error::Msg(e.to_string()))?)
        }
        false => None,
    };
    let n = d.labels.len();
    let steps = n.div_ceil(cfg.batch_size.max(1));
    let total = (steps * cfg.epochs).max(1);
    let mut order: Vec<usize> = (0..n).collect();
    for epoch in 0..cfg.epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for (s, chunk) in order.chunks(cfg.batch_size.max(1)).enumerate() {
            let t = (epoch * steps + s) as f64 / total as f64;
            opt.set_learning_rate(cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()));
            let mut x = Tensor::from_vec(d.gather(d.rows, d.c, chunk), (chunk.len(), d.c), &dev)?;
            let mut hard = d.hard(chunk)?;
            // The teacher's answers only where the recipe reads them.
            let mut soft = match recipe.distill > 0.0 {
                true => d.teacher_probs(chunk, recipe.temperature)?,
                false => None,
            };
            let mut weight = match recipe.confidence_weighted {
                true => d.teacher_probs(chunk, 1.0)?.map(|p| confidence_weights(&p, &hard)).transpose()?,
                false => None,
            };
            if let Some(beta) = &beta {
                // Mixup in "batch" mode: one λ per batch, each row mixed with a shuffled partner,
                // targets (hard and soft) mixed the same way.
                let lam = beta.sample(&mut rng);
                let mut perm: Vec<u32> = (0..chunk.len() as u32).collect();
                perm.shuffle(&mut rng);
                let perm = Tensor::from_vec(perm, chunk.len(), &dev)?;
                let mix = |a: &Tensor| -> candle_core::Result<Tensor> {
                    (a * lam)? + (a.index_select(&perm, 0)? * (1.0 - lam))?
                };
                x = mix(&x)?;
                hard = mix(&hard)?;
                soft = soft.map(|s| mix(&s)).transpose()?;
                weight = weight.map(|w| mix(&w)).transpose()?;
            }
            // One summed loss: the heads share no parameters, so this trains each on its own.
            let mut total_loss: Option<Tensor> = None;
            for h in &heads {
                let l = head_loss(&h.forward(&x)?, &hard, soft.as_ref(), weight.as_ref(), recipe)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Features whose labels are noise but whose teacher logits are a fixed linear map of them:
    /// only a head that learns from the teacher can agree with it.
    fn synthetic(n: usize, c: usize, classes: usize) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let x: Vec<f32> = (0..n * c).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let w: Vec<f32> = (0..c * classes).map(|_| rng.random_range(-2.0f32..2.0)).collect();
        let teacher: Vec<f32> = (0..n)
            .flat_map(|i| {
                let x = &x;
                let w = &w;
                (0..classes).map(move |k| (0..c).map(|j| 3.0 * x[i * c + j] * w[k * c + j]).sum::<f32>())
            })
            .collect();
        let labels = (0..n).map(|_| rng.random_range(0..classes as u32)).collect();
        (x, labels, teacher)
    }

    fn agreement(
        heads: &HashMap<String, Tensor>,
        x: &[f32],
        teacher: &[f32],
        n: usize,
        c: usize,
        k: usize,
    ) -> f64 {
        let w: Vec<f32> = heads["exits.0.mlp1.0.weight"].flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = heads["exits.0.mlp1.0.bias"].to_vec1().unwrap();
        let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        let same = (0..n)
            .filter(|&i| {
                let logits: Vec<f32> =
                    (0..k).map(|o| b[o] + (0..c).map(|j| w[o * c + j] * x[i * c + j]).sum::<f32>()).collect();
                argmax(&logits) == argmax(&teacher[i * k..(i + 1) * k])
            })
            .count();
        same as f64 / n as f64
    }

    #[test]
    fn distillation_learns_the_teachers_answer_and_needs_a_teacher() {
        let (n, c, k) = (600, 4, 3);
        let (x, labels, teacher) = synthetic(n, c, k);
        let rows = |_: usize| Ok(x.clone());
        let feats = TrainingFeatures { channels: vec![c], n, rows: &rows, teacher: Some(&teacher) };
        let mut cfg = ExitTrainConfig {
            types: vec!["mlp1".into()],
            epochs: 40,
            batch_size: 64,
            lr: 0.05,
            weight_decay: 0.0,
            seed: 1,
            recipe: Recipe::default(),
        };
        let ce = train_exits(&feats, &labels, k, &cfg, &mut |_, _, _| {}).unwrap();
        cfg.recipe = "distill".parse().unwrap();
        let kd = train_exits(&feats, &labels, k, &cfg, &mut |_, _, _| {}).unwrap();
        let (a_ce, a_kd) = (agreement(&ce, &x, &teacher, n, c, k), agreement(&kd, &x, &teacher, n, c, k));
        assert!(a_kd > 0.85 && a_kd > a_ce + 0.2, "agreement with the teacher: ce {a_ce}, distill {a_kd}");
        cfg.recipe = "distill+mixup+conf".parse().unwrap();
        let all = train_exits(&feats, &labels, k, &cfg, &mut |_, _, _| {}).unwrap();
        assert!(agreement(&all, &x, &teacher, n, c, k) > 0.8);

        let no_teacher = TrainingFeatures { teacher: None, ..feats };
        let err = train_exits(&no_teacher, &labels, k, &cfg, &mut |_, _, _| {}).unwrap_err();
        assert!(err.to_string().contains("needs the final head's logits"), "{err}");
    }
}
