//! A drift scenario for `dyce load`: from `--drift-at` seconds on, a share of the labelled images
//! is sent shifted in a stated, realistic way, so that live accuracy (shadow checks) and the
//! controller's floor can be watched reacting to traffic that no longer looks like the
//! calibration data. The answers are still checked against the true labels, per phase.
//!
//! Kinds (per 8-bit pixel `p`, every channel):
//! - `contrast`: `128 + 0.4 (p − 128)`: a washed-out camera, 40% of the contrast;
//! - `blur`: a 3×3 box filter applied twice (about a Gaussian of σ 1.2 px): out of focus;
//! - `noise`: `p + N(0, 40²)`, clamped: sensor noise at low light (seeded, reproducible);
//! - `invert`: `255 − p`: the opposite polarity (dark objects on a light background).

use anyhow::{bail, ensure, Result};
use serde_json::{json, Value};

use super::images::LabelledImages;
use super::record::{Outcome, Record};

/// How the images are shifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftKind {
    /// Contrast reduced to 40%.
    Contrast,
    /// 3×3 box blur, twice.
    Blur,
    /// Gaussian noise, σ 40.
    Noise,
    /// Negative.
    Invert,
}

/// `--drift-at` and `--drift`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drift {
    /// Seconds into the run when the shift starts.
    pub at: f64,
    /// The shift.
    pub kind: DriftKind,
    /// Share of the images sent shifted from then on, in (0, 1].
    pub share: f64,
}

impl Drift {
    /// Parses `KIND[:SHARE]` (share default 1) starting at `at` seconds.
    pub fn parse(spec: &str, at: f64) -> Result<Self> {
        let (kind, share) = match spec.split_once(':') {
            Some((k, s)) => {
                (k, s.trim().parse::<f64>().map_err(|e| anyhow::anyhow!("--drift {spec:?}: share: {e}"))?)
            }
            None => (spec, 1.0),
        };
        let kind = match kind.trim() {
            "contrast" => DriftKind::Contrast,
            "blur" => DriftKind::Blur,
            "noise" => DriftKind::Noise,
            "invert" => DriftKind::Invert,
            other => bail!("--drift {other:?}: give contrast, blur, noise or invert, optionally :SHARE"),
        };
        ensure!(share > 0.0 && share <= 1.0, "--drift {spec:?}: the share must be in (0, 1]");
        ensure!(at.is_finite() && at >= 0.0, "--drift-at must be a number of seconds, at least 0");
        Ok(Self { at, kind, share })
    }
}

/// Shifts one image of `shape` `[c, h, w]`; `seed` makes the noise reproducible.
pub fn shift(kind: DriftKind, img: &[u8], shape: [usize; 3], seed: u64) -> Vec<u8> {
    match kind {
        DriftKind::Contrast => {
            img.iter().map(|&p| (128.0 + 0.4 * (f32::from(p) - 128.0)).round() as u8).collect()
        }
        DriftKind::Invert => img.iter().map(|&p| 255 - p).collect(),
        DriftKind::Blur => {
            let once = box3(img, shape);
            box3(&once, shape)
        }
        DriftKind::Noise => {
            let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut uniform = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                ((rng >> 11) as f64 + 0.5) / (1u64 << 53) as f64
            };
            img.iter()
                .map(|&p| {
                    // Box-Muller.
                    let z = (-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos();
                    (f64::from(p) + 40.0 * z).round().clamp(0.0, 255.0) as u8
                })
                .collect()
        }
    }
}

/// 3×3 box filter per channel, edges replicated.
fn box3(img: &[u8], [c, h, w]: [usize; 3]) -> Vec<u8> {
    let mut out = vec![0u8; img.len()];
    for ch in 0..c {
        let plane = &img[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                let mut sum = 0u32;
                for dy in [-1i64, 0, 1] {
                    for dx in [-1i64, 0, 1] {
                        let yy = (y as i64 + dy).clamp(0, h as i64 - 1) as usize;
                        let xx = (x as i64 + dx).clamp(0, w as i64 - 1) as usize;
                        sum += u32::from(plane[yy * w + xx]);
                    }
                }
                out[ch * h * w + y * w + x] = ((sum + 4) / 9) as u8;
            }
        }
    }
    out
}

