//! Portable direct-convolution micro-kernel: plain Rust shaped for auto-vectorisation, at
//! 8 lanes (the AVX2 layout) or 16 lanes (the AVX-512 layout, [`lanes16`]).

use super::kernel::TileArgs;
use crate::tensor::CB;

/// Same contract and loop nest as the AVX2 kernel, with `[f32; 8]` lanes as accumulators.
///
/// # Safety
/// `a` must satisfy the `TileArgs` contract for 8 lanes.
pub(crate) unsafe fn tile<const NP: usize, const NO: usize>(a: &TileArgs) {
    // SAFETY: forwarded contract.
    unsafe { tile_lanes::<NP, NO, 8>(a) }
}

/// The AVX-512 layout in plain Rust: what `Isa::Portable16` runs.
pub(crate) mod lanes16 {
    use super::TileArgs;

    /// Same contract and loop nest as the AVX-512 kernel, with `[f32; 16]` accumulators.
    ///
    /// # Safety
    /// `a` must satisfy the `TileArgs` contract for 16 lanes.
    pub(crate) unsafe fn tile<const NP: usize, const NO: usize>(a: &TileArgs) {
        // SAFETY: forwarded contract.
        unsafe { super::tile_lanes::<NP, NO, 16>(a) }
    }
}

/// Pointer to 8-channel block `j` of vector `o` (vector `o` covers blocks `o*L/8 ..`).
#[inline(always)]
fn block_off<const L: usize>(a: &TileArgs, o: usize, j: usize, px_off: usize) -> usize {
    (o * (L / CB) + j) * a.out_ob_stride + px_off
}

/// Whether block `j` of vector `o` exists (the last vector may hold one block of two).
#[inline(always)]
fn block_exists<const NO: usize>(a: &TileArgs, o: usize, j: usize) -> bool {
    !(a.half_last && o + 1 == NO && j > 0)
}

/// # Safety
/// `a` must satisfy the `TileArgs` contract for `L` lanes.
unsafe fn tile_lanes<const NP: usize, const NO: usize, const L: usize>(a: &TileArgs) {
    // SAFETY: all pointer arithmetic stays inside the regions the driver validated for these
    // tiles (TileArgs contract); `[f32; 8]` has f32 alignment so plain reads are aligned.
    unsafe {
        for t in 0..a.ntiles {
            let inp = a.inp.add(t * a.tile_in_stride);
            let out = a.out.add(t * a.tile_out_stride);
            let mut acc = [[[0.0f32; L]; NO]; NP];
            if a.load_acc {
                for (p, accp) in acc.iter_mut().enumerate() {
                    for (o, v) in accp.iter_mut().enumerate() {
                        for j in 0..L / CB {
                            if block_exists::<NO>(a, o, j) {
                                let src = out.add(block_off::<L>(a, o, j, p * a.out_px_stride));
                                v[j * CB..][..CB].copy_from_slice(&*(src as *const [f32; CB]));
                            }
                        }
                    }
                }
            }
            for ib in 0..a.cinb {
                let icn = if ib + 1 == a.cinb { a.cin_last } else { CB };
                let ibase = inp.add(ib * a.in_ib_stride);
                let wbase = a.wts.add(ib * a.w_ib_stride);
                for ky in 0..a.nky {
                    let irow = ibase.add(ky * a.in_row);
                    let wrow = wbase.add(ky * a.w_row);
                    for kx in 0..a.nkx {
                        let ip = irow.add(kx * CB);
                        let wp = wrow.add(kx * CB * L);
                        for ic in 0..icn {
                            let mut w = [[0.0f32; L]; NO];
                            for (o, wv) in w.iter_mut().enumerate() {
                                *wv = *(wp.add(o * a.w_ob_stride + ic * L) as *const [f32; L]);
                            }
                            for (p, accp) in acc.iter_mut().enumerate() {
                                let b = *ip.add(p * a.in_px_stride + ic);
                                for (acco, wv) in accp.iter_mut().zip(&w) {
                                    for (x, &wl) in acco.iter_mut().zip(wv) {
                                        *x += b * wl;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            let res = if a.res.is_null() { a.res } else { a.res.add(t * a.tile_out_stride) };
            for o in 0..NO {
                let bias = *(a.bias.add(o * L) as *const [f32; L]);
                for (p, accp) in acc.iter().enumerate() {
                    let mut v = accp[o];
                    if a.finish {
                        for l in 0..L {
                            v[l] += bias[l];
                        }
                    }
                    for j in 0..L / CB {
                        if !block_exists::<NO>(a, o, j) {
                            continue;
                        }
                        let off = block_off::<L>(a, o, j, p * a.out_px_stride);
                        let mut blk = [0.0f32; CB];
                        blk.copy_from_slice(&v[j * CB..][..CB]);
                        if a.finish {
                            if !res.is_null() {
                                let r = *(res.add(off) as *const [f32; CB]);
                                for l in 0..CB {
                                    blk[l] += r[l];
                                }
                            }
                            if a.relu {
                                for x in &mut blk {
                                    *x = x.max(0.0);
                                }
                            }
                        }
                        *(out.add(off) as *mut [f32; CB]) = blk;
                    }
                }
            }
        }
    }
}
