//! Small dense layers on pooled features: the exit heads and the final `fc`.
//!
//! They run on dyce-kernels' packed dense kernel: a plain dot product per (sample, output)
//! re-read the weights for every sample and made the heads of a cheap configuration cost as much
//! as the backbone blocks they saved.

use dyce_kernels::PackedDense;

/// A dense layer `y = W x + b` with `W` stored row-major as `[out][in]` (PyTorch's layout).
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// Input features.
    pub inputs: usize,
    /// Output features.
    pub outputs: usize,
    /// Weights, `outputs × inputs`.
    pub weight: Vec<f32>,
    /// Bias, `outputs`.
    pub bias: Vec<f32>,
    packed: PackedDense,
}

impl Linear {
    /// A layer from PyTorch-layout weights; panics if the sizes disagree (callers check shapes
    /// when loading).
    pub fn new(inputs: usize, outputs: usize, weight: Vec<f32>, bias: Vec<f32>) -> Self {
        let packed =
            PackedDense::new(inputs, outputs, &weight, &bias).expect("weight and bias sizes checked");
        Self { inputs, outputs, weight, bias, packed }
    }

    /// Applies the layer to `n` rows of `x` (`n × inputs`), optionally followed by ReLU.
    pub fn forward(&self, x: &[f32], n: usize, relu: bool) -> Vec<f32> {
        let mut out = Vec::new();
        self.packed.forward(x, n, relu, &mut out);
        out
    }
}

/// Softmax of each `classes`-wide row, in place.
pub fn softmax_rows(x: &mut [f32], classes: usize) {
    for row in x.chunks_exact_mut(classes) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        for v in row.iter_mut() {
            *v /= sum;
        }
    }
}

/// Index and value of the largest entry (first one on ties).
pub fn argmax(row: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &v) in row.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_matches_hand_computation() {
        let l = Linear::new(3, 2, vec![1., 2., 3., -1., 0., 1.], vec![0.5, -10.]);
        let y = l.forward(&[1., 1., 1., 2., 0., 0.], 2, false);
        assert_eq!(y, vec![6.5, -10., 2.5, -12.]);
        assert_eq!(l.forward(&[1., 1., 1.], 1, true), vec![6.5, 0.]);
    }

    #[test]
    fn softmax_and_argmax() {
        let mut x = vec![1.0, 2.0, 3.0, 0.0, 0.0, 0.0];
        softmax_rows(&mut x, 3);
        assert!((x[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(argmax(&x[..3]).0, 2);
        assert!((x[3] - 1.0 / 3.0).abs() < 1e-6);
    }
}
