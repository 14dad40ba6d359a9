//! Batch compaction for early exit.

use crate::tensor::BlockedTensor;
use crate::KernelError;

/// Copies the images `indices` (in that order) of `input` into `out`; images are contiguous
/// in NCHW8c so each is a single memcpy.
pub fn gather_batch(
    input: &BlockedTensor,
    indices: &[usize],
    out: &mut BlockedTensor,
) -> Result<(), KernelError> {
    let (n, c, h, w) = input.shape();
    if let Some(&index) = indices.iter().find(|&&i| i >= n) {
        return Err(KernelError::IndexOutOfRange { index, batch: n });
    }
    out.resize(indices.len(), c, h, w);
    let len = input.image_len();
    let src = input.as_slice();
    for (dst, &i) in out.as_mut_slice().chunks_exact_mut(len.max(1)).zip(indices) {
        dst.copy_from_slice(&src[i * len..][..len]);
    }
    Ok(())
}
