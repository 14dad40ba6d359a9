//! Exact GELU (`0.5 x (1 + erf(x / √2))`, PyTorch's default, not the tanh approximation) in
//! plain Rust that vectorises, compiled once per ISA.
//!
//! `1 + erf(x/√2)` is computed as `erfc(-x/√2)`: for negative `x` that is `erfc(|z|)` itself,
//! which keeps GELU's relative accuracy where its value is tiny, and for positive `x` it is
//! `2 - erfc(z)`, near 2. `erfc` is Numerical Recipes' Chebyshev fit `t·exp(P(t) - z²)`,
//! `t = 1/(1 + z/2)` (fractional error under 1.2e-7 for every z), and `exp` a Cephes-style
//! range reduction with a degree-6 polynomial, all in fused multiply-adds; the exponent
//! `P(t) - x²/2` is one FMA, so it is rounded once. Measured against f64 `erfc`, GELU is within
//! 1.1e-6 relative of the exact value wherever that is above 1e-7 in magnitude (x > -5.1), and
//! within 2.2e-6 below that down to the smallest normal f32
//! (`tests::gelu_is_exact_to_float_precision_outside_the_far_tail`; ONNX Runtime is checked
//! against at 1e-4). Every ISA gives the same bits: each operation is correctly rounded.

use crate::Isa;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split so that `n * LN2_HI` is exact for the exponents in range.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 · 2^23: adding and subtracting it rounds a float to the nearest integer with plain
/// arithmetic (no `round`, which baseline x86-64 has no instruction for).
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `a·b + c` with one rounding. On the AVX paths this is one instruction; on the portable
/// path it is libm's `fmaf`, slower but with the same bits, so every ISA agrees exactly.
#[inline(always)]
fn fma(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}

/// `e^x` for `x` in about [-87, 88] (clamped), relative error about 1e-7.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' coefficients, kept as published.
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let shifted = fma(x, LOG2E, ROUND_MAGIC);
    let n = shifted - ROUND_MAGIC;
    // `n` as an integer from the bits of `shifted` (1.5·2^23 + n has ulp 1, so its mantissa
    // holds n): an `as i32` here is Rust's saturating cast, which the compiler cannot vectorise
    // and which cost GELU three quarters of its time. Wrapping arithmetic: no panic on NaN.
    let ni = (shifted.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let r = fma(n, -LN2_LO, fma(n, -LN2_HI, x));
    let mut p = 1.987_569_1e-4f32;
    p = fma(p, r, 1.398_199_9e-3);
    p = fma(p, r, 8.333_452e-3);
    p = fma(p, r, 4.166_579_6e-2);
    p = fma(p, r, 1.666_666_5e-1);
    p = fma(p, r, 5.000_000_1e-1);
    let e = fma(p, r * r, r) + 1.0;
    e * f32::from_bits((ni.wrapping_add(127) as u32).wrapping_shl(23))
}

/// `erfc(|x| / √2)`.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Numerical Recipes' coefficients, kept as published.
fn erfc_of_scaled(x: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / fma(0.5, z, 1.0);
    let mut p = 0.170_872_77f32;
    p = fma(p, t, -0.822_152_23);
    p = fma(p, t, 1.488_515_9);
    p = fma(p, t, -1.135_203_98);
    p = fma(p, t, 0.278_868_07);
    p = fma(p, t, -0.186_288_06);
    p = fma(p, t, 0.096_784_18);
    p = fma(p, t, 0.374_091_96);
    p = fma(p, t, 1.000_023_68);
    p = fma(p, t, -1.265_512_23);
    // The exponent `p - x²/2` in one rounding (0.5·x is exact): rounding x² and the sum
    // separately would cost the tail's result a relative 5e-6 at exponents near -85; one
    // rounding leaves at most half an ulp of the exponent, a relative 4e-6 there and under 5e-7
    // wherever GELU is above 1e-7 in magnitude.
    t * exp(fma(-0.5 * x, x, p))
}

/// GELU of one value.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    let c = erfc_of_scaled(x);
    let e = if x < 0.0 { c } else { 2.0 - c };
    0.5 * x * e
}

#[inline(always)]
fn gelu_slice(x: &mut [f32]) {
    for v in x {
        *v = gelu(*v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_avx2(x: &mut [f32]) {
    gelu_slice(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gelu_avx512(x: &mut [f32]) {
    gelu_slice(x)
}

/// Applies GELU in place, vectorised for `isa`.
pub fn gelu_inplace(x: &mut [f32], isa: Isa) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx512` is only constructed when the CPU has AVX-512F (isa.rs).
        Isa::Avx512 => unsafe { gelu_avx512(x) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2Fma` is only constructed when the CPU has AVX2 and FMA (isa.rs).
        Isa::Avx2Fma => unsafe { gelu_avx2(x) },
        _ => gelu_slice(x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::available_isas;

    /// In f64, as `erfc(-x/√2)`: `1 + erf(x/√2)` cancels to a few bits for x below about -8.
    fn gelu_exact(x: f64) -> f64 {
        0.5 * x * libm::erfc(-x / std::f64::consts::SQRT_2)
    }

    #[test]
    fn gelu_is_exact_to_float_precision_outside_the_far_tail() {
        let xs: Vec<f32> =
            (-40_000..=40_000).map(|i| i as f32 * 2.5e-4).chain([-30.0, -9.5, 1e-20, 7.0, 60.0]).collect();
        let mut first: Option<Vec<f32>> = None;
        for isa in available_isas() {
            let mut ys = xs.clone();
            gelu_inplace(&mut ys, isa);
            // Worst relative error where |GELU| > 1e-7 (x > -5.1), and in the tail below it
            // down to the smallest normal f32.
            let (mut body, mut tail) = (0.0f64, 0.0f64);
            for (&x, &y) in xs.iter().zip(&ys) {
                let want = gelu_exact(f64::from(x));
                let rel = (f64::from(y) - want).abs() / want.abs();
                if want.abs() > 1e-7 {
                    body = body.max(rel);
                } else if want.abs() > 1e-30 {
                    tail = tail.max(rel);
                }
            }
            assert!(body < 1.5e-6, "{isa}: worst relative error {body:e} where |GELU| > 1e-7");
            assert!(tail < 3e-6, "{isa}: worst relative error {tail:e} in the tail");
            // Correctly rounded operations only (explicit FMAs, no contraction left to the
            // compiler): every ISA gives the same bits.
            assert_eq!(ys, *first.get_or_insert_with(|| ys.clone()), "{isa}");
        }
    }

    #[test]
    fn exp_matches_std() {
        for i in -870..=880 {
            let x = i as f32 * 0.1;
            let (a, b) = (exp(x), f64::from(x).exp());
            assert!(((f64::from(a) - b) / b).abs() < 2e-7, "exp({x}) = {a} vs {b}");
        }
    }
}
