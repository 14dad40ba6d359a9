//! Naive NCHW references shared by the integration tests.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Deterministic RNG per test.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Uniform values in [-1, 1).
pub fn rand_vec(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Two-thread pool mirroring the target machine.
pub fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
}

/// Naive convolution, NCHW/OIHW, with bias, optional residual and ReLU.
#[allow(clippy::too_many_arguments)]
pub fn conv_ref(
    x: &[f32],
    (n, cin, h, w): (usize, usize, usize, usize),
    wt: &[f32],
    bias: &[f32],
    (cout, k, stride, pad): (usize, usize, usize, usize),
    residual: Option<&[f32]>,
    relu: bool,
) -> (Vec<f32>, (usize, usize, usize, usize)) {
    let oh = (h + 2 * pad - k) / stride + 1;
    let ow = (w + 2 * pad - k) / stride + 1;
    let mut out = vec![0.0f32; n * cout * oh * ow];
    for b in 0..n {
        for o in 0..cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0.0f64;
                    for i in 0..cin {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * stride + ky) as isize - pad as isize;
                                let ix = (ox * stride + kx) as isize - pad as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xv = x[((b * cin + i) * h + iy as usize) * w + ix as usize];
                                acc += (xv * wt[((o * cin + i) * k + ky) * k + kx]) as f64;
                            }
                        }
                    }
                    let idx = ((b * cout + o) * oh + oy) * ow + ox;
                    let mut v = acc as f32 + bias[o];
                    if let Some(r) = residual {
                        v += r[idx];
                    }
                    out[idx] = if relu { v.max(0.0) } else { v };
                }
            }
        }
    }
    (out, (n, cout, oh, ow))
}

/// Naive 3x3/s2/p1 max pooling.
pub fn maxpool_ref(
    x: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
) -> (Vec<f32>, (usize, usize, usize, usize)) {
    let (oh, ow) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    let mut out = vec![f32::NEG_INFINITY; n * c * oh * ow];
    for p in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let o = &mut out[(p * oh + oy) * ow + ox];
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (iy, ix) = ((2 * oy + ky) as isize - 1, (2 * ox + kx) as isize - 1);
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            *o = o.max(x[(p * h + iy as usize) * w + ix as usize]);
                        }
                    }
                }
            }
        }
    }
    (out, (n, c, oh, ow))
}

/// Naive global average pooling to [n][c].
pub fn gap_ref(x: &[f32], (n, c, h, w): (usize, usize, usize, usize)) -> Vec<f32> {
    (0..n * c).map(|p| x[p * h * w..][..h * w].iter().sum::<f32>() / (h * w) as f32).collect()
}

/// max|a-b| / max(max|b|, 1e-6): the relative error measure all tests use.
pub fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let diff = got.iter().zip(want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}
