//! Training ops whose backward pass is fast on CPU: NHWC convolution as im2col + matmul, and a
//! fused training-mode batch norm (+ ReLU).
//!
//! candle's CPU `conv2d` backward runs `conv_transpose2d` (a naive loop) for the input gradient
//! and a `conv2d` with the output gradient as kernel for the weight gradient; both are orders of
//! magnitude slower than the forward. Here a convolution is a custom im2col op (whose backward is
//! the matching col2im) followed by candle's multi-threaded `matmul`, so every gradient is either
//! a GEMM or a memory-bound scatter. Batch norm computes batch statistics and its gradient in
//! two passes over the activation instead of a dozen broadcast ops.

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Device, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

/// Keeps freed heap memory in the process (glibc): training allocates and frees the same
/// tens-of-megabyte activation buffers every step, and glibc would otherwise serve each from a
/// fresh `mmap` that the kernel must zero page by page (≈40% of the step time). Call once
/// before training.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_MAX: i32 = -4;
        const M_ARENA_MAX: i32 = -8;
        // SAFETY: `mallopt` only changes glibc allocator tunables and is thread-safe; it does
        // not touch memory owned by Rust.
        unsafe {
            mallopt(M_MMAP_MAX, 0);
            // Per-thread arenas (64 MiB heaps) cannot hold these buffers and churn as well.
            mallopt(M_ARENA_MAX, 1);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}

/// The contiguous f32 data of a CPU storage.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { bail!("fastops: f32 tensors only") };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("fastops: contiguous tensors only"),
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    let Storage::Cpu(s) = &*s else { bail!("fastops: CPU tensors only") };
    f(f32_slice(s, l)?)
}

/// Geometry of an im2col over an NHWC batch.
#[derive(Debug, Clone, Copy)]
struct Im2Col {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Im2Col {
    fn out_hw(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.k) / self.stride + 1,
            (self.w + 2 * self.pad - self.k) / self.stride + 1,
        )
    }

    /// Patch row width: k·k·c, ordered (ky, kx, c).
    fn cols(&self) -> usize {
        self.k * self.k * self.c
    }

    /// Source pixel of output (oy, ox) and kernel tap (ky, kx), if inside the image.
    #[inline]
    fn src(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
        let iy = (oy * self.stride + ky).checked_sub(self.pad)?;
        let ix = (ox * self.stride + kx).checked_sub(self.pad)?;
        (iy < self.h && ix < self.w).then_some((iy, ix))
    }

    /// [n, h, w, c] -> [n·ho·wo, k·k·c].
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let (ho, wo) = self.out_hw();
        let (c, kc) = (self.c, self.cols());
        let len = self.n * ho * wo * kc;
        // Every element is written below (copied or zero padding), so the (large) buffer is not
        // zero-filled first.
        let mut out: Vec<f32> = Vec::with_capacity(len);
        // One output row (all ox of one oy of one image) per task.
        out.spare_capacity_mut()[..len].par_chunks_mut(wo * kc).enumerate().for_each(|(row, dst)| {
            let (img, oy) = (row / ho, row % ho);
            let x = &x[img * self.h * self.w * c..(img + 1) * self.h * self.w * c];
            for ox in 0..wo {
                let d = &mut dst[ox * kc..(ox + 1) * kc];
                for ky in 0..self.k {
                    for kx in 0..self.k {
                        let t = (ky * self.k + kx) * c;
                        match self.src(oy, ox, ky, kx) {
                            Some((iy, ix)) => {
                                let s = (iy * self.w + ix) * c;
                                d[t..t + c].write_copy_of_slice(&x[s..s + c]);
                            }
                            None => {
                                d[t..t + c].iter_mut().for_each(|v| {
                                    v.write(0.0);
                                });
                            }
                        }
                    }
                }
            }
        });
        // SAFETY: the loop above initialised all `len` elements (each row of `wo·kc` values is
        // one task; each tap of each position is either copied or zeroed).
        unsafe { out.set_len(len) };
        out
    }

    /// Adjoint of `forward`: [n·ho·wo, k·k·c] -> [n, h, w, c], summing overlapping taps.
    fn backward(&self, g: &[f32]) -> Vec<f32> {
        let (ho, wo) = self.out_hw();
        let (c, kc) = (self.c, self.cols());
        let img_in = self.h * self.w * c;
        let img_out = ho * wo * kc;
        let mut out = vec![0f32; self.n * img_in];
        out.par_chunks_mut(img_in).zip(g.par_chunks(img_out)).for_each(|(dst, g)| {
            for oy in 0..ho {
                for ox in 0..wo {
                    let gp = &g[(oy * wo + ox) * kc..(oy * wo + ox + 1) * kc];
                    for ky in 0..self.k {
                        for kx in 0..self.k {
                            if let Some((iy, ix)) = self.src(oy, ox, ky, kx) {
                                let t = (ky * self.k + kx) * c;
                                let s = (iy * self.w + ix) * c;
                                for (d, v) in dst[s..s + c].iter_mut().zip(&gp[t..t + c]) {
                                    *d += v;
                                }
                            }
                        }
                    }
                }
            }
        });
        out
    }
}