/// The images followed by a shifted copy of each (same labels): image `i + len` is image `i`
/// shifted.
pub fn with_shifted(images: &LabelledImages, kind: DriftKind) -> LabelledImages {
    let per: usize = images.shape.iter().product();
    let mut pixels = images.pixels.clone();
    for i in 0..images.len() {
        pixels.extend(shift(kind, &images.pixels[i * per..(i + 1) * per], images.shape, i as u64));
    }
    let mut labels = images.labels.clone();
    labels.extend_from_slice(&images.labels);
    LabelledImages { shape: images.shape, pixels, labels }
}

/// Real accuracy before and after the drift starts (by scheduled time), for the summary.
pub fn phases(records: &[Record], drift: &Drift) -> Value {
    let phase = |after: bool| {
        let ok = records.iter().filter(|r| r.outcome == Outcome::Ok && (r.scheduled_s >= drift.at) == after);
        let (images, correct) = ok.fold((0usize, 0usize), |(n, c), r| (n + r.labels.len(), c + r.correct()));
        json!({"images": images, "correct": correct,
               "accuracy": (images > 0).then(|| correct as f64 / images as f64)})
    };
    let kind = format!("{:?}", drift.kind).to_lowercase();
    json!({"at_s": drift.at, "kind": kind, "share": drift.share, "before": phase(false), "after": phase(true)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kinds_and_shares() {
        assert_eq!(Drift::parse("blur", 5.0).unwrap(), Drift { at: 5.0, kind: DriftKind::Blur, share: 1.0 });
        assert_eq!(Drift::parse("noise:0.3", 0.0).unwrap().share, 0.3);
        assert!(Drift::parse("fog", 1.0).unwrap_err().to_string().contains("contrast, blur"));
        assert!(Drift::parse("invert:0", 1.0).is_err());
        assert!(Drift::parse("invert:1.5", 1.0).is_err());
        assert!(Drift::parse("invert", -1.0).is_err());
    }

    #[test]
    fn shifts_do_what_they_say() {
        let shape = [1, 3, 3];
        let img = [0u8, 255, 0, 255, 0, 255, 0, 255, 0];
        assert_eq!(shift(DriftKind::Invert, &img, shape, 0), [255, 0, 255, 0, 255, 0, 255, 0, 255]);
        let c = shift(DriftKind::Contrast, &img, shape, 0);
        assert!(c.iter().all(|&p| (77..=179).contains(&p)), "{c:?}");
        let b = shift(DriftKind::Blur, &img, shape, 0);
        let spread = |v: &[u8]| v.iter().max().unwrap() - v.iter().min().unwrap();
        assert!(spread(&b) < 100, "{b:?}");
        let flat = [128u8; 900];
        let n = shift(DriftKind::Noise, &flat, [1, 30, 30], 7);
        let mean = n.iter().map(|&p| f64::from(p)).sum::<f64>() / 900.0;
        let sd = (n.iter().map(|&p| (f64::from(p) - mean).powi(2)).sum::<f64>() / 900.0).sqrt();
        assert!((mean - 128.0).abs() < 5.0 && (sd - 40.0).abs() < 6.0, "{mean} {sd}");
        assert_eq!(n, shift(DriftKind::Noise, &flat, [1, 30, 30], 7), "seeded");
    }

    #[test]
    fn the_shifted_copy_follows_the_originals() {
        let set = LabelledImages { shape: [1, 1, 2], pixels: vec![10, 20, 30, 40], labels: vec![3, 4] };
        let both = with_shifted(&set, DriftKind::Invert);
        assert_eq!(both.labels, [3, 4, 3, 4]);
        assert_eq!(both.pixels, [10, 20, 30, 40, 245, 235, 225, 215]);
    }
}
