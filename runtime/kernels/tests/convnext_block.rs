//! ConvNeXt-V2's stem and block composed from the kernels, on every available ISA and every
//! way of running a loop, against candle computing the same block operation by operation.

mod common;

use candle_core::{Device, Tensor};
use common::*;
use dyce_kernels::{
    available_isas, Arena, BlockedTensor, ConvNextBlock, ConvNextStem, ConvSpec, Grn, Isa, LayerNormC,
    PackedConv, PackedDwConv, Par, Team,
};

const EPS: f32 = 1e-6;

/// A downsample's input channels, LayerNorm weight and bias, convolution weight and bias.
type Downsample = (usize, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

/// Weights of one block (`c` channels, downsample from `cin` when given).
struct Weights {
    c: usize,
    ds: Option<Downsample>,
    dw: (Vec<f32>, Vec<f32>),
    norm: (Vec<f32>, Vec<f32>),
    fc1: (Vec<f32>, Vec<f32>),
    grn: (Vec<f32>, Vec<f32>),
    fc2: (Vec<f32>, Vec<f32>),
}

fn weights(c: usize, cin: Option<usize>, seed: u64) -> Weights {
    let mut r = rng(seed);
    let mut v =
        |n: usize, scale: f32, off: f32| rand_vec(&mut r, n).iter().map(|x| x * scale + off).collect();
    let h = 4 * c;
    Weights {
        c,
        ds: cin.map(|ci| (ci, v(ci, 0.4, 1.0), v(ci, 0.1, 0.0), v(c * ci * 4, 0.5, 0.0), v(c, 0.1, 0.0))),
        dw: (v(c * 49, 0.3, 0.0), v(c, 0.1, 0.0)),
        norm: (v(c, 0.4, 1.0), v(c, 0.1, 0.0)),
        fc1: (v(h * c, 0.5, 0.0), v(h, 0.1, 0.0)),
        grn: (v(h, 0.5, 0.0), v(h, 0.1, 0.0)),
        fc2: (v(c * h, 0.3, 0.0), v(c, 0.1, 0.0)),
    }
}

fn block(w: &Weights, isa: Isa) -> ConvNextBlock {
    let c = w.c;
    let pw = |cin: usize, cout: usize, (wt, b): &(Vec<f32>, Vec<f32>)| {
        let spec = ConvSpec { cin, cout, kh: 1, kw: 1, stride: 1, pad: 0 };
        PackedConv::with_isa(spec, wt, b, isa).unwrap()
    };
    let ds = w.ds.as_ref().map(|(ci, g, b, wt, bias)| {
        let spec = ConvSpec { cin: *ci, cout: c, kh: 2, kw: 2, stride: 2, pad: 0 };
        (
            LayerNormC::with_isa(*ci, EPS, g, b, isa).unwrap(),
            PackedConv::with_isa(spec, wt, bias, isa).unwrap(),
        )
    });
    ConvNextBlock::new(
        ds,
        PackedDwConv::with_isa(c, 7, &w.dw.0, &w.dw.1, isa).unwrap(),
        LayerNormC::with_isa(c, EPS, &w.norm.0, &w.norm.1, isa).unwrap(),
        pw(c, 4 * c, &w.fc1),
        Grn { gamma: w.grn.0.clone(), beta: w.grn.1.clone(), eps: EPS },
        pw(4 * c, c, &w.fc2),
    )
    .unwrap()
}

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
}

fn ln_ref(x: &Tensor, g: &[f32], b: &[f32]) -> Tensor {
    let c = g.len();
    let centred = x.broadcast_sub(&x.mean_keepdim(1).unwrap()).unwrap();
    let var = centred.sqr().unwrap().mean_keepdim(1).unwrap();
    let y = centred.broadcast_div(&(var + f64::from(EPS)).unwrap().sqrt().unwrap()).unwrap();
    y.broadcast_mul(&t(g, &[1, c, 1, 1])).unwrap().broadcast_add(&t(b, &[1, c, 1, 1])).unwrap()
}

fn conv_ref(
    x: &Tensor,
    w: &[f32],
    b: &[f32],
    shape: [usize; 4],
    stride: usize,
    pad: usize,
    groups: usize,
) -> Tensor {
    let y = x.conv2d(&t(w, &shape), pad, stride, 1, groups).unwrap();
    y.broadcast_add(&t(b, &[1, shape[0], 1, 1])).unwrap()
}

