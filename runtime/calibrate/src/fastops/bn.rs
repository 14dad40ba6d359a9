//! Training-mode batch norm (+ ReLU) and the residual join, each as one graph node.

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{f32_slice, with_f32};

/// `relu(a + b)` as one node (the residual join of a basic block).
struct AddReluOp;

impl CustomOp2 for AddReluOp {
    fn name(&self) -> &'static str {
        "add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?);
        if a.len() != b.len() {
            bail!("add-relu: shapes {:?} and {:?}", l1.shape(), l2.shape());
        }
        let mut out = vec![0f32; a.len()];
        out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(
            |(o, (a, b))| {
                for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                    *o = (a + b).max(0.0);
                }
            },
        );
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = with_f32(res, |y| {
            with_f32(grad, |g| {
                let mut out = vec![0f32; g.len()];
                out.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK).zip(g.par_chunks(CHUNK))).for_each(
                    |(o, (y, g))| {
                        for ((o, y), g) in o.iter_mut().zip(y).zip(g) {
                            *o = if *y > 0.0 { *g } else { 0.0 };
                        }
                    },
                );
                Ok(out)
            })
        })?;
        let g = Tensor::from_vec(g, res.shape(), res.device())?;
        Ok((Some(g.clone()), Some(g)))
    }
}

/// Elements per parallel task of element-wise loops.
const CHUNK: usize = 1 << 16;

/// `relu(a + b)` for same-shape tensors, differentiable in both.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() != b.shape() {
        bail!("add_relu: shapes {:?} and {:?}", a.shape(), b.shape());
    }
    a.contiguous()?.apply_op2(&b.contiguous()?, AddReluOp)
}

/// Batch statistics saved by the forward pass for the backward pass and the running averages.
#[derive(Debug, Clone)]
pub struct BnStats {
    /// Per-channel batch mean.
    pub mean: Vec<f32>,
    /// Per-channel biased batch variance (the one used to normalise).
    pub var: Vec<f32>,
    /// Values averaged per channel.
    pub count: usize,
}

struct BnTrainOp {
    eps: f64,
    relu: bool,
    stats: std::sync::Arc<OnceLock<BnStats>>,
}

/// Rows per parallel task of the channel reductions.
const ROWS_PER_TASK: usize = 1024;

/// Per-channel sums over the rows of [rows, c] data: `f(first_row, rows, acc)` adds the rows
/// of one task into `acc` (`width` accumulators per channel, f32 within a task); tasks are
/// combined in f64.
fn channel_sums(
    rows: usize,
    c: usize,
    width: usize,
    f: impl Fn(usize, usize, &mut [f32]) + Sync,
) -> Vec<f64> {
    (0..rows.div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .map(|t| {
            let mut acc = vec![0f32; c * width];
            let r0 = t * ROWS_PER_TASK;
            f(r0, ROWS_PER_TASK.min(rows - r0), &mut acc);
            acc
        })
        .fold(
            || vec![0f64; c * width],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += *b as f64);
                a
            },
        )
        .reduce(
            || vec![0f64; c * width],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        )
}

/// Training-mode batch norm (+ ReLU) of [rows, c] data: output and batch statistics.
pub(super) fn bn_forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    relu: bool,
) -> (Vec<f32>, BnStats) {
    let c = gamma.len();
    let rows = x.len() / c;
    let sums = channel_sums(rows, c, 1, |r0, nr, acc| {
        for row in x[r0 * c..(r0 + nr) * c].chunks_exact(c) {
            acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
        }
    });
    let mean: Vec<f32> = sums.iter().map(|s| (s / rows as f64) as f32).collect();
    let sq = channel_sums(rows, c, 1, |r0, nr, acc| {
        for row in x[r0 * c..(r0 + nr) * c].chunks_exact(c) {
            acc.iter_mut().zip(row).zip(&mean).for_each(|((a, v), m)| *a += (v - m) * (v - m));
        }
    });
    let var: Vec<f32> = sq.iter().map(|s| (s / rows as f64) as f32).collect();
    let scale: Vec<f32> = var.iter().zip(gamma).map(|(v, g)| g / ((*v as f64 + eps).sqrt() as f32)).collect();
    let shift: Vec<f32> = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    let mut out = vec![0f32; x.len()];
    let task = ROWS_PER_TASK * c;
    out.par_chunks_mut(task).zip(x.par_chunks(task)).for_each(|(o, x)| {
        for (o, x) in o.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            for (((o, x), s), b) in o.iter_mut().zip(x).zip(&scale).zip(&shift) {
                let v = x * s + b;
                *o = if relu { v.max(0.0) } else { v };
            }
        }
    });
    (out, BnStats { mean, var, count: rows })
}

