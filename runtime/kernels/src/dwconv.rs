//! Depthwise convolution (one k×k filter per channel, stride 1, "same" padding): ConvNeXt's
//! 7×7 token mixer, on NCHW8c activations.
//!
//! A task is one (image, channel block) plane: it copies the plane into a zero-padded scratch
//! (so that no tap tests bounds) and sweeps every output row in register tiles of pixels. In
//! NCHW8c a pixel's 8 channels are one vector and its row neighbours are contiguous, so the
//! AVX-512 path holds two pixels per zmm (the 8 weights repeated in both halves) and the AVX2
//! path one pixel per ymm. There is no reuse across channels: the work is small next to the
//! pointwise layers and bound by loads from L1.

use std::cell::RefCell;

use crate::par::{Par, SharedMut};
use crate::tensor::{BlockedTensor, CB};
use crate::{isa, Isa, KernelError};

thread_local! {
    /// Per-thread zero-padded plane.
    static PADDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A depthwise convolution with packed weights.
#[derive(Debug, Clone)]
pub struct PackedDwConv {
    c: usize,
    k: usize,
    isa: Isa,
    /// `[cb][ky][kx][8]`, zero padded lanes.
    weights: Vec<f32>,
    /// `cb * 8` values, zero padded.
    bias: Vec<f32>,
}

impl PackedDwConv {
    /// Packs PyTorch's depthwise weight (`[c, 1, k, k]`) and bias for the process-wide ISA.
    pub fn new(c: usize, k: usize, weight: &[f32], bias: &[f32]) -> Result<Self, KernelError> {
        Self::with_isa(c, k, weight, bias, isa::detect_isa())
    }

    /// As [`PackedDwConv::new`] on an explicit ISA.
    pub fn with_isa(c: usize, k: usize, weight: &[f32], bias: &[f32], isa: Isa) -> Result<Self, KernelError> {
        if c == 0 || k == 0 || k.is_multiple_of(2) {
            return Err(KernelError::InvalidSpec(format!(
                "depthwise {k}x{k} over {c} channels (k must be odd)"
            )));
        }
        if weight.len() != c * k * k || bias.len() != c {
            return Err(KernelError::ShapeMismatch {
                context: "PackedDwConv weight and bias",
                expected: format!("[{c}, 1, {k}, {k}] and [{c}]"),
                got: format!("{} and {} values", weight.len(), bias.len()),
            });
        }
        if !isa::isa_available(isa) {
            return Err(KernelError::UnsupportedIsa(isa));
        }
        let cb = c.div_ceil(CB);
        let mut weights = vec![0.0; cb * k * k * CB];
        for ch in 0..c {
            for t in 0..k * k {
                weights[((ch / CB) * k * k + t) * CB + ch % CB] = weight[ch * k * k + t];
            }
        }
        let mut b = vec![0.0; cb * CB];
        b[..c].copy_from_slice(bias);
        Ok(Self { c, k, isa, weights, bias: b })
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.c
    }

    /// Kernel size.
    pub fn kernel(&self) -> usize {
        self.k
    }

    /// Multiply-accumulates for `n` images of `h × w`.
    pub fn macs(&self, n: usize, h: usize, w: usize) -> u64 {
        (n * self.c * h * w * self.k * self.k) as u64
    }

    /// `out = dwconv(input) + bias`, same shape as `input`, on `par`'s threads.
    pub fn forward_on(
        &self,
        input: &BlockedTensor,
        out: &mut BlockedTensor,
        par: Par,
    ) -> Result<(), KernelError> {
        let (n, c, h, w) = input.shape();
        if c != self.c {
            return Err(KernelError::ShapeMismatch {
                context: "PackedDwConv input channels",
                expected: format!("[n, {}, h, w]", self.c),
                got: input.shape_string(),
            });
        }
        out.resize(n, c, h, w);
        let (cb, plane) = (input.cblocks(), h * w * CB);
        let inp = input.as_slice();
        let outp = SharedMut(out.as_mut_slice().as_mut_ptr());
        let task = |t: usize| {
            let (img, blk) = (t / cb, t % cb);
            let src = &inp[(img * cb + blk) * plane..][..plane];
            // SAFETY: plane `t` is inside the output and only this task writes it.
            let dst = unsafe { std::slice::from_raw_parts_mut(outp.get().add(t * plane), plane) };
            PADDED.with(|cell| match cell.try_borrow_mut() {
                Ok(mut buf) => self.plane(src, dst, blk, (h, w), &mut buf),
                Err(_) => self.plane(src, dst, blk, (h, w), &mut Vec::new()),
            });
        };
        if n * cb > 1 && self.macs(n, h, w) as usize >= par.serial_macs() {
            par.for_each(n * cb, task);
        } else {
            (0..n * cb).for_each(task);
        }
        Ok(())
    }

    fn plane(&self, src: &[f32], dst: &mut [f32], blk: usize, (h, w): (usize, usize), buf: &mut Vec<f32>) {
        let (k, p) = (self.k, self.k / 2);
        let pw = w + 2 * p;
        buf.clear();
        buf.resize((h + 2 * p) * pw * CB, 0.0);
        for y in 0..h {
            buf[((y + p) * pw + p) * CB..][..w * CB].copy_from_slice(&src[y * w * CB..][..w * CB]);
        }
        let g = Plane {
            padded: buf,
            pw,
            k,
            w: &self.weights[blk * k * k * CB..][..k * k * CB],
            bias: self.bias[blk * CB..][..CB].try_into().expect("8 lanes"),
        };
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx512` is only constructed when the CPU has AVX-512F (isa.rs).
            Isa::Avx512 => unsafe { x86::plane_avx512(&g, dst, h, w) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx2Fma` is only constructed when the CPU has AVX2 and FMA (isa.rs).
            Isa::Avx2Fma => unsafe { x86::plane_avx2(&g, dst, h, w) },
            _ => plane_portable(&g, dst, h, w),
        }
    }
}

