//! Portable direct-convolution micro-kernel: plain Rust shaped for auto-vectorisation.

use super::kernel::TileArgs;

/// Same contract and loop nest as the AVX2 kernel, with `[f32; 8]` lanes as accumulators.
///
/// # Safety
/// `a` must satisfy the `TileArgs` contract.
pub(crate) unsafe fn tile<const NP: usize, const NO: usize>(a: &TileArgs) {
    // SAFETY: all pointer arithmetic stays inside the regions the driver validated for these
    // tiles (TileArgs contract); `[f32; 8]` has f32 alignment so plain reads are aligned.
    unsafe {
        for t in 0..a.ntiles {
            let inp = a.inp.add(t * a.tile_in_stride);
            let out = a.out.add(t * a.tile_out_stride);
            let mut acc = [[[0.0f32; 8]; NO]; NP];
            if a.load_acc {
                for (p, accp) in acc.iter_mut().enumerate() {
                    for (o, v) in accp.iter_mut().enumerate() {
                        *v = *(out.add(o * a.out_ob_stride + p * a.out_px_stride) as *const [f32; 8]);
                    }
                }
            }
            for ib in 0..a.cinb {
                let icn = if ib + 1 == a.cinb { a.cin_last } else { 8 };
                let ibase = inp.add(ib * a.in_ib_stride);
                let wbase = a.wts.add(ib * a.w_ib_stride);
                for ky in 0..a.nky {
                    let irow = ibase.add(ky * a.in_row);
                    let wrow = wbase.add(ky * a.w_row);
                    for kx in 0..a.nkx {
                        let ip = irow.add(kx * 8);
                        let wp = wrow.add(kx * 64);
                        for ic in 0..icn {
                            let mut w = [[0.0f32; 8]; NO];
                            for (o, wv) in w.iter_mut().enumerate() {
                                *wv = *(wp.add(o * a.w_ob_stride + ic * 8) as *const [f32; 8]);
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
                let bias = *(a.bias.add(o * 8) as *const [f32; 8]);
                for (p, accp) in acc.iter().enumerate() {
                    let off = o * a.out_ob_stride + p * a.out_px_stride;
                    let mut v = accp[o];
                    if a.finish {
                        for l in 0..8 {
                            v[l] += bias[l];
                        }
                        if !res.is_null() {
                            let r = *(res.add(off) as *const [f32; 8]);
                            for l in 0..8 {
                                v[l] += r[l];
                            }
                        }
                        if a.relu {
                            for x in &mut v {
                                *x = x.max(0.0);
                            }
                        }
                    }
                    *(out.add(off) as *mut [f32; 8]) = v;
                }
            }
        }
    }
}
