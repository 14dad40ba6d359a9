//! Load traces for the simulator: piecewise-constant offered rates with optional noise.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Offered images per second over time.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// `(start second, rate)`, sorted by start; the first starts at 0.
    pub segments: Vec<(f64, f64)>,
    /// Multiplicative noise: every `period` seconds a factor uniform in [1 − a, 1 + a].
    pub noise: Option<Noise>,
    /// Total length, seconds.
    pub duration: f64,
}

/// Noise on a trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    /// Relative amplitude, e.g. 0.1 for ±10 %.
    pub amplitude: f64,
    /// Seconds between new factors.
    pub period: f64,
    /// Seed of the factors.
    pub seed: u64,
}

impl Trace {
    /// A constant rate.
    pub fn constant(rate: f64, duration: f64) -> Self {
        Self { segments: vec![(0.0, rate)], noise: None, duration }
    }

    /// `low` until `up_at`, `high` until `down_at`, then `low` again until `duration`.
    pub fn step(low: f64, high: f64, up_at: f64, down_at: f64, duration: f64) -> Self {
        Self { segments: vec![(0.0, low), (up_at, high), (down_at, low)], noise: None, duration }
    }

    /// The same trace with noise.
    pub fn with_noise(mut self, amplitude: f64, period: f64, seed: u64) -> Self {
        self.noise = Some(Noise { amplitude, period, seed });
        self
    }

    fn base(&self, t: f64) -> f64 {
        self.segments.iter().take_while(|(s, _)| *s <= t).last().map_or(0.0, |(_, r)| *r)
    }

    fn factor(&self, t: f64) -> f64 {
        match self.noise {
            None => 1.0,
            Some(n) => {
                let k = (t / n.period).floor() as u64;
                // A fresh generator per period keeps the factor a pure function of time.
                let mut rng = StdRng::seed_from_u64(n.seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                1.0 + n.amplitude * (2.0 * rng.random::<f64>() - 1.0)
            }
        }
    }

    /// Offered rate at `t`.
    pub fn rate(&self, t: f64) -> f64 {
        self.base(t) * self.factor(t)
    }

    /// The next time after `t` at which the rate may change.
    pub fn next_change(&self, t: f64) -> f64 {
        let seg = self.segments.iter().map(|(s, _)| *s).find(|&s| s > t).unwrap_or(f64::INFINITY);
        let noise = self.noise.map_or(f64::INFINITY, |n| ((t / n.period).floor() + 1.0) * n.period);
        seg.min(noise).min(self.duration)
    }
}