/// Gradients of `bn_forward` (input `x`, output `y`, output gradient `g`): input, gamma, beta.
pub(super) fn bn_backward(
    x: &[f32],
    y: &[f32],
    g: &[f32],
    st: &BnStats,
    gamma: &[f32],
    eps: f64,
    relu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c = st.mean.len();
    let mean = &st.mean;
    let invstd: Vec<f32> = st.var.iter().map(|v| 1.0 / ((*v as f64 + eps).sqrt() as f32)).collect();
    let rows = x.len() / c;
    // The gradient after the ReLU mask.
    let eff = |y: f32, g: f32| if relu && y <= 0.0 { 0.0 } else { g };
    // acc[..c]: sum of g; acc[c..]: sum of g·(x - mean).
    let sums = channel_sums(rows, c, 2, |r0, nr, acc| {
        let (sg, sgx) = acc.split_at_mut(c);
        let span = r0 * c..(r0 + nr) * c;
        for ((x, y), g) in
            x[span.clone()].chunks_exact(c).zip(y[span.clone()].chunks_exact(c)).zip(g[span].chunks_exact(c))
        {
            for ch in 0..c {
                let ge = eff(y[ch], g[ch]);
                sg[ch] += ge;
                sgx[ch] += ge * (x[ch] - mean[ch]);
            }
        }
    });
    let dbeta: Vec<f32> = sums[..c].iter().map(|&s| s as f32).collect();
    let dgamma: Vec<f32> = sums[c..].iter().zip(&invstd).map(|(&s, i)| s as f32 * i).collect();
    let mg: Vec<f32> = dbeta.iter().map(|s| s / rows as f32).collect();
    // dx = k·(g - mean(g) - (x - mean)·invstd²·mean(g·(x - mean))).
    let mgx: Vec<f32> =
        sums[c..].iter().zip(&invstd).map(|(&s, i)| (s / rows as f64) as f32 * i * i).collect();
    let k: Vec<f32> = gamma.iter().zip(&invstd).map(|(g, i)| g * i).collect();
    let mut dx = vec![0f32; x.len()];
    let task = ROWS_PER_TASK * c;
    dx.par_chunks_mut(task).zip(x.par_chunks(task).zip(y.par_chunks(task)).zip(g.par_chunks(task))).for_each(
        |(d, ((x, y), g))| {
            for (((d, x), y), g) in
                d.chunks_exact_mut(c).zip(x.chunks_exact(c)).zip(y.chunks_exact(c)).zip(g.chunks_exact(c))
            {
                for ch in 0..c {
                    d[ch] = k[ch] * (eff(y[ch], g[ch]) - mg[ch] - (x[ch] - mean[ch]) * mgx[ch]);
                }
            }
        },
    );
    (dx, dgamma, dbeta)
}

impl CustomOp3 for BnTrainOp {
    fn name(&self) -> &'static str {
        "batch-norm-train-nhwc"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (y, st) =
            bn_forward(f32_slice(s1, l1)?, f32_slice(s2, l2)?, f32_slice(s3, l3)?, self.eps, self.relu);
        let _ = self.stats.set(st);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(st) = self.stats.get() else { bail!("batch norm backward before forward") };
        let gamma_v = gamma.to_vec1::<f32>()?;
        let (dx, dgamma, dbeta) = with_f32(x, |x| {
            with_f32(res, |y| with_f32(grad, |g| Ok(bn_backward(x, y, g, st, &gamma_v, self.eps, self.relu))))
        })?;
        let (dev, c) = (x.device(), gamma_v.len());
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dgamma, c, dev)?),
            Some(Tensor::from_vec(dbeta, c, dev)?),
        ))
    }
}

/// Training-mode batch norm over the last (channel) dimension, optionally followed by ReLU.
/// Returns the output and the batch statistics (for the running averages).
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, BnStats)> {
    let stats = std::sync::Arc::new(OnceLock::new());
    let op = BnTrainOp { eps, relu, stats: stats.clone() };
    let y = x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let Some(st) = stats.get() else { bail!("batch norm forward did not record statistics") };
    Ok((y, st.clone()))
}
