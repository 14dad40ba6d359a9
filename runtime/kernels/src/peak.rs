//! The machine's FMA peak, measured.

#[cfg(target_arch = "x86_64")]
use std::time::Instant;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_loop(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    // 12 independent chains cover FMA latency x throughput on Zen/Skylake.
    let mut acc = [_mm256_set1_ps(0.0); 12];
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

/// GFLOP/s of a register-resident AVX2 FMA loop on every pool thread: the machine's FMA peak,
/// the denominator of every "share of peak" figure. `None` without AVX2+FMA.
pub fn fma_peak_gflops(pool: &rayon::ThreadPool) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        let iters = 100_000_000u64;
        let threads = pool.current_num_threads();
        let run = || {
            let t = Instant::now();
            pool.broadcast(|_| {
                // SAFETY: AVX2 and FMA were detected just above.
                std::hint::black_box(unsafe { fma_loop(iters) })
            });
            t.elapsed().as_secs_f64()
        };
        run();
        let secs = (0..3).map(|_| run()).fold(f64::MAX, f64::min);
        return Some((threads as u64 * iters * 12 * 8 * 2) as f64 / secs / 1e9);
    }
    let _ = pool;
    None
}
