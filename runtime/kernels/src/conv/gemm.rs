//! 1x1 convolutions (any stride, no padding) as a packed GEMM:
//! `out[pixels x cout] = in[pixels x cin] * W[cin x cout]`.
//!
//! Pixels of the whole batch form the M dimension, so small late-stage planes (7x7, 14x14)
//! still give long M panels that reuse each weight panel across images. For every
//! (M chunk, K chunk) the input pixels are gathered (and subsampled, for strided
//! convolutions) into a contiguous per-thread panel laid out `[tile][ib][np][8]`; the
//! direct-convolution micro-kernel then streams it linearly instead of reading `cinb`
//! channel planes whose equal strides alias in L1. A K chunk of weights for one output
//! group (`kc x 16` floats for AVX2, `kc x 32` for AVX-512) stays in L1 over all tiles of
//! the chunk.

use super::kernel::{run_tile, Geometry, TileArgs};
use super::PackedConv;
use crate::par::{Par, SharedMut};
use crate::tensor::{BlockedTensor, CB};
use std::cell::RefCell;

/// Bytes of one output group's weights per K chunk: the panel stays in L1 (32 input blocks for
/// AVX2's 16-channel groups, 16 for AVX-512's 32-channel ones).
const KC_BYTES: usize = 16 * 1024;
/// Bytes of packed input per M chunk (lives in L2 while every output block pair sweeps it).
const MC_BYTES: usize = 96 * 1024;
/// M chunk bounds in pixels.
const MC_MIN: usize = 48;
const MC_MAX: usize = 384;

thread_local! {
    /// Per-thread packed input panel.
    static PANEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Geometry shared by all tasks.
struct Gemm<'a> {
    conv: &'a PackedConv,
    g: Geometry,
    inp: &'a [f32],
    res: Option<&'a [f32]>,
    out: SharedMut,
    relu: bool,
    /// Pixels per image (output plane) and the output width (for strided gathers).
    hw: usize,
    ow: usize,
    iw: usize,
    ihw: usize,
    stride: usize,
    cinb: usize,
    cin_last: usize,
    coutb: usize,
    /// Input blocks per K chunk and number of K chunks (balanced).
    nk: usize,
}

/// Splits `len` into `parts` balanced ranges; returns range `i`.
fn balanced(len: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    let (base, extra) = (len / parts, len % parts);
    let start = i * base + i.min(extra);
    start..start + base + usize::from(i < extra)
}

pub(super) fn run(
    conv: &PackedConv,
    input: &BlockedTensor,
    residual: Option<&BlockedTensor>,
    relu: bool,
    out: &mut BlockedTensor,
    par: Par,
    imgs: std::ops::Range<usize>,
) {
    let s = conv.spec;
    let (_, _, oh, ow) = out.shape();
    let n = imgs.len();
    let hw = oh * ow;
    let cinb = input.cblocks();
    let geo = Geometry::of(conv.isa);
    let kc_blocks = (KC_BYTES / (CB * geo.max_no * geo.lanes * 4)).max(1);
    let nk = cinb.div_ceil(kc_blocks);
    let kc_max = cinb.div_ceil(nk);
    let g = Gemm {
        conv,
        g: geo,
        inp: input.as_slice(),
        res: residual.map(|r| r.as_slice()),
        out: SharedMut(out.as_mut_slice().as_mut_ptr()),
        relu,
        hw,
        ow,
        iw: input.w(),
        ihw: input.h() * input.w(),
        stride: s.stride,
        cinb,
        cin_last: s.cin - (cinb - 1) * CB,
        coutb: out.cblocks(),
        nk,
    };
    let m = n * hw;
    let mc = (MC_BYTES / (kc_max * CB * 4)).clamp(MC_MIN, MC_MAX);
    let threads = par.threads();
    let mut nm = m.div_ceil(mc);
    let ngroups = g.coutb.div_ceil(geo.group_blocks());
    // Few M chunks: split the output block pairs too so every thread gets work.
    let want = 2 * threads;
    let mut ngc = if nm >= want { 1 } else { want.div_ceil(nm).min(ngroups) };
    let macs = m * s.cin * s.cout;
    let serial = threads == 1 || macs < par.serial_macs();
    if serial {
        ngc = 1;
    } else if nm < threads && ngc < threads {
        // Tiny M and few output blocks: split M finer instead.
        nm = m.div_ceil(geo.max_np_for(geo.vectors(0, g.coutb).0)).min(want);
    }
    let ntasks = nm * ngc;
    let task = |t: usize| {
        let (mi, gi) = (t / ngc, t % ngc);
        let px = balanced(m, nm, mi);
        let base = imgs.start * hw;
        g.task(base + px.start..base + px.end, balanced(ngroups, ngc, gi));
    };
    if !serial && ntasks > 1 {
        par.for_each(ntasks, task);
    } else {
        (0..ntasks).for_each(task);
    }
}

