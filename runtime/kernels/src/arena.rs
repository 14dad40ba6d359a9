//! Reusable activation buffers so steady-state inference allocates nothing.

use crate::tensor::BlockedTensor;

/// Scratch tensors for blocks and stems; each grows to the largest shape seen and is reused.
#[derive(Debug, Default)]
pub struct Arena {
    pub(crate) t1: BlockedTensor,
    pub(crate) t2: BlockedTensor,
    pub(crate) shortcut: BlockedTensor,
    pub(crate) out: BlockedTensor,
    /// Per-plane values (ConvNeXt's GRN sums and factors).
    pub(crate) scratch: Vec<f32>,
}

impl Arena {
    /// Empty arena; buffers are allocated lazily on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Total floats currently reserved (for memory accounting and reuse checks).
    pub fn capacity_floats(&self) -> usize {
        self.t1.capacity()
            + self.t2.capacity()
            + self.shortcut.capacity()
            + self.out.capacity()
            + self.scratch.capacity()
    }

    /// The output buffer of the last `forward` call.
    pub fn output(&self) -> &BlockedTensor {
        &self.out
    }
}
