//! Convolution kernels against the naive reference and candle, for every available ISA.

mod common;

use common::*;
use dyce_kernels::{available_isas, BlockedTensor, ConvSpec, Isa, PackedConv, Par, Team};

#[derive(Debug, Clone, Copy)]
struct Case {
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    residual: bool,
    relu: bool,
}

fn run_case(isa: Isa, c: Case, seed: u64, par: Par) {
    let mut r = rng(seed);
    let x = rand_vec(&mut r, c.n * c.cin * c.h * c.w);
    let wt = rand_vec(&mut r, c.cout * c.cin * c.k * c.k);
    let bias = rand_vec(&mut r, c.cout);
    let spec = ConvSpec { cin: c.cin, cout: c.cout, kh: c.k, kw: c.k, stride: c.stride, pad: c.pad };
    let (oh, ow) = spec.output_hw(c.h, c.w).unwrap();
    let res = c.residual.then(|| rand_vec(&mut r, c.n * c.cout * oh * ow));
    let (want, shape) = conv_ref(
        &x,
        (c.n, c.cin, c.h, c.w),
        &wt,
        &bias,
        (c.cout, c.k, c.stride, c.pad),
        res.as_deref(),
        c.relu,
    );
    let conv = PackedConv::with_isa(spec, &wt, &bias, isa).unwrap();
    let xin = BlockedTensor::from_nchw(&x, c.n, c.cin, c.h, c.w).unwrap();
    let rt = res.as_ref().map(|r| BlockedTensor::from_nchw(r, c.n, c.cout, oh, ow).unwrap());
    // Reused, dirty output buffer: kernels must overwrite everything including padded lanes.
    let mut out = BlockedTensor::from_nchw(&vec![7.0; 3 * 9 * 4 * 4], 3, 9, 4, 4).unwrap();
    conv.forward_on(&xin, rt.as_ref(), c.relu, &mut out, par).unwrap();
    assert_eq!(out.shape(), shape, "{isa:?} {c:?} {par:?}");
    let got = out.to_nchw();
    let e = rel_err(&got, &want);
    assert!(e < 1e-4, "{isa:?} {c:?} {par:?}: rel err {e}");
    // Padded lanes of the last block stay zero (later layers rely on it).
    let cb = out.cblocks();
    if !c.cout.is_multiple_of(8) {
        let data = out.as_slice();
        let plane = oh * ow * 8;
        for b in 0..c.n {
            let last = &data[(b * cb + cb - 1) * plane..][..plane];
            for px in last.chunks_exact(8) {
                assert!(px[c.cout % 8..].iter().all(|&v| v == 0.0), "{isa:?} {c:?}: padded lane nonzero");
            }
        }
    }
}

fn sampled_cases() -> Vec<Case> {
    let chans = [1, 3, 5, 8, 13, 16, 17, 64];
    let spatial = [1, 2, 7, 28, 57, 5, 14];
    let batches = [1, 2, 3, 33];
    let mut cases = Vec::new();
    let mut i = 0usize;
    for &k in &[3usize, 1, 7] {
        for &stride in &[1usize, 2] {
            for (ci, &cin) in chans.iter().enumerate() {
                i += 1;
                // Shift the pairing per (k, stride) so every cin meets several couts and sizes.
                let round = (i - 1) / chans.len();
                let cout = chans[(ci + 1 + 3 * round) % chans.len()];
                let h = spatial[(ci * 3 + round) % spatial.len()];
                let w = if i.is_multiple_of(3) { spatial[(i + 2) % spatial.len()] } else { h };
                let pad = if k == 1 && i.is_multiple_of(2) { 0 } else { k / 2 };
                if h + 2 * pad < k || w + 2 * pad < k {
                    continue;
                }
                let macs = cin * cout * k * k * h * w;
                let n = if macs > 2_000_000 { 1 } else { batches[i % batches.len()] };
                cases.push(Case {
                    n,
                    cin,
                    cout,
                    h,
                    w,
                    k,
                    stride,
                    pad,
                    residual: i % 2 == 1,
                    relu: i % 3 != 1,
                });
            }
        }
    }
    cases
}

fn named_cases() -> Vec<Case> {
    let c = |n, cin, cout, h, w, k, stride, pad, residual, relu| Case {
        n,
        cin,
        cout,
        h,
        w,
        k,
        stride,
        pad,
        residual,
        relu,
    };
    vec![
        // ResNet-20 stem and stages.
        c(2, 1, 16, 28, 28, 3, 1, 1, false, true),
        c(3, 16, 16, 28, 28, 3, 1, 1, true, true),
        c(2, 16, 32, 28, 28, 3, 2, 1, false, true),
        c(2, 16, 32, 28, 28, 1, 2, 0, false, false),
        c(5, 64, 64, 7, 7, 3, 1, 1, true, true),
        // ResNet-50 style: 7x7/s2 stem with 3 channels, bottleneck 1x1s.
        c(1, 3, 64, 57, 57, 7, 2, 3, false, true),
        c(2, 64, 17, 14, 14, 1, 1, 0, true, true),
        c(1, 17, 64, 57, 57, 1, 1, 0, false, true),
        c(1, 64, 64, 57, 57, 3, 1, 1, true, true),
        c(33, 13, 5, 2, 2, 3, 2, 1, true, true),
        c(33, 8, 8, 1, 1, 3, 1, 1, false, false),
        c(1, 5, 13, 1, 7, 7, 1, 3, true, false),
        // Odd spatial and stride 2 with the window hanging off the right edge.
        c(2, 8, 24, 8, 8, 3, 2, 1, true, true),
        c(1, 24, 40, 9, 9, 3, 2, 1, false, true),
        c(1, 3, 8, 3, 3, 7, 2, 3, false, true),
        // 1x1 with enough input channels to be split into K chunks (partial sums in `out`).
        c(2, 520, 24, 7, 7, 1, 1, 0, true, true),
        c(1, 400, 17, 9, 9, 1, 2, 0, true, false),
        c(3, 1024, 8, 2, 3, 1, 1, 0, false, true),
        // Strided 1x1 with padding skips the subsampling fast path.
        c(2, 13, 9, 7, 7, 1, 2, 1, true, true),
        c(2, 600, 16, 5, 5, 1, 2, 0, true, true),
    ]
}

