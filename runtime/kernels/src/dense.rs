//! Dense layers (`y = W x + b`) on a batch of feature vectors: the exit heads and the final
//! classifier.
//!
//! A dot product per (sample, output) re-reads the whole weight matrix for every sample, which
//! for a 512×512 head is 1 MiB per sample from L2 at a few GFLOP/s: measured, the heads made an
//! early-exit configuration with a third of the MACs run at half the ideal speed. With AVX2 the
//! weights are packed once into tiles of `TILE` outputs × all inputs (`[tile][k][TILE]`); up to
//! `ROWS` samples' accumulators stay in registers while a tile streams past, so every weight
//! load feeds up to twelve FMAs. Early exit leaves a head a handful of rows (about six per call
//! at batch 32 on the cheapest configuration), and every pass over a tile re-reads it from L2:
//! six rows per pass instead of two made an `mlp3x512` head 1.2–1.4× faster at 3–32 rows and
//! about 8% slower at 1–2 rows, where streaming the weights in is all the time there is
//! (`examples/dense_bench.rs`, side by side). The dot product per (sample, output) stays as the
//! portable path.

use rayon::prelude::*;

use crate::isa::{detect_isa, Isa};
use crate::KernelError;

/// Outputs per tile: two 8-lane vectors of accumulators per row.
const TILE: usize = 16;
/// Rows per pass over a tile: `2 × ROWS` accumulators, two weight vectors and a broadcast fill
/// the 16 AVX2 registers.
const ROWS: usize = 6;
/// Multiply-accumulates above which the rows are split between threads.
const PARALLEL_MACS: usize = 1 << 20;

/// A dense layer with weights packed for [`PackedDense::forward`].
#[derive(Debug, Clone, PartialEq)]
pub struct PackedDense {
    inputs: usize,
    outputs: usize,
    /// `[tile][k][TILE]` (AVX2 path; empty otherwise).
    packed: Vec<f32>,
    /// Row-major `[out][in]` (portable path; empty otherwise).
    rows: Vec<f32>,
    bias: Vec<f32>,
    isa: Isa,
}

impl PackedDense {
    /// Packs `weight` (`outputs × inputs`, row-major as PyTorch stores it) and `bias`.
    pub fn new(inputs: usize, outputs: usize, weight: &[f32], bias: &[f32]) -> Result<Self, KernelError> {
        Self::with_isa(inputs, outputs, weight, bias, detect_isa())
    }

    /// As [`PackedDense::new`] with an explicit instruction set (tests run each one).
    pub fn with_isa(
        inputs: usize,
        outputs: usize,
        weight: &[f32],
        bias: &[f32],
        isa: Isa,
    ) -> Result<Self, KernelError> {
        if weight.len() != inputs * outputs || bias.len() != outputs {
            return Err(KernelError::ShapeMismatch {
                context: "dense weight and bias",
                expected: format!("{} and {outputs} values", inputs * outputs),
                got: format!("{} and {}", weight.len(), bias.len()),
            });
        }
        if isa == Isa::Portable {
            return Ok(Self {
                inputs,
                outputs,
                packed: vec![],
                rows: weight.to_vec(),
                bias: bias.to_vec(),
                isa,
            });
        }
        let tiles = outputs.div_ceil(TILE);
        let mut packed = vec![0.0f32; tiles * inputs * TILE];
        for o in 0..outputs {
            let (t, j) = (o / TILE, o % TILE);
            for k in 0..inputs {
                packed[(t * inputs + k) * TILE + j] = weight[o * inputs + k];
            }
        }
        Ok(Self { inputs, outputs, packed, rows: vec![], bias: bias.to_vec(), isa })
    }

    /// Input features.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Output features.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Applies the layer to `n` rows of `x` (`n × inputs`), optionally followed by ReLU; writes
    /// `n × outputs` values into `out` (resized).
    pub fn forward(&self, x: &[f32], n: usize, relu: bool, out: &mut Vec<f32>) {
        assert_eq!(x.len(), n * self.inputs, "dense input size");
        out.clear();
        out.resize(n * self.outputs, 0.0);
        // Split the rows between the pool's threads when there is enough work to pay for the
        // hand-off (each thread streams the whole weight panel, so splitting rows costs no
        // extra compute, only L2 traffic). Called inside `pool.install`, this uses that pool.
        let threads = rayon::current_num_threads();
        if threads > 1 && n >= 4 && n * self.inputs * self.outputs >= PARALLEL_MACS {
            let rows = n.div_ceil(threads);
            out.par_chunks_mut(rows * self.outputs)
                .zip(x.par_chunks(rows * self.inputs))
                .for_each(|(o, xs)| self.forward_rows(xs, relu, o));
        } else {
            self.forward_rows(x, relu, out);
        }
    }

