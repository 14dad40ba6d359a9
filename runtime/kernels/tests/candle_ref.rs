//! Cross-check against candle's conv2d so the naive reference itself is validated.

mod common;

use candle_core::{Device, Tensor};
use common::*;
use dyce_kernels::{available_isas, BlockedTensor, ConvSpec, PackedConv};

#[allow(clippy::too_many_arguments)]
fn candle_conv(
    x: &[f32],
    (n, cin, h, w): (usize, usize, usize, usize),
    wt: &[f32],
    bias: &[f32],
    (cout, k, stride, pad): (usize, usize, usize, usize),
    residual: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let dev = Device::Cpu;
    let xt = Tensor::from_vec(x.to_vec(), (n, cin, h, w), &dev).unwrap();
    let wt = Tensor::from_vec(wt.to_vec(), (cout, cin, k, k), &dev).unwrap();
    let b = Tensor::from_vec(bias.to_vec(), (1, cout, 1, 1), &dev).unwrap();
    let mut y = xt.conv2d(&wt, pad, stride, 1, 1).unwrap().broadcast_add(&b).unwrap();
    if let Some(r) = residual {
        let rt = Tensor::from_vec(r.to_vec(), y.shape(), &dev).unwrap();
        y = (y + rt).unwrap();
    }
    if relu {
        y = y.relu().unwrap();
    }
    y.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn conv_matches_candle() {
    let pool = pool();
    // (n, cin, cout, hw, k, stride, pad, residual, relu)
    let cases = [
        (2, 1, 16, 28, 3, 1, 1, false, true),
        (1, 3, 64, 57, 7, 2, 3, false, true),
        (3, 13, 17, 7, 3, 2, 1, true, true),
        (33, 5, 8, 2, 3, 1, 1, true, false),
        (2, 64, 16, 14, 1, 1, 0, true, true),
        (1, 16, 64, 28, 1, 2, 0, false, false),
        (1, 17, 13, 1, 3, 1, 1, false, true),
        (4, 8, 64, 9, 3, 1, 1, true, true),
    ];
    for isa in available_isas() {
        for (i, &(n, cin, cout, hw, k, stride, pad, residual, relu)) in cases.iter().enumerate() {
            let mut r = rng(i as u64);
            let x = rand_vec(&mut r, n * cin * hw * hw);
            let wt = rand_vec(&mut r, cout * cin * k * k);
            let bias = rand_vec(&mut r, cout);
            let oh = (hw + 2 * pad - k) / stride + 1;
            let res = residual.then(|| rand_vec(&mut r, n * cout * oh * oh));
            let shape = (n, cin, hw, hw);
            let geom = (cout, k, stride, pad);
            let want = candle_conv(&x, shape, &wt, &bias, geom, res.as_deref(), relu);
            let (naive, _) = conv_ref(&x, shape, &wt, &bias, geom, res.as_deref(), relu);
            assert!(rel_err(&naive, &want) < 1e-4, "naive vs candle case {i}");
            let spec = ConvSpec { cin, cout, kh: k, kw: k, stride, pad };
            let conv = PackedConv::with_isa(spec, &wt, &bias, isa).unwrap();
            let xin = BlockedTensor::from_nchw(&x, n, cin, hw, hw).unwrap();
            let rt = res.as_ref().map(|v| BlockedTensor::from_nchw(v, n, cout, oh, oh).unwrap());
            let mut out = BlockedTensor::new();
            conv.forward(&xin, rt.as_ref(), relu, &mut out, &pool).unwrap();
            let e = rel_err(&out.to_nchw(), &want);
            assert!(e < 1e-4, "{isa:?} case {i}: rel err {e}");
        }
    }
}
