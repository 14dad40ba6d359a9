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
//! (`examples/dense_bench.rs`, side by side). With AVX-512 a tile is 32 outputs (two zmm) and
//! up to twelve rows share a weight load (32 registers). `Portable16` runs the AVX-512 packing
//! in plain Rust; the dot product per (sample, output) stays as the portable path.

use rayon::prelude::*;

use crate::isa::{detect_isa, Isa};
use crate::KernelError;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod packed;

/// Multiply-accumulates above which the rows are split between threads.
const PARALLEL_MACS: usize = 1 << 20;

/// A dense layer with weights packed for [`PackedDense::forward`].
#[derive(Debug, Clone, PartialEq)]
pub struct PackedDense {
    inputs: usize,
    outputs: usize,
    /// `[tile][k][tile width]` (the AVX paths and `Portable16`; empty otherwise).
    packed: Vec<f32>,
    /// Row-major `[out][in]` (portable path; empty otherwise).
    rows: Vec<f32>,
    bias: Vec<f32>,
    isa: Isa,
}

/// Outputs per packed tile for `isa` (0: not packed).
fn tile_width(isa: Isa) -> usize {
    match isa {
        Isa::Portable => 0,
        Isa::Avx2Fma => packed::TILE8,
        Isa::Avx512 | Isa::Portable16 => packed::TILE16,
    }
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
        if !crate::isa::isa_available(isa) {
            return Err(KernelError::UnsupportedIsa(isa));
        }
        let tile = tile_width(isa);
        if tile == 0 {
            return Ok(Self {
                inputs,
                outputs,
                packed: vec![],
                rows: weight.to_vec(),
                bias: bias.to_vec(),
                isa,
            });
        }
        let tiles = outputs.div_ceil(tile);
        let mut packed = vec![0.0f32; tiles * inputs * tile];
        for o in 0..outputs {
            let (t, j) = (o / tile, o % tile);
            for k in 0..inputs {
                packed[(t * inputs + k) * tile + j] = weight[o * inputs + k];
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
        // extra compute, only L2 traffic). Called inside `pool.install`, this uses that pool;
        // inside a shard (`par::serial`), the calling thread alone.
        let threads = if crate::par::is_serial() { 1 } else { rayon::current_num_threads() };
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
        let tile = tile_width(self.isa);
        let panels = self.packed.chunks_exact((self.inputs * tile).max(1));
        let dims = Dims { inputs: self.inputs, outputs: self.outputs, relu };
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx2Fma` is only constructed when the CPU has AVX2 and FMA (isa.rs).
            Isa::Avx2Fma => unsafe { avx2::forward(panels, &self.bias, dims, x, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx512` is only constructed when the CPU has AVX-512F (isa.rs).
            Isa::Avx512 => unsafe { avx512::forward(panels, &self.bias, dims, x, out) },
            Isa::Portable16 => packed::forward(panels, &self.bias, dims, x, out),
            _ => forward_portable(self, x, relu, out),
        }
    }
}

/// Shape of one call, shared by the packed kernels.
#[derive(Clone, Copy)]
struct Dims {
    inputs: usize,
    outputs: usize,
    relu: bool,
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