impl Gemm<'_> {
    /// Computes batch pixels `pixels` (flattened over images) for output groups `groups`.
    fn task(&self, pixels: std::ops::Range<usize>, groups: std::ops::Range<usize>) {
        PANEL.with(|cell| match cell.try_borrow_mut() {
            Ok(mut panel) => self.task_with(&mut panel, pixels, groups),
            // Only reachable if a task re-entered the pool; stay correct with a fresh buffer.
            Err(_) => self.task_with(&mut Vec::new(), pixels, groups),
        });
    }

    fn task_with(
        &self,
        panel: &mut Vec<f32>,
        pixels: std::ops::Range<usize>,
        groups: std::ops::Range<usize>,
    ) {
        for ch in 0..self.nk {
            let kr = balanced(self.cinb, self.nk, ch);
            let kcb = kr.len();
            let need = pixels.len() * kcb * CB;
            if panel.len() < need {
                panel.resize(need, 0.0);
            }
            self.pack(panel, pixels.clone(), kr.clone());
            let (first, last) = (ch == 0, ch + 1 == self.nk);
            for grp in groups.clone() {
                self.sweep(panel, pixels.clone(), kr.clone(), grp, first, last);
            }
        }
    }

    /// Image segments of a flattened pixel range: `(image, local pixel range, panel offset)`.
    fn segments(
        &self,
        pixels: std::ops::Range<usize>,
    ) -> impl Iterator<Item = (usize, std::ops::Range<usize>, usize)> + '_ {
        let hw = self.hw;
        let first = pixels.start / hw;
        let last = pixels.end.div_ceil(hw);
        (first..last).map(move |img| {
            let lo = pixels.start.max(img * hw);
            let hi = pixels.end.min((img + 1) * hw);
            (img, lo - img * hw..hi - img * hw, lo - pixels.start)
        })
    }

    /// Tile widths for a segment: `[(np, count)]`, balanced so no tile is much narrower.
    fn tile_classes(&self, len: usize) -> [(usize, usize); 2] {
        // One tiling for every group (the panel is packed once): that of the first group.
        let nt = len.div_ceil(self.g.max_np_for(self.g.vectors(0, self.coutb).0));
        let (base, extra) = (len / nt, len % nt);
        [(base + 1, extra), (base, nt - extra)]
    }

    /// Gathers input blocks `kr` of `pixels` into `panel` as `[tile][ib][np][8]`.
    fn pack(&self, panel: &mut [f32], pixels: std::ops::Range<usize>, kr: std::ops::Range<usize>) {
        let kcb = kr.len();
        for (img, seg, off) in self.segments(pixels) {
            let mut px = seg.start;
            let mut dst0 = off * kcb * CB;
            for (np, count) in self.tile_classes(seg.len()) {
                if np == 0 {
                    continue;
                }
                for _ in 0..count {
                    for (j, ib) in kr.clone().enumerate() {
                        let plane = &self.inp[(img * self.cinb + ib) * self.ihw * CB..][..self.ihw * CB];
                        let dst = &mut panel[dst0 + j * np * CB..][..np * CB];
                        if self.stride == 1 {
                            dst.copy_from_slice(&plane[px * CB..][..np * CB]);
                        } else {
                            for (p, d) in dst.chunks_exact_mut(CB).enumerate() {
                                let (oy, ox) = ((px + p) / self.ow, (px + p) % self.ow);
                                let src = (oy * self.iw + ox) * self.stride * CB;
                                d.copy_from_slice(&plane[src..][..CB]);
                            }
                        }
                    }
                    px += np;
                    dst0 += np * kcb * CB;
                }
            }
        }
    }

    /// Runs the micro-kernel over every tile of the packed panel for output group `grp`.
    fn sweep(
        &self,
        panel: &[f32],
        pixels: std::ops::Range<usize>,
        kr: std::ops::Range<usize>,
        grp: usize,
        first: bool,
        last: bool,
    ) {
        let (wts, bias) = self.conv.packed();
        let kcb = kr.len();
        let lanes = self.g.lanes;
        let ob = grp * self.g.group_blocks();
        let (no, half_last) = self.g.vectors(ob, self.coutb);
        let w_ob_stride = self.cinb * CB * lanes;
        let plane = self.hw * CB;
        let out_img = self.coutb * plane;
        for (img, seg, off) in self.segments(pixels) {
            let mut px = seg.start;
            let mut a_off = off * kcb * CB;
            for (np, count) in self.tile_classes(seg.len()) {
                if np == 0 || count == 0 {
                    continue;
                }
                let o_off = img * out_img + ob * plane + px * CB;
                let w_off = ob / self.g.blocks_per_vec() * w_ob_stride + kr.start * CB * lanes;
                debug_assert!(a_off + count * np * kcb * CB <= panel.len());
                let args = TileArgs {
                    inp: panel[a_off..].as_ptr(),
                    in_ib_stride: np * CB,
                    in_row: 0,
                    in_px_stride: CB,
                    cinb: kcb,
                    cin_last: if last { self.cin_last } else { CB },
                    wts: wts[w_off..].as_ptr(),
                    w_ib_stride: CB * lanes,
                    w_row: CB * lanes,
                    w_ob_stride,
                    nky: 1,
                    nkx: 1,
                    bias: bias[ob * CB..].as_ptr(),
                    half_last,
                    // SAFETY: `o_off` addresses pixel `px` of block `ob` of image `img`,
                    // all in range; the tiles cover pixels this task owns.
                    out: unsafe { self.out.get().add(o_off) },
                    out_px_stride: CB,
                    out_ob_stride: plane,
                    res: self.res.map_or(std::ptr::null(), |r| r[o_off..].as_ptr()),
                    relu: self.relu,
                    ntiles: count,
                    tile_in_stride: np * kcb * CB,
                    tile_out_stride: np * CB,
                    load_acc: !first,
                    finish: last,
                };
                // SAFETY: the panel holds `count` tiles of `np x kcb x 8` floats from `a_off`;
                // weights cover `kcb` blocks of `no` output blocks; the `count * np` output
                // pixels of `no` blocks lie inside this image and belong to this task.
                unsafe { run_tile(self.conv.isa, np, no, &args) };
                px += np * count;
                a_off += count * np * kcb * CB;
            }
        }
    }
}
