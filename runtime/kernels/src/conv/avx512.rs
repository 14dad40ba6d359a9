//! AVX-512F direct-convolution micro-kernel (x86-64 only).
//!
//! One zmm holds 16 output channels of one pixel: two neighbouring 8-channel blocks of the
//! NCHW8c output, so activations keep the layout every other ISA uses and only the packed
//! weights are 16 lanes wide. The halves of an accumulator go to two output planes in the
//! epilogue (once per tile, not per tap); the inner loop is one zmm weight load per output
//! vector and one scalar broadcast per pixel, feeding `NP x NO` FMAs.

use super::kernel::TileArgs;
use std::arch::x86_64::*;

/// The 16 lanes of vector `o` at pixel offset `off`: low half from block `2o`, high half from
/// block `2o + 1` (zero when `half`: that block does not exist).
#[inline(always)]
unsafe fn load16(base: *const f32, ob_stride: usize, o: usize, off: usize, half: bool) -> __m512 {
    // SAFETY: the caller passes offsets inside the output/residual region of this tile.
    unsafe {
        let lo = _mm512_zextps256_ps512(_mm256_loadu_ps(base.add(2 * o * ob_stride + off)));
        if half {
            return lo;
        }
        let hi = _mm256_loadu_ps(base.add((2 * o + 1) * ob_stride + off));
        _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(lo), _mm256_castps_pd(hi)))
    }
}

/// Stores vector `o` at pixel offset `off` into its one or two 8-channel planes.
#[inline(always)]
unsafe fn store16(base: *mut f32, ob_stride: usize, o: usize, off: usize, half: bool, v: __m512) {
    // SAFETY: as for `load16`; this tile owns these output pixels.
    unsafe {
        _mm256_storeu_ps(base.add(2 * o * ob_stride + off), _mm512_castps512_ps256(v));
        if !half {
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            _mm256_storeu_ps(base.add((2 * o + 1) * ob_stride + off), hi);
        }
    }
}

/// Accumulates `ntiles` register tiles of `NP` pixels x `NO` zmm over the tap window, each
/// followed by the fused epilogue.
///
/// # Safety
/// AVX-512F must be available and `a` must satisfy the `TileArgs` contract for 16 lanes.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn tile<const NP: usize, const NO: usize>(a: &TileArgs) {
    // SAFETY: all pointer arithmetic stays inside the regions the driver validated for these
    // tiles (TileArgs contract); loads/stores are unaligned variants.
    unsafe {
        let zero = _mm512_setzero_ps();
        let half = |o: usize| a.half_last && o + 1 == NO;
        for t in 0..a.ntiles {
            let inp = a.inp.add(t * a.tile_in_stride);
            let out = a.out.add(t * a.tile_out_stride);
            let mut acc = [[zero; NO]; NP];
            if a.load_acc {
                for (p, accp) in acc.iter_mut().enumerate() {
                    for (o, v) in accp.iter_mut().enumerate() {
                        *v = load16(out, a.out_ob_stride, o, p * a.out_px_stride, half(o));
                    }
                }
            }
            // One tap = NO weight vectors times NP broadcast input scalars; the `$icn` bound
            // is a literal 8 for full blocks so LLVM fully unrolls the common case.
            macro_rules! taps {
                ($ip:expr, $wp:expr, $icn:expr) => {
                    for ic in 0..$icn {
                        let mut w = [zero; NO];
                        for (o, wv) in w.iter_mut().enumerate() {
                            *wv = _mm512_loadu_ps($wp.add(o * a.w_ob_stride + ic * 16));
                        }
                        for (p, accp) in acc.iter_mut().enumerate() {
                            let b = _mm512_set1_ps(*$ip.add(p * a.in_px_stride + ic));
                            for o in 0..NO {
                                accp[o] = _mm512_fmadd_ps(b, w[o], accp[o]);
                            }
                        }
                    }
                };
            }
            for ib in 0..a.cinb {
                let icn = if ib + 1 < a.cinb { 8 } else { a.cin_last };
                let ibase = inp.add(ib * a.in_ib_stride);
                let wbase = a.wts.add(ib * a.w_ib_stride);
                for ky in 0..a.nky {
                    let irow = ibase.add(ky * a.in_row);
                    let wrow = wbase.add(ky * a.w_row);
                    for kx in 0..a.nkx {
                        let ip = irow.add(kx * 8);
                        let wp = wrow.add(kx * 128);
                        // Literal bounds for full blocks and the RGB / grey stems.
                        match icn {
                            8 => taps!(ip, wp, 8),
                            3 => taps!(ip, wp, 3),
                            1 => taps!(ip, wp, 1),
                            _ => taps!(ip, wp, icn),
                        }
                    }
                }
            }
            let res = if a.res.is_null() { a.res } else { a.res.add(t * a.tile_out_stride) };
            for o in 0..NO {
                let bv = _mm512_loadu_ps(a.bias.add(o * 16));
                for (p, accp) in acc.iter().enumerate() {
                    let off = p * a.out_px_stride;
                    let mut v = accp[o];
                    if a.finish {
                        v = _mm512_add_ps(v, bv);
                        if !res.is_null() {
                            v = _mm512_add_ps(v, load16(res, a.out_ob_stride, o, off, half(o)));
                        }
                        if a.relu {
                            v = _mm512_max_ps(v, zero);
                        }
                    }
                    store16(out, a.out_ob_stride, o, off, half(o), v);
                }
            }
        }
    }
}
