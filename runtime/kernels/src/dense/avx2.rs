//! AVX2: up to `ROWS` samples share each weight load of a 16-output tile.

use super::packed::{walk, Tile, TILE8};
use super::Dims;
use std::arch::x86_64::*;

/// Rows per pass over a tile: `2 × ROWS` accumulators, two weight vectors and a broadcast fill
/// the 16 AVX2 registers.
const ROWS: usize = 6;

/// # Safety
/// AVX2 and FMA must be available; `panels` hold `[k][16]` tiles of `dims`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn forward(
    panels: std::slice::ChunksExact<'_, f32>,
    bias: &[f32],
    dims: Dims,
    x: &[f32],
    out: &mut [f32],
) {
    walk::<TILE8>(panels, bias, dims, x, out, ROWS, |t, xs, os, r| {
        // SAFETY: AVX2+FMA checked by the caller's contract; a constant row count per call
        // keeps the accumulators in registers.
        unsafe {
            match r {
                6 => rows::<6>(t, xs, os),
                5 => rows::<5>(t, xs, os),
                4 => rows::<4>(t, xs, os),
                3 => rows::<3>(t, xs, os),
                2 => rows::<2>(t, xs, os),
                _ => rows::<1>(t, xs, os),
            }
        }
    });
}

/// `R` rows (`x`: `R × inputs`) through one tile, into `out` (`R × outputs`).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn rows<const R: usize>(t: &Tile<'_, TILE8>, x: &[f32], out: &mut [f32]) {
    let inputs = t.dims.inputs;
    debug_assert!(x.len() == R * inputs && t.panel.len() == inputs * TILE8);
    // SAFETY: `x` holds `R × inputs` values and the panel `inputs × 16` (asserted above).
    unsafe {
        let bp = t.bias.as_ptr();
        let mut lo = [_mm256_loadu_ps(bp); R];
        let mut hi = [_mm256_loadu_ps(bp.add(8)); R];
        let (mut w, xp) = (t.panel.as_ptr(), x.as_ptr());
        for k in 0..inputs {
            let (w0, w1) = (_mm256_loadu_ps(w), _mm256_loadu_ps(w.add(8)));
            for r in 0..R {
                let v = _mm256_broadcast_ss(&*xp.add(r * inputs + k));
                lo[r] = _mm256_fmadd_ps(v, w0, lo[r]);
                hi[r] = _mm256_fmadd_ps(v, w1, hi[r]);
            }
            w = w.add(TILE8);
        }
        let zero = _mm256_setzero_ps();
        let mut tmp = [0.0f32; TILE8];
        for r in 0..R {
            let (a, b) = if t.dims.relu {
                (_mm256_max_ps(lo[r], zero), _mm256_max_ps(hi[r], zero))
            } else {
                (lo[r], hi[r])
            };
            _mm256_storeu_ps(tmp.as_mut_ptr(), a);
            _mm256_storeu_ps(tmp.as_mut_ptr().add(8), b);
            t.store(out, r, &tmp);
        }
    }
}
