//! The packed-tile walk shared by the dense kernels, and the AVX-512 packing in plain Rust
//! (`Isa::Portable16`, which tests the 32-output tiles on every machine).

use super::Dims;

/// Outputs per tile of the AVX2 path: two 8-lane vectors per row.
pub(super) const TILE8: usize = 16;
/// Outputs per tile of the AVX-512 path (and `Portable16`): two 16-lane vectors per row.
pub(super) const TILE16: usize = 32;

/// One tile of outputs: its packed weights and where its results go.
pub(super) struct Tile<'a, const T: usize> {
    /// `[k][T]` weights of this tile.
    pub panel: &'a [f32],
    /// Bias of the tile's outputs, zero padded to `T`.
    pub bias: [f32; T],
    pub dims: Dims,
    /// First output of the tile, and how many of its `T` are real.
    pub o0: usize,
    pub width: usize,
}

impl<const T: usize> Tile<'_, T> {
    /// Writes a row's `T` results (the first `width` of them) into its output row.
    pub fn store(&self, out: &mut [f32], row: usize, vals: &[f32; T]) {
        out[row * self.dims.outputs + self.o0..][..self.width].copy_from_slice(&vals[..self.width]);
    }
}

/// Runs every tile of `panels` over the rows of `x`, `rows` rows per pass; `pass(tile, xs,
/// out, r)` computes `r` rows.
pub(super) fn walk<'a, const T: usize>(
    panels: std::slice::ChunksExact<'a, f32>,
    bias: &[f32],
    dims: Dims,
    x: &[f32],
    out: &mut [f32],
    rows: usize,
    mut pass: impl FnMut(&Tile<'a, T>, &[f32], &mut [f32], usize),
) {
    let n = x.len() / dims.inputs.max(1);
    for (t, panel) in panels.enumerate() {
        let o0 = t * T;
        let width = T.min(dims.outputs - o0);
        let mut b = [0.0f32; T];
        b[..width].copy_from_slice(&bias[o0..o0 + width]);
        let tile = Tile { panel, bias: b, dims, o0, width };
        let mut s = 0;
        while s < n {
            let r = rows.min(n - s);
            let xs = &x[s * dims.inputs..(s + r) * dims.inputs];
            pass(&tile, xs, &mut out[s * dims.outputs..(s + r) * dims.outputs], r);
            s += r;
        }
    }
}

/// Plain Rust over the 32-output tiles, a row at a time.
pub(super) fn forward(
    panels: std::slice::ChunksExact<'_, f32>,
    bias: &[f32],
    dims: Dims,
    x: &[f32],
    out: &mut [f32],
) {
    walk::<TILE16>(panels, bias, dims, x, out, 1, |t, xs, os, _| {
        let mut acc = t.bias;
        for (k, w) in t.panel.chunks_exact(TILE16).enumerate() {
            let v = xs[k];
            for (a, &wj) in acc.iter_mut().zip(w) {
                *a += v * wj;
            }
        }
        if t.dims.relu {
            acc.iter_mut().for_each(|a| *a = a.max(0.0));
        }
        t.store(os, 0, &acc);
    });
}
