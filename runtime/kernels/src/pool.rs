//! Pooling over the blocked layout.

use crate::par::{Par, SharedMut};
use crate::tensor::{BlockedTensor, CB};
use crate::{Isa, KernelError};

/// 3x3 max pooling, stride 2, padding 1 (ResNet ImageNet stem); padding never wins the max.
pub fn maxpool_3x3_s2_p1(
    input: &BlockedTensor,
    out: &mut BlockedTensor,
    pool: &rayon::ThreadPool,
) -> Result<(), KernelError> {
    maxpool_on(input, out, Par::Rayon(pool))
}

/// [`maxpool_3x3_s2_p1`] on `par`'s threads.
pub(crate) fn maxpool_on(
    input: &BlockedTensor,
    out: &mut BlockedTensor,
    par: Par,
) -> Result<(), KernelError> {
    let (n, c, h, w) = input.shape();
    if h == 0 || w == 0 {
        return Err(KernelError::InvalidSpec(format!(
            "maxpool on empty spatial shape {}",
            input.shape_string()
        )));
    }
    let (oh, ow) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    out.resize(n, c, oh, ow);
    let (ip, op) = (h * w * CB, oh * ow * CB);
    let inp = input.as_slice();
    let planes = out.as_slice().len() / op;
    let outp = SharedMut(out.as_mut_slice().as_mut_ptr());
    // One task per output plane (image, channel block); planes are contiguous and disjoint.
    let isa = crate::isa::detect_isa();
    let plane = |i: usize| {
        let src = &inp[i * ip..][..ip];
        // SAFETY: plane `i` is inside the output (i < n * blocks) and only this task writes it.
        let dst = unsafe { std::slice::from_raw_parts_mut(outp.get().add(i * op), op) };
        maxpool_plane_for(isa, src, dst, (h, w), (oh, ow));
    };
    par.for_each(planes, plane);
    Ok(())
}

/// Global average pooling to an `[n][c]` row-major vector (unpadded channels).
pub fn global_avg_pool(input: &BlockedTensor) -> Vec<f32> {
    let mut out = Vec::new();
    global_avg_pool_into(input, &mut out);
    out
}

/// Global average pooling into `out` (resized to `n * c`), reusing its allocation.
pub fn global_avg_pool_into(input: &BlockedTensor, out: &mut Vec<f32>) {
    let (n, c, h, w) = input.shape();
    let cb = input.cblocks();
    let hw = h * w;
    out.clear();
    out.resize(n * c, 0.0);
    let inv = if hw == 0 { 0.0 } else { 1.0 / hw as f32 };
    let data = input.as_slice();
    let isa = crate::isa::detect_isa();
    for b in 0..n {
        for blk in 0..cb {
            let src = &data[(b * cb + blk) * hw * CB..][..hw * CB];
            let sum = plane_sum_for(isa, src);
            for l in 0..CB.min(c - blk * CB) {
                out[b * c + blk * CB + l] = sum[l] * inv;
            }
        }
    }
}

/// Channel sums of one NCHW8c plane on `isa`.
fn plane_sum_for(isa: Isa, src: &[f32]) -> [f32; CB] {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx512` is only chosen when the CPU has AVX-512F (isa.rs).
        Isa::Avx512 => unsafe { plane_sum_avx512(src) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2Fma` is only chosen when the CPU has AVX2 (isa.rs).
        Isa::Avx2Fma => unsafe { plane_sum_avx2(src) },
        _ => plane_sum(src),
    }
}