/// One zero-padded input plane and its filter.
pub(crate) struct Plane<'a> {
    padded: &'a [f32],
    /// Padded width.
    pw: usize,
    k: usize,
    /// `[ky][kx][8]`.
    w: &'a [f32],
    bias: [f32; CB],
}

/// Plain Rust: four pixels per step, each an 8-lane vector.
fn plane_portable(g: &Plane, dst: &mut [f32], h: usize, w: usize) {
    for oy in 0..h {
        let mut ox = 0;
        while ox < w {
            let np = (w - ox).min(4);
            let mut acc = [g.bias; 4];
            for ky in 0..g.k {
                let row = &g.padded[((oy + ky) * g.pw + ox) * CB..];
                for kx in 0..g.k {
                    let wv = &g.w[(ky * g.k + kx) * CB..][..CB];
                    for (p, a) in acc.iter_mut().enumerate().take(np) {
                        let x = &row[(p + kx) * CB..][..CB];
                        for l in 0..CB {
                            a[l] += x[l] * wv[l];
                        }
                    }
                }
            }
            for (p, a) in acc.iter().enumerate().take(np) {
                dst[(oy * w + ox + p) * CB..][..CB].copy_from_slice(a);
            }
            ox += np;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Plane, CB};
    use std::arch::x86_64::*;

    /// AVX2: `T` pixels per tile, one ymm each.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile_avx2<const T: usize>(g: &Plane, dst: *mut f32, oy: usize, ox: usize) {
        // SAFETY: the padded plane holds rows `oy..oy + k` and columns `ox..ox + T + k - 1`;
        // `dst` holds pixels `ox..ox + T` of row `oy` (the caller's bounds).
        unsafe {
            let b = _mm256_loadu_ps(g.bias.as_ptr());
            let mut acc = [b; T];
            for ky in 0..g.k {
                let row = g.padded.as_ptr().add(((oy + ky) * g.pw + ox) * CB);
                for kx in 0..g.k {
                    let wv = _mm256_loadu_ps(g.w.as_ptr().add((ky * g.k + kx) * CB));
                    for (p, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(_mm256_loadu_ps(row.add((p + kx) * CB)), wv, *a);
                    }
                }
            }
            for (p, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(dst.add(p * CB), *a);
            }
        }
    }

    /// # Safety
    /// AVX2 and FMA must be available; `dst` holds the `h × w` output plane.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn plane_avx2(g: &Plane, dst: &mut [f32], h: usize, w: usize) {
        for oy in 0..h {
            let mut ox = 0;
            // SAFETY: each tile stays inside row `oy` of the plane (`ox + T <= w`).
            unsafe {
                while ox + 8 <= w {
                    tile_avx2::<8>(g, dst.as_mut_ptr().add((oy * w + ox) * CB), oy, ox);
                    ox += 8;
                }
                while ox < w {
                    tile_avx2::<1>(g, dst.as_mut_ptr().add((oy * w + ox) * CB), oy, ox);
                    ox += 1;
                }
            }
        }
    }

    /// AVX-512: `T` zmm per tile, two neighbouring pixels each.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn tile_avx512<const T: usize>(g: &Plane, dst: *mut f32, oy: usize, ox: usize) {
        // SAFETY: as for `tile_avx2` with `2T` pixels.
        unsafe {
            let dup = |p: *const f32| {
                let v = _mm256_loadu_ps(p);
                _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                    _mm512_castps_pd(_mm512_castps256_ps512(v)),
                    _mm256_castps_pd(v),
                ))
            };
            let b = dup(g.bias.as_ptr());
            let mut acc = [b; T];
            for ky in 0..g.k {
                let row = g.padded.as_ptr().add(((oy + ky) * g.pw + ox) * CB);
                for kx in 0..g.k {
                    let wv = dup(g.w.as_ptr().add((ky * g.k + kx) * CB));
                    for (p, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_fmadd_ps(_mm512_loadu_ps(row.add((2 * p + kx) * CB)), wv, *a);
                    }
                }
            }
            for (p, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(dst.add(2 * p * CB), *a);
            }
        }
    }

    /// # Safety
    /// AVX-512F must be available; `dst` holds the `h × w` output plane.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn plane_avx512(g: &Plane, dst: &mut [f32], h: usize, w: usize) {
        for oy in 0..h {
            let mut ox = 0;
            // SAFETY: each tile stays inside row `oy` of the plane (`ox + 2T <= w`).
            unsafe {
                while ox + 16 <= w {
                    tile_avx512::<8>(g, dst.as_mut_ptr().add((oy * w + ox) * CB), oy, ox);
                    ox += 16;
                }
                while ox + 2 <= w {
                    tile_avx512::<1>(g, dst.as_mut_ptr().add((oy * w + ox) * CB), oy, ox);
                    ox += 2;
                }
                if ox < w {
                    tile_avx2::<1>(g, dst.as_mut_ptr().add((oy * w + ox) * CB), oy, ox);
                }
            }
        }
    }
}
