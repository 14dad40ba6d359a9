//! SGD with Nesterov momentum and decoupled-from-BN weight decay, with saveable state.
//!
//! Written here rather than taken from candle-nn because candle-nn's `SGD` has no momentum and
//! its `AdamW` state cannot be saved, and exact resume from a checkpoint needs both.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

/// What the training loop needs of an optimiser: a step, a learning rate and a saveable state.
pub trait Optimizer {
    /// Learning rate of the next step.
    fn set_lr(&mut self, lr: f64);
    /// One update from `grads`.
    fn step(&mut self, grads: &GradStore) -> Result<()>;
    /// State tensors for a checkpoint (names never collide with the weights').
    fn state(&self) -> HashMap<String, Tensor>;
    /// Restores what `state` saved.
    fn load_state(&mut self, saved: &HashMap<String, Tensor>);
}

/// Optimiser state: one momentum buffer per trained variable.
pub struct Sgd {
    vars: Vec<(String, Var, bool)>,
    momentum: HashMap<String, Tensor>,
    /// Learning rate of the next step.
    pub lr: f64,
    mu: f64,
    weight_decay: f64,
}

impl Sgd {
    /// `vars` by name; weight decay applies to conv and linear weights only (not BN, not biases).
    pub fn new(vars: Vec<(String, Var)>, mu: f64, weight_decay: f64) -> Self {
        let vars = vars
            .into_iter()
            .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
            .map(|(n, v)| {
                let decay = n.ends_with(".weight") && v.rank() > 1;
                (n, v, decay)
            })
            .collect();
        Self { vars, momentum: HashMap::new(), lr: 0.0, mu, weight_decay }
    }
}

impl Optimizer for Sgd {
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// One update from `grads`.
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        for (name, var, decay) in &self.vars {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let g = if *decay { (g + (var.as_tensor() * self.weight_decay)?)? } else { g.clone() };
            let buf = match self.momentum.get(name) {
                Some(b) => ((b * self.mu)? + &g)?,
                None => g.clone(),
            };
            // Nesterov: step along g + mu * buf.
            let update = (&g + (&buf * self.mu)?)?;
            var.set(&(var.as_tensor() - (update * self.lr)?)?)?;
            self.momentum.insert(name.clone(), buf);
        }
        Ok(())
    }

    /// Momentum buffers under `momentum.{name}`, for a checkpoint.
    fn state(&self) -> HashMap<String, Tensor> {
        self.momentum.iter().map(|(k, v)| (format!("momentum.{k}"), v.clone())).collect()
    }

    /// Restores momentum buffers saved by `state`.
    fn load_state(&mut self, saved: &HashMap<String, Tensor>) {
        for (k, v) in saved {
            if let Some(name) = k.strip_prefix("momentum.") {
                self.momentum.insert(name.to_string(), v.clone());
            }
        }
    }
}
