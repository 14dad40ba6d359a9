//! AVX2 + FMA direct-convolution micro-kernel (x86-64 only).

use super::kernel::TileArgs;
use std::arch::x86_64::*;

/// Accumulates `ntiles` register tiles of `NP x NO` over the tap window, each followed by
/// the fused epilogue.
///
/// # Safety
/// AVX2 and FMA must be available and `a` must satisfy the `TileArgs` contract.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn tile<const NP: usize, const NO: usize>(a: &TileArgs) {
    // SAFETY: all pointer arithmetic stays inside the regions the driver validated for these
    // tiles (TileArgs contract); loads/stores are unaligned variants.
    unsafe {
        let zero = _mm256_setzero_ps();
        for t in 0..a.ntiles {
            let inp = a.inp.add(t * a.tile_in_stride);
            let out = a.out.add(t * a.tile_out_stride);
            let mut acc = [[zero; NO]; NP];
            if a.load_acc {
                for (p, accp) in acc.iter_mut().enumerate() {
                    for (o, v) in accp.iter_mut().enumerate() {
                        *v = _mm256_loadu_ps(out.add(o * a.out_ob_stride + p * a.out_px_stride));
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
                            *wv = _mm256_loadu_ps($wp.add(o * a.w_ob_stride + ic * 8));
                        }
                        for (p, accp) in acc.iter_mut().enumerate() {
                            let b = _mm256_broadcast_ss(&*$ip.add(p * a.in_px_stride + ic));
                            for o in 0..NO {
                                accp[o] = _mm256_fmadd_ps(b, w[o], accp[o]);
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
                        let wp = wrow.add(kx * 64);
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
                let bv = _mm256_loadu_ps(a.bias.add(o * 8));
                for (p, accp) in acc.iter().enumerate() {
                    let off = o * a.out_ob_stride + p * a.out_px_stride;
                    let mut v = accp[o];
                    if a.finish {
                        v = _mm256_add_ps(v, bv);
                        if !res.is_null() {
                            v = _mm256_add_ps(v, _mm256_loadu_ps(res.add(off)));
                        }
                        if a.relu {
                            v = _mm256_max_ps(v, zero);
                        }
                    }
                    _mm256_storeu_ps(out.add(off), v);
                }
            }
        }
    }
}
