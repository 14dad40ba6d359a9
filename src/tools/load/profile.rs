//! Rate profiles of `dyce load`: how many requests per second to offer at each moment.
//!
//! Every profile becomes a [`RateCurve`], a piecewise-linear rate over the run (jumps are two
//! points at the same time). One representation for all shapes keeps the schedule generator
//! exact and shape-agnostic: it only ever inverts the integral of a linear segment.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

/// The shape of the offered rate over time (requests per second).
#[derive(Debug, Clone, PartialEq)]
pub enum Profile {
    /// The same rate throughout.
    Constant(f64),
    /// `low`, then `high` from `at` to `until` seconds, then `low` again.
    Step { low: f64, high: f64, at: f64, until: f64 },
    /// Linear from `from` at the start to `to` at the end of the run.
    Ramp { from: f64, to: f64 },
    /// `base`, with bursts of `peak` lasting `width` seconds starting every `period` seconds
    /// (the first at `period`, so a run starts at the base rate).
    Burst { base: f64, peak: f64, period: f64, width: f64 },
    /// Piecewise constant from a CSV file of `second,rate` lines.
    Trace { file: PathBuf, steps: Vec<(f64, f64)> },
}

/// What a profile string looks like, for error messages.
const SYNTAX: &str =
    "constant:RATE, step:LOW,HIGH,AT,UNTIL, ramp:FROM,TO, burst:BASE,PEAK,PERIOD,WIDTH or trace:FILE";

fn numbers(kind: &str, args: &str, names: &[&str]) -> Result<Vec<f64>> {
    let parts: Vec<&str> = args.split(',').map(str::trim).collect();
    ensure!(parts.len() == names.len(), "{kind} takes {} numbers ({})", names.len(), names.join(","));
    parts
        .iter()
        .zip(names)
        .map(|(p, name)| {
            let v: f64 = p.parse().map_err(|_| anyhow::anyhow!("{name} {p:?} is not a number"))?;
            ensure!(v.is_finite() && v >= 0.0, "{name} must be a finite number ≥ 0, got {p}");
            Ok(v)
        })
        .collect()
}

impl Profile {
    /// Parses `KIND:ARGS` (see [`SYNTAX`]); `trace:FILE` reads the file now, so a bad trace
    /// fails before any request is sent.
    pub fn parse(s: &str) -> Result<Profile> {
        Self::parse_inner(s).with_context(|| format!("bad profile {s:?} (expected {SYNTAX})"))
    }

    fn parse_inner(s: &str) -> Result<Profile> {
        let (kind, args) = s.split_once(':').context("no KIND: prefix")?;
        Ok(match kind.trim() {
            "constant" => Profile::Constant(numbers(kind, args, &["RATE"])?[0]),
            "step" => {
                let v = numbers(kind, args, &["LOW", "HIGH", "AT", "UNTIL"])?;
                ensure!(v[2] < v[3], "AT must be before UNTIL");
                Profile::Step { low: v[0], high: v[1], at: v[2], until: v[3] }
            }
            "ramp" => {
                let v = numbers(kind, args, &["FROM", "TO"])?;
                Profile::Ramp { from: v[0], to: v[1] }
            }
            "burst" => {
                let v = numbers(kind, args, &["BASE", "PEAK", "PERIOD", "WIDTH"])?;
                ensure!(v[2] > 0.0 && v[3] > 0.0 && v[3] <= v[2], "need 0 < WIDTH ≤ PERIOD");
                Profile::Burst { base: v[0], peak: v[1], period: v[2], width: v[3] }
            }
            "trace" => {
                let file = PathBuf::from(args.trim());
                let steps = read_trace(&file)?;
                Profile::Trace { file, steps }
            }
            other => bail!("unknown kind {other:?}"),
        })
    }

    /// The rate over `[0, duration]` as a piecewise-linear curve.
    pub fn curve(&self, duration: f64) -> RateCurve {
        let d = duration;
        let mut c = RateCurve::default();
        match *self {
            Profile::Constant(r) => {
                c.push(0.0, r);
                c.push(d, r);
            }
            Profile::Step { low, high, at, until } => {
                c.push(0.0, low);
                for (t, before, after) in [(at, low, high), (until, high, low)] {
                    if t < d {
                        c.push(t, before);
                        c.push(t, after);
                    }
                }
                c.push(d, if (at..until).contains(&d) { high } else { low });
            }
            Profile::Ramp { from, to } => {
                c.push(0.0, from);
                c.push(d, to);
            }
            Profile::Burst { base, peak, period, width } => {
                c.push(0.0, base);
                let mut start = period;
                while start < d {
                    let end = (start + width).min(d);
                    c.push(start, base);
                    c.push(start, peak);
                    c.push(end, peak);
                    c.push(end, base);
                    start += period;
                }
                c.push(d, base);
            }
            Profile::Trace { ref steps, .. } => {
                // Before the first line nothing is offered; the last line holds to the end.
                let mut current = 0.0;
                c.push(0.0, 0.0);
                for &(t, r) in steps.iter().filter(|(t, _)| *t < d) {
                    c.push(t, current);
                    c.push(t, r);
                    current = r;
                }
                c.push(d, current);
            }
        }
        c
    }
}

