//! Training ops whose backward pass is fast on CPU: NHWC convolution as im2col + matmul, a
//! fused training-mode batch norm (+ ReLU), and ConvNeXt's depthwise convolution, LayerNorm and
//! GRN.
//!
//! candle's CPU `conv2d` backward runs `conv_transpose2d` (a naive loop) for the input gradient
//! and a `conv2d` with the output gradient as kernel for the weight gradient; both are orders of
//! magnitude slower than the forward. Here a convolution is a custom im2col op (whose backward is
//! the matching col2im) followed by candle's multi-threaded `matmul`, so every gradient is either
//! a GEMM or a memory-bound scatter. Batch norm computes batch statistics and its gradient in
//! two passes over the activation instead of a dozen broadcast ops.

use candle_core::{bail, CpuStorage, Layout, Result, Storage, Tensor};

mod bn;
mod conv;
mod dw;
mod ln;
#[cfg(test)]
mod tests;

pub use bn::{add_relu, batch_norm_train, BnStats};
pub use conv::{conv2d_nhwc, conv_bn_train, BN_EPS};
pub use dw::depthwise_nhwc;
pub use ln::{grn_nhwc, layer_norm_last};

/// Keeps freed heap memory in the process (glibc): training allocates and frees the same
/// tens-of-megabyte activation buffers every step, and glibc would otherwise serve each from a
/// fresh `mmap` that the kernel must zero page by page (≈40% of the step time). Call once
/// before training.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_MAX: i32 = -4;
        const M_ARENA_MAX: i32 = -8;
        // SAFETY: `mallopt` only changes glibc allocator tunables and is thread-safe; it does
        // not touch memory owned by Rust.
        unsafe {
            mallopt(M_MMAP_MAX, 0);
            // Per-thread arenas (64 MiB heaps) cannot hold these buffers and churn as well.
            mallopt(M_ARENA_MAX, 1);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}

/// The contiguous f32 data of a CPU storage.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { bail!("fastops: f32 tensors only") };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("fastops: contiguous tensors only"),
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    let Storage::Cpu(s) = &*s else { bail!("fastops: CPU tensors only") };
    f(f32_slice(s, l)?)
}

/// Sums per-chunk partial gradients in chunk order: a fixed order, so the result (and a resumed
/// run) does not depend on how the threads took the chunks.
fn sum_in_order<'a>(parts: impl IntoIterator<Item = &'a [f32]>, len: usize) -> Vec<f32> {
    let mut sum = vec![0f32; len];
    for p in parts {
        sum.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    sum
}
