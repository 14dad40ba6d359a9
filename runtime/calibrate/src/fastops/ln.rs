//! ConvNeXt's per-pixel normalisations as single graph nodes: LayerNorm over the last
//! (channel) dimension, and GRN over each image's pixels.
//!
//! Built from candle's ops, each is a dozen broadcast and reduction nodes; GRN's reduction runs
//! over the non-contiguous pixel dimensions, which candle's CPU backend strides through slowly.
//! These compute forward and backward in two passes over rows of contiguous channels.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{f32_slice, sum_in_order, with_f32};

/// Rows per task in the LayerNorm passes.
const ROWS: usize = 64;

struct LayerNormOp {
    eps: f32,
}

/// Mean and 1/σ of one row.
fn row_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let c = x.len() as f32;
    let mean = x.iter().sum::<f32>() / c;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / c;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer-norm-last-dim"
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
        let (x, w, b) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?, f32_slice(s3, l3)?);
        let c = w.len();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(c * ROWS).zip(x.par_chunks(c * ROWS)).for_each(|(y, x)| {
            for (y, x) in y.chunks_mut(c).zip(x.chunks(c)) {
                let (mean, inv) = row_stats(x, self.eps);
                for (((y, x), w), b) in y.iter_mut().zip(x).zip(w).zip(b) {
                    *y = (x - mean) * inv * w + b;
                }
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = w.dim(0)?;
        let (dx, dw, db) = with_f32(x, |x| {
            with_f32(w, |w| {
                with_f32(grad, |g| {
                    let mut dx = vec![0f32; x.len()];
                    // Per fixed chunk of rows, then summed in order: deterministic.
                    let parts: Vec<(Vec<f32>, Vec<f32>)> = dx
                        .par_chunks_mut(c * ROWS)
                        .zip(x.par_chunks(c * ROWS).zip(g.par_chunks(c * ROWS)))
                        .map(|(dx, (x, g))| {
                            let (mut dw, mut db) = (vec![0f32; c], vec![0f32; c]);
                            for (dx, (x, g)) in dx.chunks_mut(c).zip(x.chunks(c).zip(g.chunks(c))) {
                                let (mean, inv) = row_stats(x, self.eps);
                                // With x̂ = (x-μ)/σ and ĝ = g·w: dx = (ĝ - mean(ĝ) - x̂·mean(ĝ·x̂))/σ.
                                let (mut sg, mut sgx) = (0f32, 0f32);
                                for i in 0..c {
                                    let xh = (x[i] - mean) * inv;
                                    let gh = g[i] * w[i];
                                    sg += gh;
                                    sgx += gh * xh;
                                    dw[i] += g[i] * xh;
                                    db[i] += g[i];
                                }
                                let (mg, mgx) = (sg / c as f32, sgx / c as f32);
                                for i in 0..c {
                                    let xh = (x[i] - mean) * inv;
                                    dx[i] = (g[i] * w[i] - mg - xh * mgx) * inv;
                                }
                            }
                            (dw, db)
                        })
                        .collect();
                    let dw = sum_in_order(parts.iter().map(|p| p.0.as_slice()), c);
                    let db = sum_in_order(parts.iter().map(|p| p.1.as_slice()), c);
                    Ok((dx, dw, db))
                })
            })
        })?;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dw, c, dev)?),
            Some(Tensor::from_vec(db, c, dev)?),
        ))
    }
}

/// LayerNorm over the last dimension of `x` with scale `w` and shift `b` (both `[c]`).
/// Differentiable in all three.
pub fn layer_norm_last(x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
    let c = w.dim(0)?;
    if x.dim(x.rank() - 1)? != c || b.dim(0)? != c {
        candle_core::bail!(
            "layer_norm_last: input {:?}, weight {:?}, bias {:?}",
            x.dims(),
            w.dims(),
            b.dims()
        );
    }
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, LayerNormOp { eps })
}

struct GrnOp {
    eps: f32,
    /// Added under the square root of each channel's sum of squares, so an all-zero channel
    /// has a finite gradient.
    floor: f32,
}