/// Reads `second,rate` lines: seconds strictly increasing, rates ≥ 0; blank lines, `#`
/// comments and a first line that is not numeric (a CSV header) are skipped.
fn read_trace(path: &Path) -> Result<Vec<(f64, f64)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut steps: Vec<(f64, f64)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed =
            line.split_once(',').and_then(|(t, r)| Some((t.trim().parse().ok()?, r.trim().parse().ok()?)));
        let Some((t, r)): Option<(f64, f64)> = parsed else {
            if steps.is_empty() && i == 0 {
                continue;
            }
            bail!("{}:{}: expected `second,rate`, got {line:?}", path.display(), i + 1);
        };
        ensure!(t.is_finite() && t >= 0.0, "{}:{}: second must be ≥ 0", path.display(), i + 1);
        ensure!(r.is_finite() && r >= 0.0, "{}:{}: rate must be ≥ 0", path.display(), i + 1);
        if let Some(&(prev, _)) = steps.last() {
            ensure!(t > prev, "{}:{}: seconds must increase", path.display(), i + 1);
        }
        steps.push((t, r));
    }
    ensure!(!steps.is_empty(), "{}: no `second,rate` lines", path.display());
    Ok(steps)
}

/// A piecewise-linear rate: points `(t, rate)` with non-decreasing `t`, linear in between;
/// two points at the same `t` are a jump.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateCurve {
    pub points: Vec<(f64, f64)>,
}

impl RateCurve {
    fn push(&mut self, t: f64, rate: f64) {
        self.points.push((t, rate));
    }

    /// The rate at `t` (after a jump at `t`, the new rate).
    #[cfg(test)]
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut r = 0.0;
        for w in self.points.windows(2) {
            let ((t0, r0), (t1, r1)) = (w[0], w[1]);
            if t >= t0 && t < t1 {
                return r0 + (r1 - r0) * (t - t0) / (t1 - t0);
            }
            r = r1;
        }
        r
    }

    /// Expected number of arrivals between `a` and `b` seconds.
    pub fn integral(&self, a: f64, b: f64) -> f64 {
        let mut sum = 0.0;
        for w in self.points.windows(2) {
            let ((t0, r0), (t1, r1)) = (w[0], w[1]);
            let (lo, hi) = (a.max(t0), b.min(t1));
            if lo < hi {
                let at = |t: f64| r0 + (r1 - r0) * (t - t0) / (t1 - t0);
                sum += 0.5 * (at(lo) + at(hi)) * (hi - lo);
            }
        }
        sum
    }

    /// Expected number of arrivals over the whole curve.
    pub fn total(&self) -> f64 {
        self.integral(f64::NEG_INFINITY, f64::INFINITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!(Profile::parse("constant:200").unwrap(), Profile::Constant(200.0));
        assert_eq!(
            Profile::parse("step:50, 400,1,2.5").unwrap(),
            Profile::Step { low: 50.0, high: 400.0, at: 1.0, until: 2.5 }
        );
        assert_eq!(Profile::parse("ramp:0,1000").unwrap(), Profile::Ramp { from: 0.0, to: 1000.0 });
        assert_eq!(
            Profile::parse("burst:10,100,5,1").unwrap(),
            Profile::Burst { base: 10.0, peak: 100.0, period: 5.0, width: 1.0 }
        );
    }

    #[test]
    fn rejects_bad_strings_with_the_syntax() {
        for bad in [
            "",
            "200",
            "constant:",
            "constant:-1",
            "constant:fast",
            "constant:1,2",
            "step:1,2,3",
            "step:1,2,5,3",
            "burst:1,2,1,2",
            "burst:1,2,0,0",
            "wave:1",
            "constant:NaN",
            "trace:/nonexistent/trace.csv",
        ] {
            let e = format!("{:#}", Profile::parse(bad).unwrap_err());
            assert!(e.contains("expected constant:RATE"), "{bad}: {e}");
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn trace_files_are_piecewise_constant() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.csv");
        std::fs::write(&f, "second,rate\n# warm-up\n0,10\n\n2, 30\n5,0\n").unwrap();
        let p = Profile::parse(&format!("trace:{}", f.display())).unwrap();
        let c = p.curve(6.0);
        assert_eq!([0.5, 1.9, 2.0, 4.9, 5.5].map(|t| c.rate_at(t)), [10.0, 10.0, 30.0, 30.0, 0.0]);
        assert!((c.total() - (20.0 + 90.0)).abs() < 1e-9);
        std::fs::write(&f, "0,10\n0,20\n").unwrap();
        assert!(Profile::parse(&format!("trace:{}", f.display())).is_err());
        std::fs::write(&f, "0,10\nx,y\n").unwrap();
        assert!(Profile::parse(&format!("trace:{}", f.display())).is_err());
    }

    #[test]
    fn curves_have_the_described_shape() {
        let step = Profile::parse("step:10,100,2,4").unwrap().curve(6.0);
        assert_eq!([1.0, 2.0, 3.9, 4.0, 5.9].map(|t| step.rate_at(t)), [10.0, 100.0, 100.0, 10.0, 10.0]);
        assert!((step.total() - (10.0 * 4.0 + 100.0 * 2.0)).abs() < 1e-9);
        // A step cut short by the end of the run.
        assert!((Profile::parse("step:10,100,2,40").unwrap().curve(6.0).total() - 420.0).abs() < 1e-9);
        let ramp = Profile::parse("ramp:0,100").unwrap().curve(10.0);
        assert!((ramp.rate_at(5.0) - 50.0).abs() < 1e-9);
        assert!((ramp.total() - 500.0).abs() < 1e-9);
        assert!((ramp.integral(0.0, 1.0) - 5.0).abs() < 1e-9);
        assert!((step.integral(1.5, 2.5) - 55.0).abs() < 1e-9);
        let burst = Profile::parse("burst:10,100,3,1").unwrap().curve(7.0);
        assert_eq!(
            [0.5, 2.9, 3.0, 3.9, 4.0, 6.5].map(|t| burst.rate_at(t)),
            [10.0, 10.0, 100.0, 100.0, 10.0, 100.0]
        );
        // Base 7 s × 10 plus two bursts (3-4 and 6-7) of 90 extra each.
        assert!((burst.total() - (70.0 + 180.0)).abs() < 1e-9);
    }
}
