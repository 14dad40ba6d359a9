//! Layout conversion, pooling and batch compaction.

mod common;

use common::*;
use dyce_kernels::{gather_batch, global_avg_pool, maxpool_3x3_s2_p1, BlockedTensor, KernelError};

#[test]
fn nchw_roundtrip_and_buffer_reuse() {
    let mut r = rng(1);
    for &(n, c, h, w) in &[(1, 1, 1, 1), (2, 3, 5, 7), (3, 17, 4, 4), (1, 64, 2, 3)] {
        let x = rand_vec(&mut r, n * c * h * w);
        let t = BlockedTensor::from_nchw(&x, n, c, h, w).unwrap();
        assert_eq!(t.shape(), (n, c, h, w));
        assert_eq!(t.to_nchw(), x);
    }
    let big = rand_vec(&mut r, 4 * 16 * 9 * 9);
    let mut t = BlockedTensor::from_nchw(&big, 4, 16, 9, 9).unwrap();
    let cap = t.capacity();
    let small = rand_vec(&mut r, 2 * 5 * 3 * 3);
    t.load_nchw(&small, 2, 5, 3, 3).unwrap();
    assert_eq!(t.capacity(), cap, "shrinking must keep the buffer");
    assert_eq!(t.to_nchw(), small);
    // Padded lanes are zero even though the buffer held other data.
    assert!(t.as_slice().chunks_exact(8).all(|px| px[5..].iter().all(|&v| v == 0.0)));
    t.load_nchw(&big, 4, 16, 9, 9).unwrap();
    assert_eq!(t.capacity(), cap, "regrowing within capacity must not reallocate");
    assert!(matches!(BlockedTensor::from_nchw(&small, 2, 5, 3, 4), Err(KernelError::ShapeMismatch { .. })));
}

#[test]
fn maxpool_matches_reference() {
    let pool = pool();
    let mut r = rng(2);
    for &(n, c, h, w) in &[(1, 64, 112, 112), (2, 5, 7, 7), (3, 17, 1, 1), (1, 8, 2, 3), (33, 3, 6, 5)] {
        let x = rand_vec(&mut r, n * c * h * w);
        let (want, shape) = maxpool_ref(&x, (n, c, h, w));
        let t = BlockedTensor::from_nchw(&x, n, c, h, w).unwrap();
        let mut out = BlockedTensor::new();
        maxpool_3x3_s2_p1(&t, &mut out, &pool).unwrap();
        assert_eq!(out.shape(), shape);
        assert_eq!(out.to_nchw(), want);
    }
}

#[test]
fn gap_matches_reference() {
    let mut r = rng(3);
    for &(n, c, h, w) in &[(1, 64, 7, 7), (5, 13, 1, 1), (2, 3, 28, 28), (33, 17, 2, 3)] {
        let x = rand_vec(&mut r, n * c * h * w);
        let t = BlockedTensor::from_nchw(&x, n, c, h, w).unwrap();
        let got = global_avg_pool(&t);
        assert!(rel_err(&got, &gap_ref(&x, (n, c, h, w))) < 1e-5);
    }
}

#[test]
fn gather_selects_rows() {
    let mut r = rng(4);
    let (n, c, h, w) = (5, 13, 3, 2);
    let x = rand_vec(&mut r, n * c * h * w);
    let t = BlockedTensor::from_nchw(&x, n, c, h, w).unwrap();
    let mut out = BlockedTensor::new();
    gather_batch(&t, &[4, 1, 1], &mut out).unwrap();
    assert_eq!(out.shape(), (3, c, h, w));
    let img = c * h * w;
    let got = out.to_nchw();
    for (k, &i) in [4usize, 1, 1].iter().enumerate() {
        assert_eq!(&got[k * img..][..img], &x[i * img..][..img]);
    }
    gather_batch(&t, &[], &mut out).unwrap();
    assert_eq!(out.n(), 0);
    assert_eq!(gather_batch(&t, &[0, 5], &mut out), Err(KernelError::IndexOutOfRange { index: 5, batch: 5 }));
}