/// The OIHW weight `[cout, cin, k, k]` as a [cout, k·k·cin] matrix in patch order.
fn weight_matrix(w: &Tensor) -> Result<Tensor> {
    let (cout, cin, k, _) = w.dims4()?;
    w.permute((0, 2, 3, 1))?.contiguous()?.reshape((cout, k * k * cin))
}

/// im2col + GEMM: the patch matrix [n·ho·wo, k·k·cin] (kept for the weight gradient) and the
/// output [n·ho·wo, cout] (NHWC rows).
fn conv_forward(g: Im2Col, x: &[f32], w: &Tensor) -> Result<(Tensor, Tensor)> {
    let (ho, wo) = g.out_hw();
    let cols = if g.k == 1 && g.stride == 1 && g.pad == 0 { x.to_vec() } else { g.forward(x) };
    let cols = Tensor::from_vec(cols, (g.n * ho * wo, g.cols()), w.device())?;
    let out = cols.matmul(&weight_matrix(w)?.t()?)?;
    Ok((cols, out))
}

/// Gradients of `conv_forward` from the output gradient `gm` [n·ho·wo, cout]: the input's
/// (NHWC, if `need_dx`) and the weight's (OIHW).
fn conv_backward(
    g: Im2Col,
    cols: &Tensor,
    w: &Tensor,
    gm: &Tensor,
    need_dx: bool,
) -> Result<(Option<Tensor>, Tensor)> {
    let cout = w.dim(0)?;
    // [k·k·cin, cout] in patch order -> OIHW.
    let dw = cols.t()?.matmul(gm)?.reshape((g.k, g.k, g.c, cout))?.permute((3, 2, 0, 1))?.contiguous()?;
    if !need_dx {
        return Ok((None, dw));
    }
    let dev = w.device();
    let dx = if g.stride == 1 && g.pad < g.k {
        // Stride 1: the input gradient is the convolution of the output gradient with the
        // flipped, transposed kernel, a GEMM as deep as the forward one (the col2im route's GEMM
        // has depth cout and is memory-bound).
        let (ho, wo) = g.out_hw();
        let gg = Im2Col { n: g.n, h: ho, w: wo, c: cout, k: g.k, stride: 1, pad: g.k - 1 - g.pad };
        let gcols = with_f32(gm, |d| Ok(gg.forward(d)))?;
        let gcols = Tensor::from_vec(gcols, (g.n * g.h * g.w, gg.cols()), dev)?;
        // [cin, k·k, cout] with the taps reversed.
        let wf = w.permute((1, 2, 3, 0))?.contiguous()?;
        let kk = g.k * g.k;
        let wf = with_f32(&wf, |v| {
            let mut out = vec![0f32; v.len()];
            for c in 0..g.c {
                for t in 0..kk {
                    let src = (c * kk + (kk - 1 - t)) * cout;
                    let dst = (c * kk + t) * cout;
                    out[dst..dst + cout].copy_from_slice(&v[src..src + cout]);
                }
            }
            Ok(out)
        })?;
        let wf = Tensor::from_vec(wf, (g.c, gg.cols()), dev)?;
        gcols.matmul(&wf.t()?)?.reshape((g.n, g.h, g.w, g.c))?
    } else {
        let dcols = gm.matmul(&weight_matrix(w)?)?;
        let dx = with_f32(&dcols, |d| {
            Ok(if g.k == 1 && g.stride == 1 && g.pad == 0 { d.to_vec() } else { g.backward(d) })
        })?;
        Tensor::from_vec(dx, (g.n, g.h, g.w, g.c), dev)?
    };
    Ok((Some(dx), dw))
}

