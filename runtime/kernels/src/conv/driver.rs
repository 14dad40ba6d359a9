//! Work decomposition: batch x output-channel groups x output rows over a [`Par`].

use super::kernel::{run_tile, Geometry, TileArgs};
use super::PackedConv;
use crate::par::{Par, SharedMut};
use crate::tensor::{BlockedTensor, CB};

/// Weight bytes one task should stream per row; keeps a task's weights L2-resident.
const WEIGHT_BUDGET_BYTES: usize = 192 * 1024;
/// Weight bytes of one output-block pair above which the input channels are split into K
/// chunks, and the size each chunk aims for (about half of a 32 KiB L1d).
const K_SPLIT_BYTES: usize = 48 * 1024;
const K_CHUNK_BYTES: usize = 16 * 1024;

/// Input blocks per K chunk: all of them when a group's weights are small, else enough to
/// fill `K_CHUNK_BYTES` so each chunk's weights stay in L1 across all tiles of a task.
fn k_chunk(cinb: usize, taps: usize, g: Geometry) -> usize {
    let per_block = taps * CB * g.max_no * g.lanes * 4;
    if cinb * per_block <= K_SPLIT_BYTES {
        cinb
    } else {
        (K_CHUNK_BYTES / per_block).clamp(1, cinb)
    }
}

/// Bytes of packed weights of one output group (`max_no` vectors) over `cinb` input blocks.
fn group_bytes(cinb: usize, s: &super::ConvSpec, g: Geometry) -> usize {
    cinb * s.kh * s.kw * CB * g.max_no * g.lanes * 4
}

/// Band height for band-major order when one band of input rows is bigger than a group's
/// weights (small cin, many output channels), else 0 (group-major).
fn band_rows(cinb: usize, s: &super::ConvSpec, iw: usize, ow: usize, ngroups: usize, g: Geometry) -> usize {
    let group_bytes = group_bytes(cinb, s, g);
    // Narrow images keep max_np-row bands so border columns still form wide column tiles.
    // (Bands only matter with several groups, whose first is full: `max_np` wide.)
    let band = if ow > 16 { 1 } else { g.max_np };
    let row_px = iw * (s.kh + (band - 1) * s.stride) / band;
    let band_input_bytes = row_px * band * cinb * CB * 4;
    if ngroups > 1 && band_input_bytes > group_bytes {
        band
    } else {
        0
    }
}

/// Per-call geometry resolved once.
struct Plan {
    g: Geometry,
    ih: usize,
    iw: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    plane: usize,
    /// Interior output columns `[x_lo, x_hi)` whose window needs no clipping.
    x_lo: usize,
    x_hi: usize,
    /// Rows `[y_lo, y_hi)` whose window needs no vertical clipping.
    y_lo: usize,
    y_hi: usize,
    cinb: usize,
    cin_last: usize,
    /// Input blocks per K chunk (`cinb` when the weights of a group fit L1 anyway).
    kc: usize,
    /// Rows per band for band-major order, or 0 for group-major (see the task loop).
    band: usize,
    coutb: usize,
    in_img: usize,
    out_img: usize,
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
    if s.kh == 1 && s.kw == 1 && s.pad == 0 {
        // Pointwise (also strided): packed GEMM over the batch's pixels.
        super::gemm::run(conv, input, residual, relu, out, par, imgs);
        return;
    }
    run_strided(conv, input, residual, relu, out, par, imgs);
}

