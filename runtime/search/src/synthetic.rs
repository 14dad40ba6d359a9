//! Deterministic synthetic records with the structure of a real early-exit CNN, for tests and
//! benchmarks: deeper positions and bigger exit heads are more accurate, errors are correlated
//! across positions through a per-sample difficulty, and confidence tracks correctness.
//!
//! It carries its own tiny PRNG (SplitMix64) so the crate needs no `rand` at runtime.

use serde::{Deserialize, Serialize};

use crate::records::{ExitRecords, Records};

/// Shape and seed of a synthetic record set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyntheticParams {
    /// Number of samples N.
    pub samples: usize,
    /// Number of exit positions P.
    pub positions: usize,
    /// Exit types per position T (type t is larger and more accurate than t − 1).
    pub types: usize,
    /// Number of classes (≥ 2).
    pub classes: u32,
    /// PRNG seed.
    pub seed: u64,
}

impl Default for SyntheticParams {
    /// 2,000 samples, 6 positions, 3 types, 10 classes.
    fn default() -> Self {
        SyntheticParams { samples: 2000, positions: 6, types: 3, classes: 10, seed: 0x5eed }
    }
}

/// SplitMix64: tiny, fast and good enough for test data.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn below(&mut self, k: u32) -> u32 {
        (self.uniform() * f64::from(k)) as u32 % k
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Generates a valid record set (full model costs 1e9 MACs; accuracy ≈ 0.45 at the first exit,
/// ≈ 0.92 at the final head).
///
/// # Panics
/// If any dimension is zero or `classes < 2`.
pub fn generate(params: &SyntheticParams) -> Records {
    let SyntheticParams { samples: n, positions, types, classes, seed } = *params;
    assert!(n > 0 && positions > 0 && types > 0 && classes >= 2, "generate: bad shape");
    let mut rng = SplitMix(seed);
    let full_macs = 1.0e9;
    let labels: Vec<u32> = (0..n).map(|_| rng.below(classes)).collect();
    let difficulty: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let wrong = |rng: &mut SplitMix, label: u32| (label + 1 + rng.below(classes - 1)) % classes;

    // Ability rises with depth (concave, as in real backbones) and with exit-head size.
    // Independent per-exit noise is kept small relative to the shared difficulty, since real
    // exits mostly fail on the same hard samples (otherwise confident early exits would form an
    // ensemble that beats the full model by a wide margin, which real networks do not show).
    let (a_first, a_final, noise) = (-0.15, 1.47, 0.3);
    let ability = |depth: f64, t: usize| {
        a_first + (a_final - a_first) * depth.powf(0.7) + 0.3 * (1.0 - 0.55f64.powi(t as i32)) - 0.3
    };
    let mut cum_macs = Vec::with_capacity(positions);
    let mut exits = Vec::with_capacity(positions);
    for p in 0..positions {
        let depth = (p + 1) as f64 / (positions + 1) as f64;
        cum_macs.push(0.98 * full_macs * depth);
        let mut at_p = Vec::with_capacity(types);
        for t in 0..types {
            let a = ability(depth, t);
            let mut pred = Vec::with_capacity(n);
            let mut conf = Vec::with_capacity(n);
            for i in 0..n {
                let margin = a - difficulty[i] - noise * rng.normal();
                pred.push(if margin > 0.0 { labels[i] } else { wrong(&mut rng, labels[i]) });
                // Top-1 softmax confidence lives in [1/classes, 1].
                let floor = 1.0 / f64::from(classes);
                // Calibrated-ish but noisy: confidence is an imperfect signal of correctness.
                let s = sigmoid(1.5 * margin + 0.9 * rng.normal() + 0.3);
                conf.push((floor + (1.0 - floor) * s).clamp(0.0, 1.0) as f32);
            }
            at_p.push(ExitRecords {
                macs: full_macs * 0.001 * 3f64.powi(t as i32),
                call_macs: 0.0,
                pred,
                conf,
            });
        }
        exits.push(at_p);
    }
    let final_pred = (0..n)
        .map(|i| {
            if a_final - difficulty[i] - noise * rng.normal() > 0.0 {
                labels[i]
            } else {
                wrong(&mut rng, labels[i])
            }
        })
        .collect();
    Records::new(labels, final_pred, cum_macs, full_macs, exits)
        .expect("synthetic records are valid by construction")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accuracy(r: &Records, p: usize, t: usize) -> f64 {
        let e = r.exit(p, t);
        e.pred.iter().zip(r.labels()).filter(|(a, b)| a == b).count() as f64 / r.n_samples() as f64
    }

    #[test]
    fn realistic_structure() {
        let r = generate(&SyntheticParams { samples: 5000, positions: 9, ..SyntheticParams::default() });
        let first = accuracy(&r, 0, 0);
        let last = accuracy(&r, 8, 2);
        assert!(first > 0.3 && first < 0.6, "first exit accuracy {first}");
        assert!(r.full_accuracy() > 0.88 && r.full_accuracy() < 0.95);
        assert!(last < r.full_accuracy());
        for p in 1..9 {
            assert!(accuracy(&r, p, 0) > accuracy(&r, p - 1, 0));
        }
        assert!(accuracy(&r, 4, 2) > accuracy(&r, 4, 0));
        // Confidence tracks correctness.
        let e = r.exit(4, 1);
        let (mut right, mut wrong) = ((0.0, 0), (0.0, 0));
        for (i, &c) in e.conf.iter().enumerate() {
            if e.pred[i] == r.labels()[i] {
                right = (right.0 + f64::from(c), right.1 + 1);
            } else {
                wrong = (wrong.0 + f64::from(c), wrong.1 + 1);
            }
        }
        assert!(right.0 / f64::from(right.1) > wrong.0 / f64::from(wrong.1) + 0.15);
        // Same seed, same records.
        assert_eq!(r, generate(&SyntheticParams { samples: 5000, positions: 9, ..Default::default() }));
    }
}
