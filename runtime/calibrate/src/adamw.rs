//! AdamW (decoupled weight decay) with saveable state, for the ConvNeXt backbones.
//!
//! Written here for the same reason as [`super::sgd`]: candle-nn's `AdamW` keeps its moments
//! private, so a checkpoint could not resume it exactly.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Tensor, Var};

use super::sgd::Optimizer;

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// AdamW state: first and second moments per variable and the step count.
pub struct AdamW {
    vars: Vec<(String, Var, bool)>,
    m: HashMap<String, Tensor>,
    v: HashMap<String, Tensor>,
    steps: u64,
    lr: f64,
    weight_decay: f64,
}

impl AdamW {
    /// `vars` by name; weight decay applies to convolution and linear weights only (rank > 1),
    /// as timm does: never to norms, GRN's γ/β or biases.
    pub fn new(vars: Vec<(String, Var)>, weight_decay: f64) -> Self {
        let vars = vars.into_iter().map(|(n, v)| (n, v.clone(), v.rank() > 1)).collect();
        Self { vars, m: HashMap::new(), v: HashMap::new(), steps: 0, lr: 0.0, weight_decay }
    }
}

impl Optimizer for AdamW {
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.steps += 1;
        let t = self.steps as i32;
        let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        for (name, var, decay) in &self.vars {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let m = match self.m.get(name) {
                Some(m) => ((m * BETA1)? + (g * (1.0 - BETA1))?)?,
                None => (g * (1.0 - BETA1))?,
            };
            let v = match self.v.get(name) {
                Some(v) => ((v * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?,
                None => (g.sqr()? * (1.0 - BETA2))?,
            };
            let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + EPS)?)?;
            let p = var.as_tensor();
            let p = if *decay { (p * (1.0 - self.lr * self.weight_decay))? } else { p.clone() };
            var.set(&(p - (update * self.lr)?)?)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        Ok(())
    }

    fn state(&self) -> HashMap<String, Tensor> {
        let mut out: HashMap<String, Tensor> =
            self.m.iter().map(|(k, v)| (format!("adam_m.{k}"), v.clone())).collect();
        out.extend(self.v.iter().map(|(k, v)| (format!("adam_v.{k}"), v.clone())));
        // u64 steps stored exactly in two u32 halves (safetensors has no u64 in candle's CPU set).
        let halves = [(self.steps >> 32) as u32, self.steps as u32];
        if let Ok(t) = Tensor::new(&halves, &Device::Cpu) {
            out.insert("adam_steps".into(), t);
        }
        out
    }

    fn load_state(&mut self, saved: &HashMap<String, Tensor>) {
        for (k, t) in saved {
            if let Some(name) = k.strip_prefix("adam_m.") {
                self.m.insert(name.to_string(), t.clone());
            } else if let Some(name) = k.strip_prefix("adam_v.") {
                self.v.insert(name.to_string(), t.clone());
            } else if k == "adam_steps" {
                if let Ok(h) = t.to_dtype(DType::U32).and_then(|t| t.to_vec1::<u32>()) {
                    self.steps =
                        h.first().map_or(0, |&hi| (hi as u64) << 32) | h.get(1).map_or(0, |&lo| lo as u64);
                }
            }
        }
    }
}
