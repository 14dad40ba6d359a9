//! Normalisations of ConvNeXt-V2 on NCHW8c: LayerNorm over the channels of each pixel, and
//! Global Response Normalization (GRN).
//!
//! In NCHW8c a pixel's channels lie in `⌈c/8⌉` blocks one plane apart, so a LayerNorm task takes
//! a run of pixels and walks the blocks three times (mean, variance about the mean, output)
//! while the run stays in L1/L2. The loops are plain Rust over 8-lane arrays compiled once per
//! ISA; padded lanes hold zero on input and get zero weight and bias, so they stay zero.

use crate::par::{Par, SharedMut};
use crate::tensor::{BlockedTensor, CB};
use crate::{isa, Isa, KernelError};

/// Pixels per LayerNorm task: 64 pixels × 8 lanes of every block of a 768-channel layer is
/// 192 KiB, an L2's share.
const RUN: usize = 64;

/// LayerNorm over channels (PyTorch's `LayerNorm(c)` applied per pixel: biased variance, `eps`
/// inside the square root).
#[derive(Debug, Clone)]
pub struct LayerNormC {
    c: usize,
    eps: f32,
    isa: Isa,
    /// `⌈c/8⌉·8` values, zero padded.
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl LayerNormC {
    /// A LayerNorm over `c` channels with weight `gamma` and bias `beta` (process-wide ISA).
    pub fn new(c: usize, eps: f32, gamma: &[f32], beta: &[f32]) -> Result<Self, KernelError> {
        Self::with_isa(c, eps, gamma, beta, isa::detect_isa())
    }

    /// As [`LayerNormC::new`] on an explicit ISA.
    pub fn with_isa(c: usize, eps: f32, gamma: &[f32], beta: &[f32], isa: Isa) -> Result<Self, KernelError> {
        if c == 0 || gamma.len() != c || beta.len() != c {
            return Err(KernelError::ShapeMismatch {
                context: "LayerNorm weight and bias",
                expected: format!("[{c}] each (c > 0)"),
                got: format!("{} and {} values", gamma.len(), beta.len()),
            });
        }
        if !isa::isa_available(isa) {
            return Err(KernelError::UnsupportedIsa(isa));
        }
        let pad = |v: &[f32]| {
            let mut p = vec![0.0; c.div_ceil(CB) * CB];
            p[..c].copy_from_slice(v);
            p
        };
        Ok(Self { c, eps, isa, gamma: pad(gamma), beta: pad(beta) })
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.c
    }

    /// Normalises every pixel of `x` into `out` (same shape).
    pub fn forward_on(
        &self,
        x: &BlockedTensor,
        out: &mut BlockedTensor,
        par: Par,
    ) -> Result<(), KernelError> {
        let (n, c, h, w) = x.shape();
        if c != self.c {
            return Err(KernelError::ShapeMismatch {
                context: "LayerNorm input channels",
                expected: format!("[n, {}, h, w]", self.c),
                got: x.shape_string(),
            });
        }
        out.resize(n, c, h, w);
        let hw = h * w;
        let runs = hw.div_ceil(RUN);
        let (inp, img) = (x.as_slice(), x.image_len());
        let outp = SharedMut(out.as_mut_slice().as_mut_ptr());
        let task = |t: usize| {
            let (b, r) = (t / runs, t % runs);
            let px = r * RUN..((r + 1) * RUN).min(hw);
            // SAFETY: image `b` is inside the output; this task writes only pixels `px` of it,
            // which no other task touches.
            let dst = unsafe { std::slice::from_raw_parts_mut(outp.get().add(b * img), img) };
            let run = Run { src: &inp[b * img..][..img], hw, px, ln: self };
            match self.isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `Avx512` is only constructed when the CPU has AVX-512F (isa.rs).
                Isa::Avx512 => unsafe { run_avx512(&run, dst) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `Avx2Fma` is only constructed when the CPU has AVX2 and FMA (isa.rs).
                Isa::Avx2Fma => unsafe { run_avx2(&run, dst) },
                _ => run.normalise(dst),
            }
        };
        let tasks = n * runs;
        if tasks > 1 && n * hw * c * 8 >= par.serial_macs() {
            par.for_each(tasks, task);
        } else {
            (0..tasks).for_each(task);
        }
        Ok(())
    }

    /// Normalises each of the `x.len() / c` rows of `x` (pooled features: ConvNeXt's head).
    pub fn forward_rows(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        for row in x.chunks_exact(self.c) {
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / self.c as f64;
            let var = row.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / self.c as f64;
            let rstd = 1.0 / (var + f64::from(self.eps)).sqrt();
            out.extend(
                row.iter()
                    .enumerate()
                    .map(|(i, &v)| ((f64::from(v) - mean) * rstd) as f32 * self.gamma[i] + self.beta[i]),
            );
        }
    }
}

/// One run of pixels of one image.
struct Run<'a> {
    src: &'a [f32],
    hw: usize,
    px: std::ops::Range<usize>,
    ln: &'a LayerNormC,
}

