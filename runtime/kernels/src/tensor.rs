//! Activations in the blocked NCHW8c layout.

use crate::KernelError;

/// Channel block width shared by every ISA path (one AVX2 register of f32).
pub const CB: usize = 8;

/// Activation tensor laid out `[n][ceil(c/8)][h][w][8]`; padded channels are always zero.
#[derive(Debug, Clone, Default)]
pub struct BlockedTensor {
    data: Vec<f32>,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
}

/// Number of 8-channel blocks needed for `c` channels.
pub fn blocks(c: usize) -> usize {
    c.div_ceil(CB)
}

impl BlockedTensor {
    /// Empty tensor with no storage; grows on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Zero-filled tensor of the given logical NCHW shape.
    pub fn zeros(n: usize, c: usize, h: usize, w: usize) -> Self {
        let mut t = Self::new();
        t.resize(n, c, h, w);
        t
    }

    /// Converts an NCHW f32 slice into the blocked layout.
    pub fn from_nchw(data: &[f32], n: usize, c: usize, h: usize, w: usize) -> Result<Self, KernelError> {
        let mut t = Self::new();
        t.load_nchw(data, n, c, h, w)?;
        Ok(t)
    }

    /// Overwrites this tensor with NCHW data, reusing its buffer when large enough.
    pub fn load_nchw(
        &mut self,
        data: &[f32],
        n: usize,
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<(), KernelError> {
        if data.len() != n * c * h * w {
            return Err(KernelError::ShapeMismatch {
                context: "BlockedTensor::load_nchw",
                expected: format!("{} values for [{n}, {c}, {h}, {w}]", n * c * h * w),
                got: format!("{} values", data.len()),
            });
        }
        self.resize(n, c, h, w);
        let hw = h * w;
        let cb = blocks(c);
        for b in 0..n {
            for blk in 0..cb {
                let dst = &mut self.data[(b * cb + blk) * hw * CB..][..hw * CB];
                // Padded lanes of the last block must be zero: resize does not clear.
                if (blk + 1) * CB > c {
                    dst.fill(0.0);
                }
                for l in 0..CB.min(c - blk * CB) {
                    let ch = blk * CB + l;
                    let src = &data[(b * c + ch) * hw..][..hw];
                    for (px, &v) in src.iter().enumerate() {
                        dst[px * CB + l] = v;
                    }
                }
            }
        }
        Ok(())
    }

    /// Converts back to a freshly allocated NCHW vector.
    pub fn to_nchw(&self) -> Vec<f32> {
        let mut out = Vec::new();
        self.write_nchw(&mut out);
        out
    }

    /// Writes NCHW data into `out` (resized to fit), avoiding allocation when it has capacity.
    pub fn write_nchw(&self, out: &mut Vec<f32>) {
        let (n, c, h, w) = self.shape();
        let hw = h * w;
        let cb = blocks(c);
        out.clear();
        out.resize(n * c * hw, 0.0);
        for b in 0..n {
            for ch in 0..c {
                let (blk, l) = (ch / CB, ch % CB);
                let src = &self.data[(b * cb + blk) * hw * CB..][..hw * CB];
                let dst = &mut out[(b * c + ch) * hw..][..hw];
                for (px, d) in dst.iter_mut().enumerate() {
                    *d = src[px * CB + l];
                }
            }
        }
    }

    /// Sets the logical shape, reusing capacity; contents are unspecified except padded lanes
    /// which callers (kernels) are responsible for writing as zero.
    pub fn resize(&mut self, n: usize, c: usize, h: usize, w: usize) {
        let len = n * blocks(c) * h * w * CB;
        if self.data.len() < len {
            self.data.resize(len, 0.0);
        }
        // Keep the longer buffer around: shrinking then growing again must not reallocate.
        self.n = n;
        self.c = c;
        self.h = h;
        self.w = w;
    }

    /// Logical shape `(n, c, h, w)`.
    pub fn shape(&self) -> (usize, usize, usize, usize) {
        (self.n, self.c, self.h, self.w)
    }

    /// Batch size.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Logical (unpadded) channel count.
    pub fn c(&self) -> usize {
        self.c
    }

    /// Height.
    pub fn h(&self) -> usize {
        self.h
    }

    /// Width.
    pub fn w(&self) -> usize {
        self.w
    }

    /// Number of 8-channel blocks.
    pub fn cblocks(&self) -> usize {
        blocks(self.c)
    }

    /// Floats per image (`ceil(c/8) * h * w * 8`).
    pub fn image_len(&self) -> usize {
        self.cblocks() * self.h * self.w * CB
    }

    /// Raw blocked data of the current shape.
    pub fn as_slice(&self) -> &[f32] {
        &self.data[..self.n * self.image_len()]
    }

    /// Mutable raw blocked data of the current shape (keep padded lanes zero).
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        let len = self.n * self.image_len();
        &mut self.data[..len]
    }

    /// Allocated capacity in floats (to verify buffer reuse).
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    pub(crate) fn shape_string(&self) -> String {
        format!("[{}, {}, {}, {}]", self.n, self.c, self.h, self.w)
    }
}
