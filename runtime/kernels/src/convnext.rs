//! ConvNeXt-V2 building blocks over the arena: the patchify stem and the block (with its
//! stage's downsample when it opens a stage).
//!
//! A block runs: depthwise 7×7 (+ bias) → LayerNorm over channels → `fc1` as a 1×1
//! convolution (+ bias) → GELU, fused with the sums of squares GRN needs, in one pass over each
//! (image, channel block) plane → GRN's per-image channel factors → `x·factor + β` in one pass →
//! `fc2` as a 1×1 convolution whose epilogue adds the bias and the residual.

use crate::act::gelu_inplace;
use crate::arena::Arena;
use crate::conv::PackedConv;
use crate::dwconv::PackedDwConv;
use crate::norm::LayerNormC;
use crate::par::{Par, SharedMut};
use crate::tensor::{BlockedTensor, CB};
use crate::{Isa, KernelError};

/// The stem: a patchify convolution, then LayerNorm over channels.
#[derive(Debug, Clone)]
pub struct ConvNextStem {
    conv: PackedConv,
    norm: LayerNormC,
}

impl ConvNextStem {
    /// The stem from its convolution (`stem.0`) and LayerNorm (`stem.1`).
    pub fn new(conv: PackedConv, norm: LayerNormC) -> Result<Self, KernelError> {
        if conv.spec().cout != norm.channels() {
            return Err(KernelError::ShapeMismatch {
                context: "ConvNeXt stem norm channels",
                expected: format!("{}", conv.spec().cout),
                got: format!("{}", norm.channels()),
            });
        }
        Ok(Self { conv, norm })
    }

    /// Runs the stem on `par`'s threads and leaves the result in `x`.
    pub fn forward_par_inplace(
        &self,
        x: &mut BlockedTensor,
        arena: &mut Arena,
        par: Par,
    ) -> Result<(), KernelError> {
        self.conv.forward_on(x, None, false, &mut arena.t1, par)?;
        self.norm.forward_on(&arena.t1, x, par)
    }
}

/// GRN's parameters over the hidden channels (`mlp.grn.weight`, `mlp.grn.bias`).
#[derive(Debug, Clone)]
pub struct Grn {
    /// γ, one per hidden channel.
    pub gamma: Vec<f32>,
    /// β, one per hidden channel.
    pub beta: Vec<f32>,
    /// Added to the mean of the norms.
    pub eps: f32,
}

/// One ConvNeXt-V2 block.
#[derive(Debug, Clone)]
pub struct ConvNextBlock {
    downsample: Option<(LayerNormC, PackedConv)>,
    dw: PackedDwConv,
    norm: LayerNormC,
    fc1: PackedConv,
    grn: Grn,
    /// β padded to whole channel blocks (padded lanes must stay zero).
    beta8: Vec<f32>,
    fc2: PackedConv,
    isa: Isa,
}

impl ConvNextBlock {
    /// A block from its parts; `downsample` (LayerNorm, 2×2/2 convolution) runs first.
    pub fn new(
        downsample: Option<(LayerNormC, PackedConv)>,
        dw: PackedDwConv,
        norm: LayerNormC,
        fc1: PackedConv,
        grn: Grn,
        fc2: PackedConv,
    ) -> Result<Self, KernelError> {
        let c = dw.channels();
        let hidden = fc1.spec().cout;
        let chain = [
            ("downsample output", downsample.as_ref().map_or(c, |(_, d)| d.spec().cout)),
            ("norm", norm.channels()),
            ("fc1 input", fc1.spec().cin),
            ("fc2 output", fc2.spec().cout),
        ];
        for (what, got) in chain {
            if got != c {
                return Err(KernelError::ShapeMismatch {
                    context: "ConvNeXt block channels",
                    expected: format!("{c}"),
                    got: format!("{what} {got}"),
                });
            }
        }
        if fc2.spec().cin != hidden || grn.gamma.len() != hidden || grn.beta.len() != hidden {
            return Err(KernelError::ShapeMismatch {
                context: "ConvNeXt block hidden channels",
                expected: format!("{hidden} (fc1 output)"),
                got: format!("fc2 input {}, GRN {}/{}", fc2.spec().cin, grn.gamma.len(), grn.beta.len()),
            });
        }
        if let Some((ln, d)) = &downsample {
            if ln.channels() != d.spec().cin {
                return Err(KernelError::ShapeMismatch {
                    context: "ConvNeXt downsample norm channels",
                    expected: format!("{}", d.spec().cin),
                    got: format!("{}", ln.channels()),
                });
            }
        }
        let mut beta8 = vec![0.0; hidden.div_ceil(CB) * CB];
        beta8[..hidden].copy_from_slice(&grn.beta);
        let isa = fc1.isa();
        Ok(Self { downsample, dw, norm, fc1, grn, beta8, fc2, isa })
    }

    /// Multiply-accumulates for `n` inputs of `h × w` (downsample included).
    pub fn macs(&self, n: usize, h: usize, w: usize) -> u64 {
        let (mut h2, mut w2, mut total) = (h, w, 0);
        if let Some((_, d)) = &self.downsample {
            total += d.spec().macs(n, h, w);
            (h2, w2) = d.spec().output_hw(h, w).unwrap_or((0, 0));
        }
        total + self.dw.macs(n, h2, w2) + self.fc1.spec().macs(n, h2, w2) + self.fc2.spec().macs(n, h2, w2)
    }

