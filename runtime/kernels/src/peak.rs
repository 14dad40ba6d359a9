//! The machine's FMA peak for the ISA in use, measured.

use crate::Isa;
#[cfg(target_arch = "x86_64")]
use std::time::Instant;

/// 12 independent chains cover FMA latency x throughput on Zen and Skylake-class cores.
const CHAINS: usize = 12;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_loop_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); CHAINS];
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    for _ in 0..iters {
        for v in &mut acc {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let mut out = [0.0f32; 8];
    let s = acc.iter().fold(_mm256_set1_ps(0.0), |s, &v| _mm256_add_ps(s, v));
    // SAFETY: `out` holds 8 f32, the exact width of an unaligned 256-bit store.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
    out.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn fma_loop_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    // 12 chains x 16 lanes: Intel's two 512-bit FMA ports at latency 4 need 8, Zen 4's
    // double-pumped unit fewer; more chains cost nothing while they stay in registers.
    let mut acc = [_mm512_set1_ps(0.0); CHAINS];
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    for _ in 0..iters {
        for v in &mut acc {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    _mm512_reduce_add_ps(acc.iter().fold(_mm512_set1_ps(0.0), |s, &v| _mm512_add_ps(s, v)))
}

/// GFLOP/s of a register-resident FMA loop on every pool thread with the vectors of the
/// process-wide ISA ([`crate::detect_isa`]): the denominator of every "share of peak" figure.
/// `None` on the portable paths.
pub fn fma_peak_gflops(pool: &rayon::ThreadPool) -> Option<f64> {
    fma_peak_gflops_for(pool, crate::detect_isa())
}

/// As [`fma_peak_gflops`] for an explicit ISA (`None` if it is portable or not available).
pub fn fma_peak_gflops_for(pool: &rayon::ThreadPool, isa: Isa) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if crate::isa_available(isa) && matches!(isa, Isa::Avx2Fma | Isa::Avx512) {
        let iters = 100_000_000u64;
        let threads = pool.current_num_threads();
        let run = || {
            let t = Instant::now();
            pool.broadcast(|_| match isa {
                // SAFETY: AVX-512F was detected (isa_available above).
                Isa::Avx512 => std::hint::black_box(unsafe { fma_loop_avx512(iters) }),
                // SAFETY: AVX2 and FMA were detected (isa_available above).
                _ => std::hint::black_box(unsafe { fma_loop_avx2(iters) }),
            });
            t.elapsed().as_secs_f64()
        };
        run();
        let secs = (0..3).map(|_| run()).fold(f64::MAX, f64::min);
        let flops_per_iter = (CHAINS * isa.lanes() * 2) as u64;
        return Some((threads as u64 * iters * flops_per_iter) as f64 / secs / 1e9);
    }
    let _ = (pool, isa);
    None
}
