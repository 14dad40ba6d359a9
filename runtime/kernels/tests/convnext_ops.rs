//! ConvNeXt-V2's operations (depthwise convolution, LayerNorm over channels, GELU, GRN) on
//! every available ISA against naive NCHW references and candle.

mod common;

use candle_core::{Device, Tensor};
use common::*;
use dyce_kernels::{
    available_isas, gelu_inplace, grn_factors, scale_channels, BlockedTensor, LayerNormC, PackedDwConv, Par,
    Team,
};

/// Whether the lanes past `c` of every image's last channel block are zero.
fn padded_lanes_zero(t: &BlockedTensor) -> bool {
    let (n, c, h, w) = t.shape();
    let (cb, plane) = (t.cblocks(), h * w * 8);
    let valid = c - (cb - 1) * 8;
    (0..n).all(|b| {
        t.as_slice()[(b * cb + cb - 1) * plane..][..plane]
            .chunks_exact(8)
            .all(|px| px[valid..].iter().all(|&v| v == 0.0))
    })
}

/// Naive depthwise "same" convolution, NCHW.
fn dw_ref(
    x: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    wt: &[f32],
    bias: &[f32],
    k: usize,
) -> Vec<f32> {
    let p = (k / 2) as isize;
    let mut out = vec![0.0f32; x.len()];
    for b in 0..n {
        for ch in 0..c {
            for y in 0..h as isize {
                for xx in 0..w as isize {
                    let mut acc = f64::from(bias[ch]);
                    for ky in 0..k as isize {
                        for kx in 0..k as isize {
                            let (iy, ix) = (y + ky - p, xx + kx - p);
                            if iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize {
                                let v = x[((b * c + ch) * h + iy as usize) * w + ix as usize];
                                acc += f64::from(v) * f64::from(wt[(ch * k + ky as usize) * k + kx as usize]);
                            }
                        }
                    }
                    out[((b * c + ch) * h + y as usize) * w + xx as usize] = acc as f32;
                }
            }
        }
    }
    out
}

#[test]
fn depthwise_matches_naive_and_candle() {
    let pool = pool();
    let team = Team::new(2).unwrap();
    // (n, c, h, w, k): odd channels leave padded lanes; widths cross the 16- and 8-pixel tiles.
    let cases = [
        (2, 8, 14, 14, 7),
        (1, 13, 9, 23, 7),
        (3, 40, 7, 7, 7),
        (1, 96, 56, 56, 7),
        (2, 5, 1, 3, 3),
        (4, 16, 17, 33, 5),
    ];
    for (i, &(n, c, h, w, k)) in cases.iter().enumerate() {
        let mut r = rng(300 + i as u64);
        let x = rand_vec(&mut r, n * c * h * w);
        let wt = rand_vec(&mut r, c * k * k);
        let bias = rand_vec(&mut r, c);
        let want = dw_ref(&x, (n, c, h, w), &wt, &bias, k);
        if i < 3 {
            let dev = Device::Cpu;
            let xt = Tensor::from_vec(x.clone(), (n, c, h, w), &dev).unwrap();
            let kt = Tensor::from_vec(wt.clone(), (c, 1, k, k), &dev).unwrap();
            let bt = Tensor::from_vec(bias.clone(), (1, c, 1, 1), &dev).unwrap();
            let y = xt.conv2d(&kt, k / 2, 1, 1, c).unwrap().broadcast_add(&bt).unwrap();
            let cand: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
            assert!(rel_err(&want, &cand) < 1e-5, "naive vs candle case {i}");
        }
        let xin = BlockedTensor::from_nchw(&x, n, c, h, w).unwrap();
        for isa in available_isas() {
            let conv = PackedDwConv::with_isa(c, k, &wt, &bias, isa).unwrap();
            for par in [Par::Serial, Par::Rayon(&pool), Par::Team(&team)] {
                let mut out = BlockedTensor::from_nchw(&vec![5.0; 3 * 9 * 4 * 4], 3, 9, 4, 4).unwrap();
                conv.forward_on(&xin, &mut out, par).unwrap();
                let e = rel_err(&out.to_nchw(), &want);
                assert!(e < 1e-5, "{isa} case {i} {par:?}: rel err {e}");
                assert!(padded_lanes_zero(&out), "{isa} case {i}: padded lanes");
            }
        }
    }
    assert!(PackedDwConv::new(4, 4, &[0.0; 64], &[0.0; 4]).is_err(), "even kernel");
    assert!(PackedDwConv::new(4, 3, &[0.0; 35], &[0.0; 4]).is_err(), "short weight");
}