/// Pixel by pixel in 8 lanes (the AVX2 build of this vectorises to one ymm add per pixel).
#[inline(always)]
fn plane_sum(src: &[f32]) -> [f32; CB] {
    let mut sum = [0.0f32; CB];
    for px in src.chunks_exact(CB) {
        for (s, &v) in sum.iter_mut().zip(px) {
            *s += v;
        }
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_sum_avx2(src: &[f32]) -> [f32; CB] {
    plane_sum(src)
}

/// Two pixels per zmm with two independent accumulators (four pixels per step), halves folded
/// at the end: the summation order differs from the 8-lane paths by reassociation only.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn plane_sum_avx512(src: &[f32]) -> [f32; CB] {
    use std::arch::x86_64::*;
    let quads = src.chunks_exact(4 * CB);
    let rest = quads.remainder();
    let (mut a, mut b) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    for q in quads {
        // SAFETY: each chunk holds 32 floats: two 16-float loads.
        unsafe {
            a = _mm512_add_ps(a, _mm512_loadu_ps(q.as_ptr()));
            b = _mm512_add_ps(b, _mm512_loadu_ps(q.as_ptr().add(16)));
        }
    }
    let v = _mm512_add_ps(a, b);
    let lo = _mm512_castps512_ps256(v);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    let mut sum = [0.0f32; CB];
    // SAFETY: `sum` holds 8 floats.
    unsafe { _mm256_storeu_ps(sum.as_mut_ptr(), _mm256_add_ps(lo, hi)) };
    for (s, r) in sum.iter_mut().zip(plane_sum(rest)) {
        *s += r;
    }
    sum
}

/// One output plane of the 3x3/s2/p1 max pooling on `isa`.
fn maxpool_plane_for(isa: Isa, src: &[f32], dst: &mut [f32], hw: (usize, usize), ohw: (usize, usize)) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx512` is only chosen when the CPU has AVX-512F (isa.rs).
        Isa::Avx512 => unsafe { maxpool_plane_avx512(src, dst, hw, ohw) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2Fma` is only chosen when the CPU has AVX2 (isa.rs).
        Isa::Avx2Fma => unsafe { maxpool_plane_avx2(src, dst, hw, ohw) },
        _ => maxpool_plane(src, dst, hw, ohw),
    }
}

/// An output pixel is the lane-wise max of up to 9 input pixels of 8 channels: one vector
/// max per tap at 8 lanes, so the x86 builds compile this same loop with their features (the
/// stem's pooling is well under 1% of a ResNet-50 pass; a 16-lane variant would have to pair
/// pixels that share no window).
#[inline(always)]
fn maxpool_plane(src: &[f32], dst: &mut [f32], (h, w): (usize, usize), (oh, ow): (usize, usize)) {
    for oy in 0..oh {
        let ys = (2 * oy).saturating_sub(1)..(2 * oy + 2).min(h);
        for ox in 0..ow {
            let xs = (2 * ox).saturating_sub(1)..(2 * ox + 2).min(w);
            let mut m = [f32::NEG_INFINITY; CB];
            for y in ys.clone() {
                for x in xs.clone() {
                    let px = &src[(y * w + x) * CB..][..CB];
                    for (a, &b) in m.iter_mut().zip(px) {
                        *a = a.max(b);
                    }
                }
            }
            dst[(oy * ow + ox) * CB..][..CB].copy_from_slice(&m);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn maxpool_plane_avx2(src: &[f32], dst: &mut [f32], hw: (usize, usize), ohw: (usize, usize)) {
    maxpool_plane(src, dst, hw, ohw)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn maxpool_plane_avx512(src: &[f32], dst: &mut [f32], hw: (usize, usize), ohw: (usize, usize)) {
    maxpool_plane(src, dst, hw, ohw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::available_isas;

    /// Every ISA's pooling loops against the portable ones, at odd plane sizes (the AVX-512 sum
    /// takes four pixels per step and a tail).
    #[test]
    fn pooling_agrees_on_every_isa() {
        for (h, w) in [(1, 1), (1, 3), (2, 3), (7, 7), (5, 9), (56, 56), (112, 111)] {
            let src: Vec<f32> = (0..h * w * CB).map(|i| ((i * 7919 % 211) as f32 - 105.0) / 50.0).collect();
            let (oh, ow) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
            let want_sum = plane_sum(&src);
            let mut want_max = vec![0.0; oh * ow * CB];
            maxpool_plane(&src, &mut want_max, (h, w), (oh, ow));
            for isa in available_isas() {
                let sum = plane_sum_for(isa, &src);
                for (a, b) in sum.iter().zip(&want_sum) {
                    assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{isa} {h}x{w}: {a} vs {b}");
                }
                let mut max = vec![7.0; oh * ow * CB];
                maxpool_plane_for(isa, &src, &mut max, (h, w), (oh, ow));
                assert_eq!(max, want_max, "{isa} {h}x{w}");
            }
        }
    }
}
