//! The scalarised trade-off shared by onepass and coordinate search.
//!
//! DyCE normalises accuracy and MACs between "the first exit" and the full model and minimises
//! `J = λ·(1 − Â) + (1 − λ)·M̂`. The paper's "first exit" is made concrete here as the cheapest
//! exit type at position 0 with threshold 0, i.e. every sample leaves at the first position
//! through its cheapest head: `acc_min`/`macs_min` are that configuration's accuracy and mean
//! MACs, `acc_full`/`full_macs` those of the unchanged model.

use serde::{Deserialize, Serialize};

use crate::eval::{evaluate, Config};
use crate::records::Records;

/// Normalisation constants of the DyCE objective for one record set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Accuracy when everything exits at position 0 through its cheapest type.
    pub acc_min: f64,
    /// `acc_full − acc_min`, or 1 if that is not positive (then Â is raw accuracy).
    pub acc_span: f64,
    /// Mean MACs when everything exits at position 0 through its cheapest type.
    pub macs_min: f64,
    /// `full_macs − macs_min`, or `full_macs` (or 1) if that is not positive.
    pub macs_span: f64,
}

impl Normalization {
    /// Computes the constants; degenerate spans fall back so the objective stays well-defined
    /// and keeps its sign conventions (more accuracy and fewer MACs always lower J for λ in (0, 1)).
    pub fn from_records(records: &Records) -> Self {
        let cheapest = (0..records.n_types(0))
            .min_by(|&a, &b| records.exit(0, a).macs.total_cmp(&records.exit(0, b).macs))
            .expect("records have at least one type per position");
        let mut config = Config::none(records.n_positions());
        config.exits[0] = Some((cheapest, 0.0));
        let first = evaluate(records, &config);
        let acc_span = records.full_accuracy() - first.accuracy;
        let macs_span = records.full_macs() - first.mean_macs;
        let fallback_macs = if records.full_macs() > 0.0 { records.full_macs() } else { 1.0 };
        Normalization {
            acc_min: first.accuracy,
            acc_span: if acc_span > 1e-12 { acc_span } else { 1.0 },
            macs_min: first.mean_macs,
            macs_span: if macs_span > 1e-12 * fallback_macs { macs_span } else { fallback_macs },
        }
    }

    /// `J = λ·(1 − Â) + (1 − λ)·M̂` for an (accuracy, mean MACs) pair; lower is better.
    pub fn objective(&self, lambda: f64, accuracy: f64, mean_macs: f64) -> f64 {
        let acc_hat = (accuracy - self.acc_min) / self.acc_span;
        let macs_hat = (mean_macs - self.macs_min) / self.macs_span;
        lambda * (1.0 - acc_hat) + (1.0 - lambda) * macs_hat
    }
}

/// A half-open sweep `start, start + step, … < end` of trade-off weights λ.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LambdaGrid {
    /// First λ.
    pub start: f64,
    /// Exclusive end.
    pub end: f64,
    /// Spacing (> 0).
    pub step: f64,
}

impl Default for LambdaGrid {
    /// DyCE's sweep: λ in [0.5, 1.05) by 0.01 (λ ≥ 1 weights accuracy only, or even rewards cost,
    /// which pins the accurate end of the front).
    fn default() -> Self {
        LambdaGrid { start: 0.5, end: 1.05, step: 0.01 }
    }
}

impl LambdaGrid {
    /// The λ values, computed as `start + k·step` so rounding does not accumulate.
    pub fn values(&self) -> Vec<f64> {
        assert!(self.step > 0.0, "LambdaGrid: step must be positive");
        let mut out = Vec::new();
        let mut k = 0u32;
        loop {
            let v = self.start + f64::from(k) * self.step;
            // Tolerance so 0.5 + 55·0.01 = 1.0500000000000000444 counts as the end.
            if v >= self.end - 1e-9 * self.step {
                break;
            }
            out.push(v);
            k += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_grid_has_55_values() {
        let v = LambdaGrid::default().values();
        assert_eq!(v.len(), 55);
        assert_eq!(v[0], 0.5);
        assert!((v[54] - 1.04).abs() < 1e-12);
    }
}