/// Naive per-pixel LayerNorm over channels (f64).
fn ln_ref(x: &[f32], (n, c, h, w): (usize, usize, usize, usize), g: &[f32], b: &[f32], eps: f64) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    for img in 0..n {
        for p in 0..h * w {
            let at = |ch: usize| (img * c + ch) * h * w + p;
            let mean = (0..c).map(|ch| f64::from(x[at(ch)])).sum::<f64>() / c as f64;
            let var = (0..c).map(|ch| (f64::from(x[at(ch)]) - mean).powi(2)).sum::<f64>() / c as f64;
            for ch in 0..c {
                out[at(ch)] = ((f64::from(x[at(ch)]) - mean) / (var + eps).sqrt() * f64::from(g[ch])
                    + f64::from(b[ch])) as f32;
            }
        }
    }
    out
}

#[test]
fn layer_norm_over_channels_matches_naive() {
    let pool = pool();
    for (i, &(n, c, h, w)) in
        [(2, 40, 7, 9), (1, 13, 1, 1), (3, 8, 11, 11), (1, 320, 14, 14), (2, 3, 65, 2)].iter().enumerate()
    {
        let mut r = rng(400 + i as u64);
        // An offset mean, as real activations have: the variance must be taken about it.
        let x: Vec<f32> = rand_vec(&mut r, n * c * h * w).iter().map(|v| v + 3.0).collect();
        let (g, b) = (rand_vec(&mut r, c), rand_vec(&mut r, c));
        let want = ln_ref(&x, (n, c, h, w), &g, &b, 1e-6);
        let xin = BlockedTensor::from_nchw(&x, n, c, h, w).unwrap();
        for isa in available_isas() {
            let ln = LayerNormC::with_isa(c, 1e-6, &g, &b, isa).unwrap();
            let mut out = BlockedTensor::new();
            ln.forward_on(&xin, &mut out, Par::Rayon(&pool)).unwrap();
            let e = rel_err(&out.to_nchw(), &want);
            assert!(e < 1e-5, "{isa} case {i}: rel err {e}");
            assert!(out
                .as_slice()
                .chunks_exact(8)
                .all(|px| px[c.min(8)..].iter().all(|&v| v == 0.0) || c >= 8));
        }
        // Rows (the head's LayerNorm on pooled features) against the same reference.
        let ln = LayerNormC::new(c, 1e-6, &g, &b).unwrap();
        let rows: Vec<f32> =
            (0..h * w).flat_map(|p| (0..c).map(move |ch| (ch, p))).map(|(ch, p)| x[ch * h * w + p]).collect();
        let mut out = Vec::new();
        ln.forward_rows(&rows, &mut out);
        let want_rows: Vec<f32> = (0..h * w)
            .flat_map(|p| (0..c).map(move |ch| (ch, p)))
            .map(|(ch, p)| want[ch * h * w + p])
            .collect();
        assert!(rel_err(&out, &want_rows) < 1e-5);
    }
}

#[test]
fn gelu_matches_candle() {
    let mut r = rng(7);
    let x: Vec<f32> = rand_vec(&mut r, 10_000).iter().map(|v| v * 8.0).collect();
    let want: Vec<f32> =
        Tensor::from_vec(x.clone(), x.len(), &Device::Cpu).unwrap().gelu_erf().unwrap().to_vec1().unwrap();
    for isa in available_isas() {
        let mut y = x.clone();
        gelu_inplace(&mut y, isa);
        let e = rel_err(&y, &want);
        assert!(e < 1e-6, "{isa}: rel err {e}");
    }
}

#[test]
fn grn_matches_naive() {
    let (n, c, h, w) = (3, 20, 5, 6);
    let mut r = rng(9);
    let x = rand_vec(&mut r, n * c * h * w);
    let (g, b) = (rand_vec(&mut r, c), rand_vec(&mut r, c));
    let mut want = vec![0.0f32; x.len()];
    for img in 0..n {
        let norms: Vec<f64> = (0..c)
            .map(|ch| {
                x[(img * c + ch) * h * w..][..h * w].iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt()
            })
            .collect();
        let mean = norms.iter().sum::<f64>() / c as f64;
        for ch in 0..c {
            let nx = norms[ch] / (mean + 1e-6);
            for p in 0..h * w {
                let i = (img * c + ch) * h * w + p;
                let v = f64::from(x[i]);
                want[i] = (v + f64::from(b[ch]) + f64::from(g[ch]) * v * nx) as f32;
            }
        }
    }
    let mut t = BlockedTensor::from_nchw(&x, n, c, h, w).unwrap();
    let mut f = Vec::new();
    grn_factors(&t, &g, 1e-6, &mut f).unwrap();
    scale_channels(&mut t, &f, &b).unwrap();
    assert!(rel_err(&t.to_nchw(), &want) < 1e-5);
    assert!(padded_lanes_zero(&t));
    assert!(grn_factors(&t, &g[1..], 1e-6, &mut f).is_err());
}