    fn forward_rows(&self, x: &[f32], relu: bool, out: &mut [f32]) {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx2Fma` is only selected when the CPU has AVX2 and FMA (isa.rs).
            Isa::Avx2Fma => unsafe { forward_avx2(self, x, relu, out) },
            _ => forward_portable(self, x, relu, out),
        }
    }
}

/// Portable: a dot product per (sample, output) over the original row-major weights, with
/// eight independent accumulators so that LLVM vectorises it for whatever the target offers.
fn forward_portable(d: &PackedDense, x: &[f32], relu: bool, out: &mut [f32]) {
    let inputs = d.inputs;
    for (row, orow) in x.chunks_exact(inputs).zip(out.chunks_exact_mut(d.outputs)) {
        for ((o, w), b) in orow.iter_mut().zip(d.rows.chunks_exact(inputs)).zip(&d.bias) {
            let v = dot(row, w) + b;
            *o = if relu { v.max(0.0) } else { v };
        }
    }
}

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

/// AVX2: up to `ROWS` samples at a time share each weight load.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2(d: &PackedDense, x: &[f32], relu: bool, out: &mut [f32]) {
    let (inputs, outputs) = (d.inputs, d.outputs);
    let n = x.len() / inputs.max(1);
    for (t, panel) in d.packed.chunks_exact(inputs * TILE).enumerate() {
        let o0 = t * TILE;
        let width = TILE.min(outputs - o0);
        let mut bias = [0.0f32; TILE];
        bias[..width].copy_from_slice(&d.bias[o0..o0 + width]);
        let tile = Tile { panel, inputs, bias: &bias, relu, outputs, o0, width };
        let mut s = 0;
        while s < n {
            let r = ROWS.min(n - s);
            let (xs, os) = (&x[s * inputs..(s + r) * inputs], &mut out[s * outputs..(s + r) * outputs]);
            // A constant row count per call keeps the accumulators in registers.
            match r {
                6 => tile_rows::<6>(&tile, xs, os),
                5 => tile_rows::<5>(&tile, xs, os),
                4 => tile_rows::<4>(&tile, xs, os),
                3 => tile_rows::<3>(&tile, xs, os),
                2 => tile_rows::<2>(&tile, xs, os),
                _ => tile_rows::<1>(&tile, xs, os),
            }
            s += r;
        }
    }
}

/// One tile of outputs: its packed weights and where its results go.
#[cfg(target_arch = "x86_64")]
struct Tile<'a> {
    /// `[k][TILE]` weights of this tile.
    panel: &'a [f32],
    inputs: usize,
    bias: &'a [f32; TILE],
    relu: bool,
    outputs: usize,
    /// First output of the tile, and how many of its `TILE` are real.
    o0: usize,
    width: usize,
}

/// `R` rows (`x`: `R × inputs`) through one tile, into `out` (`R × outputs`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile_rows<const R: usize>(t: &Tile<'_>, x: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    debug_assert!(x.len() == R * t.inputs && out.len() == R * t.outputs);
    let bp = t.bias.as_ptr();
    let mut lo = [_mm256_loadu_ps(bp); R];
    let mut hi = [_mm256_loadu_ps(bp.add(8)); R];
    let (mut w, xp) = (t.panel.as_ptr(), x.as_ptr());
    for k in 0..t.inputs {
        let (w0, w1) = (_mm256_loadu_ps(w), _mm256_loadu_ps(w.add(8)));
        for r in 0..R {
            let v = _mm256_broadcast_ss(&*xp.add(r * t.inputs + k));
            lo[r] = _mm256_fmadd_ps(v, w0, lo[r]);
            hi[r] = _mm256_fmadd_ps(v, w1, hi[r]);
        }
        w = w.add(TILE);
    }
    let zero = _mm256_setzero_ps();
    let mut tmp = [0.0f32; TILE];
    for r in 0..R {
        let (a, b) =
            if t.relu { (_mm256_max_ps(lo[r], zero), _mm256_max_ps(hi[r], zero)) } else { (lo[r], hi[r]) };
        _mm256_storeu_ps(tmp.as_mut_ptr(), a);
        _mm256_storeu_ps(tmp.as_mut_ptr().add(8), b);
        out[r * t.outputs + t.o0..][..t.width].copy_from_slice(&tmp[..t.width]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::available_isas;

    fn reference(w: &[f32], b: &[f32], x: &[f32], inputs: usize, relu: bool) -> Vec<f32> {
        let outputs = b.len();
        let mut y = Vec::new();
        for row in x.chunks_exact(inputs) {
            for o in 0..outputs {
                let v: f64 =
                    (0..inputs).map(|k| row[k] as f64 * w[o * inputs + k] as f64).sum::<f64>() + b[o] as f64;
                y.push(if relu { v.max(0.0) as f32 } else { v as f32 });
            }
        }
        y
    }

    #[test]
    fn matches_reference_on_odd_sizes_for_every_isa() {
        for isa in available_isas() {
            // Row counts cover every pass size (1–6 rows, and several passes); output counts
            // a partial tile.
            for (inputs, outputs, n) in [
                (3, 2, 1),
                (16, 512, 5),
                (64, 10, 33),
                (37, 45, 7),
                (512, 512, 3),
                (8, 17, 2),
                (5, 33, 4),
                (9, 16, 6),
                (512, 512, 13),
            ] {
                let w: Vec<f32> =
                    (0..inputs * outputs).map(|i| ((i * 7919 % 97) as f32 - 48.0) / 97.0).collect();
                let b: Vec<f32> = (0..outputs).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
                let x: Vec<f32> = (0..n * inputs).map(|i| ((i * 31 % 17) as f32 - 8.0) / 17.0).collect();
                let d = PackedDense::with_isa(inputs, outputs, &w, &b, isa).unwrap();
                for relu in [false, true] {
                    let mut y = Vec::new();
                    d.forward(&x, n, relu, &mut y);
                    let r = reference(&w, &b, &x, inputs, relu);
                    for (a, e) in y.iter().zip(&r) {
                        assert!(
                            (a - e).abs() <= 1e-4 * (1.0 + e.abs()),
                            "{isa:?} {inputs}x{outputs}: {a} vs {e}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(PackedDense::new(3, 2, &[0.0; 5], &[0.0; 2]).is_err());
        assert!(PackedDense::new(3, 2, &[0.0; 6], &[0.0; 3]).is_err());
    }
}
