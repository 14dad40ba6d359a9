//! Micro-kernel contract and ISA dispatch.
//!
//! A tile is `NP` equally spaced output pixels (along a row, or down a column
//! for the left/right border columns) times `NO` output-channel vectors of
//! [`Isa::lanes`] channels (one or two 8-channel blocks of the NCHW8c output).
//! All pixels of a tile share the same valid (ky, kx) window, so the kernels
//! never test bounds per tap: the driver tiles interior pixels with the full
//! window and border rows/columns with a clipped one.

use crate::Isa;

/// Register tile of one ISA: the driver's work decomposition is written against this, so the
/// 16-lane layout is exercised by `Portable16` on every machine.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    /// Output channels per vector (8 or 16).
    pub lanes: usize,
    /// Widest pixel tile.
    pub max_np: usize,
    /// Widest pixel tile when a tile has a single output vector (a 16-channel layer at 16
    /// lanes): more pixels keep enough independent FMAs in flight.
    pub max_np_single: usize,
    /// Output vectors per tile (a "group" of output channels is `max_no * lanes`).
    pub max_no: usize,
}

impl Geometry {
    /// AVX2: `6 x 2` accumulators plus 2 weights and 1 broadcast fit 16 ymm. AVX-512: `8 x 2`
    /// zmm accumulators, each 16 output channels wide, so a tile does 2.7 times the AVX2 tile's
    /// work per input broadcast. Wider tiles (`12 x 2`, 24 of the 32 zmm) measured 2-3 times
    /// slower: LLVM spilled accumulators to the stack after every FMA.
    pub(crate) fn of(isa: Isa) -> Self {
        match isa {
            Isa::Avx2Fma | Isa::Portable => Geometry { lanes: 8, max_np: 6, max_np_single: 6, max_no: 2 },
            Isa::Avx512 | Isa::Portable16 => Geometry { lanes: 16, max_np: 8, max_np_single: 14, max_no: 2 },
        }
    }

    /// Widest pixel tile for a tile of `no` output vectors.
    pub(crate) fn max_np_for(self, no: usize) -> usize {
        if no == 1 {
            self.max_np_single
        } else {
            self.max_np
        }
    }

    /// 8-channel blocks per vector.
    pub(crate) fn blocks_per_vec(self) -> usize {
        self.lanes / crate::tensor::CB
    }

    /// 8-channel output blocks per group (the output channels one tile covers).
    pub(crate) fn group_blocks(self) -> usize {
        self.max_no * self.blocks_per_vec()
    }

    /// For a group starting at output block `ob` of `coutb`: vectors to run and whether the
    /// last of them holds only one valid 8-channel block (16 lanes, odd block count).
    pub(crate) fn vectors(self, ob: usize, coutb: usize) -> (usize, bool) {
        let nb = (coutb - ob).min(self.group_blocks());
        let bpv = self.blocks_per_vec();
        (nb.div_ceil(bpv), !nb.is_multiple_of(bpv))
    }
}

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
    /// Packed weights at (output vector 0 of the tile, input block 0, first valid tap).
    pub wts: *const f32,
    /// Distance between input blocks in packed weights (`kh * kw * 8 * lanes`).
    pub w_ib_stride: usize,
    /// Distance between kernel rows in packed weights (`kw * 8 * lanes`).
    pub w_row: usize,
    /// Distance between output vectors in packed weights (`cinb * kh * kw * 8 * lanes`).
    pub w_ob_stride: usize,
    /// Valid kernel rows.
    pub nky: usize,
    /// Valid kernel columns.
    pub nkx: usize,
    /// Bias of output block 0 of the tile (8 values per block, contiguous).
    pub bias: *const f32,
    /// 16 lanes only: the tile's last vector has one valid 8-channel block; the other half
    /// (zero weights and bias) is neither loaded nor stored, as that block does not exist.
    pub half_last: bool,
    /// Output at (output block 0, first pixel of the tile).
    pub out: *mut f32,
    /// Distance between the tile's output pixels: 8 along a row, `ow * 8` down a column.
    pub out_px_stride: usize,
    /// Distance between output channel blocks of 8 (`oh * ow * 8`); a 16-lane vector spans
    /// blocks `2o` and `2o + 1`.
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

/// Runs one tile of `np` pixels (1..=the ISA's `max_np`) and `no` output vectors
/// (1..=`max_no`).
///
/// # Safety
/// Every pointer in `a` must be valid for the reads/writes its strides and
/// counts imply, and `isa` must be available on this CPU.
pub(crate) unsafe fn run_tile(isa: Isa, np: usize, no: usize, a: &TileArgs) {
    // One monomorphised kernel per (NP, NO): constant trip counts keep the accumulators in
    // registers.
    macro_rules! dispatch {
        ($m:ident; $($np:literal)*; $($np1:literal)*) => {
            match (np, no) {
                $(($np, 2) => super::$m::tile::<$np, 2>(a),)*
                $(($np1, 1) => super::$m::tile::<$np1, 1>(a),)*
                _ => debug_assert!(false, "tile {np}x{no} out of range"),
            }
        };
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: caller guarantees pointer validity and that AVX2+FMA is available.
        Isa::Avx2Fma => unsafe { dispatch!(avx2; 1 2 3 4 5 6; 1 2 3 4 5 6) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: caller guarantees pointer validity and that AVX-512F is available.
        Isa::Avx512 => unsafe { dispatch!(avx512; 1 2 3 4 5 6 7 8; 1 2 3 4 5 6 7 8 9 10 11 12 13 14) },
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2Fma | Isa::Avx512 => unreachable!("x86 ISAs are never reported available off x86-64"),
        // SAFETY: caller guarantees pointer validity.
        Isa::Portable => unsafe { dispatch!(portable; 1 2 3 4 5 6; 1 2 3 4 5 6) },
        // SAFETY: caller guarantees pointer validity.
        Isa::Portable16 => unsafe {
            dispatch!(portable16; 1 2 3 4 5 6 7 8; 1 2 3 4 5 6 7 8 9 10 11 12 13 14)
        },
    }
}
