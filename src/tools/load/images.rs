//! The labelled images `dyce load` sends: Fashion-MNIST's test split (the default), or the test
//! split of a user's image folder prepared for the bundle's input (decode, resize, crop: the code
//! `dyce calibrate` and `/v1/classify` run), so that accuracy under load is measured on the same
//! images the calibration report's test numbers come from. Prepared once before the run: the
//! generator must not decode JPEGs on the clock.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use dyce_data::fashion_mnist::{Images, PIXELS};
use dyce_data::{folder, DecodeLimits, Preprocess, Sample, SplitFractions};

/// Planar 8-bit images of one shape, with their true class.
#[derive(Debug, Clone)]
pub struct LabelledImages {
    /// `[c, h, w]` of every image: the model's input.
    pub shape: [usize; 3],
    /// `len × c·h·w` pixels.
    pub pixels: Vec<u8>,
    /// True class of each image.
    pub labels: Vec<u32>,
}

impl LabelledImages {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image.
    pub fn per_image(&self) -> usize {
        self.shape.iter().product()
    }

    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let per = self.per_image();
        &self.pixels[i * per..(i + 1) * per]
    }
}

impl From<Images> for LabelledImages {
    fn from(set: Images) -> Self {
        debug_assert_eq!(set.pixels.len(), set.len() * PIXELS);
        let labels = set.labels.iter().map(|&l| u32::from(l)).collect();
        Self { shape: [1, 28, 28], pixels: set.pixels, labels }
    }
}

/// Where a folder's test split comes from and how much of it to prepare.
#[derive(Debug, Clone)]
pub struct FolderSource<'a> {
    /// The `ImageFolder` root (with `train/`, `val/`, `test/`, or one folder split by fractions).
    pub root: &'a Path,
    /// Fractions and seed of the split, as given to `dyce calibrate` (same defaults).
    pub fractions: SplitFractions,
    /// Seed of that split.
    pub seed: u64,
    /// Most images to prepare, taken class by class in turn so every class is in.
    pub limit: usize,
}

/// The test split of an image folder, prepared by `pre` (the bundle's input transform) on every
/// CPU. A file that does not decode is an error naming it.
pub fn from_folder(src: &FolderSource, pre: &Preprocess) -> Result<LabelledImages> {
    let splits = folder::open(src.root, src.fractions, src.seed)?;
    let samples = round_robin(splits.test, src.limit);
    ensure!(!samples.is_empty(), "{}: the test split is empty", src.root.display());
    let per: usize = pre.shape.iter().product();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(samples.len());
    let chunk = samples.len().div_ceil(threads);
    let parts: Vec<Result<Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = samples
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut out = Vec::with_capacity(part.len() * per);
                    for smp in part {
                        let bytes = std::fs::read(&smp.path)
                            .with_context(|| format!("reading {}", smp.path.display()))?;
                        let px = pre.pixels(&bytes).with_context(|| format!("{}", smp.path.display()))?;
                        out.extend_from_slice(&px);
                    }
                    Ok(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("image preparation does not panic")).collect()
    });
    let mut pixels = Vec::with_capacity(samples.len() * per);
    for p in parts {
        pixels.extend_from_slice(&p?);
    }
    Ok(LabelledImages { shape: pre.shape, pixels, labels: samples.iter().map(|s| s.label).collect() })
}

/// At most `limit` samples, one of each class in turn (files in name order within a class), so
/// a limit keeps the classes balanced as the split is.
fn round_robin(samples: Vec<Sample>, limit: usize) -> Vec<Sample> {
    let classes = samples.iter().map(|s| s.label as usize + 1).max().unwrap_or(0);
    let mut by_class: Vec<std::collections::VecDeque<Sample>> = vec![Default::default(); classes];
    for s in samples {
        by_class[s.label as usize].push_back(s);
    }
    let mut out = Vec::new();
    while out.len() < limit && by_class.iter().any(|c| !c.is_empty()) {
        for c in by_class.iter_mut() {
            if out.len() == limit {
                break;
            }
            if let Some(s) = c.pop_front() {
                out.push(s);
            }
        }
    }
    out
}

/// Decoder limits for a user's files.
pub const LIMITS: DecodeLimits = DecodeLimits::FILES;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_keeps_classes_balanced() {
        let s = |label: u32, i: usize| Sample { path: format!("{label}/{i}").into(), label };
        let samples = vec![s(0, 0), s(0, 1), s(0, 2), s(1, 0), s(2, 0), s(2, 1)];
        let got: Vec<u32> = round_robin(samples.clone(), 4).iter().map(|s| s.label).collect();
        assert_eq!(got, [0, 1, 2, 0]);
        assert_eq!(round_robin(samples, 100).len(), 6);
    }
}
