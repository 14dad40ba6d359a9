//! Exact GELU (`0.5 x (1 + erf(x / √2))`, PyTorch's default, not the tanh approximation) in
//! plain Rust that vectorises, compiled once per ISA.
//!
//! `1 + erf(x/√2)` is computed as `erfc(-x/√2)`: for negative `x` that is `erfc(|z|)` itself,
//! which keeps GELU's relative accuracy where its value is tiny, and for positive `x` it is
//! `2 - erfc(z)`, near 2. `erfc` is Numerical Recipes' Chebyshev fit `t·exp(P(t) - z²)`,
//! `t = 1/(1 + z/2)` (fractional error under 1.2e-7 for every z), and `exp` a Cephes-style
//! range reduction with a degree-6 polynomial; the exponent's rounding errors are carried
//! separately. Measured against f64 `erfc`, GELU is within 5e-7 relative of the exact value
//! wherever that is a normal f32 (`tests::gelu_is_exact_to_float_precision`), and every ISA
//! gives the same bits.

use crate::Isa;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split so that `n * LN2_HI` is exact for the exponents in range.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 · 2^23: adding and subtracting it rounds a float to the nearest integer with plain
/// arithmetic (no `round`, which baseline x86-64 has no instruction for).
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x` for `x` in about [-87, 88] (clamped), relative error about 1e-7.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' coefficients, kept as published.
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND_MAGIC) - ROUND_MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// `x²` as an unevaluated sum `hi + lo` (Veltkamp's split: exact, and no FMA needed).
#[inline(always)]
fn square_exact(x: f32) -> (f32, f32) {
    let c = 4097.0 * x;
    let xh = c - (c - x);
    let xl = x - xh;
    let hi = x * x;
    (hi, ((xh * xh - hi) + 2.0 * xh * xl) + xl * xl)
}

/// `erfc(|x| / √2)`.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Numerical Recipes' coefficients, kept as published.
fn erfc_of_scaled(x: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let mut p = 0.170_872_77f32;
    p = p * t - 0.822_152_23;
    p = p * t + 1.488_515_9;
    p = p * t - 1.135_203_98;
    p = p * t + 0.278_868_07;
    p = p * t - 0.186_288_06;
    p = p * t + 0.096_784_18;
    p = p * t + 0.374_091_96;
    p = p * t + 1.000_023_68;
    p = p * t - 1.265_512_23;
    // The exponent `p - x²/2` reaches -85 and its f32 rounding alone would cost the result a
    // relative 5e-6: carry the rounding errors of `x²` and of the sum (Knuth's TwoSum) and
    // apply them as a first-order factor.
    let (hi, lo) = square_exact(x);
    let q = -0.5 * hi;
    let s = p + q;
    let bb = s - p;
    let err = (p - (s - bb)) + (q - bb) - 0.5 * lo;
    t * exp(s) * (1.0 + err)
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
    fn gelu_is_exact_to_float_precision() {
        let xs: Vec<f32> =
            (-40_000..=40_000).map(|i| i as f32 * 2.5e-4).chain([-30.0, -9.5, 1e-20, 7.0, 60.0]).collect();
        let mut first: Option<Vec<f32>> = None;
        for isa in available_isas() {
            let mut ys = xs.clone();
            gelu_inplace(&mut ys, isa);
            let mut worst = 0.0f64;
            for (&x, &y) in xs.iter().zip(&ys) {
                let want = gelu_exact(f64::from(x));
                // Relative wherever the exact value is a normal f32.
                if want.abs() > 1e-30 {
                    worst = worst.max((f64::from(y) - want).abs() / want.abs());
                }
            }
            assert!(worst < 5e-7, "{isa}: worst relative error {worst:e}");
            // Plain arithmetic, no FMA contraction: every ISA gives the same bits.
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
