//! Micro-kernel contract and ISA dispatch.
//!
//! A tile is `NP` equally spaced output pixels (along a row, or down a column
//! for the left/right border columns) times `NO` output-channel blocks of 8.
//! All pixels of a tile share the same valid (ky, kx) window, so the kernels
//! never test bounds per tap: the driver tiles interior pixels with the full
//! window and border rows/columns with a clipped one.

use crate::Isa;

/// Widest pixel tile; `MAX_NP * 2` accumulators plus 2 weights and 1 broadcast fit 16 ymm.
pub(crate) const MAX_NP: usize = 6;

/// Pointers and strides describing one tile. All offsets are in f32 elements.
#[derive(Clone, Copy)]
pub(crate) struct TileArgs {
    /// Input at (input block 0, first valid tap row, first valid tap column of pixel 0).
    pub inp: *const f32,
    /// Distance between input channel blocks (`ih * iw * 8`).
    pub in_ib_stride: usize,
    /// Distance between input rows (`iw * 8`).
    pub in_row: usize,
    /// Distance between the input windows of neighbouring tile pixels (`stride * 8` along a
    /// row, `stride * iw * 8` down a column).
    pub in_px_stride: usize,
    /// Number of input channel blocks.
    pub cinb: usize,
    /// Valid channels in the last input block (1..=8); lets cin=1/3 stems skip zero lanes.
    pub cin_last: usize,
    /// Packed weights at (output block 0 of the tile, input block 0, first valid tap).
    pub wts: *const f32,
    /// Distance between input blocks in packed weights (`kh * kw * 64`).
    pub w_ib_stride: usize,
    /// Distance between kernel rows in packed weights (`kw * 64`).
    pub w_row: usize,
    /// Distance between output blocks in packed weights (`cinb * kh * kw * 64`).
    pub w_ob_stride: usize,
    /// Valid kernel rows.
    pub nky: usize,
    /// Valid kernel columns.
    pub nkx: usize,
    /// Bias of output block 0 of the tile (8 values per block, contiguous).
    pub bias: *const f32,
    /// Output at (output block 0, first pixel of the tile).
    pub out: *mut f32,
    /// Distance between the tile's output pixels: 8 along a row, `ow * 8` down a column.
    pub out_px_stride: usize,
    /// Distance between output channel blocks (`oh * ow * 8`).
    pub out_ob_stride: usize,
    /// Residual with the same offsets as `out`, or null.
    pub res: *const f32,
    /// Apply ReLU after bias and residual.
    pub relu: bool,
    /// Number of identical tiles run back to back (amortises the call and setup).
    pub ntiles: usize,
    /// Input distance between consecutive tiles.
    pub tile_in_stride: usize,
    /// Output (and residual) distance between consecutive tiles.
    pub tile_out_stride: usize,
    /// Start from the partial sums in `out` (later input-channel chunks) instead of zero.
    pub load_acc: bool,
    /// Last input-channel chunk: apply bias/residual/ReLU; otherwise store raw partial sums.
    pub finish: bool,
}

/// Runs one tile of `np` pixels (1..=MAX_NP) and `no` output blocks (1..=2).
///
/// # Safety
/// Every pointer in `a` must be valid for the reads/writes its strides and
/// counts imply, and `isa` must be available on this CPU.
pub(crate) unsafe fn run_tile(isa: Isa, np: usize, no: usize, a: &TileArgs) {
    macro_rules! dispatch {
        ($m:ident) => {
            match (np, no) {
                (1, 1) => super::$m::tile::<1, 1>(a),
                (2, 1) => super::$m::tile::<2, 1>(a),
                (3, 1) => super::$m::tile::<3, 1>(a),
                (4, 1) => super::$m::tile::<4, 1>(a),
                (5, 1) => super::$m::tile::<5, 1>(a),
                (6, 1) => super::$m::tile::<6, 1>(a),
                (1, 2) => super::$m::tile::<1, 2>(a),
                (2, 2) => super::$m::tile::<2, 2>(a),
                (3, 2) => super::$m::tile::<3, 2>(a),
                (4, 2) => super::$m::tile::<4, 2>(a),
                (5, 2) => super::$m::tile::<5, 2>(a),
                (6, 2) => super::$m::tile::<6, 2>(a),
                _ => debug_assert!(false, "tile {np}x{no} out of range"),
            }
        };
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: caller guarantees pointer validity and that AVX2+FMA is available.
        Isa::Avx2Fma => unsafe { dispatch!(avx2) },
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2Fma => unreachable!("AVX2 is never reported available off x86-64"),
        // SAFETY: caller guarantees pointer validity.
        Isa::Portable => unsafe { dispatch!(portable) },
    }
}
