//! NHWC convolution as im2col + matmul, alone or fused with training-mode batch norm.

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::bn::{bn_backward, bn_forward, BnStats};
use super::{f32_slice, with_f32};

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
