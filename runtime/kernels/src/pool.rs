//! Pooling over the blocked layout.

use crate::par::{Par, SharedMut};
use crate::tensor::{BlockedTensor, CB};
use crate::KernelError;

/// 3x3 max pooling, stride 2, padding 1 (ResNet ImageNet stem); padding never wins the max.
pub fn maxpool_3x3_s2_p1(
    input: &BlockedTensor,
    out: &mut BlockedTensor,
    pool: &rayon::ThreadPool,
) -> Result<(), KernelError> {
    maxpool_on(input, out, Par::Rayon(pool))
}

/// [`maxpool_3x3_s2_p1`] on `par`'s threads.
pub(crate) fn maxpool_on(
    input: &BlockedTensor,
    out: &mut BlockedTensor,
    par: Par,
) -> Result<(), KernelError> {
    let (n, c, h, w) = input.shape();
    if h == 0 || w == 0 {
        return Err(KernelError::InvalidSpec(format!(
            "maxpool on empty spatial shape {}",
            input.shape_string()
        )));
    }
    let (oh, ow) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    out.resize(n, c, oh, ow);
    let (ip, op) = (h * w * CB, oh * ow * CB);
    let inp = input.as_slice();
    let planes = out.as_slice().len() / op;
    let outp = SharedMut(out.as_mut_slice().as_mut_ptr());
    // One task per output plane (image, channel block); planes are contiguous and disjoint.
    let plane = |i: usize| {
        let src = &inp[i * ip..][..ip];
        // SAFETY: plane `i` is inside the output (i < n * blocks) and only this task writes it.
        let dst = unsafe { std::slice::from_raw_parts_mut(outp.get().add(i * op), op) };
        for oy in 0..oh {
            let ys = (2 * oy).saturating_sub(1)..(2 * oy + 2).min(h);
            for ox in 0..ow {
                let xs = (2 * ox).saturating_sub(1)..(2 * ox + 2).min(w);
                let mut m = [f32::NEG_INFINITY; CB];
                for y in ys.clone() {
                    for x in xs.clone() {
                        let px = &src[(y * w + x) * CB..][..CB];
                        for (a, &b) in m.iter_mut().zip(px) {
                            *a = a.max(b);
                        }
                    }
                }
                dst[(oy * ow + ox) * CB..][..CB].copy_from_slice(&m);
            }
        }
    };
    par.for_each(planes, plane);
    Ok(())
}

/// Global average pooling to an `[n][c]` row-major vector (unpadded channels).
pub fn global_avg_pool(input: &BlockedTensor) -> Vec<f32> {
    let mut out = Vec::new();
    global_avg_pool_into(input, &mut out);
    out
}

/// Global average pooling into `out` (resized to `n * c`), reusing its allocation.
pub fn global_avg_pool_into(input: &BlockedTensor, out: &mut Vec<f32>) {
    let (n, c, h, w) = input.shape();
    let cb = input.cblocks();
    let hw = h * w;
    out.clear();
    out.resize(n * c, 0.0);
    let inv = if hw == 0 { 0.0 } else { 1.0 / hw as f32 };
    let data = input.as_slice();
    for b in 0..n {
        for blk in 0..cb {
            let src = &data[(b * cb + blk) * hw * CB..][..hw * CB];
            let mut sum = [0.0f32; CB];
            for px in src.chunks_exact(CB) {
                for (s, &v) in sum.iter_mut().zip(px) {
                    *s += v;
                }
            }
            for l in 0..CB.min(c - blk * CB) {
                out[b * c + blk * CB + l] = sum[l] * inv;
            }
        }
    }
}
