//! Depthwise convolution of an NHWC batch (stride 1, "same" padding) as one graph node.
//!
//! candle runs a grouped convolution as one convolution per group, and its CPU backward for each
//! is the naive transposed convolution: far too slow for ConvNeXt's 7×7 depthwise layers. Here
//! the forward and both gradients are direct loops whose innermost dimension is the channel,
//! contiguous in NHWC, so they vectorise; images are spread over threads.

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{f32_slice, sum_in_order, with_f32};

/// Images per task of the backward pass (and per partial sum of the weight gradient).
const DW_CHUNK: usize = 8;

/// Geometry of a depthwise convolution: batch, height, width, channels, kernel (odd).
#[derive(Debug, Clone, Copy)]
struct Dw {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    k: usize,
}

impl Dw {
    fn pad(&self) -> usize {
        self.k / 2
    }

    /// Kernel taps (ky, kx) that land inside the image for output (oy, ox), with the source
    /// pixel: the same set serves the forward and both gradients.
    #[inline]
    fn taps(&self, oy: usize, ox: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let p = self.pad();
        (0..self.k).flat_map(move |ky| {
            (0..self.k).filter_map(move |kx| {
                let iy = (oy + ky).checked_sub(p)?;
                let ix = (ox + kx).checked_sub(p)?;
                (iy < self.h && ix < self.w).then_some((ky * self.k + kx, iy * self.w + ix))
            })
        })
    }

    fn image(&self) -> usize {
        self.h * self.w * self.c
    }
}

/// OIHW `[c, 1, k, k]` → tap-major `[k·k, c]`, so a tap's weights are contiguous over channels.
fn taps_major(w: &[f32], c: usize, kk: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for ch in 0..c {
        for t in 0..kk {
            out[t * c + ch] = w[ch * kk + t];
        }
    }
    out
}

fn forward(g: Dw, x: &[f32], wt: &[f32]) -> Vec<f32> {
    let c = g.c;
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(g.w * c).enumerate().for_each(|(row, dst)| {
        let (img, oy) = (row / g.h, row % g.h);
        let x = &x[img * g.image()..(img + 1) * g.image()];
        for ox in 0..g.w {
            let d = &mut dst[ox * c..(ox + 1) * c];
            for (t, s) in g.taps(oy, ox) {
                let (xs, ws) = (&x[s * c..(s + 1) * c], &wt[t * c..(t + 1) * c]);
                for ((d, x), w) in d.iter_mut().zip(xs).zip(ws) {
                    *d += x * w;
                }
            }
        }
    });
    out
}

/// Input gradient (NHWC) and weight gradient (tap-major `[k·k, c]`) from the output gradient.
fn backward(g: Dw, x: &[f32], wt: &[f32], gy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (c, kk, img) = (g.c, g.k * g.k, g.image());
    let mut dx = vec![0f32; x.len()];
    // The input gradient of an image is that image's alone. The weight gradient is summed per
    // fixed chunk of images, then over chunks in order, so a run (and a resumed run) gives the
    // same bits whatever the threads did.
    let partials: Vec<Vec<f32>> = dx
        .par_chunks_mut(img * DW_CHUNK)
        .enumerate()
        .map(|(ci, dxc)| {
            let mut dwt = vec![0f32; kk * c];
            for (j, dxi) in dxc.chunks_mut(img).enumerate() {
                let i = ci * DW_CHUNK + j;
                let (xi, gi) = (&x[i * img..(i + 1) * img], &gy[i * img..(i + 1) * img]);
                for oy in 0..g.h {
                    for ox in 0..g.w {
                        let o = (oy * g.w + ox) * c;
                        let go = &gi[o..o + c];
                        for (t, s) in g.taps(oy, ox) {
                            let ws = &wt[t * c..(t + 1) * c];
                            for ((d, gv), w) in dxi[s * c..(s + 1) * c].iter_mut().zip(go).zip(ws) {
                                *d += gv * w;
                            }
                            let xs = &xi[s * c..(s + 1) * c];
                            for ((d, gv), xv) in dwt[t * c..(t + 1) * c].iter_mut().zip(go).zip(xs) {
                                *d += gv * xv;
                            }
                        }
                    }
                }
            }
            dwt
        })
        .collect();
    (dx, sum_in_order(partials.iter().map(Vec::as_slice), kk * c))
}

struct DwOp(Dw);

impl CustomOp2 for DwOp {
    fn name(&self) -> &'static str {
        "depthwise-conv-nhwc"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let wt = taps_major(f32_slice(s2, l2)?, g.c, g.k * g.k);
        let out = forward(g, f32_slice(s1, l1)?, &wt);
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.h, g.w, g.c))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.0;
        let kk = g.k * g.k;
        let (dx, dwt) = with_f32(x, |xs| {
            with_f32(w, |ws| with_f32(grad, |gs| Ok(backward(g, xs, &taps_major(ws, g.c, kk), gs))))
        })?;
        // Tap-major back to OIHW.
        let mut dw = vec![0f32; kk * g.c];
        for t in 0..kk {
            for ch in 0..g.c {
                dw[ch * kk + t] = dwt[t * g.c + ch];
            }
        }
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, (g.n, g.h, g.w, g.c), dev)?),
            Some(Tensor::from_vec(dw, (g.c, 1, g.k, g.k), dev)?),
        ))
    }
}

/// Depthwise convolution of an NHWC batch `x` with an OIHW weight `[c, 1, k, k]` (k odd), stride
/// 1, padding k/2, no bias; returns NHWC. Differentiable in both arguments.
pub fn depthwise_nhwc(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (n, h, wd, c) = x.dims4()?;
    let (cw, one, k, k2) = w.dims4()?;
    if cw != c || one != 1 || k != k2 || k % 2 == 0 {
        bail!("depthwise_nhwc: input {:?}, weight {:?}", x.dims(), w.dims());
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, DwOp(Dw { n, h, w: wd, c, k }))
}
