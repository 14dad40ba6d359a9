//! Small dense layers on pooled features, in plain Rust.
//!
//! Exit heads and the final `fc` see one feature vector per sample (≤ 2048 values), so a dense
//! dot-product loop is a fraction of a percent of the backbone's cost and keeps them independent
//! of any tensor library.

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
}

impl Linear {
    /// Applies the layer to `n` rows of `x` (`n × inputs`), optionally followed by ReLU.
    pub fn forward(&self, x: &[f32], n: usize, relu: bool) -> Vec<f32> {
        debug_assert_eq!(x.len(), n * self.inputs);
        let mut out = Vec::with_capacity(n * self.outputs);
        for row in x.chunks_exact(self.inputs) {
            for (o, w) in self.weight.chunks_exact(self.inputs).enumerate() {
                let v = dot(row, w) + self.bias[o];
                out.push(if relu { v.max(0.0) } else { v });
            }
        }
        out
    }
}

/// Dot product with eight independent accumulators so that LLVM vectorises it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
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
        let l =
            Linear { inputs: 3, outputs: 2, weight: vec![1., 2., 3., -1., 0., 1.], bias: vec![0.5, -10.] };
        let y = l.forward(&[1., 1., 1., 2., 0., 0.], 2, false);
        assert_eq!(y, vec![6.5, -10., 2.5, -12.]);
        assert_eq!(l.forward(&[1., 1., 1.], 1, true), vec![6.5, 0.]);
    }

    #[test]
    fn dot_handles_tails() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        assert_eq!(dot(&a, &a), (0..19).map(|i| (i * i) as f32).sum::<f32>());
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