/// Direct convolution (3x3, 7x7, padded 1x1) of `input` with the packed weights.
fn run_strided(
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
    let (n, img0) = (imgs.len(), imgs.start);
    let (ih, iw) = (input.h(), input.w());
    let vrows = oh;
    // ox is interior when ox*s >= pad and ox*s - pad + kw <= iw.
    let x_lo = s.pad.div_ceil(s.stride).min(ow);
    let x_hi = if iw + s.pad >= s.kw { ((iw + s.pad - s.kw) / s.stride + 1).min(ow) } else { 0 }.max(x_lo);
    let y_lo = s.pad.div_ceil(s.stride).min(oh);
    let y_hi = if ih + s.pad >= s.kh { ((ih + s.pad - s.kh) / s.stride + 1).min(oh) } else { 0 }.max(y_lo);
    let g = Geometry::of(conv.isa);
    let ngroups = out.cblocks().div_ceil(g.group_blocks());
    let plan = Plan {
        g,
        ih,
        iw,
        ow,
        kh: s.kh,
        kw: s.kw,
        stride: s.stride,
        pad: s.pad,
        plane: oh * ow * CB,
        x_lo,
        x_hi,
        y_lo,
        y_hi,
        cinb: input.cblocks(),
        cin_last: s.cin - (input.cblocks() - 1) * CB,
        kc: k_chunk(input.cblocks(), s.kh * s.kw, g),
        band: band_rows(input.cblocks(), &s, iw, ow, ngroups, g),
        coutb: out.cblocks(),
        in_img: input.image_len(),
        out_img: out.image_len(),
    };

    // Output blocks are processed in groups (one tile's vectors); a chunk of groups shares one
    // task.
    let gpc = (WEIGHT_BUDGET_BYTES / group_bytes(plan.cinb, &s, g)).clamp(1, ngroups);
    let nobc = ngroups.div_ceil(gpc);
    let threads = par.threads();
    let units = n * nobc * vrows;
    let rpc = (units / (threads * par.tasks_per_thread())).clamp(1, vrows);
    let nrc = vrows.div_ceil(rpc);
    let ntasks = nobc * n * nrc;

    let (wts, bias) = conv.packed();
    let inp = input.as_slice();
    let res = residual.map(|r| r.as_slice());
    let outp = SharedMut(out.as_mut_slice().as_mut_ptr());
    let isa = conv.isa;
    let task = |t: usize| {
        // Channel chunk is the slowest index so neighbouring tasks (same thread under
        // rayon's range splitting) reuse the same weights across images.
        let (obc, rest) = (t / (n * nrc), t % (n * nrc));
        let (img, rc) = (img0 + rest / nrc, rest % nrc);
        let groups = obc * gpc..((obc + 1) * gpc).min(ngroups);
        let rows = rc * rpc..((rc + 1) * rpc).min(vrows);
        let ctx = Ctx {
            p: &plan,
            isa,
            inp: &inp[img * plan.in_img..][..plan.in_img],
            wts,
            res: res.map(|r| &r[img * plan.out_img..][..plan.out_img]),
            // SAFETY: `img * out_img` is inside the output (img < n); this task only writes
            // rows `rows` of blocks `groups` of image `img`, which no other task touches.
            out: unsafe { outp.get().add(img * plan.out_img) },
        };
        let nch = plan.cinb.div_ceil(plan.kc);
        let run_chunks = |g: usize, band: std::ops::Range<usize>| {
            let mut kb0 = 0;
            for ch in 0..nch {
                let kb1 = kb0 + plan.cinb / nch + usize::from(ch < plan.cinb % nch);
                let chunk = Ctx {
                    inp: &ctx.inp[kb0 * plan.ih * plan.iw * CB..],
                    wts: &ctx.wts[kb0 * plan.kh * plan.kw * CB * plan.g.lanes..],
                    ..ctx
                };
                let k = KChunk { blocks: kb1 - kb0, first: ch == 0, last: ch + 1 == nch };
                chunk.rows(g, bias, relu, band.clone(), k);
                kb0 = kb1;
            }
        };
        if plan.band == 0 {
            // Group-major: one group's (chunk of) weights stays hot in L1 over all rows.
            for g in groups {
                run_chunks(g, rows.clone());
            }
        } else {
            // Band-major: a few input rows stay hot in L1 while every group sweeps them
            // (weights are small here, so re-reading them from L2 is cheap).
            let mut r0 = rows.start;
            while r0 < rows.end {
                let band = r0..(r0 + plan.band).min(rows.end);
                for g in groups.clone() {
                    run_chunks(g, band.clone());
                }
                r0 = band.end;
            }
        }
    };
    // Tiny convolutions finish faster than a cross-thread hand-off.
    let macs = n * oh * ow * s.cin * s.cout * s.kh * s.kw;
    if ntasks > 1 && threads > 1 && macs >= par.serial_macs() {
        par.for_each(ntasks, task);
    } else {
        (0..ntasks).for_each(task);
    }
}