/// A convolution as one graph node. Keeping the (k·k times larger) patch matrix out of
/// candle's graph avoids candle's zero-fill + add per gradient edge.
struct ConvOp {
    geom: Im2Col,
    cout: usize,
    cols: OnceLock<Tensor>,
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        "conv2d-nhwc-im2col"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geom;
        let (ho, wo) = g.out_hw();
        let w = Tensor::from_slice(f32_slice(s2, l2)?, (self.cout, g.c, g.k, g.k), &Device::Cpu)?;
        let (cols, out) = conv_forward(g, f32_slice(s1, l1)?, &w)?;
        let out = with_f32(&out, |o| Ok(o.to_vec()))?;
        let _ = self.cols.set(cols);
        Ok((CpuStorage::F32(out), Shape::from((g.n, ho, wo, self.cout))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let Some(cols) = self.cols.get() else { bail!("conv backward before forward") };
        let gm = grad.contiguous()?.reshape((cols.dim(0)?, self.cout))?;
        let (dx, dw) = conv_backward(self.geom, cols, w, &gm, x.track_op())?;
        Ok((dx, Some(dw)))
    }
}

/// 2-D convolution of an NHWC batch `x` with an OIHW weight `[cout, cin, k, k]`, no bias;
/// returns NHWC. Differentiable in both arguments.
pub fn conv2d_nhwc(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    let geom = conv_geom(x, w, stride, pad)?;
    x.contiguous()?.apply_op2(&w.contiguous()?, ConvOp { geom, cout: w.dim(0)?, cols: OnceLock::new() })
}

fn conv_geom(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> Result<Im2Col> {
    let (n, h, wd, c) = x.dims4()?;
    let (_, cin, k, k2) = w.dims4()?;
    if cin != c || k != k2 || stride == 0 || h + 2 * pad < k || wd + 2 * pad < k {
        bail!("conv2d_nhwc: input {:?}, weight {:?}, stride {stride}, pad {pad}", x.dims(), w.dims());
    }
    Ok(Im2Col { n, h, w: wd, c, k, stride, pad })
}

/// Batch-norm epsilon, as torchvision.
pub const BN_EPS: f64 = 1e-5;

/// Convolution + training-mode batch norm (+ ReLU) as one graph node: inputs x (NHWC), the
/// OIHW weight and [gamma; beta] stacked as [2, cout].
struct ConvBnOp {
    geom: Im2Col,
    eps: f64,
    relu: bool,
    /// Patch matrix, pre-norm output [rows, cout] and batch statistics.
    saved: std::sync::Arc<OnceLock<(Tensor, Tensor, BnStats)>>,
}

impl CustomOp3 for ConvBnOp {
    fn name(&self) -> &'static str {
        "conv-bn-train-nhwc"
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
        let g = self.geom;
        let (ho, wo) = g.out_hw();
        let gb = f32_slice(s3, l3)?;
        let cout = gb.len() / 2;
        let w = Tensor::from_slice(f32_slice(s2, l2)?, (cout, g.c, g.k, g.k), &Device::Cpu)?;
        let (cols, z) = conv_forward(g, f32_slice(s1, l1)?, &w)?;
        let (y, st) = with_f32(&z, |z| Ok(bn_forward(z, &gb[..cout], &gb[cout..], self.eps, self.relu)))?;
        let _ = self.saved.set((cols, z, st));
        Ok((CpuStorage::F32(y), Shape::from((g.n, ho, wo, cout))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        gb: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some((cols, z, st)) = self.saved.get() else { bail!("conv-bn backward before forward") };
        let gbv = gb.flatten_all()?.to_vec1::<f32>()?;
        let cout = gbv.len() / 2;
        let (dz, dgamma, dbeta) = with_f32(z, |z| {
            with_f32(res, |y| {
                with_f32(grad, |g| Ok(bn_backward(z, y, g, st, &gbv[..cout], self.eps, self.relu)))
            })
        })?;
        let dev = w.device();
        let dz = Tensor::from_vec(dz, z.shape(), dev)?;
        let (dx, dw) = conv_backward(self.geom, cols, w, &dz, x.track_op())?;
        let dgb = Tensor::from_vec([dgamma, dbeta].concat(), (2, cout), dev)?;
        Ok((dx, Some(dw), Some(dgb)))
    }
}

/// Convolution (no bias) + training-mode batch norm over channels (+ ReLU) of an NHWC batch;
/// returns NHWC and the batch statistics (for the running averages).
pub fn conv_bn_train(
    x: &Tensor,
    w: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    stride: usize,
    pad: usize,
    relu: bool,
) -> Result<(Tensor, BnStats)> {
    let geom = conv_geom(x, w, stride, pad)?;
    let saved = std::sync::Arc::new(OnceLock::new());
    let op = ConvBnOp { geom, eps: BN_EPS, relu, saved: saved.clone() };
    let gb = Tensor::stack(&[gamma, beta], 0)?;
    let y = x.contiguous()?.apply_op3(&w.contiguous()?, &gb, op)?;
    let Some((_, _, st)) = saved.get() else { bail!("conv-bn forward did not record statistics") };
    Ok((y, st.clone()))
}

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
fn bn_forward(x: &[f32], gamma: &[f32], beta: &[f32], eps: f64, relu: bool) -> (Vec<f32>, BnStats) {
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
fn bn_backward(
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a.len(), b.len(), "{what}: length");
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!((x - y).abs() <= tol * scale, "{what}[{i}]: {x} vs {y} (scale {scale})");
        }
    }

    /// The NHWC im2col convolution against candle's conv2d, forward and both gradients.
    #[test]
    fn conv_matches_candle_forward_and_gradients() {
        let dev = Device::Cpu;
        for &(n, cin, cout, h, w, k, stride, pad) in &[
            (2, 3, 5, 7, 9, 3, 1, 1),
            (3, 5, 7, 8, 8, 3, 2, 1),
            (2, 3, 5, 6, 7, 1, 1, 0),
            (2, 5, 3, 8, 6, 1, 2, 0),
            (1, 1, 4, 5, 5, 3, 1, 1),
            (2, 3, 3, 7, 7, 3, 2, 0),
        ] {
            let what = format!("n{n} cin{cin} cout{cout} {h}x{w} k{k} s{stride} p{pad}");
            let x = Var::randn(0f32, 1.0, (n, cin, h, w), &dev).unwrap();
            let wt = Var::randn(0f32, 1.0, (cout, cin, k, k), &dev).unwrap();
            let reference = x.as_tensor().conv2d(wt.as_tensor(), pad, stride, 1, 1).unwrap();
            let xn = x.as_tensor().permute((0, 2, 3, 1)).unwrap();
            let ours = conv2d_nhwc(&xn, wt.as_tensor(), stride, pad).unwrap().permute((0, 3, 1, 2)).unwrap();
            close(&ours, &reference, 1e-4, &format!("{what} forward"));
            let r = Tensor::randn(0f32, 1.0, reference.shape(), &dev).unwrap();
            let gr = (&reference * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let go = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (var, name) in [(&x, "d input"), (&wt, "d weight")] {
                let a = go.get(var.as_tensor()).unwrap();
                let b = gr.get(var.as_tensor()).unwrap();
                close(a, b, 1e-4, &format!("{what} {name}"));
            }
        }
    }

    /// Training-mode batch norm (+ ReLU) over the last dimension from candle's ops.
    fn reference_bn(x: &Tensor, g: &Tensor, b: &Tensor, relu: bool) -> (Tensor, Tensor, Tensor) {
        let c = x.dim(x.rank() - 1).unwrap();
        let x2 = x.reshape(((), c)).unwrap();
        let mean = x2.mean_keepdim(0).unwrap();
        let xc = x2.broadcast_sub(&mean).unwrap();
        let var = xc.sqr().unwrap().mean_keepdim(0).unwrap();
        let y = xc
            .broadcast_div(&(var.clone() + BN_EPS).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(g)
            .unwrap()
            .broadcast_add(b)
            .unwrap();
        let y = if relu { y.relu().unwrap() } else { y };
        (y.reshape(x.shape()).unwrap(), mean, var)
    }

    /// Convolution + batch norm (+ ReLU) as one op against candle's conv2d and BN from ops.
    #[test]
    fn conv_bn_matches_candle_forward_and_gradients() {
        let dev = Device::Cpu;
        for &(n, cin, cout, h, k, stride, pad, relu) in &[
            (3, 3, 5, 8, 3, 1, 1, true),
            (3, 5, 7, 8, 3, 2, 1, false),
            (4, 3, 5, 6, 1, 2, 0, false),
            (2, 1, 3, 5, 3, 1, 1, true),
        ] {
            let what = format!("n{n} cin{cin} cout{cout} {h}x{h} k{k} s{stride} p{pad} relu {relu}");
            let x = Var::randn(0f32, 1.0, (n, h, h, cin), &dev).unwrap();
            let w = Var::randn(0f32, 1.0, (cout, cin, k, k), &dev).unwrap();
            let g = Var::randn(1f32, 0.3, cout, &dev).unwrap();
            let b = Var::randn(0f32, 0.3, cout, &dev).unwrap();
            let (ours, st) =
                conv_bn_train(x.as_tensor(), w.as_tensor(), g.as_tensor(), b.as_tensor(), stride, pad, relu)
                    .unwrap();
            let xc = x.as_tensor().permute((0, 3, 1, 2)).unwrap();
            let z = xc.conv2d(w.as_tensor(), pad, stride, 1, 1).unwrap().permute((0, 2, 3, 1)).unwrap();
            let (reference, mean, var) = reference_bn(&z, g.as_tensor(), b.as_tensor(), relu);
            close(&ours, &reference, 1e-4, &format!("{what} forward"));
            close(&Tensor::new(st.mean.as_slice(), &dev).unwrap(), &mean, 1e-4, &format!("{what} mean"));
            close(&Tensor::new(st.var.as_slice(), &dev).unwrap(), &var, 1e-4, &format!("{what} var"));
            let r = Tensor::randn(0f32, 1.0, reference.shape(), &dev).unwrap();
            let go = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gr = (&reference * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (v, name) in [(&x, "dx"), (&w, "dw"), (&g, "dgamma"), (&b, "dbeta")] {
                close(
                    go.get(v.as_tensor()).unwrap(),
                    gr.get(v.as_tensor()).unwrap(),
                    1e-4,
                    &format!("{what} {name}"),
                );
            }
        }
    }

    #[test]
    fn add_relu_matches_candle() {
        let dev = Device::Cpu;
        let a = Var::randn(0f32, 1.0, (3, 70_000), &dev).unwrap();
        let b = Var::randn(0f32, 1.0, (3, 70_000), &dev).unwrap();
        let ours = add_relu(a.as_tensor(), b.as_tensor()).unwrap();
        let reference = (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap();
        close(&ours, &reference, 0.0, "add_relu forward");
        let r = Tensor::randn(0f32, 1.0, (3, 70_000), &dev).unwrap();
        let go = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gr = (&reference * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&a, &b] {
            close(go.get(v.as_tensor()).unwrap(), gr.get(v.as_tensor()).unwrap(), 0.0, "add_relu grad");
        }
    }

    /// The fused batch norm (+ReLU) against the same computation from candle's ops.
    #[test]
    fn batch_norm_matches_reference_forward_and_gradients() {
        let dev = Device::Cpu;
        for relu in [false, true] {
            let (rows, c) = (300, 5);
            let x = Var::from_tensor(&(Tensor::randn(0f32, 2.0, (rows, c), &dev).unwrap() + 0.7).unwrap())
                .unwrap();
            let g = Var::randn(1f32, 0.3, c, &dev).unwrap();
            let b = Var::randn(0f32, 0.3, c, &dev).unwrap();
            let (ours, st) =
                batch_norm_train(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-5, relu).unwrap();
            let xt = x.as_tensor();
            let mean = xt.mean_keepdim(0).unwrap();
            let xc = xt.broadcast_sub(&mean).unwrap();
            let var = xc.sqr().unwrap().mean_keepdim(0).unwrap();
            let mut reference = xc
                .broadcast_div(&(var.clone() + 1e-5).unwrap().sqrt().unwrap())
                .unwrap()
                .broadcast_mul(g.as_tensor())
                .unwrap()
                .broadcast_add(b.as_tensor())
                .unwrap();
            if relu {
                reference = reference.relu().unwrap();
            }
            close(&ours, &reference, 1e-5, "bn forward");
            close(&Tensor::new(st.mean.as_slice(), &dev).unwrap(), &mean, 1e-5, "bn mean");
            close(&Tensor::new(st.var.as_slice(), &dev).unwrap(), &var, 1e-5, "bn var");
            let r = Tensor::randn(0f32, 1.0, (rows, c), &dev).unwrap();
            let go = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gr = (&reference * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (v, name) in [(&x, "dx"), (&g, "dgamma"), (&b, "dbeta")] {
                close(go.get(v.as_tensor()).unwrap(), gr.get(v.as_tensor()).unwrap(), 1e-4, name);
            }
        }
    }
}

#[cfg(test)]
mod bench {
    use candle_core::{Device, Tensor};

    /// GEMM shapes of a stage-1 convolution (`-- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn matmul_shapes_speed() {
        let dev = Device::Cpu;
        let (m, k, n) = (128 * 784, 144, 16);
        let cols = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
        let g = Tensor::randn(0f32, 1.0, (m, n), &dev).unwrap();
        let time = |name: &str, f: &dyn Fn() -> Tensor| {
            f();
            let t = std::time::Instant::now();
            for _ in 0..5 {
                f();
            }
            let s = t.elapsed().as_secs_f64() / 5.0;
            println!("{name}: {:.1} ms, {:.1} GFLOP/s", s * 1e3, 2.0 * (m * k * n) as f64 / s / 1e9);
        };
        time("fwd cols·wᵀ", &|| cols.matmul(&w.t().unwrap()).unwrap());
        time("fwd (w·colsᵀ)", &|| w.matmul(&cols.t().unwrap()).unwrap());
        time("dw colsᵀ·g", &|| cols.t().unwrap().matmul(&g).unwrap());
        time("dw gᵀ·cols", &|| g.t().unwrap().matmul(&cols).unwrap());
        time("dcols g·w", &|| g.matmul(&w).unwrap());
    }
}