impl Run<'_> {
    #[inline(always)]
    fn normalise(&self, dst: &mut [f32]) {
        let (c, cb, plane) = (self.ln.c, self.ln.c.div_ceil(CB), self.hw * CB);
        let np = self.px.len();
        let block = |b: usize| &self.src[b * plane + self.px.start * CB..][..np * CB];
        let mut acc = [[0.0f32; CB]; RUN];
        for b in 0..cb {
            for (a, x) in acc.iter_mut().zip(block(b).chunks_exact(CB)) {
                for l in 0..CB {
                    a[l] += x[l];
                }
            }
        }
        let mut mean = [0.0f32; RUN];
        for (m, a) in mean.iter_mut().zip(&acc).take(np) {
            *m = a.iter().sum::<f32>() / c as f32;
        }
        acc = [[0.0; CB]; RUN];
        for b in 0..cb {
            // Padded lanes must not add (0 - mean)²: subtracting that afterwards cancels
            // catastrophically when the variance is small next to the mean.
            let mut valid = [0.0f32; CB];
            for (l, v) in valid.iter_mut().enumerate() {
                *v = if b * CB + l < c { 1.0 } else { 0.0 };
            }
            for ((a, x), &m) in acc.iter_mut().zip(block(b).chunks_exact(CB)).zip(&mean) {
                for l in 0..CB {
                    let d = (x[l] - m) * valid[l];
                    a[l] += d * d;
                }
            }
        }
        let mut rstd = [0.0f32; RUN];
        for (r, a) in rstd.iter_mut().zip(&acc).take(np) {
            let var = a.iter().sum::<f32>() / c as f32;
            *r = 1.0 / (var + self.ln.eps).sqrt();
        }
        for b in 0..cb {
            let (g, be) = (&self.ln.gamma[b * CB..][..CB], &self.ln.beta[b * CB..][..CB]);
            let out = &mut dst[b * plane + self.px.start * CB..][..np * CB];
            for (((o, x), &m), &r) in
                out.chunks_exact_mut(CB).zip(block(b).chunks_exact(CB)).zip(&mean).zip(&rstd)
            {
                for l in 0..CB {
                    o[l] = (x[l] - m) * r * g[l] + be[l];
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(run: &Run, dst: &mut [f32]) {
    run.normalise(dst)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn run_avx512(run: &Run, dst: &mut [f32]) {
    run.normalise(dst)
}

/// GRN's per-channel factors: for each image and channel, `1 + gamma[c] · Gx[c] / (mean over
/// channels of Gx + eps)` with `Gx[c]` the L2 norm of channel `c` over the image's pixels.
/// `GRN(x) = x · factor + beta`, so a following pointwise layer can take the factors as an
/// input scale and `beta` folded into its bias. Written to `out` as `n × ⌈c/8⌉·8` (padded
/// lanes 1).
pub fn grn_factors(
    x: &BlockedTensor,
    gamma: &[f32],
    eps: f32,
    out: &mut Vec<f32>,
) -> Result<(), KernelError> {
    let (n, c, h, w) = x.shape();
    if gamma.len() != c {
        return Err(KernelError::ShapeMismatch {
            context: "GRN weight",
            expected: format!("[{c}]"),
            got: format!("[{}]", gamma.len()),
        });
    }
    let (cb, plane) = (x.cblocks(), h * w * CB);
    out.clear();
    out.resize(n * cb * CB, 1.0);
    let data = x.as_slice();
    let mut norms = vec![0.0f32; cb * CB];
    for b in 0..n {
        for blk in 0..cb {
            let mut acc = [0.0f64; CB];
            for px in data[(b * cb + blk) * plane..][..plane].chunks_exact(CB) {
                for l in 0..CB {
                    acc[l] += f64::from(px[l]) * f64::from(px[l]);
                }
            }
            for l in 0..CB {
                norms[blk * CB + l] = acc[l].sqrt() as f32;
            }
        }
        let mean = norms[..c].iter().map(|&v| f64::from(v)).sum::<f64>() / c as f64;
        let inv = 1.0 / (mean as f32 + eps);
        for (ch, g) in gamma.iter().enumerate() {
            out[b * cb * CB + ch] = 1.0 + g * norms[ch] * inv;
        }
    }
    Ok(())
}

/// `x = x · factor[image][channel] + bias[channel]` in place (GRN applied with the factors of
/// [`grn_factors`]; `bias` is GRN's `beta`). Padded lanes stay zero.
pub fn scale_channels(x: &mut BlockedTensor, factors: &[f32], bias: &[f32]) -> Result<(), KernelError> {
    let (n, c, h, w) = x.shape();
    let cb = x.cblocks();
    if factors.len() != n * cb * CB || bias.len() != c {
        return Err(KernelError::ShapeMismatch {
            context: "channel scaling",
            expected: format!("{} factors and {c} biases", n * cb * CB),
            got: format!("{} and {}", factors.len(), bias.len()),
        });
    }
    let plane = h * w * CB;
    let mut b8 = vec![0.0f32; cb * CB];
    b8[..c].copy_from_slice(bias);
    for (p, chunk) in x.as_mut_slice().chunks_exact_mut(plane.max(1)).enumerate() {
        let (img, blk) = (p / cb, p % cb);
        let f = &factors[(img * cb + blk) * CB..][..CB];
        let bb = &b8[blk * CB..][..CB];
        for px in chunk.chunks_exact_mut(CB) {
            for l in 0..CB {
                px[l] = px[l] * f[l] + bb[l];
            }
        }
    }
    Ok(())
}