#[test]
fn conv_matches_reference_named() {
    let pool = pool();
    let team = Team::new(2).unwrap();
    for isa in available_isas() {
        for (i, c) in named_cases().into_iter().enumerate() {
            run_case(isa, c, 100 + i as u64, Par::Rayon(&pool));
            run_case(isa, c, 100 + i as u64, Par::Team(&team));
        }
    }
}

#[test]
fn conv_matches_reference_sampled() {
    let pool = pool();
    let team = Team::new(3).unwrap();
    let cases = sampled_cases();
    assert!(cases.len() > 30);
    for isa in available_isas() {
        for (i, c) in cases.iter().enumerate() {
            run_case(isa, *c, 1000 + i as u64, Par::Rayon(&pool));
            run_case(isa, *c, 1000 + i as u64, Par::Team(&team));
        }
    }
}

#[test]
fn conv_single_thread_pool() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    for isa in available_isas() {
        run_case(isa, named_cases()[1], 7, Par::Rayon(&pool));
        run_case(isa, named_cases()[1], 7, Par::Serial);
    }
}

#[test]
fn conv_rejects_bad_shapes() {
    let spec = ConvSpec { cin: 3, cout: 4, kh: 3, kw: 3, stride: 1, pad: 1 };
    assert!(PackedConv::new(spec, &[0.0; 10], &[0.0; 4]).is_err());
    assert!(PackedConv::new(spec, &[0.0; 108], &[0.0; 3]).is_err());
    let conv = PackedConv::new(spec, &[0.0; 108], &[0.0; 4]).unwrap();
    let pool = pool();
    let mut out = BlockedTensor::new();
    let x = BlockedTensor::zeros(1, 5, 4, 4);
    let err = conv.forward(&x, None, false, &mut out, &pool).unwrap_err();
    assert!(err.to_string().contains("[1, 5, 4, 4]"), "{err}");
    let x = BlockedTensor::zeros(1, 3, 4, 4);
    let bad_res = BlockedTensor::zeros(1, 4, 3, 3);
    assert!(conv.forward(&x, Some(&bad_res), false, &mut out, &pool).is_err());
    let big = ConvSpec { kh: 7, kw: 7, pad: 0, ..spec };
    let conv = PackedConv::new(big, &[0.0; 4 * 3 * 49], &[0.0; 4]).unwrap();
    assert!(conv.forward(&x, None, false, &mut out, &pool).is_err());
}

/// The packed-GEMM 1x1 path: M chunks spanning images (batch 1..=33), pixel counts that are
/// not multiples of the 6-pixel tile, K chunks with a ragged last block (cin not a multiple
/// of 8 or of the chunk), couts that leave a single output block, and strides 1..=3.
#[test]
fn conv_1x1_gemm_edges() {
    let pool = pool();
    let team = Team::new(2).unwrap();
    let mut cases = Vec::new();
    let shapes = [(1, 1), (1, 7), (5, 5), (7, 7), (3, 11), (14, 14)];
    let chans = [(3, 5), (9, 8), (64, 17), (259, 24), (300, 9), (520, 40)];
    for (i, n) in [1usize, 2, 3, 5, 8, 13, 32, 33].into_iter().enumerate() {
        for (j, &(cin, cout)) in chans.iter().enumerate() {
            let (h, w) = shapes[(i + j) % shapes.len()];
            let stride = 1 + (i + 2 * j) % 3;
            if n * cin * cout * h * w > 6_000_000 {
                continue;
            }
            cases.push(Case {
                n,
                cin,
                cout,
                h,
                w,
                k: 1,
                stride,
                pad: 0,
                residual: j % 2 == 0,
                relu: i % 2 == 0,
            });
        }
    }
    assert!(cases.len() > 30);
    let single = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    for isa in available_isas() {
        for (i, c) in cases.iter().enumerate() {
            run_case(isa, *c, 5000 + i as u64, Par::Rayon(&pool));
            run_case(isa, *c, 5000 + i as u64, Par::Team(&team));
            if i % 5 == 0 {
                run_case(isa, *c, 6000 + i as u64, Par::Rayon(&single));
            }
        }
    }
}