fn block_ref(w: &Weights, x: &Tensor) -> Tensor {
    let c = w.c;
    let x = match &w.ds {
        Some((ci, g, b, wt, bias)) => conv_ref(&ln_ref(x, g, b), wt, bias, [c, *ci, 2, 2], 2, 0, 1),
        None => x.clone(),
    };
    let y = ln_ref(&conv_ref(&x, &w.dw.0, &w.dw.1, [c, 1, 7, 7], 1, 3, c), &w.norm.0, &w.norm.1);
    let y = conv_ref(&y, &w.fc1.0, &w.fc1.1, [4 * c, c, 1, 1], 1, 0, 1).gelu_erf().unwrap();
    let gx = y.sqr().unwrap().sum_keepdim((2, 3)).unwrap().sqrt().unwrap();
    let nx = gx.broadcast_div(&(gx.mean_keepdim(1).unwrap() + f64::from(EPS)).unwrap()).unwrap();
    let g = t(&w.grn.0, &[1, 4 * c, 1, 1]);
    let y = (y.broadcast_mul(&nx).unwrap().broadcast_mul(&g).unwrap() + &y).unwrap();
    let y = y.broadcast_add(&t(&w.grn.1, &[1, 4 * c, 1, 1])).unwrap();
    (conv_ref(&y, &w.fc2.0, &w.fc2.1, [c, 4 * c, 1, 1], 1, 0, 1) + x).unwrap()
}

#[test]
fn block_matches_candle_on_every_isa() {
    let pool = pool();
    let team = Team::new(2).unwrap();
    // (n, c, downsample from, h, w): channels off the 8- and 16-lane blocks, odd sizes (the
    // 2×2/2 downsample drops the last row and column), a 1×1 map, a batch of 9.
    let cases =
        [(2, 12, None, 9, 11), (3, 20, Some(13), 15, 13), (1, 40, Some(24), 2, 3), (9, 8, None, 5, 5)];
    for (i, &(n, c, cin, h, wd)) in cases.iter().enumerate() {
        let w = weights(c, cin, 50 + i as u64);
        let cx = cin.unwrap_or(c);
        let x = rand_vec(&mut rng(70 + i as u64), n * cx * h * wd);
        let want: Vec<f32> = block_ref(&w, &t(&x, &[n, cx, h, wd])).flatten_all().unwrap().to_vec1().unwrap();
        for isa in available_isas() {
            let b = block(&w, isa);
            for par in [Par::Serial, Par::Rayon(&pool), Par::Team(&team)] {
                let mut arena = Arena::new();
                // Twice on one arena: reused buffers must not leak the last run's values.
                for _ in 0..2 {
                    let mut xt = BlockedTensor::from_nchw(&x, n, cx, h, wd).unwrap();
                    b.forward_par_inplace(&mut xt, &mut arena, par).unwrap();
                    let e = rel_err(&xt.to_nchw(), &want);
                    assert!(e < 1e-4, "{isa} case {i} {par:?}: rel err {e}");
                }
            }
        }
    }
}

#[test]
fn stem_matches_candle_on_every_isa() {
    let (n, cin, c, h, wd, p) = (3, 3, 20, 17, 18, 4);
    let mut r = rng(90);
    let (wt, bias, g, b) =
        (rand_vec(&mut r, c * cin * p * p), rand_vec(&mut r, c), rand_vec(&mut r, c), rand_vec(&mut r, c));
    let x = rand_vec(&mut r, n * cin * h * wd);
    let want = ln_ref(&conv_ref(&t(&x, &[n, cin, h, wd]), &wt, &bias, [c, cin, p, p], p, 0, 1), &g, &b);
    let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
    for isa in available_isas() {
        let spec = ConvSpec { cin, cout: c, kh: p, kw: p, stride: p, pad: 0 };
        let stem = ConvNextStem::new(
            PackedConv::with_isa(spec, &wt, &bias, isa).unwrap(),
            LayerNormC::with_isa(c, EPS, &g, &b, isa).unwrap(),
        )
        .unwrap();
        let mut xt = BlockedTensor::from_nchw(&x, n, cin, h, wd).unwrap();
        stem.forward_par_inplace(&mut xt, &mut Arena::new(), Par::Rayon(&pool())).unwrap();
        assert_eq!(xt.shape(), (n, c, 4, 4));
        let e = rel_err(&xt.to_nchw(), &want);
        assert!(e < 1e-4, "{isa}: rel err {e}");
    }
}

#[test]
fn mismatched_parts_are_refused() {
    let w = weights(8, None, 1);
    let isa = Isa::Portable;
    let ok = block(&w, isa);
    let _ = ok.macs(1, 7, 7);
    let spec = ConvSpec { cin: 8, cout: 32, kh: 1, kw: 1, stride: 1, pad: 0 };
    let e = ConvNextBlock::new(
        None,
        PackedDwConv::with_isa(8, 7, &w.dw.0, &w.dw.1, isa).unwrap(),
        LayerNormC::with_isa(8, EPS, &w.norm.0, &w.norm.1, isa).unwrap(),
        PackedConv::with_isa(spec, &w.fc1.0, &w.fc1.1, isa).unwrap(),
        Grn { gamma: w.grn.0[1..].to_vec(), beta: w.grn.1.clone(), eps: EPS },
        PackedConv::with_isa(ConvSpec { cin: 32, cout: 8, ..spec }, &w.fc2.0, &w.fc2.1, isa).unwrap(),
    );
    assert!(e.is_err(), "a GRN of the wrong width");
}