    /// Runs the block on `par`'s threads and leaves the result in `x`.
    pub fn forward_par_inplace(
        &self,
        x: &mut BlockedTensor,
        arena: &mut Arena,
        par: Par,
    ) -> Result<(), KernelError> {
        let Arena { t1, t2, shortcut, out, scratch } = arena;
        if let Some((ln, conv)) = &self.downsample {
            ln.forward_on(x, t1, par)?;
            conv.forward_on(t1, None, false, shortcut, par)?;
            std::mem::swap(x, shortcut);
        }
        self.dw.forward_on(x, t1, par)?;
        self.norm.forward_on(t1, t2, par)?;
        self.fc1.forward_on(t2, None, false, t1, par)?;
        self.gelu_grn(t1, scratch, par)?;
        self.fc2.forward_on(t1, Some(x), false, out, par)?;
        std::mem::swap(x, out);
        Ok(())
    }

    /// GELU in place, then GRN in place: `x·(1 + γ·N(x)) + β`.
    fn gelu_grn(&self, t: &mut BlockedTensor, sums: &mut Vec<f32>, par: Par) -> Result<(), KernelError> {
        let (n, c, h, w) = t.shape();
        let (cb, plane) = (t.cblocks(), h * w * CB);
        let planes = n * cb;
        sums.clear();
        sums.resize(planes * CB, 0.0);
        let big = planes > 1 && n * c * h * w * 8 >= par.serial_macs();
        let data = SharedMut(t.as_mut_slice().as_mut_ptr());
        let sums_p = SharedMut(sums.as_mut_ptr());
        let isa = self.isa;
        let gelu_task = |p: usize| {
            // SAFETY: plane `p` and its 8 sums are inside their buffers and only this task
            // touches them.
            let (px, s) = unsafe {
                (
                    std::slice::from_raw_parts_mut(data.get().add(p * plane), plane),
                    std::slice::from_raw_parts_mut(sums_p.get().add(p * CB), CB),
                )
            };
            gelu_inplace(px, isa);
            sum_squares(px, s.try_into().expect("8 lanes"), isa);
        };
        if big {
            par.for_each(planes, gelu_task);
        } else {
            (0..planes).for_each(gelu_task);
        }
        // Per image: the norms' mean over the real channels, then the factors, in place.
        for img in 0..n {
            let s = &mut sums[img * cb * CB..][..cb * CB];
            for v in s.iter_mut() {
                *v = v.sqrt();
            }
            let mean = s[..c].iter().map(|&v| f64::from(v)).sum::<f64>() / c as f64;
            let inv = 1.0 / (mean as f32 + self.grn.eps);
            for (ch, v) in s.iter_mut().enumerate() {
                *v = if ch < c { 1.0 + self.grn.gamma[ch] * *v * inv } else { 1.0 };
            }
        }
        let factors = &*sums;
        let scale_task = |p: usize| {
            // SAFETY: as above; the factors are only read now.
            let px = unsafe { std::slice::from_raw_parts_mut(data.get().add(p * plane), plane) };
            let f: &[f32; CB] = factors[p * CB..][..CB].try_into().expect("8 lanes");
            let b: &[f32; CB] = self.beta8[(p % cb) * CB..][..CB].try_into().expect("8 lanes");
            scale_plane(px, f, b, isa);
        };
        if big {
            par.for_each(planes, scale_task);
        } else {
            (0..planes).for_each(scale_task);
        }
        Ok(())
    }
}

#[inline(always)]
fn sum_squares_body(px: &[f32], s: &mut [f32; CB]) {
    // Four accumulators per lane: one chain of dependent adds would bound the loop by the
    // add latency.
    let mut acc = [[0.0f32; CB]; 4];
    let mut it = px.chunks_exact(4 * CB);
    for quad in it.by_ref() {
        for (a, v) in acc.iter_mut().zip(quad.chunks_exact(CB)) {
            for l in 0..CB {
                a[l] += v[l] * v[l];
            }
        }
    }
    for v in it.remainder().chunks_exact(CB) {
        for l in 0..CB {
            acc[0][l] += v[l] * v[l];
        }
    }
    for l in 0..CB {
        s[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
    }
}

#[inline(always)]
fn scale_body(px: &mut [f32], f: &[f32; CB], b: &[f32; CB]) {
    for v in px.chunks_exact_mut(CB) {
        for l in 0..CB {
            v[l] = v[l] * f[l] + b[l];
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sum_squares_avx2(px: &[f32], s: &mut [f32; CB]) {
    sum_squares_body(px, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scale_avx2(px: &mut [f32], f: &[f32; CB], b: &[f32; CB]) {
    scale_body(px, f, b)
}

fn sum_squares(px: &[f32], s: &mut [f32; CB], isa: Isa) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: both ISAs are only constructed when the CPU has AVX2 and FMA (isa.rs).
        Isa::Avx2Fma | Isa::Avx512 => unsafe { sum_squares_avx2(px, s) },
        _ => sum_squares_body(px, s),
    }
}

fn scale_plane(px: &mut [f32], f: &[f32; CB], b: &[f32; CB], isa: Isa) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2Fma | Isa::Avx512 => unsafe { scale_avx2(px, f, b) },
        _ => scale_body(px, f, b),
    }
}
