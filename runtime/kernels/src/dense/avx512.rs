//! AVX-512F: up to `ROWS` samples share each weight load of a 32-output tile.

use super::packed::{walk, Tile, TILE16};
use super::Dims;
use std::arch::x86_64::*;

/// Rows per pass over a tile: `2 × ROWS` accumulators and two weight vectors in 32 zmm (the
/// broadcast is an FMA memory operand).
const ROWS: usize = 12;

/// # Safety
/// AVX-512F must be available; `panels` hold `[k][32]` tiles of `dims`.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn forward(
    panels: std::slice::ChunksExact<'_, f32>,
    bias: &[f32],
    dims: Dims,
    x: &[f32],
    out: &mut [f32],
) {
    walk::<TILE16>(panels, bias, dims, x, out, ROWS, |t, xs, os, r| {
        // SAFETY: AVX-512F checked by the caller's contract; a constant row count per call
        // keeps the accumulators in registers.
        unsafe {
            match r {
                12 => rows::<12>(t, xs, os),
                11 => rows::<11>(t, xs, os),
                10 => rows::<10>(t, xs, os),
                9 => rows::<9>(t, xs, os),
                8 => rows::<8>(t, xs, os),
                7 => rows::<7>(t, xs, os),
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
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn rows<const R: usize>(t: &Tile<'_, TILE16>, x: &[f32], out: &mut [f32]) {
    let inputs = t.dims.inputs;
    debug_assert!(x.len() == R * inputs && t.panel.len() == inputs * TILE16);
    // SAFETY: `x` holds `R × inputs` values and the panel `inputs × 32` (asserted above).
    unsafe {
        let bp = t.bias.as_ptr();
        let mut lo = [_mm512_loadu_ps(bp); R];
        let mut hi = [_mm512_loadu_ps(bp.add(16)); R];
        let (mut w, xp) = (t.panel.as_ptr(), x.as_ptr());
        for k in 0..inputs {
            let (w0, w1) = (_mm512_loadu_ps(w), _mm512_loadu_ps(w.add(16)));
            for r in 0..R {
                let v = _mm512_set1_ps(*xp.add(r * inputs + k));
                lo[r] = _mm512_fmadd_ps(v, w0, lo[r]);
                hi[r] = _mm512_fmadd_ps(v, w1, hi[r]);
            }
            w = w.add(TILE16);
        }
        let zero = _mm512_setzero_ps();
        let mut tmp = [0.0f32; TILE16];
        for r in 0..R {
            let (a, b) = if t.dims.relu {
                (_mm512_max_ps(lo[r], zero), _mm512_max_ps(hi[r], zero))
            } else {
                (lo[r], hi[r])
            };
            _mm512_storeu_ps(tmp.as_mut_ptr(), a);
            _mm512_storeu_ps(tmp.as_mut_ptr().add(16), b);
            t.store(out, r, &tmp);
        }
    }
}
