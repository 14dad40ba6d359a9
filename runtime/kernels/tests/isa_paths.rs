//! The AVX-512 path against the portable paths at odd widths, sizes and batches, and every
//! path on more threads than this machine has.
//!
//! The other tests (`conv.rs`, `network.rs`, `candle_ref.rs`) already check every available
//! ISA against the naive reference and candle; this file compares the paths with each other
//! directly, so a layout bug shows as a disagreement between two of our own kernels. The
//! AVX-512 comparisons run only where the CPU has AVX-512F and print a SKIPPED line otherwise;
//! `Portable16` (the same 16-lane layout in plain Rust) runs everywhere.

mod common;

use common::*;
use dyce_kernels::{isa_available, BlockedTensor, ConvSpec, Isa, PackedConv, PackedDense, Par, Team};

/// Odd channel counts leave a half-filled 16-lane vector
/// (cout 8, 24, 40) or a single vector (cout 16); widths cross the 8- and 14-pixel tiles.
/// (n, cin, cout, h, w, k, stride, pad).
type ConvCase = (usize, usize, usize, usize, usize, usize, usize, usize);

const CONVS: &[ConvCase] = &[
    (1, 1, 16, 28, 28, 3, 1, 1),
    (3, 16, 16, 28, 28, 3, 1, 1),
    (2, 16, 32, 28, 28, 3, 2, 1),
    (5, 64, 64, 7, 7, 3, 1, 1),
    (1, 3, 64, 45, 45, 7, 2, 3),
    (2, 5, 8, 9, 13, 3, 1, 1),
    (2, 24, 24, 15, 17, 3, 1, 1),
    (1, 13, 40, 11, 23, 3, 2, 1),
    (7, 40, 8, 6, 5, 3, 1, 1),
    (1, 17, 72, 31, 29, 5, 1, 2),
    (2, 64, 24, 14, 14, 1, 1, 0),
    (3, 24, 40, 9, 9, 1, 2, 0),
    (1, 520, 48, 7, 7, 1, 1, 0),
    (33, 32, 16, 3, 3, 1, 1, 0),
    (1, 300, 72, 5, 9, 1, 1, 0),
    (2, 13, 9, 7, 7, 1, 2, 1),
];

fn conv_out(isa: Isa, case: usize, par: Par) -> Vec<f32> {
    let (n, cin, cout, h, w, k, stride, pad) = CONVS[case];
    let mut r = rng(40 + case as u64);
    let x = rand_vec(&mut r, n * cin * h * w);
    let wt = rand_vec(&mut r, cout * cin * k * k);
    let bias = rand_vec(&mut r, cout);
    let spec = ConvSpec { cin, cout, kh: k, kw: k, stride, pad };
    let (oh, ow) = spec.output_hw(h, w).unwrap();
    let res = BlockedTensor::from_nchw(&rand_vec(&mut r, n * cout * oh * ow), n, cout, oh, ow).unwrap();
    let conv = PackedConv::with_isa(spec, &wt, &bias, isa).unwrap();
    let xin = BlockedTensor::from_nchw(&x, n, cin, h, w).unwrap();
    // A dirty, larger output buffer: every path must overwrite all it owns, padded lanes too.
    let mut out = BlockedTensor::from_nchw(&vec![3.0; 2 * 80 * 30 * 30], 2, 80, 30, 30).unwrap();
    conv.forward_on(&xin, Some(&res), case.is_multiple_of(2), &mut out, par).unwrap();
    // Compare raw blocked data: padded lanes must agree (all zero) as well.
    out.as_slice().to_vec()
}

fn dense_out(isa: Isa, (inputs, outputs, n): (usize, usize, usize)) -> Vec<f32> {
    let mut r = rng((inputs * 31 + outputs) as u64);
    let w = rand_vec(&mut r, inputs * outputs);
    let b = rand_vec(&mut r, outputs);
    let x = rand_vec(&mut r, n * inputs);
    let d = PackedDense::with_isa(inputs, outputs, &w, &b, isa).unwrap();
    let mut y = Vec::new();
    d.forward(&x, n, true, &mut y);
    y
}

/// (inputs, outputs, rows): partial 32-output tiles and every row-pass length up to 12.
const DENSES: &[(usize, usize, usize)] =
    &[(16, 512, 5), (512, 10, 13), (37, 45, 12), (64, 33, 1), (512, 512, 25), (9, 16, 11), (3, 2, 7)];

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let e = rel_err(a, b);
    assert!(e < 1e-5, "{what}: rel err {e}");
}

#[test]
fn portable16_layout_matches_portable() {
    let pool = pool();
    for case in 0..CONVS.len() {
        let want = conv_out(Isa::Portable, case, Par::Serial);
        assert_close(&conv_out(Isa::Portable16, case, Par::Serial), &want, &format!("conv case {case}"));
        assert_close(
            &conv_out(Isa::Portable16, case, Par::Rayon(&pool)),
            &want,
            &format!("conv case {case}"),
        );
    }
    for &d in DENSES {
        assert_close(&dense_out(Isa::Portable16, d), &dense_out(Isa::Portable, d), &format!("dense {d:?}"));
    }
}

#[test]
fn avx512_matches_portable_paths() {
    if !isa_available(Isa::Avx512) {
        eprintln!(
            "SKIPPED avx512_matches_portable_paths: this CPU has no AVX-512F ({})",
            dyce_kernels::cpu_model()
        );
        return;
    }
    let pool = pool();
    let team = Team::new(2).unwrap();
    for case in 0..CONVS.len() {
        let want = conv_out(Isa::Portable, case, Par::Serial);
        for par in [Par::Serial, Par::Rayon(&pool), Par::Team(&team)] {
            let got = conv_out(Isa::Avx512, case, par);
            assert_close(&got, &want, &format!("avx512 conv case {case} {par:?}"));
            assert_close(&got, &conv_out(Isa::Portable16, case, par), &format!("avx512/p16 case {case}"));
        }
    }
    for &d in DENSES {
        assert_close(
            &dense_out(Isa::Avx512, d),
            &dense_out(Isa::Portable, d),
            &format!("avx512 dense {d:?}"),
        );
    }
}

/// Servers have 8-64 threads; these machines have 2. The decomposition must not assume 2: run
/// every path on 3, 5 and 16 threads (oversubscribed here, which only costs time) and on teams
/// of 3 and 7.
#[test]
fn every_path_is_exact_on_many_threads() {
    for threads in [3, 5, 16] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let team = Team::new(threads.min(7)).unwrap();
        for isa in dyce_kernels::available_isas() {
            for case in 0..CONVS.len() {
                let want = conv_out(isa, case, Par::Serial);
                assert_close(
                    &conv_out(isa, case, Par::Rayon(&pool)),
                    &want,
                    &format!("{isa} {threads}t case {case}"),
                );
                assert_close(
                    &conv_out(isa, case, Par::Team(&team)),
                    &want,
                    &format!("{isa} team case {case}"),
                );
            }
        }
    }
}
