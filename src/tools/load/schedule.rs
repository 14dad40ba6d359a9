//! Arrival times of `dyce load`, computed from the rate curve alone (never from answers).
//!
//! Time-rescaling: with Λ(t) the integral of the rate, arrivals are the times where Λ crosses
//! the points of a unit-rate process, Exp(1) gaps for Poisson, gaps of exactly 1 for constant
//! spacing. Inverting Λ on a linear segment is a quadratic, so this is exact for every profile,
//! costs O(1) per arrival, and needs no upper bound on the rate (unlike thinning).

use clap::ValueEnum;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::profile::RateCurve;

/// How arrivals are spaced at a given rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arrivals {
    /// Poisson process: independent exponential gaps (what many independent clients produce).
    Poisson,
    /// Evenly spaced: exactly 1/rate apart.
    Constant,
}

/// The scheduled send times (seconds from the start), in order, below the curve's end.
pub struct Schedule {
    points: Vec<(f64, f64)>,
    arrivals: Arrivals,
    rng: StdRng,
    /// Index of the segment `points[seg]..points[seg + 1]` being walked.
    seg: usize,
    /// Λ at the start of that segment.
    area_before: f64,
    /// Λ of the next arrival.
    target: f64,
}

impl Schedule {
    /// Arrivals following `curve`, reproducible from `seed`.
    pub fn new(curve: &RateCurve, arrivals: Arrivals, seed: u64) -> Schedule {
        let mut s = Schedule {
            points: curve.points.clone(),
            arrivals,
            rng: StdRng::seed_from_u64(seed),
            seg: 0,
            area_before: 0.0,
            target: 0.0,
        };
        // Constant spacing starts half a gap in, so N arrivals fill a window symmetrically
        // instead of the first one landing exactly at t = 0.
        s.target = match arrivals {
            Arrivals::Poisson => s.gap(),
            Arrivals::Constant => 0.5,
        };
        s
    }

    fn gap(&mut self) -> f64 {
        match self.arrivals {
            // 1 − u lies in (0, 1], so the logarithm is finite.
            Arrivals::Poisson => -(1.0 - self.rng.random::<f64>()).ln(),
            Arrivals::Constant => 1.0,
        }
    }
}

/// The `x ≥ 0` with `r0·x + s·x²/2 = d` on a segment starting at rate `r0` with slope `s`,
/// written to stay accurate when `s` is tiny or negative.
fn solve(r0: f64, s: f64, d: f64) -> f64 {
    if d <= 0.0 {
        return 0.0;
    }
    let disc = (r0 * r0 + 2.0 * s * d).max(0.0);
    2.0 * d / (r0 + disc.sqrt())
}

impl Iterator for Schedule {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        while self.seg + 1 < self.points.len() {
            let ((t0, r0), (t1, r1)) = (self.points[self.seg], self.points[self.seg + 1]);
            let len = t1 - t0;
            let area = 0.5 * (r0 + r1) * len;
            let need = self.target - self.area_before;
            if need > area || len <= 0.0 {
                self.area_before += area;
                self.seg += 1;
                continue;
            }
            let t = (t0 + solve(r0, (r1 - r0) / len, need)).min(t1);
            self.target += self.gap();
            return Some(t);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::load::profile::Profile;

    fn times(profile: &str, duration: f64, arrivals: Arrivals, seed: u64) -> Vec<f64> {
        Schedule::new(&Profile::parse(profile).unwrap().curve(duration), arrivals, seed).collect()
    }

    #[test]
    fn poisson_count_and_gaps_match_the_rate() {
        // 1000/s for 20 s: 20,000 expected, standard deviation √20000 ≈ 141.
        let t = times("constant:1000", 20.0, Arrivals::Poisson, 7);
        assert!((t.len() as f64 - 20_000.0).abs() < 5.0 * 141.0, "{}", t.len());
        assert!(t.windows(2).all(|w| w[0] <= w[1]) && t.iter().all(|&x| (0.0..20.0).contains(&x)));
        let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!((mean - 1e-3).abs() < 0.05e-3, "mean gap {mean}");
        // Exponential: standard deviation equals the mean.
        assert!((var.sqrt() / mean - 1.0).abs() < 0.05, "cv {}", var.sqrt() / mean);
    }

    #[test]
    fn seeded_and_reproducible() {
        assert_eq!(
            times("ramp:10,500", 5.0, Arrivals::Poisson, 3),
            times("ramp:10,500", 5.0, Arrivals::Poisson, 3)
        );
        assert_ne!(
            times("ramp:10,500", 5.0, Arrivals::Poisson, 3),
            times("ramp:10,500", 5.0, Arrivals::Poisson, 4)
        );
    }

    #[test]
    fn constant_spacing_is_exact() {
        let t = times("constant:100", 2.0, Arrivals::Constant, 1);
        assert_eq!(t.len(), 200);
        assert!((t[0] - 0.005).abs() < 1e-12);
        assert!(t.windows(2).all(|w| ((w[1] - w[0]) - 0.01).abs() < 1e-9));
    }

    #[test]
    fn follows_steps_ramps_and_silences() {
        let t = times("step:100,1000,1,2", 3.0, Arrivals::Constant, 1);
        let count = |a: f64, b: f64| t.iter().filter(|&&x| x >= a && x < b).count();
        assert_eq!((count(0.0, 1.0), count(1.0, 2.0), count(2.0, 3.0)), (100, 1000, 100));
        // Ramp 0 → 200 over 2 s: 200 in total, a quarter of them in the first second.
        let r = times("ramp:0,200", 2.0, Arrivals::Constant, 1);
        assert_eq!(r.len(), 200);
        assert_eq!(r.iter().filter(|&&x| x < 1.0).count(), 50);
        // A burst train with a zero base sends only inside the bursts.
        let b = times("burst:0,1000,1,0.25", 3.0, Arrivals::Poisson, 9);
        assert!(b.iter().all(|&x| x >= 1.0 && (x % 1.0) < 0.25 + 1e-9), "{:?}", &b[..5]);
        assert!((b.len() as f64 - 500.0).abs() < 5.0 * 500f64.sqrt(), "{}", b.len());
        assert!(times("constant:0", 5.0, Arrivals::Poisson, 1).is_empty());
    }
}