/// Input-channel blocks handled by one pass over the output (K-blocking).
struct KChunk {
    blocks: usize,
    first: bool,
    last: bool,
}

/// Per-task view of one image (inputs and weights offset to the current input chunk).
#[derive(Clone, Copy)]
struct Ctx<'a> {
    p: &'a Plan,
    isa: crate::Isa,
    inp: &'a [f32],
    wts: &'a [f32],
    res: Option<&'a [f32]>,
    out: *mut f32,
}

impl Ctx<'_> {
    /// Computes virtual output rows `rows` for output group `grp`.
    fn rows(&self, grp: usize, bias: &[f32], relu: bool, rows: std::ops::Range<usize>, k: KChunk) {
        let p = self.p;
        let lanes = p.g.lanes;
        let ob = grp * p.g.group_blocks();
        let (no, half_last) = p.g.vectors(ob, p.coutb);
        let w_ob_stride = p.cinb * p.kh * p.kw * CB * lanes;
        let mut args = TileArgs {
            inp: self.inp.as_ptr(),
            in_ib_stride: p.ih * p.iw * CB,
            in_row: p.iw * CB,
            in_px_stride: p.stride * CB,
            cinb: k.blocks,
            cin_last: if k.last { p.cin_last } else { CB },
            wts: self.wts.as_ptr(),
            w_ib_stride: p.kh * p.kw * CB * lanes,
            w_row: p.kw * CB * lanes,
            w_ob_stride,
            nky: p.kh,
            nkx: p.kw,
            bias: bias[ob * CB..].as_ptr(),
            half_last,
            out: self.out,
            out_px_stride: CB,
            out_ob_stride: p.plane,
            res: std::ptr::null(),
            relu,
            ntiles: 1,
            tile_in_stride: 0,
            tile_out_stride: 0,
            load_acc: !k.first,
            finish: k.last,
        };
        let w_base = ob / p.g.blocks_per_vec() * w_ob_stride;
        let o_base = ob * p.plane;
        let taps = CB * lanes;
        // Rows whose kernel window is not clipped vertically: their border pixels are done
        // below as column tiles (wide tiles instead of latency-bound single pixels).
        let full_rows = p.y_lo.max(rows.start)..p.y_hi.min(rows.end).max(p.y_lo.max(rows.start));
        for oy in rows {
            // Clip the kernel rows to the input once per row.
            let top = oy * p.stride;
            let ky0 = p.pad.saturating_sub(top);
            let ky1 = (p.ih + p.pad).saturating_sub(top).min(p.kh);
            args.nky = ky1.saturating_sub(ky0);
            // A window entirely in the padding reads nothing; point it at offset 0.
            let iy0 = if args.nky == 0 { 0 } else { top + ky0 - p.pad };
            let w_row_base = w_base + if args.nky == 0 { 0 } else { ky0 * p.kw * taps };
            let out_row = o_base + oy * p.ow * CB;
            args.nkx = p.kw;
            let interior = |ox: usize| {
                let ix = ox * p.stride - p.pad;
                ((iy0 * p.iw + ix) * CB, w_row_base, out_row + ox * CB)
            };
            self.tiles(&mut args, no, p.x_lo..p.x_hi, interior);
            if full_rows.contains(&oy) {
                continue;
            }
            for ox in (0..p.x_lo).chain(p.x_hi..p.ow) {
                let (kx0, nkx) = p.clip_x(ox);
                let mut a = args;
                a.nkx = nkx;
                let in_off =
                    if nkx == 0 || a.nky == 0 { 0 } else { (iy0 * p.iw + ox * p.stride + kx0 - p.pad) * CB };
                let w_off = w_row_base + if nkx == 0 { 0 } else { kx0 * taps };
                self.launch(&mut a, 1, no, in_off, w_off, out_row + ox * CB);
            }
        }
        if full_rows.is_empty() {
            return;
        }
        args.nky = p.kh;
        args.in_px_stride = p.stride * p.iw * CB;
        args.out_px_stride = p.ow * CB;
        for ox in (0..p.x_lo).chain(p.x_hi..p.ow) {
            let (kx0, nkx) = p.clip_x(ox);
            args.nkx = nkx;
            let column = |oy: usize| {
                let iy = oy * p.stride - p.pad;
                let in_off = if nkx == 0 { 0 } else { (iy * p.iw + ox * p.stride + kx0 - p.pad) * CB };
                let w_off = w_base + if nkx == 0 { 0 } else { kx0 * taps };
                (in_off, w_off, o_base + (oy * p.ow + ox) * CB)
            };
            self.tiles(&mut args, no, full_rows.clone(), column);
        }
    }

    /// Splits `span` into balanced tiles of at most `max_np` pixels (so no tile is much
    /// narrower than the others) and runs them with the window currently in `args`.
    fn tiles(
        &self,
        args: &mut TileArgs,
        no: usize,
        span: std::ops::Range<usize>,
        offsets: impl Fn(usize) -> (usize, usize, usize),
    ) {
        let len = span.len();
        if len == 0 {
            return;
        }
        let nt = len.div_ceil(self.p.g.max_np_for(no));
        let (base, extra) = (len / nt, len % nt);
        // Tiles of equal width are affine in position, so each width is one kernel call.
        let mut i = span.start;
        for (np, count) in [(base + 1, extra), (base, nt - extra)] {
            if count == 0 || np == 0 {
                continue;
            }
            let (in_off, w_off, out_off) = offsets(i);
            let mut a = *args;
            if count > 1 {
                let (in_next, _, out_next) = offsets(i + np);
                a.ntiles = count;
                a.tile_in_stride = in_next - in_off;
                a.tile_out_stride = out_next - out_off;
            }
            self.launch(&mut a, np, no, in_off, w_off, out_off);
            i += np * count;
        }
    }

    fn launch(&self, a: &mut TileArgs, np: usize, no: usize, in_off: usize, w_off: usize, out_off: usize) {
        debug_assert!(in_off + (a.ntiles - 1) * a.tile_in_stride <= self.inp.len());
        debug_assert!(w_off < self.wts.len());
        a.inp = self.inp[in_off..].as_ptr();
        a.wts = self.wts[w_off..].as_ptr();
        a.res = self.res.map_or(std::ptr::null(), |r| r[out_off..].as_ptr());
        // SAFETY: `out_off` addresses a pixel of this image's output; the driver computed it
        // from in-range (row, column) coordinates.
        a.out = unsafe { self.out.add(out_off) };
        // SAFETY: the offsets above were derived from clipped windows, so every tap the
        // kernel reads lies inside `inp`/`wts`, and the NP x NO stores land in this task's
        // region; the ISA was validated when the PackedConv was built.
        unsafe { run_tile(self.isa, np, no, a) };
    }
}

impl Plan {
    /// First valid kernel column and count of valid columns for border output column `ox`.
    fn clip_x(&self, ox: usize) -> (usize, usize) {
        let left = ox * self.stride;
        let kx0 = self.pad.saturating_sub(left);
        let kx1 = (self.iw + self.pad).saturating_sub(left).min(self.kw);
        (kx0, kx1.saturating_sub(kx0))
    }
}