/// Per channel of one image (`x` is `[pixels, c]`): the norm g and the factor n = g/(mean g + eps),
/// with the mean's denominator.
fn grn_stats(x: &[f32], c: usize, eps: f32, floor: f32) -> (Vec<f32>, Vec<f32>, f32) {
    let mut g = vec![0f32; c];
    for px in x.chunks(c) {
        for (g, v) in g.iter_mut().zip(px) {
            *g += v * v;
        }
    }
    g.iter_mut().for_each(|v| *v = (*v + floor).sqrt());
    let d = g.iter().sum::<f32>() / c as f32 + eps;
    let n = g.iter().map(|v| v / d).collect();
    (g, n, d)
}

impl CustomOp3 for GrnOp {
    fn name(&self) -> &'static str {
        "grn-nhwc"
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
        let (x, gamma, beta) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?, f32_slice(s3, l3)?);
        let (n, c) = (l1.dims()[0], gamma.len());
        let img = x.len() / n;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(img).zip(x.par_chunks(img)).for_each(|(y, x)| {
            let (_, nf, _) = grn_stats(x, c, self.eps, self.floor);
            for (y, x) in y.chunks_mut(c).zip(x.chunks(c)) {
                for i in 0..c {
                    y[i] = x[i] * (1.0 + gamma[i] * nf[i]) + beta[i];
                }
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c) = (x.dim(0)?, gamma.dim(0)?);
        let (dx, dgamma, dbeta) = with_f32(x, |x| {
            with_f32(gamma, |gm| {
                with_f32(grad, |gr| {
                    let img = x.len() / n;
                    let mut dx = vec![0f32; x.len()];
                    let parts: Vec<(Vec<f32>, Vec<f32>)> = dx
                        .par_chunks_mut(img)
                        .zip(x.par_chunks(img).zip(gr.par_chunks(img)))
                        .map(|(dx, (x, g))| {
                            let (gn, nf, d) = grn_stats(x, c, self.eps, self.floor);
                            // s_c = Σ_pixels G·x; then a_c = γ_c·s_c drives n's gradient:
                            // ∂/∂x = x/g_c · (a_c/d - Σ_c' a_c'·g_c' / (C·d²)).
                            let mut s = vec![0f32; c];
                            let mut db = vec![0f32; c];
                            for (xp, gp) in x.chunks(c).zip(g.chunks(c)) {
                                for i in 0..c {
                                    s[i] += gp[i] * xp[i];
                                    db[i] += gp[i];
                                }
                            }
                            let a: Vec<f32> = (0..c).map(|i| gm[i] * s[i]).collect();
                            let cross = (0..c).map(|i| a[i] * gn[i]).sum::<f32>() / (c as f32 * d * d);
                            let k: Vec<f32> = (0..c).map(|i| (a[i] / d - cross) / gn[i]).collect();
                            for ((dxp, xp), gp) in dx.chunks_mut(c).zip(x.chunks(c)).zip(g.chunks(c)) {
                                for i in 0..c {
                                    dxp[i] = gp[i] * (1.0 + gm[i] * nf[i]) + xp[i] * k[i];
                                }
                            }
                            let dgm = (0..c).map(|i| s[i] * nf[i]).collect();
                            (dgm, db)
                        })
                        .collect();
                    let dg = sum_in_order(parts.iter().map(|p| p.0.as_slice()), c);
                    let db = sum_in_order(parts.iter().map(|p| p.1.as_slice()), c);
                    Ok((dx, dg, db))
                })
            })
        })?;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dgamma, c, dev)?),
            Some(Tensor::from_vec(dbeta, c, dev)?),
        ))
    }
}

/// ConvNeXt-V2's GRN on an NHWC batch: `x + β + γ·(x·N(x))`, N = each channel's L2 norm over
/// the image's pixels over its mean across channels (+ `eps`). `floor` is added under the root.
pub fn grn_nhwc(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32, floor: f32) -> Result<Tensor> {
    let (_, _, _, c) = x.dims4()?;
    if gamma.dim(0)? != c || beta.dim(0)? != c {
        candle_core::bail!(
            "grn_nhwc: input {:?}, gamma {:?}, beta {:?}",
            x.dims(),
            gamma.dims(),
            beta.dims()
        );
    }
    x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, GrnOp { eps, floor })
}
